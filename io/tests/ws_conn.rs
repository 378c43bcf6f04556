//! Tests of the WebSocket connection state machine (`ws::conn`) through its public API.
//!
//! Raw frames (including ones that break the protocol) are built by hand; well-formed
//! traffic comes from a client-role `Connection`, so the client role, masking and
//! permessage-deflate are exercised from both ends. No sockets, no clocks: `Instant`s are
//! made up.

// `FIN | 0x0` spells out the continuation opcode, like the other frames' opcodes.
#![allow(clippy::identity_op)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use switchyard_io::ws::conn::{Config, Connection, Error, Event, Role};
use switchyard_io::ws::deflate::{DeflateConfig, DeflateParams, PerMessageDeflate};
use switchyard_io::ws::frame::{parse_header, FrameLimits, OpCode, ProtocolError};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;

/// A masked client frame: `b0` is the whole first byte (FIN, RSV, opcode), so frames that
/// break the rules can be built too.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(FIN | 0x8, &payload)
}

fn small_config() -> Config {
    Config {
        max_frame_size: 1 << 16,
        max_message_size: 1 << 17,
        ..Config::default()
    }
}

fn server() -> Connection {
    Connection::new(Role::Server, small_config(), None)
}

/// Events rendered as short strings, so expectations are one line.
fn render(event: Event) -> String {
    match event {
        Event::Message { text: true, data } => {
            format!("text:{}", std::str::from_utf8(&data).unwrap())
        }
        Event::Message { text: false, data } => format!("binary:{}", data.len()),
        Event::Closed { code, reason } => format!("closed:{code:?}:{reason}"),
        Event::Failed(Error::Protocol(e)) => format!("failed:{e:?}"),
        Event::Failed(e) => format!("failed:{e:?}"),
    }
}

/// Server frames (unmasked) rendered as short strings.
fn render_frames(mut bytes: &[u8]) -> Vec<String> {
    let limits = FrameLimits {
        max_frame_size: u64::MAX >> 1,
        rsv1_allowed: true,
        expect_masked: false,
    };
    let mut out = Vec::new();
    while !bytes.is_empty() {
        // Client frames (from a client-role connection) are masked: unmask them too.
        let limits = FrameLimits {
            expect_masked: bytes[1] & 0x80 != 0,
            ..limits
        };
        let h = parse_header(bytes, &limits).unwrap().unwrap();
        let end = h.header_len + h.payload_len as usize;
        let mut payload = bytes[h.header_len..end].to_vec();
        if let Some(key) = h.mask {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= key[i % 4]);
        }
        out.push(match h.opcode {
            OpCode::Close if payload.len() >= 2 => {
                format!("close:{}", u16::from_be_bytes([payload[0], payload[1]]))
            }
            op => format!("{op:?}:{}", String::from_utf8_lossy(&payload)).to_lowercase(),
        });
        bytes = &bytes[end..];
    }
    out
}

/// Feeds `input` to `conn` and returns the events and the frames it wants to send.
fn drive(conn: &mut Connection, input: &[u8]) -> (Vec<String>, Vec<String>) {
    conn.handle_read(input);
    let events = std::iter::from_fn(|| conn.poll_event())
        .map(render)
        .collect();
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    (events, render_frames(&out))
}

