//! The stateful target: two router shards driven by arbitrary message sequences from
//! several sessions, with the cross-shard links delivered in arbitrary interleavings.
//!
//! The input is read with [`arbitrary::Unstructured`] as a list of steps: open a
//! connection, send it a WAMP message built from a small vocabulary of realms, topics,
//! procedures, options and ids seen so far (or raw bytes), close it, deliver peer messages,
//! advance time. Messages are encoded in the connection's serializer and decoded with the
//! codec, as the io layer does, so decode errors reach the shard too.
//!
//! Checked after every input: no panic; every frame for a client decodes in that client's
//! serializer; no output names a connection the shard does not hold (never opened, or
//! already closed); a fan-out goes only to connections of its serializer; every peer
//! message decodes on the receiving shard. Checked at the end, once every connection is
//! closed and every peer message delivered: each shard holds no connection and no timer,
//! and a fresh session sees itself as the realm's only session, with no subscription and
//! no registration left.
//!
//! What it does not do: no shard death or rejoin, no authentication beyond anonymous, and
//! no check of delivery semantics (the simulation in `core/tests/sim` owns those).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::message::Message;
use switchyard_core::router::{
    AuthLimits, ConnId, HistoryConfig, Limits, Output, RealmConfig, RouterConfig, Shard,
    ShardConfig, Time, TransportInfo,
};

/// Shards in the router under test.
const SHARDS: u16 = 2;

/// Steps per input; longer inputs are cut, so one input stays fast.
const MAX_STEPS: usize = 200;

/// Peer deliveries allowed while settling; a router that keeps talking after all its
/// sessions left is livelocked.
const MAX_SETTLE: usize = 100_000;

const REALMS: [&str; 4] = ["realm1", "realm2", "nope", "wamp.bad"];
const TOPICS: [&str; 9] = [
    "t.a",
    "t.b",
    "t",
    "t..a",
    "t.a.b",
    "wamp.session.on_join",
    "wamp.session.on_leave",
    "wamp.subscription.on_subscribe",
    "bad uri",
];
const PROCEDURES: [&str; 21] = [
    "p.a",
    "p.b",
    "p",
    "p..a",
    "wamp.session.count",
    "wamp.session.list",
    "wamp.session.get",
    "wamp.session.kill",
    "wamp.session.kill_by_authrole",
    "wamp.session.add_testament",
    "wamp.session.flush_testaments",
    "wamp.subscription.list",
    "wamp.subscription.lookup",
    "wamp.subscription.match",
    "wamp.subscription.get",
    "wamp.subscription.get_events",
    "wamp.subscription.list_subscribers",
    "wamp.registration.list",
    "wamp.registration.get",
    "wamp.registration.list_callees",
    "wamp.registration.match",
];
const MATCH: [Option<&str>; 4] = [None, Some("exact"), Some("prefix"), Some("wildcard")];
const INVOKE: [&str; 6] = ["single", "roundrobin", "random", "first", "last", "shared"];

/// Runs one input; see the module documentation.
pub fn router_session(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut world = World::new(u.arbitrary().unwrap_or(0));
    for _ in 0..MAX_STEPS {
        if u.is_empty() || world.step(&mut u).is_err() {
            break;
        }
    }
    world.finish();
}

