//! `switchyard-bench`: criterion and gungraun benchmarks for Switchyard.
//!
//! The benchmarks live in `benches/`; this library only holds shared input builders: a
//! small in-memory router ([`Router`]) that wires shards with FIFO links, and the two
//! prepared scenes the router benchmarks measure ([`Fanout`] and [`RoundTrip`]). It asserts
//! nothing about speed: figures go to `BENCHMARKS.md` with the command that made them.
//!
//! The scenes are built outside the measured region (sessions joined, subscriptions and
//! registrations confirmed by every shard, one warm-up round so that reusable buffers have
//! grown), so a measurement covers one publication or one call and nothing else. They
//! panic on a setup that does not go as scripted: a benchmark with a broken scene must not
//! report a figure.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::router::{
    ConnId, Output, RouterConfig, Shard, ShardConfig, Time, TransportInfo,
};

/// Shards of one router, FIFO links between them, and counters of what clients received.
#[derive(Debug)]
pub struct Router {
    /// The shards, by index.
    pub shards: Vec<Shard>,
    links: VecDeque<(u16, u16, Bytes)>,
    /// The last frame each connection received (setup reads WELCOME and SUBSCRIBED here).
    last: Vec<Option<Bytes>>,
    /// Which shard each connection lives on, by connection number.
    home: Vec<u16>,
}

impl Router {
    /// A router of `count` shards with the default (open `realm1`) configuration.
    pub fn new(count: u16) -> Self {
        let config = Arc::new(RouterConfig::default());
        let shards = (0..count)
            .map(|index| {
                Shard::new(ShardConfig {
                    index,
                    count,
                    seed: 7 + u64::from(index),
                    router: config.clone(),
                })
            })
            .collect();
        Self {
            shards,
            links: VecDeque::new(),
            last: Vec::new(),
            home: Vec::new(),
        }
    }

    /// Opens a JSON connection on `shard`, joins `realm1`, and returns its connection id.
    pub fn join(&mut self, shard: u16) -> ConnId {
        let conn = ConnId(self.home.len() as u64);
        self.home.push(shard);
        self.last.push(None);
        self.shards[usize::from(shard)].handle_open(
            Time(0),
            conn,
            Serializer::Json,
            TransportInfo::default(),
        );
        self.send(
            conn,
            br#"[1,"realm1",{"roles":{"publisher":{},"subscriber":{},"caller":{},"callee":{}}}]"#,
        );
        self.expect(conn, b"[2,");
        conn
    }

    /// Hands one JSON frame from `conn` to its shard and delivers everything that follows.
    /// Returns how many frames reached clients (a fan-out counts once per connection).
    pub fn send(&mut self, conn: ConnId, frame: &'static [u8]) -> usize {
        self.send_bytes(conn, Bytes::from_static(frame))
    }

    /// As [`Router::send`], for a frame built at run time.
    pub fn send_bytes(&mut self, conn: ConnId, frame: Bytes) -> usize {
        let shard = usize::from(self.home[conn.0 as usize]);
        match codec::decode(Serializer::Json, frame) {
            Ok(m) => self.shards[shard].handle_message(Time(0), conn, m),
            Err(e) => self.shards[shard].handle_decode_error(Time(0), conn, &e),
        }
        self.run()
    }

    /// Drains every shard and link until nothing moves; returns the frames delivered.
    pub fn run(&mut self) -> usize {
        let mut delivered = 0;
        loop {
            for i in 0..self.shards.len() {
                while let Some(o) = self.shards[i].poll_output() {
                    match o {
                        Output::Send { conn, bytes } => {
                            delivered += 1;
                            self.last[conn.0 as usize] = Some(bytes);
                        }
                        Output::Fanout { conns, bytes, .. } => {
                            // The io layer would queue the same bytes on each connection;
                            // here only the count matters.
                            delivered += conns.len();
                            if let Some(c) = conns.first() {
                                self.last[c.0 as usize] = Some(bytes);
                            }
                        }
                        Output::Close { .. } => {}
                        Output::Peer { to, bytes } => self.links.push_back((i as u16, to, bytes)),
                    }
                }
            }
            let Some((from, to, bytes)) = self.links.pop_front() else {
                return delivered;
            };
            if let Err(e) = self.shards[usize::from(to)].handle_peer(Time(0), from, &bytes) {
                panic!("a shard refused its peer's bytes: {e}");
            }
        }
    }