/// One fresh server connection fed `input` in one read.
fn check(input: &[u8], events: &[&str], sent: &[&str]) {
    let mut conn = server();
    let (got_events, got_sent) = drive(&mut conn, input);
    assert_eq!(got_events, events, "events");
    assert_eq!(got_sent, sent, "frames sent");
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn single_frame_messages() {
    check(&frame(FIN | 0x1, b"Hello"), &["text:Hello"], &[]);
    check(&frame(FIN | 0x2, &[0; 300]), &["binary:300"], &[]);
    check(&frame(FIN | 0x2, &[0; 65536]), &["binary:65536"], &[]);
    check(&frame(FIN | 0x1, b""), &["text:"], &[]);
}

#[test]
fn fragmented_message_with_control_frames_between() {
    let input = cat(&[
        frame(0x1, b"Hel"),
        frame(FIN | 0x9, b"p1"),
        frame(0x0, b""),
        frame(FIN | 0xa, b"unsolicited"),
        frame(0x0, b"lo"),
        frame(FIN | 0x0, b"!"),
    ]);
    check(&input, &["text:Hello!"], &["pong:p1"]);
}

#[test]
fn fragmentation_rules() {
    check(
        &frame(FIN | 0x0, b"x"),
        &["failed:ContinuationWithoutMessage"],
        &["close:1002"],
    );
    check(
        &cat(&[frame(0x1, b"a"), frame(FIN | 0x1, b"b")]),
        &["failed:NewMessageDuringFragmented"],
        &["close:1002"],
    );
    check(
        &cat(&[frame(0x2, b"a"), frame(0x9, b"")]),
        &["failed:ControlFrameFragmented"],
        &["close:1002"],
    );
}

#[test]
fn frame_rules_fail_with_1002() {
    check(
        &frame(FIN | 0x3, b""),
        &["failed:ReservedOpCode(3)"],
        &["close:1002"],
    );
    check(
        &frame(FIN | 0xb, b""),
        &["failed:ReservedOpCode(11)"],
        &["close:1002"],
    );
    check(
        &frame(FIN | RSV1 | 0x1, b"x"),
        &["failed:Rsv1NotNegotiated"],
        &["close:1002"],
    );
    check(
        &frame(FIN | 0x20 | 0x1, b"x"),
        &["failed:Rsv2Set"],
        &["close:1002"],
    );
    check(
        &[0x81, 0x01, b'x'],
        &["failed:UnmaskedFrameFromClient"],
        &["close:1002"],
    );
    check(
        &frame(FIN | 0x9, &[b'p'; 126]),
        &["failed:ControlFrameTooLong(126)"],
        &["close:1002"],
    );
}

#[test]
fn every_ping_gets_a_pong_up_to_a_bound() {
    check(&frame(FIN | 0x9, b"hi"), &[], &["pong:hi"]);
    check(
        &frame(FIN | 0x9, &[b'p'; 125]),
        &[],
        &[&format!("pong:{}", "p".repeat(125))],
    );
    check(
        &cat(&[frame(FIN | 0x9, b"1"), frame(FIN | 0x9, b"2")]),
        &[],
        &["pong:1", "pong:2"],
    );
    check(&frame(FIN | 0xa, b"nobody asked"), &[], &[]);
    // A flood of pings in one read: 15 pongs, then the newest replaces the 16th.
    let flood: Vec<Vec<u8>> = (0..100)
        .map(|i| frame(FIN | 0x9, format!("{i}").as_bytes()))
        .collect();
    let mut expect: Vec<String> = (0..15).map(|i| format!("pong:{i}")).collect();
    expect.push("pong:99".into());
    let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
    check(&cat(&flood), &[], &expect);
}

#[test]
fn replies_keep_their_place_among_events() {
    // Polling transmit before each event interleaves replies and events in input order.
    let input = cat(&[
        frame(FIN | 0x1, b"first"),
        frame(0x1, b"sec"),
        frame(FIN | 0x9, b"p"),
        frame(FIN | 0x0, b"ond"),
        frame(FIN | 0x3, b""),
    ]);
    let mut conn = server();
    conn.handle_read(&input);
    let mut order = Vec::new();
    loop {
        let mut out = Vec::new();
        conn.poll_transmit(&mut out);
        order.extend(render_frames(&out));
        let Some(event) = conn.poll_event() else {
            break;
        };
        // Echo messages like the echo driver: the connection has already failed, but
        // its close is not written yet, so the echoes still go out before it.
        if let Event::Message { text, data } = &event {
            let mut echo = Vec::new();
            conn.send_message(*text, data, &mut echo);
            order.extend(
                render_frames(&echo)
                    .into_iter()
                    .map(|f| format!("echo {f}")),
            );
        }
        order.push(render(event));
    }
    assert_eq!(
        order,
        [
            "echo text:first",
            "text:first",
            "pong:p",
            "echo text:second",
            "text:second",
            "close:1002",
            "failed:ReservedOpCode(3)"
        ]
    );
    // Once the close is written, nothing follows it.
    let mut out = Vec::new();
    conn.send_message(true, b"late", &mut out);
    assert!(out.is_empty());
}

#[test]
fn close_codes_by_class() {
    // Valid codes are echoed (RFC 6455 §5.5.1).
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        check(
            &close_frame(code, b"bye"),
            &[&format!("closed:Some({code}):bye")],
            &[&format!("close:{code}")],
        );
    }
    // Codes that must never appear on the wire fail the connection with 1002.
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        check(
            &close_frame(code, b""),
            &[&format!("failed:InvalidCloseCode({code})")],
            &["close:1002"],
        );
    }
    check(&frame(FIN | 0x8, b""), &["closed:None:"], &["close:1000"]);
    check(
        &frame(FIN | 0x8, &[0x03]),
        &["failed:CloseCodeTruncated"],
        &["close:1002"],
    );
    check(
        &close_frame(1000, b"\xce\xba\xe1\xbd\xb9\xf4\x90\x80\x80"),
        &["failed:CloseReasonNotUtf8"],
        &["close:1007"],
    );
}