/// A JSON-like value, enough for WAMP envelopes, encodable in both serializers.
#[derive(Clone, Debug)]
enum V {
    Bool(bool),
    Int(u64),
    Str(String),
    List(Vec<Self>),
    Dict(Vec<(&'static str, Self)>),
}

fn s(text: &str) -> V {
    V::Str(text.to_owned())
}

impl V {
    fn encode(&self, serializer: Serializer, out: &mut Vec<u8>) {
        match serializer {
            Serializer::Json => self.json(out),
            Serializer::MsgPack => self.msgpack(out),
        }
    }

    fn json(&self, out: &mut Vec<u8>) {
        match self {
            Self::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Self::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Self::Str(t) => {
                out.extend_from_slice(serde_json::to_string(t).unwrap_or_default().as_bytes())
            }
            Self::List(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.json(out);
                }
                out.push(b']');
            }
            Self::Dict(items) => {
                out.push(b'{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    s(k).json(out);
                    out.push(b':');
                    v.json(out);
                }
                out.push(b'}');
            }
        }
    }

    fn msgpack(&self, out: &mut Vec<u8>) {
        match self {
            Self::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            Self::Int(n) if *n < 0x80 => out.push(*n as u8),
            Self::Int(n) => {
                out.push(0xcf);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Self::Str(t) => {
                if t.len() < 32 {
                    out.push(0xa0 | t.len() as u8);
                } else {
                    out.push(0xdb);
                    out.extend_from_slice(&(t.len() as u32).to_be_bytes());
                }
                out.extend_from_slice(t.as_bytes());
            }
            Self::List(items) => {
                out.push(0xdc);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                for v in items {
                    v.msgpack(out);
                }
            }
            Self::Dict(items) => {
                out.push(0xde);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                for (k, v) in items {
                    s(k).msgpack(out);
                    v.msgpack(out);
                }
            }
        }
    }
}

/// What the harness knows about one connection.
#[derive(Debug)]
struct Conn {
    shard: u16,
    serializer: Serializer,
    /// `handle_close` has been called: the shard must not mention it any more.
    closed: bool,
    /// The WAMP session id from its WELCOME, if it got one.
    session: Option<u64>,
}

struct World {
    shards: Vec<Shard>,
    /// FIFO links, (from, to) → encoded peer messages in flight.
    links: BTreeMap<(u16, u16), VecDeque<Bytes>>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    /// Ids seen in router output (subscriptions, registrations, invocations, sessions,
    /// publications), offered back as arguments so that requests can name real things.
    ids: Vec<u64>,
    now: Time,
    /// Frames sent to each connection, kept for the final probe.
    frames: BTreeMap<u64, Vec<Message>>,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut realm1 = RealmConfig::open("realm1");
        realm1.history.push(HistoryConfig {
            topic: "t.a".into(),
            limit: 3,
        });
        let router = Arc::new(RouterConfig {
            realms: vec![realm1, RealmConfig::open("realm2")],
            // Small limits, so that short inputs reach them.
            limits: Limits {
                sessions_per_shard: 6,
                subscriptions_per_session: 3,
                registrations_per_session: 3,
                pending_calls_per_session: 3,
                pending_invocations_per_session: 2,
                in_flight_peer_requests: 4,
                message_size: 64,
                history_length: 2,
                retained_topics: 2,
                testaments_per_session: 2,
                auth: AuthLimits::default(),
                ..Limits::default()
            },
        });
        let shards = (0..SHARDS)
            .map(|index| {
                Shard::new(ShardConfig {
                    index,
                    count: SHARDS,
                    seed: seed ^ u64::from(index),
                    router: router.clone(),
                })
            })
            .collect();
        Self {
            shards,
            links: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            ids: Vec::new(),
            now: Time(0),
            frames: BTreeMap::new(),
        }
    }

    /// One step chosen by the input.
    fn step(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        match u.int_in_range(0..=19u8)? {
            0 | 1 => {
                let shard = u.int_in_range(0..=SHARDS - 1)?;
                let serializer = if u.arbitrary()? {
                    Serializer::MsgPack
                } else {
                    Serializer::Json
                };
                self.open(shard, serializer);
            }
            2 => {
                let conn = self.pick_conn(u)?;
                let bytes: Vec<u8> = u.arbitrary()?;
                if let Some(conn) = conn {
                    self.send_bytes(conn, Bytes::from(bytes));
                }
            }
            3 => {
                if let Some(conn) = self.pick_conn(u)? {
                    self.close(conn);
                }
            }
            4 | 5 => {
                let link = u.int_in_range(0..=SHARDS * SHARDS - 1)?;
                let count = u.int_in_range(1..=4usize)?;
                for _ in 0..count {
                    self.deliver((link / SHARDS, link % SHARDS));
                }
            }
            6 => self.settle(),
            7 => {
                self.now = self.now.plus_ms(u.int_in_range(0..=3000u64)?);
                for i in 0..SHARDS {
                    self.shards[usize::from(i)].handle_timeout(self.now);
                    self.drain(i);
                }
            }
            _ => {
                let conn = self.pick_conn(u)?;
                let message = self.message(u)?;
                if let Some(conn) = conn {
                    self.send(conn, &message);
                }
            }
        }
        Ok(())
    }

    fn pick_conn(&self, u: &mut Unstructured<'_>) -> Result<Option<u64>> {
        let open: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closed)
            .map(|(id, _)| *id)
            .collect();
        if open.is_empty() {
            return Ok(None);
        }
        Ok(Some(*u.choose(&open)?))
    }

