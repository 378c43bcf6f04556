//! Black-box tests of `switchyard_core::router` through its public API only: mixed
//! serializers (transcoding once per serializer), testaments, limits, decode errors and
//! bad peer input. The shard-internal transcripts live in `core/src/router/tests.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use switchyard_core::codec::{self, DecodeError, Serializer};
use switchyard_core::message::{Message, MessageType};
use switchyard_core::router::{
    ConnId, Limits, Output, PeerError, RouterConfig, Shard, ShardConfig, Time, TransportInfo,
};

struct Net {
    shards: Vec<Shard>,
    links: VecDeque<(u16, u16, Bytes)>,
    got: Vec<(ConnId, Serializer, Bytes)>,
    fanouts: usize,
    serializers: Vec<(ConnId, Serializer, usize)>,
}

impl Net {
    fn new(count: u16, config: RouterConfig) -> Self {
        let config = Arc::new(config);
        Self {
            shards: (0..count)
                .map(|index| {
                    Shard::new(ShardConfig {
                        index,
                        count,
                        seed: 7,
                        router: config.clone(),
                    })
                })
                .collect(),
            links: VecDeque::new(),
            got: Vec::new(),
            fanouts: 0,
            serializers: Vec::new(),
        }
    }

    fn open(&mut self, shard: usize, conn: u64, serializer: Serializer) {
        self.serializers.push((ConnId(conn), serializer, shard));
        self.shards[shard].handle_open(Time(0), ConnId(conn), serializer, TransportInfo::default());
        self.run();
    }

    fn home(&self, conn: u64) -> (Serializer, usize) {
        let e = self
            .serializers
            .iter()
            .find(|e| e.0 == ConnId(conn))
            .unwrap();
        (e.1, e.2)
    }

    /// Sends a message written as JSON, encoded in the connection's serializer.
    fn send(&mut self, conn: u64, json: &str) {
        let (serializer, shard) = self.home(conn);
        let msg = codec::decode(Serializer::Json, Bytes::copy_from_slice(json.as_bytes())).unwrap();
        let msg = match serializer {
            Serializer::Json => msg,
            Serializer::MsgPack => to_msgpack(msg),
        };
        self.shards[shard].handle_message(Time(0), ConnId(conn), msg);
        self.run();
    }

    /// Like `send`, but leaves the shards' outputs and links alone: messages sent this way
    /// are pipelined, each handled before the answers to the previous ones came back.
    fn send_pipelined(&mut self, conn: u64, json: &str) {
        let (_, shard) = self.home(conn);
        let msg = codec::decode(Serializer::Json, Bytes::copy_from_slice(json.as_bytes())).unwrap();
        self.shards[shard].handle_message(Time(0), ConnId(conn), msg);
    }

    fn run(&mut self) {
        loop {
            let mut progress = false;
            for i in 0..self.shards.len() {
                while let Some(o) = self.shards[i].poll_output() {
                    progress = true;
                    match o {
                        Output::Send { conn, bytes } => {
                            let s = self.home(conn.0).0;
                            self.got.push((conn, s, bytes));
                        }
                        Output::Fanout {
                            conns,
                            serializer,
                            bytes,
                        } => {
                            self.fanouts += 1;
                            for c in conns {
                                self.got.push((c, serializer, bytes.clone()));
                            }
                        }
                        Output::Close { .. } => {}
                        Output::Peer { to, bytes } => self.links.push_back((i as u16, to, bytes)),
                    }
                }
            }
            if let Some((from, to, bytes)) = self.links.pop_front() {
                progress = true;
                self.shards[usize::from(to)]
                    .handle_peer(Time(0), from, &bytes)
                    .unwrap();
            }
            if !progress {
                return;
            }
        }
    }

    /// What `conn` received, decoded.
    fn take(&mut self, conn: u64) -> Vec<Message> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.got.drain(..).partition(|g| g.0 == ConnId(conn));
        self.got = rest;
        mine.into_iter()
            .map(|(_, s, b)| codec::decode(s, b).unwrap())
            .collect()
    }
}