#[test]
fn nothing_after_the_close_is_processed() {
    let input = cat(&[
        close_frame(1000, b""),
        frame(FIN | 0x9, b"late"),
        frame(FIN | 0x1, b"late"),
    ]);
    check(&input, &["closed:Some(1000):"], &["close:1000"]);
}

#[test]
fn local_close_waits_for_the_peer() {
    let mut conn = server();
    let mut out = Vec::new();
    conn.close(1001, "going away", &mut out);
    assert_eq!(render_frames(&out), ["close:1001"]);
    assert!(!conn.is_closed());
    // Messages sent after our close are still delivered; the peer's close ends it.
    let (events, sent) = drive(
        &mut conn,
        &cat(&[frame(FIN | 0x1, b"in flight"), close_frame(1001, b"")]),
    );
    assert_eq!(events, ["text:in flight", "closed:Some(1001):"]);
    assert!(sent.is_empty());
    assert!(conn.is_closed());
    // Nothing more goes out once a close was sent.
    let mut out = Vec::new();
    conn.send_message(true, b"x", &mut out);
    conn.send_ping(b"x", &mut out);
    assert!(out.is_empty());
}

#[test]
fn size_limits_are_refused_before_allocation() {
    // A frame announcing 2^40 bytes fails as soon as its header is in: nothing else sent.
    let header = [0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0];
    let mut conn = server();
    let (events, sent) = drive(&mut conn, &header);
    assert_eq!(
        events,
        ["failed:FrameTooLarge { len: 1099511627776, limit: 65536 }"]
    );
    assert_eq!(sent, ["close:1009"]);
    assert_eq!(conn.buffered_bytes(), 0);

    // The message limit is checked against each fragment's header before its payload.
    let input = cat(&[frame(0x2, &[0; 65536]), frame(0x0, &[0; 65536])]);
    let mut conn = server();
    let (events, _) = drive(&mut conn, &input);
    assert!(events.is_empty());
    // The next continuation header announces 2 more bytes: over the limit, refused
    // before its payload arrives.
    let header = [0x80, 0x82, KEY[0], KEY[1], KEY[2], KEY[3]];
    let (events, sent) = drive(&mut conn, &header);
    assert_eq!(events, ["failed:MessageTooLarge { limit: 131072 }"]);
    assert_eq!(sent, ["close:1009"]);

    // An allowed length that has not arrived reserves at most 64 KiB ahead.
    let config = Config {
        max_frame_size: 16 << 20,
        max_message_size: 16 << 20,
        ..Config::default()
    };
    let mut conn = Connection::new(Role::Server, config, None);
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(16u64 << 20).to_be_bytes());
    header.extend_from_slice(&KEY);
    conn.handle_read(&header);
    assert!(conn.poll_event().is_none());
    assert!(
        conn.buffered_bytes() <= 64 * 1024,
        "{}",
        conn.buffered_bytes()
    );
}