    fn id(&self, u: &mut Unstructured<'_>) -> Result<V> {
        Ok(V::Int(if !self.ids.is_empty() && u.arbitrary()? {
            *u.choose(&self.ids)?
        } else {
            u.int_in_range(0..=9u64)?
        }))
    }

    fn opt_bool(
        u: &mut Unstructured<'_>,
        dict: &mut Vec<(&'static str, V)>,
        key: &'static str,
    ) -> Result<()> {
        if u.ratio(1, 3)? {
            dict.push((key, V::Bool(u.arbitrary()?)));
        }
        Ok(())
    }

    /// A client message from the vocabulary.
    fn message(&self, u: &mut Unstructured<'_>) -> Result<V> {
        let request = V::Int(u.int_in_range(0..=6u64)?);
        let payload = |u: &mut Unstructured<'_>| -> Result<Vec<V>> {
            Ok(match u.int_in_range(0..=3u8)? {
                0 => vec![],
                1 => vec![V::List(vec![self.id(u)?])],
                2 => vec![V::List(vec![s(u.choose(&TOPICS)?)])],
                _ => vec![
                    V::List(vec![s(u.choose(&PROCEDURES)?), V::List(vec![])]),
                    V::Dict(vec![("k", V::Int(u.arbitrary()?))]),
                ],
            })
        };
        let mut options = Vec::new();
        let kind = u.int_in_range(0..=12u8)?;
        let mut list = match kind {
            0 => {
                let roles = ["publisher", "subscriber", "caller", "callee"]
                    .into_iter()
                    .map(|r| (r, V::Dict(vec![])))
                    .collect();
                vec![
                    V::Int(1),
                    s(u.choose(&REALMS)?),
                    V::Dict(vec![("roles", V::Dict(roles))]),
                ]
            }
            1 => {
                if let Some(m) = u.choose(&MATCH)? {
                    options.push(("match", s(m)));
                }
                Self::opt_bool(u, &mut options, "get_retained")?;
                vec![V::Int(32), request, V::Dict(options), s(u.choose(&TOPICS)?)]
            }
            2 => vec![V::Int(34), request, self.id(u)?],
            3 => {
                Self::opt_bool(u, &mut options, "acknowledge")?;
                Self::opt_bool(u, &mut options, "exclude_me")?;
                Self::opt_bool(u, &mut options, "retain")?;
                if u.ratio(1, 4)? {
                    options.push(("exclude", V::List(vec![self.id(u)?])));
                }
                let mut l = vec![V::Int(16), request, V::Dict(options), s(u.choose(&TOPICS)?)];
                l.extend(payload(u)?);
                l
            }
            4 => {
                if let Some(m) = u.choose(&MATCH)? {
                    options.push(("match", s(m)));
                }
                if u.arbitrary()? {
                    options.push(("invoke", s(u.choose(&INVOKE)?)));
                }
                vec![
                    V::Int(64),
                    request,
                    V::Dict(options),
                    s(u.choose(&PROCEDURES)?),
                ]
            }
            5 => vec![V::Int(66), request, self.id(u)?],
            6 => {
                if u.arbitrary()? {
                    options.push(("timeout", V::Int(u.int_in_range(0..=2000u64)?)));
                }
                Self::opt_bool(u, &mut options, "receive_progress")?;
                let mut l = vec![
                    V::Int(48),
                    request,
                    V::Dict(options),
                    s(u.choose(&PROCEDURES)?),
                ];
                l.extend(payload(u)?);
                l
            }
            7 => {
                Self::opt_bool(u, &mut options, "progress")?;
                let mut l = vec![V::Int(70), self.id(u)?, V::Dict(options)];
                l.extend(payload(u)?);
                l
            }
            8 => {
                let mut l = vec![
                    V::Int(8),
                    V::Int(68),
                    self.id(u)?,
                    V::Dict(vec![]),
                    s("app.error"),
                ];
                l.extend(payload(u)?);
                l
            }
            9 => {
                let mode = u.choose(&["skip", "kill", "killnowait"])?;
                vec![V::Int(49), self.id(u)?, V::Dict(vec![("mode", s(mode))])]
            }
            10 => vec![V::Int(6), V::Dict(vec![]), s("wamp.close.normal")],
            11 => vec![V::Int(5), s("signature"), V::Dict(vec![])],
            _ => vec![
                V::Int(u.int_in_range(0..=80u64)?),
                self.id(u)?,
                V::Dict(vec![]),
            ],
        };
        if u.ratio(1, 16)? {
            // A message cut short: the decoder or the shard must refuse it.
            list.truncate(list.len() / 2);
        }
        Ok(V::List(list))
    }

