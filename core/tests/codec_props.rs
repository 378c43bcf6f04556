//! Property tests of the codecs: generated messages round-trip through both serializers,
//! payloads survive JSON → MessagePack → JSON, and no input makes a decoder panic.
//!
//! Generated values are canonical (non-negative integers as `UInt`, finite floats, no
//! string starting with `\u0000`, which JSON reads as binary), because only canonical
//! trees can compare equal after a round trip. Hand-picked cases live in
//! `codec_roundtrip.rs`.

use bytes::Bytes;
use proptest::prelude::*;

use switchyard_core::codec::{self, Serializer};
use switchyard_core::id::Id;
use switchyard_core::message::*;

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![1u64..1000, 1u64..=(1 << 53)].prop_map(|n| Id::new(n).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z._]{0,12}",
        any::<String>().prop_filter("JSON reads a leading NUL as binary", |s| !s
            .starts_with('\0')),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::UInt),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::Float),
        text().prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bin),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Dict(kv.into_iter().collect())),
        ]
    })
}

/// Unknown keys, prefixed so that they never collide with a typed key.
fn extra() -> impl Strategy<Value = Dict> {
    proptest::collection::vec(("x_[a-z]{1,6}", value()), 0..3)
        .prop_map(|kv| kv.into_iter().collect())
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn ppt() -> impl Strategy<Value = Ppt> {
    (opt_text(), opt_text(), opt_text(), opt_text()).prop_map(
        |(scheme, serializer, cipher, keyid)| Ppt {
            scheme,
            serializer,
            cipher,
            keyid,
        },
    )
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(text(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON payload: args a list, kwargs a dictionary, each optional.
fn payload() -> impl Strategy<Value = Payload> {
    let args = proptest::collection::vec(json_value(), 0..4);
    let kwargs = proptest::collection::btree_map(text(), json_value(), 0..4);
    (proptest::option::of(args), proptest::option::of(kwargs)).prop_map(|(a, k)| {
        let a = a.map(|a| Bytes::from(serde_json::to_vec(&a).unwrap()));
        let k = k.map(|k| Bytes::from(serde_json::to_vec(&k).unwrap()));
        Payload::new(Serializer::Json, a, k)
    })
}

fn message() -> impl Strategy<Value = Message> {
    let publish = (
        id(),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(proptest::collection::vec(id(), 0..3)),
            proptest::option::of(proptest::collection::vec(text(), 0..3)),
            proptest::option::of(any::<bool>()),
            ppt(),
            extra(),
        ),
        text(),
        payload(),
    )
        .prop_map(
            |(request, (ack, excl_me, eligible, authids, retain, ppt, extra), topic, payload)| {
                Message::Publish(Publish {
                    request,
                    options: PublishOptions {
                        acknowledge: ack,
                        exclude_me: excl_me,
                        eligible,
                        exclude_authid: authids,
                        retain,
                        ppt,
                        extra,
                        ..PublishOptions::default()
                    },
                    topic,
                    payload,
                })
            },
        );
    let event = (
        id(),
        id(),
        proptest::option::of(id()),
        opt_text(),
        ppt(),
        extra(),
        payload(),
    )
        .prop_map(
            |(subscription, publication, publisher, topic, ppt, extra, payload)| {
                Message::Event(Event {
                    subscription,
                    publication,
                    details: EventDetails {
                        publisher,
                        topic,
                        ppt,
                        extra,
                        ..EventDetails::default()
                    },
                    payload,
                })
            },
        );
    let call = (
        id(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<bool>()),
        extra(),
        text(),
        payload(),
    )
        .prop_map(
            |(request, timeout, receive_progress, extra, procedure, payload)| {
                Message::Call(Call {
                    request,
                    options: CallOptions {
                        timeout,
                        receive_progress,
                        extra,
                        ..CallOptions::default()
                    },
                    procedure,
                    payload,
                })
            },
        );
    let invocation = (
        id(),
        id(),
        proptest::option::of(id()),
        opt_text(),
        extra(),
        payload(),
    )
        .prop_map(
            |(request, registration, caller, procedure, extra, payload)| {
                Message::Invocation(Invocation {
                    request,
                    registration,
                    details: InvocationDetails {
                        caller,
                        procedure,
                        extra,
                        ..InvocationDetails::default()
                    },
                    payload,
                })
            },
        );
    let yield_result = (
        id(),
        proptest::option::of(any::<bool>()),
        ppt(),
        extra(),
        payload(),
        any::<bool>(),
    )
        .prop_map(|(request, progress, ppt, extra, payload, is_yield)| {
            if is_yield {
                Message::Yield(Yield {
                    request,
                    options: YieldOptions {
                        progress,
                        ppt,
                        extra,
                    },
                    payload,
                })
            } else {
                Message::Result(CallResult {
                    request,
                    details: ResultDetails {
                        progress,
                        ppt,
                        extra,
                    },
                    payload,
                })
            }
        });
    let error =
        (id(), extra(), text(), payload()).prop_map(|(request, details, error, payload)| {
            Message::Error(ErrorMessage {
                request_type: MessageType::Call,
                request,
                details,
                error,
                payload,
            })
        });
    let subscribe_register = (
        id(),
        proptest::option::of(prop_oneof![
            Just(MatchPolicy::Exact),
            Just(MatchPolicy::Prefix),
            Just(MatchPolicy::Wildcard)
        ]),
        proptest::option::of(prop_oneof![
            Just(InvokePolicy::Single),
            Just(InvokePolicy::RoundRobin),
            Just(InvokePolicy::Random),
            Just(InvokePolicy::First),
            Just(InvokePolicy::Last)
        ]),
        extra(),
        text(),
        any::<bool>(),
    )
        .prop_map(|(request, match_policy, invoke, extra, uri, subscribe)| {
            if subscribe {
                Message::Subscribe(Subscribe {
                    request,
                    options: SubscribeOptions {
                        match_policy,
                        get_retained: None,
                        extra,
                    },
                    topic: uri,
                })
            } else {
                Message::Register(Register {
                    request,
                    options: RegisterOptions {
                        match_policy,
                        invoke,
                        extra,
                    },
                    procedure: uri,
                })
            }
        });
    let session = (text(), extra(), id(), opt_text(), any::<u8>()).prop_map(
        |(s, extra, session, authid, which)| match which % 6 {
            0 => Message::Hello(Hello {
                realm: s,
                details: HelloDetails {
                    roles: Roles::default().with(Role::Caller, &["progressive_call_results"]),
                    authid,
                    extra,
                    ..HelloDetails::default()
                },
            }),
            1 => Message::Welcome(Welcome {
                session,
                details: WelcomeDetails {
                    authid,
                    extra,
                    ..WelcomeDetails::default()
                },
            }),
            2 => Message::Abort(Abort {
                details: extra,
                reason: s,
            }),
            3 => Message::Goodbye(Goodbye {
                details: extra,
                reason: s,
            }),
            4 => Message::Challenge(Challenge {
                authmethod: s,
                extra,
            }),
            _ => Message::Authenticate(Authenticate {
                signature: s,
                extra,
            }),
        },
    );
    let ids = (id(), id(), any::<u8>(), proptest::option::of(extra())).prop_map(
        |(a, b, which, details)| match which % 10 {
            0 => Message::Published(Published {
                request: a,
                publication: b,
            }),
            1 => Message::Subscribed(Subscribed {
                request: a,
                subscription: b,
            }),
            2 => Message::Unsubscribe(Unsubscribe {
                request: a,
                subscription: b,
            }),
            3 => Message::Unsubscribed(Unsubscribed {
                request: details.is_none().then_some(a),
                details,
            }),
            4 => Message::Registered(Registered {
                request: a,
                registration: b,
            }),
            5 => Message::Unregister(Unregister {
                request: a,
                registration: b,
            }),
            6 => Message::Unregistered(Unregistered {
                request: Some(a),
                details,
            }),
            7 => Message::Cancel(Cancel {
                request: a,
                options: CancelOptions {
                    mode: Some(CancelMode::Skip),
                    extra: details.unwrap_or_default(),
                },
            }),
            _ => Message::Interrupt(Interrupt {
                request: a,
                options: InterruptOptions {
                    mode: Some(CancelMode::KillNoWait),
                    reason: Some("wamp.error.canceled".into()),
                    extra: details.unwrap_or_default(),
                },
            }),
        },
    );
    prop_oneof![
        publish,
        event,
        call,
        invocation,
        yield_result,
        error,
        subscribe_register,
        session,
        ids
    ]
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn json_round_trip(m in message()) {
        let mut out = Vec::new();
        codec::encode(Serializer::Json, &m, &mut out).unwrap();
        prop_assert_eq!(codec::decode(Serializer::Json, Bytes::from(out)), Ok(m));
    }

    #[test]
    fn msgpack_round_trip(mut m in message()) {
        if let Some(p) = payload_mut(&mut m) {
            *p = codec::transcode(p, Serializer::MsgPack).unwrap();
        }
        let mut out = Vec::new();
        codec::encode(Serializer::MsgPack, &m, &mut out).unwrap();
        prop_assert_eq!(codec::decode(Serializer::MsgPack, Bytes::from(out)), Ok(m));
    }

    #[test]
    fn transcode_json_msgpack_json(p in payload()) {
        let mp = codec::transcode(&p, Serializer::MsgPack).unwrap();
        prop_assert!(p.is_empty() || mp.serializer() == Serializer::MsgPack);
        let back = codec::transcode(&mp, Serializer::Json).unwrap();
        let parse = |b: Option<&Bytes>| b.map(|b| serde_json::from_slice::<serde_json::Value>(b).unwrap());
        prop_assert_eq!(parse(back.args()), parse(p.args()));
        prop_assert_eq!(parse(back.kwargs()), parse(p.kwargs()));
        // MessagePack bytes agree with an independent reader.
        if let Some(a) = mp.args() {
            let v = rmpv::decode::read_value(&mut &a[..]).unwrap();
            prop_assert!(v.is_array());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for ser in [Serializer::Json, Serializer::MsgPack] {
            let _ = codec::decode(ser, Bytes::from(bytes.clone()));
            let p = Payload::new(ser, Some(Bytes::from(bytes.clone())), None);
            let _ = codec::transcode(&p, Serializer::Json);
            let _ = codec::transcode(&p, Serializer::MsgPack);
        }
    }

    /// Valid frames with a byte changed, dropped or cut: deep inside the grammar, where
    /// uniformly random bytes rarely get.
    #[test]
    fn mutated_frames_never_panic(m in message(), pos in any::<usize>(), byte in any::<u8>(), how in 0u8..3) {
        for ser in [Serializer::Json, Serializer::MsgPack] {
            let mut m = m.clone();
            if let Some(p) = payload_mut(&mut m) {
                *p = codec::transcode(p, ser).unwrap();
            }
            let mut out = Vec::new();
            codec::encode(ser, &m, &mut out).unwrap();
            let i = pos % out.len();
            match how {
                0 => out[i] = byte,
                1 => { out.remove(i); }
                _ => out.truncate(i),
            }
            let _ = codec::decode(ser, Bytes::from(out));
        }
    }
}