#[test]
fn bad_utf8_fails_fast_across_fragments() {
    // The second fragment holds an invalid sequence; the message is not finished, yet the
    // connection fails right there.
    let input = cat(&[frame(0x1, "κόσμε".as_bytes()), frame(0x0, b"\xed\xa0\x80")]);
    check(&input, &["failed:TextNotUtf8"], &["close:1007"]);
    // A sequence split across fragments is fine.
    let input = cat(&[frame(0x1, b"\xce"), frame(FIN | 0x0, b"\xba")]);
    check(&input, &["text:κ"], &[]);
    // An incomplete sequence at the end of the message is not.
    check(
        &cat(&[frame(0x1, b"a"), frame(FIN | 0x0, b"\xce")]),
        &["failed:TextNotUtf8"],
        &["close:1007"],
    );
    check(
        &frame(FIN | 0x1, b"\xff"),
        &["failed:TextNotUtf8"],
        &["close:1007"],
    );
}

#[test]
fn bad_utf8_fails_fast_within_a_frame_arriving_in_pieces() {
    let bytes = frame(
        FIN | 0x1,
        b"ok\xf4\x90\x80\x80 and much more text that has not arrived",
    );
    let mut conn = server();
    // Header plus the first 6 payload bytes: the invalid 4-byte sequence is complete.
    let (events, sent) = drive(&mut conn, &bytes[..12]);
    assert_eq!(events, ["failed:TextNotUtf8"]);
    assert_eq!(sent, ["close:1007"]);
}

#[test]
fn idle_connection_keeps_no_buffer() {
    let mut conn = server();
    let input = cat(&[
        frame(0x1, b"Hel"),
        frame(FIN | 0x9, b"p"),
        frame(FIN | 0x0, b"lo"),
    ]);
    // Split inside the second header to leave a partial header behind for a while.
    conn.handle_read(&input[..12]);
    conn.handle_read(&input[12..]);
    while conn.poll_event().is_some() {}
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    assert_eq!(conn.buffered_bytes(), 0);
}

fn client_server(deflate: bool) -> (Connection, Connection) {
    let (server_deflate, client_deflate) = if deflate {
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let config = DeflateConfig {
            compress_threshold: 0,
            ..DeflateConfig::default()
        };
        (
            Some(PerMessageDeflate::new(&params, &config)),
            Some(PerMessageDeflate::new_client(&params, &config).unwrap()),
        )
    } else {
        (None, None)
    };
    (
        Connection::new(Role::Server, small_config(), server_deflate),
        Connection::new(
            Role::Client { mask_seed: 7 },
            small_config(),
            client_deflate,
        ),
    )
}

#[test]
fn client_and_server_talk_with_and_without_deflate() {
    for deflate in [false, true] {
        let (mut server, mut client) = client_server(deflate);
        let messages: Vec<(bool, Vec<u8>)> = vec![
            (true, b"Hello".to_vec()),
            (true, "κόσμε ".repeat(2000).into_bytes()),
            (false, (0..=255u8).cycle().take(65000).collect()),
            (true, b"Hello".to_vec()),
            (false, Vec::new()),
        ];
        for (text, data) in &messages {
            let mut wire = Vec::new();
            client.send_message(*text, data, &mut wire);
            if deflate && data.len() > 100 {
                assert!(
                    wire.len() < data.len() / 2,
                    "compressed: {} of {}",
                    wire.len(),
                    data.len()
                );
                assert_eq!(wire[0] & RSV1, RSV1);
            }
            server.handle_read(&wire);
            let Some(Event::Message { text: t, data: d }) = server.poll_event() else {
                panic!("no message");
            };
            assert_eq!((t, &d[..]), (*text, &data[..]));
            // And back: the server's frames are unmasked, which the client requires.
            let mut reply = Vec::new();
            server.send_message(t, &d, &mut reply);
            client.handle_read(&reply);
            let Some(Event::Message { text: t2, data: d2 }) = client.poll_event() else {
                panic!("no reply");
            };
            assert_eq!((t2, &d2[..]), (*text, &data[..]));
        }
        // The close handshake, client first.
        let mut wire = Vec::new();
        client.close(1000, "done", &mut wire);
        server.handle_read(&wire);
        assert_eq!(
            server.poll_event().map(render).as_deref(),
            Some("closed:Some(1000):done")
        );
        let mut echo = Vec::new();
        assert!(server.poll_transmit(&mut echo));
        assert!(server.is_closed());
        client.handle_read(&echo);
        assert_eq!(
            client.poll_event().map(render).as_deref(),
            Some("closed:Some(1000):")
        );
        assert!(client.is_closed());
    }
}