    fn open(&mut self, shard: u16, serializer: Serializer) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                shard,
                serializer,
                closed: false,
                session: None,
            },
        );
        let transport = TransportInfo {
            kind: "websocket".into(),
            peer: format!("tcp4:127.0.0.1:{id}"),
            ..TransportInfo::default()
        };
        self.shards[usize::from(shard)].handle_open(self.now, ConnId(id), serializer, transport);
        self.drain(shard);
        id
    }

    fn send(&mut self, conn: u64, message: &V) {
        let mut bytes = Vec::new();
        message.encode(self.conns[&conn].serializer, &mut bytes);
        self.send_bytes(conn, Bytes::from(bytes));
    }

    /// What the io layer does with one frame: decode it, hand the message or the error over.
    fn send_bytes(&mut self, conn: u64, bytes: Bytes) {
        let c = &self.conns[&conn];
        let shard = c.shard;
        let now = self.now;
        let s = &mut self.shards[usize::from(shard)];
        match codec::decode(c.serializer, bytes) {
            Ok(m) => s.handle_message(now, ConnId(conn), m),
            Err(e) => s.handle_decode_error(now, ConnId(conn), &e),
        }
        self.drain(shard);
    }

    fn close(&mut self, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closed {
            return;
        }
        c.closed = true;
        let shard = c.shard;
        self.shards[usize::from(shard)].handle_close(self.now, ConnId(conn));
        self.drain(shard);
    }

    /// Delivers the oldest message on one link, if any.
    fn deliver(&mut self, (from, to): (u16, u16)) -> bool {
        let Some(bytes) = self
            .links
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
            return false;
        };
        let result = self.shards[usize::from(to)].handle_peer(self.now, from, &bytes);
        assert!(
            result.is_ok(),
            "peer message {from}->{to} refused: {result:?}"
        );
        self.drain(to);
        true
    }

    /// Delivers peer messages round-robin until every link is empty.
    fn settle(&mut self) {
        for _ in 0..MAX_SETTLE {
            let links: Vec<(u16, u16)> = self
                .links
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            if links.is_empty() {
                return;
            }
            for link in links {
                self.deliver(link);
            }
        }
        panic!("peer traffic does not stop");
    }

    /// Drains one shard's outputs and checks each; closes what the shard asked to close.
    fn drain(&mut self, shard: u16) {
        let mut to_close = Vec::new();
        while let Some(output) = self.shards[usize::from(shard)].poll_output() {
            match output {
                Output::Send { conn, bytes } => {
                    let serializer = self.known(shard, conn).serializer;
                    self.receive(conn.0, serializer, bytes);
                }
                Output::Fanout {
                    conns,
                    serializer,
                    bytes,
                } => {
                    assert!(!conns.is_empty(), "fan-out to nobody");
                    let unique: BTreeSet<_> = conns.iter().collect();
                    assert_eq!(
                        unique.len(),
                        conns.len(),
                        "fan-out names a connection twice"
                    );
                    for conn in conns {
                        let c = self.known(shard, conn);
                        assert_eq!(c.serializer, serializer, "fan-out in another serializer");
                        self.receive(conn.0, serializer, bytes.clone());
                    }
                }
                Output::Close { conn } => {
                    self.known(shard, conn);
                    to_close.push(conn.0);
                }
                Output::Peer { to, bytes } => {
                    assert!(to < SHARDS && to != shard, "peer message to shard {to}");
                    self.links.entry((shard, to)).or_default().push_back(bytes);
                }
            }
        }
        // The io layer closes the transport once the frames before the close are written,
        // and then tells the shard.
        for conn in to_close {
            self.close(conn);
        }
    }

    /// The connection an output names; it must be open on that shard.
    fn known(&self, shard: u16, conn: ConnId) -> &Conn {
        let Some(c) = self.conns.get(&conn.0) else {
            panic!("output to unknown connection {conn:?}");
        };
        assert_eq!(c.shard, shard, "output for {conn:?} from the wrong shard");
        assert!(!c.closed, "output to closed connection {conn:?}");
        c
    }

    /// A frame arrives at a client: it must decode; remember the ids it names.
    fn receive(&mut self, conn: u64, serializer: Serializer, bytes: Bytes) {
        let message = codec::decode(serializer, bytes.clone())
            .unwrap_or_else(|e| panic!("frame {bytes:?} for {conn} does not decode: {e:?}"));
        let id = match &message {
            Message::Welcome(m) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = Some(m.session.get());
                }
                Some(m.session)
            }
            Message::Subscribed(m) => Some(m.subscription),
            Message::Registered(m) => Some(m.registration),
            Message::Invocation(m) => Some(m.request),
            Message::Published(m) => Some(m.publication),
            _ => None,
        };
        if let Some(id) = id {
            if self.ids.len() < 64 {
                self.ids.push(id.get());
            }
        }
        self.frames.entry(conn).or_default().push(message);
    }

    /// Closes everything, lets the shards settle and checks nothing is left behind.
    fn finish(mut self) {
        let open: Vec<u64> = self.conns.keys().copied().collect();
        for conn in open {
            self.close(conn);
        }
        self.settle();
        for shard in &self.shards {
            assert_eq!(
                shard.connection_count(),
                0,
                "shard {} holds connections",
                shard.index()
            );
            assert_eq!(
                shard.poll_timeout(),
                None,
                "shard {} holds timers",
                shard.index()
            );
        }
        for realm in ["realm1", "realm2"] {
            self.probe(realm);
        }
    }

    /// A fresh session joins `realm` and asks the meta API what is left.
    fn probe(&mut self, realm: &str) {
        let conn = self.open(0, Serializer::Json);
        self.send(conn, &V::List(vec![V::Int(1), s(realm), V::Dict(vec![])]));
        self.settle();
        let calls = [
            ("wamp.session.count", "[1]"),
            (
                "wamp.subscription.list",
                r#"[{"exact":[],"prefix":[],"wildcard":[]}]"#,
            ),
            (
                "wamp.registration.list",
                r#"[{"exact":[],"prefix":[],"wildcard":[]}]"#,
            ),
        ];
        for (i, (procedure, expect)) in calls.into_iter().enumerate() {
            let request = 1000 + i as u64;
            let call = V::List(vec![
                V::Int(48),
                V::Int(request),
                V::Dict(vec![]),
                s(procedure),
            ]);
            self.send(conn, &call);
            self.settle();
            let answer = self.frames.get(&conn).and_then(|f| {
                f.iter().find_map(|m| match m {
                    Message::Result(r) if r.request.get() == request => r.payload.args().cloned(),
                    _ => None,
                })
            });
            let Some(args) = answer else {
                panic!(
                    "{realm}: no RESULT for {procedure}: {:?}",
                    self.frames.get(&conn)
                );
            };
            let got: serde_json::Value = serde_json::from_slice(&args).unwrap_or_default();
            let want: serde_json::Value = serde_json::from_str(expect).unwrap_or_default();
            assert_eq!(got, want, "{realm}: {procedure} after every session left");
        }
        self.close(conn);
        self.settle();
    }
}
