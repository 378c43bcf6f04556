//! The glommio session against the fake router over real loopback sockets: join, subscribe,
//! publish, register, call/yield, `wamp.session.count`, goodbye, over WebSocket and
//! RawSocket with JSON and MessagePack, from a non-default source address.

mod common;

use common::{FakeRouter, Options};
use glommio::LocalExecutorBuilder;
use switchyard_core::codec::Serializer;
use switchyard_core::message::Message;
use switchyard_loadgen::payload::{self, Stamp};
use switchyard_loadgen::session::{Session, SessionError};
use switchyard_loadgen::sys::now_ns;
use switchyard_loadgen::target::Target;

fn check(ws: bool, ser: Serializer) {
    let router = FakeRouter::start(Options::default());
    let target = Target::parse(&router.url(ws), "realm1", ser).unwrap();
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let src = Some("127.0.0.3".parse().unwrap());
            let mut a = Session::connect(&target, src, 1).await.unwrap();
            let mut b = Session::connect(&target, None, 2).await.unwrap();
            assert_ne!(a.id(), b.id());
            a.subscribe("t").await.unwrap();
            b.register("p").await.unwrap();
            let stamp = Stamp {
                origin: 3,
                seq: 4,
                sent_ns: now_ns(),
            };
            b.publish_acknowledged("t", payload::encode(ser, stamp, 200))
                .await
                .unwrap();
            match a.recv().await.unwrap() {
                Message::Event(e) => assert_eq!(payload::decode(&e.payload), Ok(stamp)),
                other => panic!("{other:?}"),
            }
            let rq = a.queue_call("p", payload::encode(ser, stamp, 10)).unwrap();
            a.flush().await.unwrap();
            match b.recv().await.unwrap() {
                Message::Invocation(i) => {
                    b.queue_yield(i.request, i.payload).unwrap();
                    b.flush().await.unwrap();
                }
                other => panic!("{other:?}"),
            }
            match a.recv().await.unwrap() {
                Message::Result(r) => {
                    assert_eq!(r.request, rq);
                    assert_eq!(payload::decode(&r.payload), Ok(stamp));
                }
                other => panic!("{other:?}"),
            }
            let count = a
                .call("wamp.session.count", Default::default())
                .await
                .unwrap();
            assert!(count.payload.args().is_some());
            match a.call("nope", Default::default()).await {
                Err(SessionError::Error(uri)) => assert_eq!(uri, "wamp.error.no_such_procedure"),
                other => panic!("{:?}", other.map(|_| ())),
            }
            let deadline = now_ns() + 5_000_000_000;
            a.goodbye(deadline).await.unwrap();
            b.goodbye(deadline).await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn websocket_json() {
    check(true, Serializer::Json);
}

#[test]
fn websocket_msgpack() {
    check(true, Serializer::MsgPack);
}

#[test]
fn rawsocket_json() {
    check(false, Serializer::Json);
}

#[test]
fn rawsocket_msgpack() {
    check(false, Serializer::MsgPack);
}

#[test]
fn refused_connection_is_a_typed_error() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = Target::parse(
        &format!("ws://127.0.0.1:{port}/ws"),
        "realm1",
        Serializer::Json,
    )
    .unwrap();
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            match Session::connect(&target, None, 1).await {
                Err(e) => assert!(e.cause().starts_with("io:"), "{e}"),
                Ok(_) => panic!("connected to a closed port"),
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
