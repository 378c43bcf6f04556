//! Round trips of every WAMP message through both codecs, and the decode errors.
//!
//! Each case names a message and its canonical compact JSON text. The text must decode to
//! the message and the message must encode to the text byte for byte; then the same
//! message, its payload transcoded, must round-trip through MessagePack and mean the same
//! as the JSON text. This file does not test the spec's published vectors (see
//! `codec_vectors.rs`) or generated messages (see `codec_props.rs`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;

use switchyard_core::codec::{
    self, DecodeError, EncodeError, FrameError, MessageError, Serializer, MAX_DEPTH,
};
use switchyard_core::id::Id;
use switchyard_core::message::*;

fn id(n: u64) -> Id {
    Id::new(n).unwrap()
}

fn json_payload(args: Option<&str>, kwargs: Option<&str>) -> Payload {
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    Payload::new(Serializer::Json, args.map(b), kwargs.map(b))
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

/// Converts a JSON value to the MessagePack value the codecs must produce for it.
fn to_rmpv(v: &serde_json::Value) -> rmpv::Value {
    use serde_json::Value as J;
    match v {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => rmpv::Value::from(*b),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => rmpv::Value::from(u),
            (_, Some(i)) => rmpv::Value::from(i),
            _ => rmpv::Value::from(n.as_f64().unwrap()),
        },
        // The spec's binary convention: "\u0000" then base64 is MessagePack bin.
        J::String(s) => match s.strip_prefix('\0').map(|b| STANDARD.decode(b)) {
            Some(Ok(bin)) => rmpv::Value::Binary(bin),
            _ => rmpv::Value::from(s.as_str()),
        },
        J::Array(items) => rmpv::Value::Array(items.iter().map(to_rmpv).collect()),
        J::Object(map) => rmpv::Value::Map(
            map.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_rmpv(v)))
                .collect(),
        ),
    }
}

/// Sorts map entries so that MessagePack maps compare regardless of key order.
fn canonical(v: rmpv::Value) -> rmpv::Value {
    match v {
        rmpv::Value::Array(items) => rmpv::Value::Array(items.into_iter().map(canonical).collect()),
        rmpv::Value::Map(entries) => {
            let mut e: Vec<_> = entries
                .into_iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect();
            e.sort_by_key(|(k, _)| k.to_string());
            rmpv::Value::Map(e)
        }
        other => other,
    }
}

fn check(text: &str, message: Message) {
    // JSON: decode, then encode byte for byte.
    let decoded = codec::decode(Serializer::Json, Bytes::copy_from_slice(text.as_bytes()));
    assert_eq!(decoded.as_ref(), Ok(&message), "decoding {text}");
    let mut out = Vec::new();
    codec::encode(Serializer::Json, &message, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), text);

    // MessagePack: the same message with its payload transcoded.
    let mut mp = message.clone();
    if let Some(p) = payload_mut(&mut mp) {
        *p = codec::transcode(p, Serializer::MsgPack).unwrap();
    }
    let mut out = Vec::new();
    codec::encode(Serializer::MsgPack, &mp, &mut out).unwrap();
    let as_value = rmpv::decode::read_value(&mut &out[..]).unwrap();
    let expect = to_rmpv(&serde_json::from_str(text).unwrap());
    assert_eq!(canonical(as_value), canonical(expect), "msgpack of {text}");
    let decoded = codec::decode(Serializer::MsgPack, Bytes::from(out));
    assert_eq!(decoded, Ok(mp), "msgpack round trip of {text}");
}

