//! The client transport ([`Wire`]) against the io crate's server roles, wired together in
//! memory: WebSocket upgrade and masked frames, RawSocket handshake and prefixes, JSON and
//! MessagePack, and the typed failures a bad router causes.

mod common;

use bytes::Bytes;
use common::ServerEnd;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::id::Id;
use switchyard_core::message::{Hello, Message, Subscribe, Welcome, WelcomeDetails};
use switchyard_loadgen::wire::{Wire, WireError};

fn open(ws: bool, ser: Serializer) -> (Wire, ServerEnd) {
    let mut c2s = Vec::new();
    let mut wire = if ws {
        Wire::websocket(ser, "127.0.0.1:8080", "/ws", [7; 16], 42, &mut c2s)
    } else {
        Wire::rawsocket(ser, &mut c2s)
    };
    let mut server = ServerEnd::new();
    let mut s2c = Vec::new();
    assert!(server.handle_read(&c2s, &mut s2c).is_empty());
    assert!(!wire.is_open());
    let mut back = Vec::new();
    wire.handle_read(&s2c, &mut back);
    assert!(back.is_empty());
    assert!(wire.is_open(), "ws={ws} {ser:?}");
    assert_eq!(server.serializer(), Some(ser));
    (wire, server)
}

fn check_round_trip(ws: bool, ser: Serializer) {
    let (mut wire, mut server) = open(ws, ser);
    // Client to server: two messages in one write, split at every byte boundary.
    let hello = Message::Hello(Hello {
        realm: "realm1".into(),
        ..Hello::default()
    });
    let sub = Message::Subscribe(Subscribe {
        request: Id::new(5).unwrap(),
        options: Default::default(),
        topic: "a.b".into(),
    });
    let mut c2s = Vec::new();
    wire.send(&hello, &mut c2s).unwrap();
    wire.send(&sub, &mut c2s).unwrap();
    if ws {
        // Client frames are masked (RFC 6455 §5.3): the MASK bit of the second octet.
        assert_eq!(c2s[1] & 0x80, 0x80);
    }
    let mut frames = Vec::new();
    let mut sink = Vec::new();
    for chunk in c2s.chunks(3) {
        frames.extend(server.handle_read(chunk, &mut sink));
    }
    let got: Vec<Message> = frames
        .into_iter()
        .map(|f| codec::decode(ser, f).unwrap())
        .collect();
    assert_eq!(got, vec![hello, sub]);
    // Server to client, one byte at a time.
    let welcome = Message::Welcome(Welcome {
        session: Id::new(99).unwrap(),
        details: WelcomeDetails::default(),
    });
    let mut s2c = Vec::new();
    server.send(&welcome, &mut s2c);
    let mut out = Vec::new();
    for b in &s2c {
        wire.handle_read(std::slice::from_ref(b), &mut out);
    }
    assert_eq!(wire.poll_message().unwrap().unwrap(), welcome);
    assert!(wire.poll_message().is_none());
}

#[test]
fn every_transport_and_serializer_round_trips() {
    for ws in [true, false] {
        for ser in [Serializer::Json, Serializer::MsgPack] {
            check_round_trip(ws, ser);
        }
    }
}

#[test]
fn upgrade_refusal_is_a_typed_error() {
    let mut out = Vec::new();
    let mut wire = Wire::websocket(Serializer::Json, "h", "/ws", [1; 16], 1, &mut out);
    wire.handle_read(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        &mut out,
    );
    assert!(matches!(
        wire.poll_message(),
        Some(Err(WireError::Handshake(_)))
    ));
    assert!(wire.is_done());
    assert!(wire.poll_message().is_none());
}

#[test]
fn rawsocket_refusal_and_garbage_are_typed_errors() {
    let mut out = Vec::new();
    let mut wire = Wire::rawsocket(Serializer::MsgPack, &mut out);
    assert_eq!(out.len(), 4);
    assert_eq!(out[0], 0x7f);
    assert_eq!(out[1] & 0x0f, 0x02);
    wire.handle_read(&[0x7f, 0x10, 0, 0], &mut Vec::new());
    assert!(matches!(
        wire.poll_message(),
        Some(Err(WireError::RawSocket(_)))
    ));

    let (mut wire, _) = open(false, Serializer::Json);
    wire.handle_read(&[0, 0, 0, 3, b'[', b'x', b']'], &mut Vec::new());
    assert!(matches!(
        wire.poll_message(),
        Some(Err(WireError::Decode(_)))
    ));
}

#[test]
fn router_close_is_reported_with_its_code() {
    let (mut wire, _) = open(true, Serializer::Json);
    // An unmasked close frame with code 1001.
    let mut echo = Vec::new();
    wire.handle_read(&[0x88, 0x02, 0x03, 0xe9], &mut echo);
    assert!(!echo.is_empty(), "the close is echoed");
    match wire.poll_message() {
        Some(Err(WireError::Closed { code, .. })) => assert_eq!(code, Some(1001)),
        other => panic!("{other:?}"),
    }
    let _ = Bytes::new();
}