#[test]
fn client_refuses_masked_server_frames() {
    let (_, mut client) = client_server(false);
    let (events, _) = drive(&mut client, &frame(FIN | 0x1, b"x"));
    assert_eq!(events, ["failed:MaskedFrameFromServer"]);
}

#[test]
fn deflate_bomb_is_refused() {
    let (mut server, mut client) = client_server(true);
    let mut wire = Vec::new();
    // Compresses to a few hundred bytes, inflates past the 128 KiB message limit.
    client.send_message(false, &vec![0u8; 1 << 20], &mut wire);
    assert!(wire.len() < 2000);
    let (events, sent) = drive(&mut server, &wire);
    assert_eq!(events, ["failed:MessageTooLarge { limit: 131072 }"]);
    assert_eq!(sent, ["close:1009"]);
}

#[test]
fn deflate_corrupt_data_fails() {
    let (mut server, _) = client_server(true);
    let (events, sent) = drive(&mut server, &frame(FIN | RSV1 | 0x2, &[0xff; 20]));
    assert_eq!(events, ["failed:DeflateCorrupt"]);
    assert_eq!(sent, ["close:1002"]);
    let (mut server, _) = client_server(true);
    let (events, _) = drive(
        &mut server,
        &cat(&[frame(0x2, b"x"), frame(FIN | RSV1 | 0x0, b"")]),
    );
    assert_eq!(events, ["failed:Rsv1NotOnFirstFrame"]);
}

#[test]
fn compressed_text_is_validated_after_inflating() {
    let (mut server, mut client) = client_server(true);
    let mut wire = Vec::new();
    // Sent as binary so the client accepts it, then relabelled as text on the wire.
    client.send_message(false, b"valid prefix \xff then invalid", &mut wire);
    assert_eq!(wire[0], FIN | RSV1 | 0x2);
    wire[0] = FIN | RSV1 | 0x1;
    let (events, sent) = drive(&mut server, &wire);
    assert_eq!(events, ["failed:TextNotUtf8"]);
    assert_eq!(sent, ["close:1007"]);
}

#[test]
fn keepalive_pings_and_times_out() {
    let config = Config {
        ping_interval: Some(Duration::from_secs(30)),
        ping_timeout: Duration::from_secs(10),
        ..small_config()
    };
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut conn = Connection::new(Role::Server, config, None);
    assert_eq!(conn.poll_timeout(), None);
    conn.start_keepalive(t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + s(30)));
    conn.handle_timeout(t0 + s(29));
    let mut out = Vec::new();
    assert!(!conn.poll_transmit(&mut out));
    conn.handle_timeout(t0 + s(30));
    assert!(conn.poll_transmit(&mut out));
    assert_eq!(render_frames(&out), ["ping:"]);
    assert_eq!(conn.poll_timeout(), Some(t0 + s(40)));
    // The pong arrives: the next ping is due one interval after the timeout fired.
    let (events, _) = drive(&mut conn, &frame(FIN | 0xa, b""));
    assert!(events.is_empty());
    conn.handle_timeout(t0 + s(40));
    assert_eq!(conn.poll_timeout(), Some(t0 + s(70)));
    conn.handle_timeout(t0 + s(70));
    // Silence this time: the connection fails at the timeout.
    conn.handle_timeout(t0 + s(80));
    assert_eq!(
        conn.poll_event().map(render).as_deref(),
        Some("failed:PongTimeout")
    );
    assert!(conn.is_closed());
    assert_eq!(conn.poll_timeout(), None);
}