#[test]
fn session_messages() {
    check(
        r#"[1,"realm1",{"roles":{"caller":{},"subscriber":{"features":{"pattern_based_subscription":true}}},"authmethods":["wampcra","ticket"],"authid":"joe","authextra":{"pubkey":"abc"},"agent":"x/1"}]"#,
        Message::Hello(Hello {
            realm: "realm1".into(),
            details: HelloDetails {
                roles: Roles::default()
                    .with(Role::Caller, &[])
                    .with(Role::Subscriber, &["pattern_based_subscription"]),
                authmethods: Some(vec!["wampcra".into(), "ticket".into()]),
                authid: Some("joe".into()),
                authextra: Some(Dict::new().with("pubkey", "abc")),
                extra: Dict::new().with("agent", "x/1"),
            },
        }),
    );
    check(
        r#"[2,9129137332,{"roles":{"broker":{}},"authid":"joe","authrole":"user","authmethod":"ticket","authprovider":"static"}]"#,
        Message::Welcome(Welcome {
            session: id(9129137332),
            details: WelcomeDetails {
                roles: Roles::default().with(Role::Broker, &[]),
                authid: Some("joe".into()),
                authrole: Some("user".into()),
                authmethod: Some("ticket".into()),
                authprovider: Some("static".into()),
                authextra: None,
                extra: Dict::new(),
            },
        }),
    );
    check(
        r#"[3,{"message":"The realm does not exist."},"wamp.error.no_such_realm"]"#,
        Message::Abort(Abort {
            details: Dict::new().with("message", "The realm does not exist."),
            reason: "wamp.error.no_such_realm".into(),
        }),
    );
    check(
        r#"[4,"wampcra",{"challenge":"{\"nonce\":1}"}]"#,
        Message::Challenge(Challenge {
            authmethod: "wampcra".into(),
            extra: Dict::new().with("challenge", "{\"nonce\":1}"),
        }),
    );
    check(
        r#"[5,"gir1mSx+deCDUV7wRM5SGIn/+R/ClqLZuH4m7FJeBVI=",{}]"#,
        Message::Authenticate(Authenticate {
            signature: "gir1mSx+deCDUV7wRM5SGIn/+R/ClqLZuH4m7FJeBVI=".into(),
            extra: Dict::new(),
        }),
    );
    check(
        r#"[6,{},"wamp.close.close_realm"]"#,
        Message::Goodbye(Goodbye {
            details: Dict::new(),
            reason: "wamp.close.close_realm".into(),
        }),
    );
}

