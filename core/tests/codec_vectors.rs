//! The WAMP project's test vectors (a committed subset, see `vectors/README.md`), checked
//! as the suite prescribes: decode every variant, agree across serializers, re-encode to
//! one of the variants byte for byte, and accept or refuse the validation samples.
//!
//! This file does not fetch anything: the vectors are committed under `tests/vectors/`.

use bytes::Bytes;

use switchyard_core::codec::{self, Serializer};
use switchyard_core::message::{Message, Payload};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn payload_mut(m: &mut Message) -> Option<&mut Payload> {
    match m {
        Message::Error(m) => Some(&mut m.payload),
        Message::Publish(m) => Some(&mut m.payload),
        Message::Event(m) => Some(&mut m.payload),
        Message::Call(m) => Some(&mut m.payload),
        Message::Result(m) => Some(&mut m.payload),
        Message::Invocation(m) => Some(&mut m.payload),
        Message::Yield(m) => Some(&mut m.payload),
        _ => None,
    }
}

/// Decodes every variant, checks the type, and re-encodes to one of the variants.
fn check_variants(ser: Serializer, code: u64, variants: &[Vec<u8>], what: &str) -> Message {
    let mut decoded = None;
    for v in variants {
        let m = codec::decode(ser, Bytes::from(v.clone()))
            .unwrap_or_else(|e| panic!("{what} {ser:?}: {e}"));
        assert_eq!(m.message_type().code(), code, "{what}");
        let mut out = Vec::new();
        codec::encode(ser, &m, &mut out).unwrap();
        assert!(
            variants.contains(&out),
            "{what} {ser:?}: re-encoded {:?} matches no variant",
            String::from_utf8_lossy(&out)
        );
        if let Some(first) = &decoded {
            assert_eq!(first, &m, "{what} {ser:?}: variants disagree");
        }
        decoded = Some(m);
    }
    decoded.unwrap()
}

#[test]
fn singlemessage_vectors() {
    let text = include_str!("vectors/singlemessage.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut checked = 0;
    for file in doc["files"].as_array().unwrap() {
        let name = file["file"].as_str().unwrap();
        let code = file["code"].as_u64().unwrap();
        for sample in file["samples"].as_array().unwrap() {
            let what = format!("{name}: {}", sample["description"].as_str().unwrap());
            let hexes = |key: &str| -> Vec<Vec<u8>> {
                sample[key]
                    .as_array()
                    .map(|a| a.iter().map(|h| unhex(h.as_str().unwrap())).collect())
                    .unwrap_or_default()
            };
            let (json, msgpack) = (hexes("json_hex"), hexes("msgpack_hex"));
            if !json.is_empty() {
                let mut from_json = check_variants(Serializer::Json, code, &json, &what);
                let from_msgpack = check_variants(Serializer::MsgPack, code, &msgpack, &what);
                if let Some(p) = payload_mut(&mut from_json) {
                    *p = codec::transcode(p, Serializer::MsgPack).unwrap();
                }
                assert_eq!(
                    from_json, from_msgpack,
                    "{what}: JSON and MessagePack disagree"
                );
                checked += 1;
            }
            if let Some(wmsg) = sample.get("wmsg") {
                let frame = Bytes::from(serde_json::to_vec(wmsg).unwrap());
                let got = codec::decode(Serializer::Json, frame);
                match sample["expected_error"]["contains"].as_str() {
                    None => assert!(got.is_ok(), "{what}: {got:?}"),
                    Some(field) => {
                        let err = got.expect_err(&what);
                        assert!(format!("{err:?}").contains(field), "{what}: {err:?}");
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 25, "every committed sample is checked");
}
