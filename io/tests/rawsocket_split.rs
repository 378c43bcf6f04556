//! Property test for the RawSocket codec: a stream split at arbitrary points gives the same
//! events and replies as the same stream delivered in one read.
//!
//! It does not test individual protocol rules (the unit tests in `rawsocket.rs` do); it
//! checks only that "need more" handling is independent of how reads are cut.

use proptest::prelude::*;
use switchyard_io::rawsocket::{
    frame_prefix, Config, Event, FrameType, RawSocketConn, Role, Serializer,
};

/// Feeds `chunks` to a fresh server and returns everything it reported and transmitted.
fn run(chunks: &[&[u8]]) -> (Vec<Event>, Vec<u8>, usize) {
    let config = Config {
        max_message_size: 4096,
        ..Config::default()
    };
    let mut conn = RawSocketConn::new(Role::Server, config);
    let mut events = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        conn.handle_read(chunk);
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        conn.poll_transmit(&mut out);
    }
    (events, out, conn.buffered_bytes())
}

/// One frame: type 0..=3 (3 is reserved, to exercise failures) and a payload.
fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    (0u8..4, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(kind, payload)| {
        let mut f = match kind {
            0 => frame_prefix(FrameType::Message, payload.len()).to_vec(),
            1 => frame_prefix(FrameType::Ping, payload.len()).to_vec(),
            2 => frame_prefix(FrameType::Pong, payload.len()).to_vec(),
            _ => vec![0x03, 0, 0, payload.len() as u8],
        };
        f.extend_from_slice(&payload);
        f
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn split_anywhere(
        serializer in prop::sample::select(vec![Serializer::Json, Serializer::MsgPack]),
        frames in prop::collection::vec(frame_strategy(), 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut stream = vec![0x7f, 0x40 | serializer.id(), 0, 0];
        for f in &frames {
            stream.extend_from_slice(f);
        }
        let whole = run(&[&stream]);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
        let split = run(&chunks);
        prop_assert_eq!(&whole.0, &split.0);
        prop_assert_eq!(&whole.1, &split.1);
        prop_assert_eq!(whole.2, split.2);
        let opened = matches!(whole.0.first(), Some(Event::Open { .. }));
        prop_assert!(opened);
    }
}