#[test]
fn error_message() {
    check(
        r#"[8,48,7814135,{"x":[1,-2,2.5,null,false]},"wamp.error.no_such_procedure"]"#,
        Message::Error(ErrorMessage {
            request_type: MessageType::Call,
            request: id(7814135),
            details: Dict::new().with(
                "x",
                Value::List(vec![
                    Value::UInt(1),
                    Value::Int(-2),
                    Value::Float(2.5),
                    Value::Null,
                    Value::Bool(false),
                ]),
            ),
            error: "wamp.error.no_such_procedure".into(),
            payload: Payload::empty(),
        }),
    );
    check(
        r#"[8,68,6131533,{},"com.myapp.error.object_write_protected",["Object is write protected."],{"severity":3}]"#,
        Message::Error(ErrorMessage {
            request_type: MessageType::Invocation,
            request: id(6131533),
            details: Dict::new(),
            error: "com.myapp.error.object_write_protected".into(),
            payload: json_payload(
                Some(r#"["Object is write protected."]"#),
                Some(r#"{"severity":3}"#),
            ),
        }),
    );
}

#[test]
fn pubsub_messages() {
    check(
        r#"[16,239714735,{"acknowledge":true,"exclude_me":false,"exclude":[7,8],"eligible":[9],"exclude_authid":["a"],"eligible_authid":["b"],"exclude_authrole":["c"],"eligible_authrole":["d"],"disclose_me":true,"retain":true,"custom":{"k":"v"}},"com.myapp.mytopic1",["Hello, world!"]]"#,
        Message::Publish(Publish {
            request: id(239714735),
            options: PublishOptions {
                acknowledge: Some(true),
                exclude_me: Some(false),
                exclude: Some(vec![id(7), id(8)]),
                eligible: Some(vec![id(9)]),
                exclude_authid: Some(vec!["a".into()]),
                eligible_authid: Some(vec!["b".into()]),
                exclude_authrole: Some(vec!["c".into()]),
                eligible_authrole: Some(vec!["d".into()]),
                disclose_me: Some(true),
                retain: Some(true),
                ppt: Ppt::default(),
                extra: Dict::new().with("custom", Dict::new().with("k", "v")),
            },
            topic: "com.myapp.mytopic1".into(),
            payload: json_payload(Some(r#"["Hello, world!"]"#), None),
        }),
    );
    check(
        r#"[16,1,{"ppt_scheme":"x_app","ppt_serializer":"cbor","ppt_cipher":"xsalsa20poly1305","ppt_keyid":"k1"},"t",["\u0000AAEC"]]"#,
        Message::Publish(Publish {
            request: id(1),
            options: PublishOptions {
                ppt: Ppt {
                    scheme: Some("x_app".into()),
                    serializer: Some("cbor".into()),
                    cipher: Some("xsalsa20poly1305".into()),
                    keyid: Some("k1".into()),
                },
                ..PublishOptions::default()
            },
            topic: "t".into(),
            payload: json_payload(Some(r#"["\u0000AAEC"]"#), None),
        }),
    );
    check(
        r#"[16,2,{},"t",[],{"color":"orange","sizes":[23,42,7]}]"#,
        Message::Publish(Publish {
            request: id(2),
            options: PublishOptions::default(),
            topic: "t".into(),
            payload: json_payload(None, Some(r#"{"color":"orange","sizes":[23,42,7]}"#)),
        }),
    );
    check(
        "[17,239714735,4429313566]",
        Message::Published(Published {
            request: id(239714735),
            publication: id(4429313566),
        }),
    );
    check(
        r#"[32,713845233,{"match":"wildcard","get_retained":true},"com.myapp..update"]"#,
        Message::Subscribe(Subscribe {
            request: id(713845233),
            options: SubscribeOptions {
                match_policy: Some(MatchPolicy::Wildcard),
                get_retained: Some(true),
                extra: Dict::new(),
            },
            topic: "com.myapp..update".into(),
        }),
    );
    check(
        "[33,713845233,5512315355]",
        Message::Subscribed(Subscribed {
            request: id(713845233),
            subscription: id(5512315355),
        }),
    );
    check(
        "[34,85346237,5512315355]",
        Message::Unsubscribe(Unsubscribe {
            request: id(85346237),
            subscription: id(5512315355),
        }),
    );
    check(
        "[35,85346237]",
        Message::Unsubscribed(Unsubscribed {
            request: Some(id(85346237)),
            details: None,
        }),
    );
    check(
        r#"[35,0,{"subscription":5512315355,"reason":"wamp.authentication.lost"}]"#,
        Message::Unsubscribed(Unsubscribed {
            request: None,
            details: Some(
                Dict::new()
                    .with("subscription", 5512315355u64)
                    .with("reason", "wamp.authentication.lost"),
            ),
        }),
    );
    check(
        r#"[36,5512315355,4429313566,{"publisher":3335656,"publisher_authid":"joe","publisher_authrole":"user","topic":"com.myapp.a.update","retained":true},["Hello"],{"n":1}]"#,
        Message::Event(Event {
            subscription: id(5512315355),
            publication: id(4429313566),
            details: EventDetails {
                publisher: Some(id(3335656)),
                publisher_authid: Some("joe".into()),
                publisher_authrole: Some("user".into()),
                topic: Some("com.myapp.a.update".into()),
                retained: Some(true),
                ppt: Ppt::default(),
                extra: Dict::new(),
            },
            payload: json_payload(Some(r#"["Hello"]"#), Some(r#"{"n":1}"#)),
        }),
    );
}

#[test]
fn rpc_messages() {
    check(
        r#"[48,7814135,{"timeout":1000,"receive_progress":true,"progress":false,"disclose_me":true},"com.myapp.ping"]"#,
        Message::Call(Call {
            request: id(7814135),
            options: CallOptions {
                timeout: Some(1000),
                receive_progress: Some(true),
                progress: Some(false),
                disclose_me: Some(true),
                ppt: Ppt::default(),
                extra: Dict::new(),
            },
            procedure: "com.myapp.ping".into(),
            payload: Payload::empty(),
        }),
    );
    check(
        r#"[49,7814135,{"mode":"killnowait"}]"#,
        Message::Cancel(Cancel {
            request: id(7814135),
            options: CancelOptions {
                mode: Some(CancelMode::KillNoWait),
                extra: Dict::new(),
            },
        }),
    );
    check(
        r#"[50,7814135,{"progress":true},[30]]"#,
        Message::Result(CallResult {
            request: id(7814135),
            details: ResultDetails {
                progress: Some(true),
                ..ResultDetails::default()
            },
            payload: json_payload(Some("[30]"), None),
        }),
    );
    check(
        r#"[64,25349185,{"match":"prefix","invoke":"roundrobin"},"com.myapp.myprocedure1"]"#,
        Message::Register(Register {
            request: id(25349185),
            options: RegisterOptions {
                match_policy: Some(MatchPolicy::Prefix),
                invoke: Some(InvokePolicy::RoundRobin),
                extra: Dict::new(),
            },
            procedure: "com.myapp.myprocedure1".into(),
        }),
    );
    check(
        "[65,25349185,2103333224]",
        Message::Registered(Registered {
            request: id(25349185),
            registration: id(2103333224),
        }),
    );
    check(
        "[66,788923562,2103333224]",
        Message::Unregister(Unregister {
            request: id(788923562),
            registration: id(2103333224),
        }),
    );
    check(
        "[67,788923562]",
        Message::Unregistered(Unregistered {
            request: Some(id(788923562)),
            details: None,
        }),
    );
    check(
        r#"[67,0,{"registration":2103333224,"reason":"wamp.authentication.lost"}]"#,
        Message::Unregistered(Unregistered {
            request: None,
            details: Some(
                Dict::new()
                    .with("registration", 2103333224u64)
                    .with("reason", "wamp.authentication.lost"),
            ),
        }),
    );
    check(
        r#"[68,6131533,9823526,{"caller":3335656,"caller_authid":"joe","caller_authrole":"user","procedure":"com.myapp.p.x","receive_progress":true,"progress":true,"timeout":500},["Johnny"],{"firstname":"John"}]"#,
        Message::Invocation(Invocation {
            request: id(6131533),
            registration: id(9823526),
            details: InvocationDetails {
                caller: Some(id(3335656)),
                caller_authid: Some("joe".into()),
                caller_authrole: Some("user".into()),
                procedure: Some("com.myapp.p.x".into()),
                receive_progress: Some(true),
                progress: Some(true),
                timeout: Some(500),
                ppt: Ppt::default(),
                extra: Dict::new(),
            },
            payload: json_payload(Some(r#"["Johnny"]"#), Some(r#"{"firstname":"John"}"#)),
        }),
    );
    check(
        r#"[69,6131533,{"mode":"kill","reason":"wamp.error.canceled"}]"#,
        Message::Interrupt(Interrupt {
            request: id(6131533),
            options: InterruptOptions {
                mode: Some(CancelMode::Kill),
                reason: Some("wamp.error.canceled".into()),
                extra: Dict::new(),
            },
        }),
    );
    check(
        r#"[70,6131533,{"progress":true,"ppt_scheme":"wamp"},[1]]"#,
        Message::Yield(Yield {
            request: id(6131533),
            options: YieldOptions {
                progress: Some(true),
                ppt: Ppt {
                    scheme: Some("wamp".into()),
                    ..Ppt::default()
                },
                extra: Dict::new(),
            },
            payload: json_payload(Some("[1]"), None),
        }),
    );
}

#[test]
fn payloads_are_slices_of_the_frame() {
    let frame = Bytes::from_static(br#"[16, 1, {}, "t", ["a", 1], {"k": [true]}]"#);
    let Ok(Message::Publish(p)) = codec::decode(Serializer::Json, frame.clone()) else {
        panic!("not a publish");
    };
    let args = p.payload.args().unwrap();
    let kwargs = p.payload.kwargs().unwrap();
    assert_eq!(&args[..], br#"["a", 1]"#);
    assert_eq!(&kwargs[..], br#"{"k": [true]}"#);
    let range = frame.as_ptr_range();
    assert!(range.contains(&args.as_ptr()) && range.contains(&kwargs.as_ptr()));

    let mut mp = Vec::new();
    codec::encode(
        Serializer::MsgPack,
        &Message::Publish(Publish {
            payload: codec::transcode(&p.payload, Serializer::MsgPack).unwrap(),
            ..p
        }),
        &mut mp,
    )
    .unwrap();
    let frame = Bytes::from(mp);
    let Ok(Message::Publish(p)) = codec::decode(Serializer::MsgPack, frame.clone()) else {
        panic!("not a publish");
    };
    let range = frame.as_ptr_range();
    assert!(range.contains(&p.payload.args().unwrap().as_ptr()));
}

#[test]
fn whitespace_and_wide_integers_decode() {
    let m = codec::decode(
        Serializer::Json,
        Bytes::from_static(b" [ 33 ,\n 1 , 9007199254740992 ] \n"),
    );
    assert_eq!(
        m,
        Ok(Message::Subscribed(Subscribed {
            request: id(1),
            subscription: Id::MAX,
        }))
    );
    // MessagePack encoders may use wider or signed markers for small numbers.
    let frame = Bytes::from_static(&[
        0x93, 0xd3, 0, 0, 0, 0, 0, 0, 0, 33, 0xcd, 0, 1, 0xcf, 0, 0, 0, 0, 0, 0, 0, 2,
    ]);
    assert_eq!(
        codec::decode(Serializer::MsgPack, frame),
        Ok(Message::Subscribed(Subscribed {
            request: id(1),
            subscription: id(2),
        }))
    );
}

/// The `match` option decodes straight into the matcher's policy type: no conversion
/// between a message copy and the `uri` one.
#[test]
fn match_option_is_the_matcher_policy() {
    let check = |text: &str, expect: Option<switchyard_core::uri::MatchPolicy>| {
        let frame = Bytes::copy_from_slice(text.as_bytes());
        let Ok(Message::Subscribe(s)) = codec::decode(Serializer::Json, frame) else {
            panic!("{text} is a SUBSCRIBE");
        };
        assert_eq!(s.options.match_policy, expect, "{text}");
    };
    check(r#"[32,1,{},"a"]"#, None);
    check(
        r#"[32,1,{"match":"prefix"},"a."]"#,
        Some(switchyard_core::uri::MatchPolicy::Prefix),
    );
    check(
        r#"[32,1,{"match":"wildcard"},"a..c"]"#,
        Some(MatchPolicy::Wildcard),
    );
}

#[test]
fn encode_refuses_a_payload_in_another_serializer() {
    let m = Message::Yield(Yield {
        request: id(1),
        options: YieldOptions::default(),
        payload: json_payload(Some("[1]"), None),
    });
    assert_eq!(
        codec::encode(Serializer::MsgPack, &m, &mut Vec::new()),
        Err(EncodeError::SerializerMismatch {
            payload: Serializer::Json,
            frame: Serializer::MsgPack,
        })
    );
    let nan = Message::Abort(Abort {
        details: Dict::new().with("x", Value::Float(f64::NAN)),
        reason: "r".into(),
    });
    assert_eq!(
        codec::encode(Serializer::Json, &nan, &mut Vec::new()),
        Err(EncodeError::NonFiniteFloat)
    );
}

fn check_err(ser: Serializer, frame: &[u8], expect: DecodeError) {
    let got = codec::decode(ser, Bytes::copy_from_slice(frame));
    assert_eq!(
        got,
        Err(expect),
        "{ser:?} {:?}",
        String::from_utf8_lossy(frame)
    );
}

fn frame_err(e: FrameError) -> DecodeError {
    DecodeError::Frame(e)
}

fn msg_err(ty: MessageType, request: Option<u64>, error: MessageError) -> DecodeError {
    DecodeError::Message {
        message_type: ty,
        request: request.map(id),
        error,
    }
}

#[test]
fn json_errors() {
    use FrameError as F;
    use MessageError as M;
    use MessageType as T;
    let j = Serializer::Json;
    check_err(j, b"", frame_err(F::Truncated));
    check_err(j, b"  ", frame_err(F::Truncated));
    check_err(j, b"[", frame_err(F::Truncated));
    check_err(j, b"[]", frame_err(F::EmptyList));
    check_err(j, b"{}", frame_err(F::NotAList));
    check_err(j, b"[\xff]", frame_err(F::InvalidUtf8));
    check_err(j, b"[x]", frame_err(F::Syntax));
    check_err(j, b"[\"1\"]", frame_err(F::TypeNotAnInteger));
    check_err(j, b"[-1]", frame_err(F::TypeNotAnInteger));
    check_err(j, b"[1.0]", frame_err(F::TypeNotAnInteger));
    check_err(j, b"[7]", frame_err(F::UnknownType(7)));
    check_err(
        j,
        b"[16, 5, {}, \"t\"",
        msg_err(T::Publish, Some(5), M::Truncated),
    );
    check_err(
        j,
        b"[16, 5, {}, \"t\"] x",
        msg_err(T::Publish, Some(5), M::TrailingBytes),
    );
    check_err(
        j,
        b"[16, 5, {}, \"t\", [x]]",
        msg_err(T::Publish, Some(5), M::Syntax),
    );
    check_err(
        j,
        b"[16, 5, {}]",
        msg_err(T::Publish, Some(5), M::MissingField { field: "topic" }),
    );
    check_err(
        j,
        b"[16, 5, {}, \"t\", [], {}, 1]",
        msg_err(T::Publish, Some(5), M::TooManyElements),
    );
    check_err(
        j,
        b"[1, 2, 3, 4, 5, 6, 7, 8, 9]",
        msg_err(T::Hello, None, M::TooManyElements),
    );
    check_err(
        j,
        b"[17, 1, 2, 3]",
        msg_err(T::Published, None, M::TooManyElements),
    );
    check_err(
        j,
        b"[16, 0, {}, \"t\"]",
        msg_err(
            T::Publish,
            None,
            M::IdOutOfRange {
                field: "request",
                value: 0,
            },
        ),
    );
    check_err(
        j,
        b"[16, 9007199254740993, {}, \"t\"]",
        msg_err(
            T::Publish,
            None,
            M::IdOutOfRange {
                field: "request",
                value: 9007199254740993,
            },
        ),
    );
    check_err(
        j,
        b"[16, 99999999999999999999, {}, \"t\"]",
        msg_err(
            T::Publish,
            None,
            M::IdOutOfRange {
                field: "request",
                value: u64::MAX,
            },
        ),
    );
    check_err(
        j,
        b"[16, \"5\", {}, \"t\"]",
        msg_err(T::Publish, None, M::WrongType { field: "request" }),
    );
    check_err(
        j,
        b"[16, 5, [], \"t\"]",
        msg_err(T::Publish, Some(5), M::WrongType { field: "options" }),
    );
    check_err(
        j,
        b"[16, 5, {}, 3]",
        msg_err(T::Publish, Some(5), M::WrongType { field: "topic" }),
    );
    check_err(
        j,
        b"[16, 5, {}, \"t\", {}]",
        msg_err(T::Publish, Some(5), M::WrongType { field: "args" }),
    );
    check_err(
        j,
        b"[16, 5, {}, \"t\", [], []]",
        msg_err(T::Publish, Some(5), M::WrongType { field: "kwargs" }),
    );
    check_err(
        j,
        b"[16, 5, {\"acknowledge\": 1}, \"t\"]",
        msg_err(
            T::Publish,
            Some(5),
            M::WrongType {
                field: "acknowledge",
            },
        ),
    );
    check_err(
        j,
        b"[16, 5, {\"exclude\": [0]}, \"t\"]",
        msg_err(
            T::Publish,
            Some(5),
            M::IdOutOfRange {
                field: "exclude",
                value: 0,
            },
        ),
    );
    check_err(
        j,
        b"[16, 5, {\"a\": 1, \"a\": 2}, \"t\"]",
        msg_err(T::Publish, Some(5), M::DuplicateKey { field: "options" }),
    );
    check_err(
        j,
        b"[32, 5, {\"match\": \"regex\"}, \"t\"]",
        msg_err(T::Subscribe, Some(5), M::UnknownValue { field: "match" }),
    );
    check_err(
        j,
        b"[48, 5, {\"timeout\": -1}, \"p\"]",
        msg_err(T::Call, Some(5), M::IntegerOutOfRange { field: "timeout" }),
    );
    check_err(
        j,
        b"[8, 36, 5, {}, \"e\"]",
        msg_err(T::Error, None, M::UnknownRequestType(36)),
    );
    check_err(
        j,
        b"[1, \"\\ud800\", {}]",
        msg_err(T::Hello, None, M::InvalidUtf8 { field: "realm" }),
    );
    check_err(
        j,
        b"[1, \"r\", {\"roles\": {\"caller\": 1}}]",
        msg_err(T::Hello, None, M::WrongType { field: "roles" }),
    );
    let deep = format!(
        "[16, 5, {{}}, \"t\", {}{}]",
        "[".repeat(MAX_DEPTH),
        "]".repeat(MAX_DEPTH)
    );
    check_err(
        j,
        deep.as_bytes(),
        msg_err(T::Publish, Some(5), M::TooDeep { field: "args" }),
    );
    let ok = format!(
        "[16, 5, {{}}, \"t\", {}{}]",
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    assert!(codec::decode(j, Bytes::from(ok)).is_ok());
    let deep = format!(
        "[16, 5, {{\"x\": {}{}}}, \"t\"]",
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    check_err(
        j,
        deep.as_bytes(),
        msg_err(T::Publish, Some(5), M::TooDeep { field: "options" }),
    );
    let long = format!(
        "[16, 5, {{\"x\": [{}0]}}, \"t\"]",
        "0,".repeat(codec::MAX_ENVELOPE_ITEMS)
    );
    check_err(
        j,
        long.as_bytes(),
        msg_err(T::Publish, Some(5), M::TooLong { field: "options" }),
    );
}

#[test]
fn msgpack_errors() {
    use FrameError as F;
    use MessageError as M;
    use MessageType as T;
    let m = Serializer::MsgPack;
    check_err(m, b"", frame_err(F::Truncated));
    check_err(m, &[0x90], frame_err(F::EmptyList));
    check_err(m, &[0x80], frame_err(F::NotAList));
    check_err(m, &[0xc1], frame_err(F::NotAList));
    check_err(m, &[0x91], frame_err(F::Truncated));
    check_err(m, &[0x91, 0xc1], frame_err(F::Syntax));
    check_err(m, &[0x91, 0xa1, b'1'], frame_err(F::TypeNotAnInteger));
    check_err(m, &[0x91, 0xff], frame_err(F::TypeNotAnInteger));
    check_err(m, &[0x91, 0x07], frame_err(F::UnknownType(7)));
    check_err(
        m,
        &[0x94, 0x10, 0x05, 0x80],
        msg_err(T::Publish, Some(5), M::Truncated),
    );
    check_err(
        m,
        &[0x94, 0x10, 0x05, 0x80, 0xa1, b't', 0x00],
        msg_err(T::Publish, Some(5), M::TrailingBytes),
    );
    check_err(
        m,
        &[0x95, 0x10, 0x05, 0x80, 0xa1, b't', 0x91, 0xc1],
        msg_err(T::Publish, Some(5), M::Syntax),
    );
    check_err(
        m,
        &[0x94, 0x10, 0x05, 0x80, 0xa1, 0xff],
        msg_err(T::Publish, Some(5), M::InvalidUtf8 { field: "topic" }),
    );
    check_err(
        m,
        &[0x93, 0x10, 0x05, 0x80],
        msg_err(T::Publish, Some(5), M::MissingField { field: "topic" }),
    );
    check_err(
        m,
        &[0x94, 0x10, 0x05, 0x81, 0x01, 0x01, 0xa1, b't'],
        msg_err(T::Publish, Some(5), M::WrongType { field: "options" }),
    );
    check_err(
        m,
        &[
            0x94, 0x10, 0x05, 0x81, 0xa1, b'x', 0xd4, 0x00, 0x00, 0xa1, b't',
        ],
        msg_err(T::Publish, Some(5), M::Extension { field: "options" }),
    );
    check_err(
        m,
        &[
            0x94, 0x10, 0xcf, 0, 0x20, 0, 0, 0, 0, 0, 1, 0x80, 0xa1, b't',
        ],
        msg_err(
            T::Publish,
            None,
            M::IdOutOfRange {
                field: "request",
                value: (1 << 53) + 1,
            },
        ),
    );
    check_err(
        m,
        &[0x94, 0x10, 0xff, 0x80, 0xa1, b't'],
        msg_err(
            T::Publish,
            None,
            M::IdOutOfRange {
                field: "request",
                value: u64::MAX,
            },
        ),
    );
    let mut deep = vec![0x95, 0x10, 0x05, 0x80, 0xa1, b't'];
    deep.extend(std::iter::repeat_n(0x91, MAX_DEPTH));
    deep.push(0x90);
    check_err(
        m,
        &deep,
        msg_err(T::Publish, Some(5), M::TooDeep { field: "args" }),
    );
    let mut ok = vec![0x95, 0x10, 0x05, 0x80, 0xa1, b't'];
    ok.extend(std::iter::repeat_n(0x91, MAX_DEPTH - 2));
    ok.push(0x90);
    assert!(codec::decode(m, Bytes::from(ok)).is_ok());
    // A header claiming 2^32 - 1 elements with nothing behind it must fail fast.
    check_err(
        m,
        &[
            0x95, 0x10, 0x05, 0x80, 0xa1, b't', 0xdd, 0xff, 0xff, 0xff, 0xff,
        ],
        msg_err(T::Publish, Some(5), M::Truncated),
    );
}