/// The same message with its payload in MessagePack.
fn to_msgpack(msg: Message) -> Message {
    let mut json = Vec::new();
    codec::encode(Serializer::Json, &msg, &mut json).unwrap();
    let mut m = msg;
    match &mut m {
        Message::Publish(p) => {
            p.payload = codec::transcode(&p.payload, Serializer::MsgPack).unwrap()
        }
        Message::Call(c) => c.payload = codec::transcode(&c.payload, Serializer::MsgPack).unwrap(),
        Message::Yield(y) => y.payload = codec::transcode(&y.payload, Serializer::MsgPack).unwrap(),
        _ => {}
    }
    m
}

fn hello(net: &mut Net, conn: u64) -> u64 {
    net.send(
        conn,
        r#"[1,"realm1",{"roles":{"subscriber":{},"publisher":{},"caller":{},"callee":{}}}]"#,
    );
    match net.take(conn).as_slice() {
        [Message::Welcome(w)] => w.session.get(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mixed_serializers_transcode_once_per_serializer() {
    let mut net = Net::new(2, RouterConfig::default());
    for (conn, shard, ser) in [
        (1, 0, Serializer::Json),
        (2, 1, Serializer::MsgPack),
        (3, 1, Serializer::MsgPack),
        (4, 1, Serializer::Json),
    ] {
        net.open(shard, conn, ser);
        hello(&mut net, conn);
    }
    for conn in [2, 3, 4] {
        net.send(conn, r#"[32,1,{},"com.t"]"#);
        assert!(matches!(
            net.take(conn).as_slice(),
            [Message::Subscribed(_)]
        ));
    }
    net.fanouts = 0;
    net.send(1, r#"[16,1,{},"com.t",[1,"x",{"y":[true]}]]"#);
    // One EVENT encoding per serializer on the subscribers' shard.
    assert_eq!(net.fanouts, 2);
    for conn in [2, 3, 4] {
        let got = net.take(conn);
        let [Message::Event(e)] = got.as_slice() else {
            panic!("{got:?}");
        };
        let json = codec::transcode(&e.payload, Serializer::Json).unwrap();
        assert_eq!(json.args().unwrap().as_ref(), br#"[1,"x",{"y":[true]}]"#);
    }
    // A msgpack callee answers a JSON caller.
    net.send(2, r#"[64,1,{},"com.f"]"#);
    assert!(matches!(net.take(2).as_slice(), [Message::Registered(_)]));
    net.send(1, r#"[48,1,{},"com.f",["q"]]"#);
    let got = net.take(2);
    let [Message::Invocation(i)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(i.payload.serializer(), Serializer::MsgPack);
    net.send(2, r#"[70,1,{},["a"]]"#);
    let got = net.take(1);
    let [Message::Result(r)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(r.payload.args().unwrap().as_ref(), br#"["a"]"#);
}

#[test]
fn testaments_are_published_when_the_session_leaves() {
    let mut net = Net::new(2, RouterConfig::default());
    net.open(0, 1, Serializer::Json);
    net.open(1, 2, Serializer::Json);
    hello(&mut net, 1);
    hello(&mut net, 2);
    net.send(2, r#"[32,1,{},"com.will"]"#);
    net.take(2);
    net.send(
        1,
        r#"[48,1,{},"wamp.session.add_testament",["com.will",["gone"],{}]]"#,
    );
    assert!(matches!(net.take(1).as_slice(), [Message::Result(_)]));
    net.shards[0].handle_close(Time(0), ConnId(1));
    net.run();
    let got = net.take(2);
    let [Message::Event(e)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(e.payload.args().unwrap().as_ref(), br#"["gone"]"#);
}

#[test]
fn limits_give_errors() {
    let config = RouterConfig {
        limits: Limits {
            subscriptions_per_session: 1,
            pending_calls_per_session: 1,
            sessions_per_shard: 2,
            ..Limits::default()
        },
        ..RouterConfig::default()
    };
    let mut net = Net::new(1, config);
    net.open(0, 1, Serializer::Json);
    hello(&mut net, 1);
    net.send(1, r#"[32,1,{},"a"]"#);
    net.send(1, r#"[32,2,{},"b"]"#);
    let got = net.take(1);
    assert!(
        matches!(&got[1], Message::Error(e) if e.error == "wamp.error.limit_exceeded"),
        "{got:?}"
    );
    net.open(0, 2, Serializer::Json);
    hello(&mut net, 2);
    net.send(2, r#"[64,1,{},"f"]"#);
    net.take(2);
    net.send(1, r#"[48,1,{},"f"]"#);
    net.send(1, r#"[48,2,{},"f"]"#);
    let got = net.take(1);
    assert!(
        matches!(&got[0], Message::Error(e) if e.error == "wamp.error.limit_exceeded"),
        "{got:?}"
    );
    net.open(0, 3, Serializer::Json);
    let got = net.take(3);
    assert!(
        matches!(&got[0], Message::Abort(a) if a.reason == "wamp.error.limit_exceeded"),
        "{got:?}"
    );
}

/// SUBSCRIBEs and REGISTERs for new URIs wait for other shards before they are answered;
/// those still waiting count against the per-session limits, so a pipelined burst cannot get
/// past them (it did: only confirmed ones were counted).
#[test]
fn pipelined_requests_cannot_pass_the_session_limits() {
    let config = RouterConfig {
        limits: Limits {
            subscriptions_per_session: 3,
            registrations_per_session: 2,
            ..Limits::default()
        },
        ..RouterConfig::default()
    };
    let mut net = Net::new(2, config);
    net.open(0, 1, Serializer::Json);
    hello(&mut net, 1);
    for i in 1..=5 {
        net.send_pipelined(1, &format!(r#"[32,{i},{{}},"t.{i}"]"#));
    }
    for i in 1..=4 {
        net.send_pipelined(1, &format!(r#"[64,{},{{}},"p.{i}"]"#, 10 + i));
    }
    net.run();
    let got = net.take(1);
    let count = |f: &dyn Fn(&Message) -> bool| got.iter().filter(|m| f(m)).count();
    assert_eq!(
        count(&|m| matches!(m, Message::Subscribed(_))),
        3,
        "{got:?}"
    );
    assert_eq!(
        count(&|m| matches!(m, Message::Registered(_))),
        2,
        "{got:?}"
    );
    let refused = |t: MessageType| {
        count(&|m| {
            matches!(m, Message::Error(e) if e.request_type == t
                && e.error == "wamp.error.limit_exceeded")
        })
    };
    assert_eq!(refused(MessageType::Subscribe), 2, "{got:?}");
    assert_eq!(refused(MessageType::Register), 2, "{got:?}");
    // Answered requests no longer count as waiting: an unsubscribe frees a place.
    let Some(Message::Subscribed(first)) = got.iter().find(|m| matches!(m, Message::Subscribed(_)))
    else {
        unreachable!()
    };
    net.send(1, &format!("[34,20,{}]", first.subscription));
    net.send(1, r#"[32,21,{},"t.new"]"#);
    let got = net.take(1);
    assert!(
        matches!(got.last(), Some(Message::Subscribed(_))),
        "{got:?}"
    );
}

#[test]
fn bad_request_field_gets_an_error() {
    let mut net = Net::new(1, RouterConfig::default());
    net.open(0, 1, Serializer::Json);
    hello(&mut net, 1);
    let err = codec::decode(
        Serializer::Json,
        Bytes::from_static(br#"[32,5,{"match":"regex"},"a"]"#),
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::Message { .. }));
    net.shards[0].handle_decode_error(Time(0), ConnId(1), &err);
    net.run();
    let got = net.take(1);
    assert!(
        matches!(&got[..], [Message::Error(e)] if e.error == "wamp.error.invalid_argument"),
        "{got:?}"
    );
}

#[test]
fn bad_peer_input_is_a_typed_error() {
    let mut net = Net::new(2, RouterConfig::default());
    let s = &mut net.shards[0];
    assert_eq!(s.handle_peer(Time(0), 1, &[]), Err(PeerError::Truncated));
    assert_eq!(
        s.handle_peer(Time(0), 1, &[9, 3]),
        Err(PeerError::UnknownVersion(9))
    );
    assert_eq!(
        s.handle_peer(Time(0), 7, &[1, 3]),
        Err(PeerError::UnknownShard(7))
    );
    assert_eq!(s.poll_output(), None);
}