/// A stream of client frames, well-formed or not, built from a small alphabet.
fn arb_frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let piece = prop_oneof![
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(fin, p)| frame(if fin { FIN | 0x2 } else { 0x2 }, &p)),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|p| frame(0x0, &p)),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|p| frame(FIN | 0x0, &p)),
        "[a-zκό]{0,40}".prop_map(|s| frame(FIN | 0x1, s.as_bytes())),
        "[a-zκό]{0,40}".prop_map(|s| frame(0x1, s.as_bytes())),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|p| frame(FIN | 0x1, &p)),
        proptest::collection::vec(any::<u8>(), 0..125).prop_map(|p| frame(FIN | 0x9, &p)),
        Just(frame(FIN | 0xa, b"")),
        Just(close_frame(1000, b"")),
        Just(frame(FIN | 0x3, b"")),
    ];
    proptest::collection::vec(piece, 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Feeding a stream split at arbitrary points yields the same events and replies as
    /// feeding it whole.
    #[test]
    fn split_points_do_not_matter(frames in arb_frames(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let stream = frames.concat();
        let mut whole = server();
        let expect = drive(&mut whole, &stream);

        let mut positions: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        positions.sort_unstable();
        let mut split = server();
        let mut events = Vec::new();
        let mut sent = Vec::new();
        let mut start = 0;
        for end in positions.into_iter().chain([stream.len()]) {
            split.handle_read(&stream[start..end]);
            start = end;
        }
        events.extend(std::iter::from_fn(|| split.poll_event()).map(render));
        let mut out = Vec::new();
        split.poll_transmit(&mut out);
        sent.extend(render_frames(&out));
        prop_assert_eq!((events, sent), expect);
    }

    /// Byte-at-a-time and whole-stream feeding agree for a client/server pair with deflate.
    #[test]
    fn deflate_messages_survive_any_split(msgs in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..2000), 1..6), step in 1usize..700) {
        let (mut server, mut client) = client_server(true);
        let mut wire = Vec::new();
        for m in &msgs {
            client.send_message(false, m, &mut wire);
        }
        for chunk in wire.chunks(step) {
            server.handle_read(chunk);
        }
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| server.poll_event())
            .map(|e| match e {
                Event::Message { data, .. } => data.to_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        prop_assert_eq!(got, msgs);
    }
}

#[test]
fn protocol_error_close_codes() {
    assert_eq!(ProtocolError::TextNotUtf8.close_code(), 1007);
    assert_eq!(
        ProtocolError::MessageTooLarge { limit: 1 }.close_code(),
        1009
    );
    assert_eq!(ProtocolError::Rsv2Set.close_code(), 1002);
}

#[test]
fn deflate_empty_messages_in_a_row() {
    // The second empty message finds nothing to flush: it must still go out as 0x00.
    let (mut server, mut client) = client_server(true);
    for _ in 0..3 {
        let mut wire = Vec::new();
        client.send_message(true, b"", &mut wire);
        let (events, _) = drive(&mut server, &wire);
        assert_eq!(events, ["text:"]);
    }
    let (events, _) = drive(&mut server, &{
        let mut wire = Vec::new();
        client.send_message(true, b"after", &mut wire);
        wire
    });
    assert_eq!(events, ["text:after"]);
}

/// A server with permessage-deflate and `max_message_size`, and a client that compresses
/// every message (context takeover on both sides).
fn deflate_server_client(max_message_size: usize) -> (Connection, Connection) {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let config = DeflateConfig {
        compress_threshold: 0,
        ..DeflateConfig::default()
    };
    let server_config = Config {
        max_message_size,
        ..small_config()
    };
    (
        Connection::new(
            Role::Server,
            server_config,
            Some(PerMessageDeflate::new(&params, &config)),
        ),
        Connection::new(
            Role::Client { mask_seed: 7 },
            Config::default(),
            Some(PerMessageDeflate::new_client(&params, &config).unwrap()),
        ),
    )
}