    /// Takes the last frame `conn` received and panics unless it starts with `prefix`.
    pub fn expect(&mut self, conn: ConnId, prefix: &[u8]) -> Bytes {
        match self.last[conn.0 as usize].take() {
            Some(b) if b.starts_with(prefix) => b,
            other => panic!(
                "connection {} expected {:?}…, got {:?}",
                conn.0,
                String::from_utf8_lossy(prefix),
                other.map(|b| String::from_utf8_lossy(&b).into_owned())
            ),
        }
    }
}

/// One publisher and `subscribers` subscribers of its topic, spread evenly over the shards
/// (the publisher lives on shard 0).
#[derive(Debug)]
pub struct Fanout {
    router: Router,
    publisher: ConnId,
    subscribers: usize,
}

/// The PUBLISH every [`Fanout`] round sends: a small positional payload, no options.
const PUBLISH: &[u8] = br#"[16,1,{},"com.bench.topic",[1,"two",{"three":3}]]"#;

impl Fanout {
    /// Builds the scene and runs one warm-up publication.
    pub fn new(subscribers: usize, shards: u16) -> Self {
        let mut router = Router::new(shards);
        let publisher = router.join(0);
        for i in 0..subscribers {
            let conn = router.join((i % usize::from(shards)) as u16);
            router.send(conn, br#"[32,1,{},"com.bench.topic"]"#);
            router.expect(conn, b"[33,");
        }
        let mut s = Self {
            router,
            publisher,
            subscribers,
        };
        let delivered = s.publish();
        assert_eq!(delivered, subscribers, "the warm-up publication's reach");
        s
    }

    /// Publishes once and delivers the events; returns how many subscribers got one.
    pub fn publish(&mut self) -> usize {
        self.router.send(self.publisher, PUBLISH)
    }

    /// How many subscribers the scene holds.
    pub fn subscribers(&self) -> usize {
        self.subscribers
    }
}

/// A caller on shard 0 and a callee of `com.bench.add` on shard 1 (one shard when built
/// with `shards == 1`).
#[derive(Debug)]
pub struct RoundTrip {
    router: Router,
    caller: ConnId,
    callee: ConnId,
    /// The INVOCATION request id the callee will see next (they count up from 1).
    next_invocation: u64,
}

impl RoundTrip {
    /// Builds the scene and runs one warm-up call.
    pub fn new(shards: u16) -> Self {
        let mut router = Router::new(shards);
        let caller = router.join(0);
        let callee = router.join(shards.saturating_sub(1).min(1));
        router.send(callee, br#"[64,1,{},"com.bench.add"]"#);
        router.expect(callee, b"[65,");
        let mut s = Self {
            router,
            caller,
            callee,
            next_invocation: 1,
        };
        assert_eq!(s.call(), 2, "the warm-up call's frames");
        s
    }

    /// One CALL → INVOCATION → YIELD → RESULT; returns the frames delivered (2).
    pub fn call(&mut self) -> usize {
        let mut n = self
            .router
            .send(self.caller, br#"[48,1,{},"com.bench.add",[2,3]]"#);
        // The callee answers with the INVOCATION's request id, which counts up from 1 per
        // session, so the YIELD is written without parsing the INVOCATION.
        let mut frame = Vec::with_capacity(24);
        frame.extend_from_slice(b"[70,");
        frame.extend_from_slice(itoa::Buffer::new().format(self.next_invocation).as_bytes());
        frame.extend_from_slice(b",{},[5]]");
        self.next_invocation += 1;
        n += self.router.send_bytes(self.callee, Bytes::from(frame));
        n
    }

    /// The last RESULT the caller received, for checking the scene.
    pub fn take_result(&mut self) -> Bytes {
        self.router.expect(self.caller, b"[50,")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_reaches_every_subscriber() {
        for (subscribers, shards) in [(1, 1), (3, 1), (1, 2), (5, 2)] {
            let mut f = Fanout::new(subscribers, shards);
            assert_eq!(f.publish(), subscribers, "{subscribers} on {shards}");
        }
    }

    #[test]
    fn round_trip_answers_the_caller() {
        for shards in [1, 2] {
            let mut r = RoundTrip::new(shards);
            assert_eq!(r.call(), 2);
            let result = r.take_result();
            assert_eq!(&result[..], b"[50,1,{},[5]]");
        }
    }
}