/// The compressed payload `client` sends for `data` (RFC 7692: one frame, the
/// `00 00 ff ff` tail stripped), unmasked.
fn compressed_payload(client: &mut Connection, data: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    client.send_message(false, data, &mut wire);
    let limits = FrameLimits {
        max_frame_size: u64::MAX >> 1,
        rsv1_allowed: true,
        expect_masked: true,
    };
    let header = parse_header(&wire, &limits).unwrap().unwrap();
    assert!(header.rsv1, "the client compresses every message");
    let key = header.mask.unwrap();
    wire[header.header_len..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect()
}

/// Feeds `stream` to `conn` in the reads that `ends` (sorted cut positions) delimit, then
/// returns every event and reply.
fn drive_cut(conn: &mut Connection, stream: &[u8], ends: &[usize]) -> (Vec<String>, Vec<String>) {
    let mut start = 0;
    for &end in ends.iter().chain([&stream.len()]) {
        conn.handle_read(&stream[start..end]);
        start = end;
    }
    let events = std::iter::from_fn(|| conn.poll_event())
        .map(render)
        .collect();
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    (events, render_frames(&out))
}

/// Message text built from valid characters and, rarely, bytes that break UTF-8 (a stray
/// continuation or lead byte, an encoded surrogate).
fn arb_text_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        20 => Just(&b"wamp "[..]),
        10 => Just("κόσμε ".as_bytes()),
        5 => Just("🚀".as_bytes()),
        1 => Just(&b"\xff"[..]),
        1 => Just(&b"\xce"[..]),
        1 => Just(&b"\xed\xa0\x80"[..]),
    ];
    proptest::collection::vec(piece, 0..120).prop_map(|pieces| pieces.concat())
}

/// One compressed message on the wire: its text (or binary) content, where its compressed
/// payload is cut into fragments, and an optional corruption of one compressed byte.
type CompressedCase = (bool, Vec<u8>, Vec<prop::sample::Index>);

fn arb_compressed_case() -> impl Strategy<Value = CompressedCase> {
    (
        prop::bool::weighted(0.8),
        arb_text_bytes(),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Fuzz finding 1: a compressed message that is corrupt, too large once inflated, or not
    /// UTF-8 fails the connection with the same error (and close code) whether it arrives in
    /// one read, in arbitrary pieces or byte by byte, fragmented or not.
    #[test]
    fn compressed_message_errors_do_not_depend_on_reads(
        messages in proptest::collection::vec(arb_compressed_case(), 1..4),
        corrupt in proptest::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..=255)),
        limit in prop::sample::select(vec![64usize, 300, 1 << 17]),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let (_, mut client) = deflate_server_client(limit);
        let mut payloads: Vec<Vec<u8>> = messages
            .iter()
            .map(|(_, data, _)| compressed_payload(&mut client, data))
            .collect();
        if let Some((which, at, xor)) = corrupt {
            let payload = &mut payloads[which.index(messages.len())];
            if !payload.is_empty() {
                let at = at.index(payload.len());
                payload[at] ^= xor;
            }
        }
        let mut stream = Vec::new();
        for ((text, _, fragments), payload) in messages.iter().zip(&payloads) {
            let mut ends: Vec<usize> = fragments.iter().map(|i| i.index(payload.len() + 1)).collect();
            ends.sort_unstable();
            ends.dedup();
            ends.retain(|&e| e < payload.len());
            let mut start = 0;
            for (n, end) in ends.iter().copied().chain([payload.len()]).enumerate() {
                let fin = if end == payload.len() { FIN } else { 0 };
                let b0 = match n {
                    0 => fin | RSV1 | if *text { 0x1 } else { 0x2 },
                    _ => fin,
                };
                stream.extend(frame(b0, &payload[start..end]));
                start = end;
            }
        }
        let whole = drive_cut(&mut deflate_server_client(limit).0, &stream, &[]);
        let mut ends: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        ends.sort_unstable();
        let cut = drive_cut(&mut deflate_server_client(limit).0, &stream, &ends);
        prop_assert_eq!(&cut, &whole, "cut at {:?}", ends);
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        let bytewise = drive_cut(&mut deflate_server_client(limit).0, &stream, &every_byte);
        prop_assert_eq!(&bytewise, &whole, "byte by byte");
    }
}
