//! The simulated world: N shards, FIFO links between them, scripted clients, virtual time
//! and a seeded scheduler, all in one thread.
//!
//! Every step the scheduler picks one enabled action at random (weights drawn from the
//! seed): deliver the head of one shard-to-shard link (FIFO per ordered pair, any
//! interleaving between links), let one client read its next frame, run one client's
//! next script step or reaction, or fire a due shard timer. Virtual time advances a
//! little every step and jumps to the next timer when nothing else can happen. The
//! oracle's expectations (which subscriptions must get a publication, which
//! registrations may serve a call, what a meta call must answer) are fixed at the moment
//! the client hands its message to the shard, from what the clients have seen so far.
//!
//! A dying shard is modelled as a process dying: what it already sent stays in its
//! outgoing links and is delivered, then each peer learns of the death (a `Down` marker at
//! the end of the link, as an EOF would be); what peers send it before they learn of the
//! death is lost. It does not model message loss or reordering within a link, nor
//! slow-consumer limits on connections.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::message::Message;
use switchyard_core::router::{Output, RouterConfig, Shard, ShardConfig, Time, TransportInfo};

use crate::client::{
    beats, CallExpect, CallRec, Client, MetaQuery, Phase, Policy, RegRec, Req, ReqState, Step,
    SubRec,
};
use crate::rng::Rng;

/// One item on a shard-to-shard link.
#[derive(Debug)]
enum Link {
    Msg(Bytes),
    /// The sender died: everything it sent before is ahead of this marker.
    Down,
}

/// One publication as the oracle saw it when it was handed to the shard.
#[derive(Debug)]
pub(crate) struct PubRec {
    pub(crate) publisher: usize,
    pub(crate) topic: String,
    /// (client, subscription tag) pairs that must get the event exactly once.
    pub(crate) must: Vec<(usize, usize)>,
    /// Pairs that may get it (at most once): subscriptions in flight.
    pub(crate) may: Vec<(usize, usize)>,
    /// Clients the publication excluded (by `exclude_me`, `exclude` or `eligible`).
    pub(crate) excluded: Vec<usize>,
    /// The world step at which the publication was handed to the shard.
    pub(crate) at: u64,
}

/// What a meta call must answer, fixed when it was sent.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// A count between `lo` and `hi`.
    Count(u64, u64),
    /// A list of ids: all of `must`, any of `may`, nothing else (`null` reads as empty).
    Ids { must: Vec<u64>, may: Vec<u64> },
    /// `{exact, prefix, wildcard}` lists of ids, each as [`Expect::Ids`].
    ByPolicy([(Vec<u64>, Vec<u64>); 3]),
    /// One id, or `null` for `None`.
    One(Option<u64>),
    /// A session's details naming this session id.
    Session(u64),
    /// Nothing can be predicted (something was in flight).
    Any,
}

/// One meta call and its answer.
#[derive(Debug)]
pub(crate) struct MetaRec {
    pub(crate) client: usize,
    pub(crate) what: String,
    pub(crate) expect: Expect,
    pub(crate) got: Option<Result<serde_json::Value, String>>,
}

/// An action the scheduler can take.
#[derive(Clone, Copy, Debug)]
enum Action {
    Link(usize, usize),
    Read(usize),
    Script(usize),
    React(usize),
    Timer(usize),
}

/// The simulated router and its clients.
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) rng: Rng,
    pub(crate) now: Time,
    pub(crate) step: u64,
    pub(crate) count: u16,
    config: Arc<RouterConfig>,
    pub(crate) shards: Vec<Option<Shard>>,
    links: Vec<Vec<VecDeque<Link>>>,
    /// `broken[from][to]`: `to` died and `from` has not learnt it yet; what `from` sends
    /// to `to` meanwhile is lost.
    broken: Vec<Vec<bool>>,
    pub(crate) clients: Vec<Client>,
    pub(crate) pubs: Vec<PubRec>,
    pub(crate) metas: Vec<MetaRec>,
    /// Failures found outside clients (peer decode errors, stuck scripts, leaks).
    pub(crate) problems: Vec<String>,
    /// Weights of link deliveries, client reads, script steps, reactions.
    weights: [u64; 4],
    /// Whether some shard died during the run.
    pub(crate) deaths: u32,
    incarnation: u64,
    /// Print every action (replay with `--nocapture`).
    pub(crate) trace: bool,
    /// The scenario's own checker (`advanced.rs`), run once after the main drive.
    pub(crate) extra: Option<fn(&Self, &mut Vec<String>)>,
}

impl World {
    /// A world of `count` shards, seeded with `seed`, running the default configuration.
    pub(crate) fn new(seed: u64, count: u16) -> Self {
        Self::with_config(seed, count, RouterConfig::default())
    }

    /// A world of `count` shards, seeded with `seed`, running `config`. The oracle of
    /// the ordinary steps assumes one realm: clients of other realms use [`Step::Raw`].
    pub(crate) fn with_config(seed: u64, count: u16, config: RouterConfig) -> Self {
        let mut rng = Rng::new(seed);
        let config = Arc::new(config);
        let shards = (0..count)
            .map(|index| {
                Some(Shard::new(ShardConfig {
                    index,
                    count,
                    seed: seed.wrapping_mul(31).wrapping_add(u64::from(index)),
                    router: config.clone(),
                }))
            })
            .collect();
        // Some seeds starve links, others starve clients: both extremes find bugs.
        let weights = [
            rng.range(1, 8),
            rng.range(1, 8),
            rng.range(1, 8),
            rng.range(1, 8),
        ];
        let n = usize::from(count);
        Self {
            seed,
            rng,
            now: Time(1_000_000),
            step: 0,
            count,
            config,
            shards,
            links: (0..n)
                .map(|_| (0..n).map(|_| VecDeque::new()).collect())
                .collect(),
            broken: vec![vec![false; n]; n],
            clients: Vec::new(),
            pubs: Vec::new(),
            metas: Vec::new(),
            problems: Vec::new(),
            weights,
            deaths: 0,
            incarnation: 0,
            trace: false,
            extra: None,
        }
    }

    /// The names of the realms the router runs.
    pub(crate) fn realm_names(&self) -> Vec<String> {
        self.config.realms.iter().map(|r| r.name.clone()).collect()
    }

    /// Adds a client homed on `shard`; returns its index.
    pub(crate) fn add_client(
        &mut self,
        shard: u16,
        serializer: Serializer,
        script: Vec<Step>,
    ) -> usize {
        let index = self.clients.len();
        self.clients
            .push(Client::new(index, shard, serializer, script));
        index
    }

    /// Runs until nothing can happen any more.
    pub(crate) fn drive(&mut self) -> Result<(), String> {
        self.drive_bounded(200_000)
    }

    /// Runs until nothing can happen any more, or fails after `max` steps (a livelock:
    /// something keeps the world busy forever).
    pub(crate) fn drive_bounded(&mut self, max: u64) -> Result<(), String> {
        let mut actions = Vec::new();
        for _ in 0..max {
            self.enabled(&mut actions);
            if actions.is_empty() {
                // Nothing to do now: jump to the next timer, if any.
                let next = self
                    .shards
                    .iter()
                    .flatten()
                    .filter_map(Shard::poll_timeout)
                    .min();
                match next {
                    Some(t) => {
                        self.now = self.now.max(t);
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            let total: u64 = actions.iter().map(|a| self.weight(*a)).sum();
            let mut pick = self.rng.next_u64() % total;
            let mut chosen = actions[0];
            for a in &actions {
                let w = self.weight(*a);
                if pick < w {
                    chosen = *a;
                    break;
                }
                pick -= w;
            }
            self.step += 1;
            self.now = Time(self.now.0 + self.rng.range(0, 400));
            self.act(chosen);
        }
        Err(format!("livelock: still busy after {max} steps"))
    }

    fn weight(&self, a: Action) -> u64 {
        match a {
            Action::Link(..) => self.weights[0],
            Action::Read(_) => self.weights[1],
            Action::Script(_) => self.weights[2],
            Action::React(_) => self.weights[3],
            Action::Timer(_) => 2,
        }
    }

    fn enabled(&self, out: &mut Vec<Action>) {
        out.clear();
        let n = usize::from(self.count);
        for from in 0..n {
            for to in 0..n {
                if !self.links[from][to].is_empty() {
                    out.push(Action::Link(from, to));
                }
            }
        }
        for (i, s) in self.shards.iter().enumerate() {
            if let Some(t) = s.as_ref().and_then(Shard::poll_timeout) {
                if t <= self.now {
                    out.push(Action::Timer(i));
                }
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            if !c.downlink.is_empty() {
                out.push(Action::Read(i));
            }
            if !c.reactions.is_empty() {
                out.push(Action::React(i));
            }
            if self.script_ready(i) {
                out.push(Action::Script(i));
            }
        }
    }

    fn act(&mut self, a: Action) {
        if self.trace {
            println!("[{} t={}] {a:?}", self.step, self.now.0);
        }
        match a {
            Action::Link(from, to) => {
                let Some(item) = self.links[from][to].pop_front() else {
                    return;
                };
                let now = self.now;
                let Some(shard) = self.shards[to].as_mut() else {
                    return;
                };
                match item {
                    Link::Msg(bytes) => {
                        if self.trace {
                            // The message's kind and head, so a replay shows the protocol.
                            let m = format!(
                                "{:?}",
                                switchyard_core::router::peer::PeerMsg::decode(&bytes)
                            );
                            println!("    {from} -> {to}: {}", &m[..m.len().min(160)]);
                        }
                        if let Err(e) = shard.handle_peer(now, from as u16, &bytes) {
                            self.problems
                                .push(format!("shard {to} refused a message from {from}: {e:?}"));
                        }
                    }
                    Link::Down => {
                        if self.trace {
                            println!("    {from} -> {to}: Down");
                        }
                        shard.handle_shard_down(now, from as u16);
                        self.broken[to][from] = false;
                    }
                }
                self.pump(to);
            }
            Action::Timer(i) => {
                let now = self.now;
                if let Some(s) = self.shards[i].as_mut() {
                    s.handle_timeout(now);
                }
                self.pump(i);
            }
            Action::Read(c) => {
                let Some(frame) = self.clients[c].downlink.pop_front() else {
                    return;
                };
                match frame {
                    Some(bytes) => {
                        let step = self.step;
                        let meta = self.clients[c].receive(bytes, step, &mut self.rng);
                        if self.trace {
                            println!("    client {c} read; phase {:?}", self.clients[c].phase);
                        }
                        if let Some((i, got)) = meta {
                            self.metas[i].got = Some(got);
                        }
                        if self.clients[c].close_now {
                            self.close(c);
                        }
                    }
                    None => self.close(c),
                }
            }
            Action::React(c) => {
                let Some(json) = self.clients[c].reactions.pop_front() else {
                    return;
                };
                self.send_json(c, &json);
                if json.starts_with("[6,") {
                    self.close(c);
                }
            }
            Action::Script(c) => {
                if let Some(step) = self.clients[c].script.pop_front() {
                    self.run_step(c, step);
                }
            }
        }
    }

    /// Client `c`'s connection is closed (by either side).
    fn close(&mut self, c: usize) {
        let now = self.now;
        let step = self.step;
        let client = &mut self.clients[c];
        if client.phase == Phase::Gone {
            return;
        }
        let (shard, conn) = (usize::from(client.shard), client.conn());
        client.end(step);
        if let Some(s) = self.shards[shard].as_mut() {
            s.handle_close(now, conn);
        }
        self.pump(shard);
    }

    /// Whether client `c`'s next script step may run now.
    fn script_ready(&self, c: usize) -> bool {
        let client = &self.clients[c];
        let Some(step) = client.script.front() else {
            return false;
        };
        match step {
            Step::KillShard(_) | Step::RestartShard(_) => true,
            Step::Barrier(n) => self.clients.iter().all(|o| {
                o.index == c
                    || o.phase == Phase::Gone
                    || o.barrier >= *n
                    || o.script.is_empty()
                    || matches!(o.script.front(), Some(Step::Barrier(m)) if *m >= *n)
            }),
            _ if client.phase == Phase::Gone => false,
            Step::Hello => {
                client.phase == Phase::Idle && self.shards[usize::from(client.shard)].is_some()
            }
            // Waiting for answers includes waiting for WELCOME.
            Step::AwaitAcks => client.acks_done() && client.phase != Phase::Joining,
            Step::AwaitCalls => client.calls_done() && client.phase != Phase::Joining,
            _ => client.phase == Phase::Joined,
        }
    }

    fn run_step(&mut self, c: usize, step: Step) {
        if self.trace {
            println!("    client {c} runs {step:?}");
        }
        let at = self.step;
        match step {
            Step::Barrier(n) => self.clients[c].barrier = n,
            Step::AwaitAcks | Step::AwaitCalls => {}
            Step::KillShard(k) => self.kill(k),
            Step::RestartShard(k) => self.restart(k),
            Step::Hello => {
                let now = self.now;
                let client = &mut self.clients[c];
                client.phase = Phase::Joining;
                let (shard, conn, ser) =
                    (usize::from(client.shard), client.conn(), client.serializer);
                let caller = if client.call_canceling {
                    r#"{"features":{"call_canceling":true,"call_timeout":true}}"#
                } else {
                    "{}"
                };
                let realm = &client.realm;
                let hello = format!(
                    r#"[1,"{realm}",{{"roles":{{"subscriber":{{}},"publisher":{{}},"caller":{caller},"callee":{caller}}}}}]"#
                );
                if let Some(s) = self.shards[shard].as_mut() {
                    s.handle_open(
                        now,
                        conn,
                        ser,
                        TransportInfo {
                            kind: "websocket".to_owned(),
                            peer: format!("sim:{c}"),
                            ..TransportInfo::default()
                        },
                    );
                }
                self.pump(shard);
                self.send_json(c, &hello);
            }
            Step::Subscribe { topic, policy } => {
                let client = &mut self.clients[c];
                let tag = client.subs.len();
                client.subs.push(SubRec {
                    topic: topic.clone(),
                    policy,
                    id: None,
                    state: ReqState::Pending,
                    sent_at: at,
                    active: (u64::MAX, u64::MAX),
                });
                let req = client.request(Req::Subscribe(tag));
                let opts = match policy {
                    Policy::Exact => "{}".to_owned(),
                    p => format!(r#"{{"match":"{}"}}"#, p.as_str()),
                };
                self.send_json(c, &format!(r#"[32,{req},{opts},"{topic}"]"#));
            }
            Step::Unsubscribe { tag } => {
                let client = &mut self.clients[c];
                let Some(s) = client.subs.get_mut(tag) else {
                    return;
                };
                let (ReqState::Active, Some(id)) = (&s.state, s.id) else {
                    return;
                };
                s.state = ReqState::Ending;
                s.active.1 = at;
                let req = client.request(Req::Unsubscribe(tag));
                self.send_json(c, &format!("[34,{req},{id}]"));
            }
            Step::Publish {
                topic,
                exclude_me,
                exclude,
                eligible,
                ack,
            } => self.publish(c, topic, exclude_me, exclude, eligible, ack),
            Step::Register {
                uri,
                policy,
                invoke,
            } => {
                let client = &mut self.clients[c];
                let tag = client.regs.len();
                client.regs.push(RegRec {
                    uri: uri.clone(),
                    policy,
                    invoke,
                    id: None,
                    state: ReqState::Pending,
                    sent_at: at,
                    active: (u64::MAX, u64::MAX),
                });
                let req = client.request(Req::Register(tag));
                self.send_json(
                    c,
                    &format!(
                        r#"[64,{req},{{"match":"{}","invoke":"{invoke}"}},"{uri}"]"#,
                        policy.as_str()
                    ),
                );
            }
            Step::Unregister { tag } => {
                let client = &mut self.clients[c];
                let Some(r) = client.regs.get_mut(tag) else {
                    return;
                };
                let (ReqState::Active, Some(id)) = (&r.state, r.id) else {
                    return;
                };
                r.state = ReqState::Ending;
                r.active.1 = at;
                let req = client.request(Req::Unregister(tag));
                self.send_json(c, &format!("[66,{req},{id}]"));
            }
            Step::Call { uri, timeout_ms } => {
                let expect = self.call_expect(&uri);
                if self.trace {
                    println!(
                        "    call {} to {uri}: may go to {:?} (no_such_procedure {}, stable {})",
                        self.clients[c].calls.len(),
                        expect.callees,
                        expect.no_such_procedure,
                        expect.stable
                    );
                    for (o, t) in &expect.callees {
                        let r = &self.clients[*o].regs[*t];
                        println!(
                            "      client {o} ({:?}): {} {:?} {:?} {:?}",
                            self.clients[*o].phase, r.uri, r.policy, r.id, r.state
                        );
                    }
                }
                let client = &mut self.clients[c];
                let i = client.calls.len();
                let req = client.request(Req::Call(i));
                client.calls.push(CallRec {
                    uri: uri.clone(),
                    request: switchyard_core::id::Id::new(req)
                        .unwrap_or(switchyard_core::id::Id::MIN),
                    timeout_ms,
                    expect,
                    sent_at: at,
                    finals: Vec::new(),
                    progress: Vec::new(),
                    cancel: None,
                });
                let mut opts = Vec::new();
                if timeout_ms > 0 {
                    opts.push(format!(r#""timeout":{timeout_ms}"#));
                }
                if client.receive_progress {
                    opts.push(r#""receive_progress":true"#.to_owned());
                }
                let opts = opts.join(",");
                // A progressive call invocation: numbered chunks, then the final CALL.
                for k in 0..self.clients[c].call_chunks {
                    let sep = if opts.is_empty() { "" } else { "," };
                    self.send_json(
                        c,
                        &format!(
                            r#"[48,{req},{{{opts}{sep}"progress":true}},"{uri}",[{c},{i},{k}]]"#
                        ),
                    );
                }
                self.send_json(c, &format!(r#"[48,{req},{{{opts}}},"{uri}",[{c},{i}]]"#));
            }
            Step::Cancel { call, mode } => {
                let client = &mut self.clients[c];
                let Some(rec) = client.calls.get_mut(call) else {
                    return;
                };
                let req = rec.request;
                let open = client.pending.contains_key(&req.get());
                client.calls[call].cancel = Some((mode, open));
                self.send_json(c, &format!(r#"[49,{req},{{"mode":"{mode}"}}]"#));
            }
            Step::Meta(q) => self.meta(c, q),
            Step::Raw(json) => {
                let client = &mut self.clients[c];
                let i = client.raw_sent.len();
                let req = client.request(Req::Raw(i));
                // An unacknowledged PUBLISH gets no answer: nothing to wait for.
                if json.starts_with("[16,") && !json.contains(r#""acknowledge":true"#) {
                    client.pending.remove(&req);
                }
                let last = client
                    .raw_subs
                    .iter()
                    .max_by_key(|s| s.2)
                    .map_or(0, |s| s.0);
                let json = json
                    .replace("{req}", &req.to_string())
                    .replace("{lastsub}", &last.to_string());
                client.raw_sent.push((at, req, json.clone()));
                self.send_json(c, &json);
            }
            Step::Leave { goodbye } => {
                self.clients[c].left_early = true;
                self.leave(c, goodbye);
            }
        }
    }

    /// Client `c` leaves: GOODBYE and wait for the router's, or close at once.
    pub(crate) fn leave(&mut self, c: usize, goodbye: bool) {
        if self.clients[c].phase != Phase::Joined {
            if self.clients[c].phase != Phase::Gone && self.clients[c].phase != Phase::Leaving {
                self.close(c);
            }
            return;
        }
        if goodbye {
            let step = self.step;
            self.clients[c].stop_counting(step);
            self.clients[c].phase = Phase::Leaving;
            self.send_json(c, r#"[6,{},"wamp.close.close_realm"]"#);
        } else {
            self.close(c);
        }
    }

    fn publish(
        &mut self,
        c: usize,
        topic: String,
        exclude_me: Option<bool>,
        exclude: Vec<usize>,
        eligible: Option<Vec<usize>>,
        ack: bool,
    ) {
        let index = self.pubs.len();
        let mut must = Vec::new();
        let mut may = Vec::new();
        let mut excluded_clients = Vec::new();
        for o in &self.clients {
            // A client whose session id is not known yet cannot be named on the wire: it
            // is neither excluded nor eligible by id.
            let named = o.session.is_some();
            let excluded = (o.index == c && exclude_me != Some(false))
                || (named && exclude.contains(&o.index))
                || eligible
                    .as_ref()
                    .is_some_and(|e| !(named && e.contains(&o.index)));
            if excluded {
                excluded_clients.push(o.index);
            }
            if excluded || o.phase == Phase::Gone || o.session.is_none() {
                continue;
            }
            for (tag, s) in o.subs.iter().enumerate() {
                if !s.policy.matches(&s.topic, &topic) {
                    continue;
                }
                match s.state {
                    ReqState::Active if o.phase == Phase::Joined => must.push((o.index, tag)),
                    ReqState::Active | ReqState::Pending | ReqState::Ending => {
                        may.push((o.index, tag))
                    }
                    ReqState::Ended | ReqState::Failed(_) => {}
                }
            }
        }
        if self.trace {
            println!("    publication {index} to {topic}: must {must:?}, may {may:?}");
        }
        self.pubs.push(PubRec {
            publisher: c,
            topic: topic.clone(),
            must,
            may,
            excluded: excluded_clients,
            at: self.step,
        });
        let ids = |list: &[usize], clients: &[Client]| {
            list.iter()
                .filter_map(|i| clients[*i].session.map(|s| s.get().to_string()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut opts = Vec::new();
        if let Some(b) = exclude_me {
            opts.push(format!(r#""exclude_me":{b}"#));
        }
        if !exclude.is_empty() {
            opts.push(format!(r#""exclude":[{}]"#, ids(&exclude, &self.clients)));
        }
        if let Some(e) = &eligible {
            opts.push(format!(r#""eligible":[{}]"#, ids(e, &self.clients)));
        }
        let client = &mut self.clients[c];
        let req = if ack {
            opts.push(r#""acknowledge":true"#.to_owned());
            client.request(Req::Publish)
        } else {
            client.next_request += 1;
            client.next_request
        };
        // Some publications carry kwargs too, so that both payload parts travel.
        let kwargs = if index % 3 == 0 {
            r#",{"k":[1,"x"]}"#
        } else {
            ""
        };
        let json = format!(
            r#"[16,{req},{{{}}},"{topic}",[{c},{index}]{kwargs}]"#,
            opts.join(",")
        );
        self.send_json(c, &json);
    }

    /// Which registrations may serve a call to `uri` sent now: walking the matching keys
    /// from the best, every key with a registration in flight may or may not be seen, and
    /// the first key with an acknowledged registration ends the walk.
    fn call_expect(&self, uri: &str) -> CallExpect {
        // (pattern, policy) → (stable, tags)
        type Key = ((String, Policy), bool, Vec<(usize, usize)>);
        let mut keys: Vec<Key> = Vec::new();
        for o in &self.clients {
            if o.phase == Phase::Gone {
                continue;
            }
            for (tag, r) in o.regs.iter().enumerate() {
                if !r.policy.matches(&r.uri, uri) {
                    continue;
                }
                let live = match r.state {
                    ReqState::Active => Some(o.phase == Phase::Joined),
                    ReqState::Pending | ReqState::Ending => Some(false),
                    ReqState::Ended | ReqState::Failed(_) => None,
                };
                let Some(stable) = live else {
                    continue;
                };
                let key = (r.uri.clone(), r.policy);
                match keys.iter_mut().find(|k| k.0 == key) {
                    Some(k) => {
                        k.1 |= stable;
                        k.2.push((o.index, tag));
                    }
                    None => keys.push((key, stable, vec![(o.index, tag)])),
                }
            }
        }
        // Best first.
        keys.sort_by(|a, b| {
            if beats((&a.0 .0, a.0 .1), (&b.0 .0, b.0 .1)) {
                std::cmp::Ordering::Less
            } else if beats((&b.0 .0, b.0 .1), (&a.0 .0, a.0 .1)) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        let mut e = CallExpect {
            no_such_procedure: true,
            stable: true,
            ..CallExpect::default()
        };
        let mut found = false;
        for (_, stable, tags) in keys {
            if found {
                e.fallback.extend(tags);
                continue;
            }
            // A key is fully stable when all its callees are acknowledged and joined.
            let settled = tags.iter().all(|(o, t)| {
                let c = &self.clients[*o];
                c.regs[*t].state == ReqState::Active && c.phase == Phase::Joined
            });
            e.stable &= settled;
            e.callees.extend(tags);
            if stable {
                e.no_such_procedure = false;
                found = true;
            }
        }
        e
    }

    fn meta(&mut self, c: usize, q: MetaQuery) {
        let (procedure, args, expect) = self.meta_expect(&q);
        let index = self.metas.len();
        self.metas.push(MetaRec {
            client: c,
            what: format!("{q:?}"),
            expect,
            got: None,
        });
        let req = self.clients[c].request(Req::Meta(index));
        self.send_json(c, &format!(r#"[48,{req},{{}},"{procedure}",{args}]"#));
    }

    /// The procedure, its args and the expected answer of a meta query sent now.
    fn meta_expect(&self, q: &MetaQuery) -> (&'static str, String, Expect) {
        let sessions_unsettled = self
            .clients
            .iter()
            .any(|c| matches!(c.phase, Phase::Joining | Phase::Leaving));
        let joined: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| c.phase == Phase::Joined)
            .filter_map(|c| c.session.map(|s| s.get()))
            .collect();
        // Sessions joining or leaving may or may not be counted; one whose id the client
        // has not read yet is any id (0 in `may`).
        let in_flight: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| matches!(c.phase, Phase::Joining | Phase::Leaving))
            .map(|c| c.session.map_or(0, |s| s.get()))
            .collect();
        // Subscriptions (and registrations) by id: (id, key, settled).
        let subs = self.ids_of(true);
        let regs = self.ids_of(false);
        let pick = |list: &[(u64, String, Policy, bool)], f: &dyn Fn(&str, Policy) -> bool| {
            let mut must = Vec::new();
            let mut may = Vec::new();
            let mut unsettled = false;
            for (id, uri, p, settled) in list {
                if f(uri, *p) {
                    if *settled {
                        must.push(*id);
                    } else {
                        may.push(*id);
                    }
                }
                unsettled |= !*settled;
            }
            (must, may, unsettled)
        };
        let by_policy = |list: &[(u64, String, Policy, bool)]| {
            let one = |p: Policy| {
                let (must, may, _) = pick(list, &|_, q| q == p);
                (must, may)
            };
            Expect::ByPolicy([
                one(Policy::Exact),
                one(Policy::Prefix),
                one(Policy::Wildcard),
            ])
        };
        let client_sub = |c: usize, tag: usize| {
            self.clients
                .get(c)
                .and_then(|c| c.subs.get(tag))
                .and_then(|s| s.id)
                .map_or(0, |i| i.get())
        };
        let client_reg = |c: usize, tag: usize| {
            self.clients
                .get(c)
                .and_then(|c| c.regs.get(tag))
                .and_then(|s| s.id)
                .map_or(0, |i| i.get())
        };
        let holders = |id: u64, subs: bool| {
            let mut must = Vec::new();
            let mut may = Vec::new();
            for c in &self.clients {
                let Some(session) = c.session else { continue };
                let recs: Vec<(Option<u64>, &ReqState)> = if subs {
                    c.subs
                        .iter()
                        .map(|s| (s.id.map(|i| i.get()), &s.state))
                        .collect()
                } else {
                    c.regs
                        .iter()
                        .map(|r| (r.id.map(|i| i.get()), &r.state))
                        .collect()
                };
                for (rid, st) in recs {
                    if rid != Some(id) {
                        continue;
                    }
                    match st {
                        ReqState::Active if c.phase == Phase::Joined => must.push(session.get()),
                        ReqState::Active | ReqState::Ending => may.push(session.get()),
                        _ => {}
                    }
                }
            }
            (must, may)
        };
        match q {
            MetaQuery::SessionCount => {
                let lo = joined.len() as u64;
                let hi = lo + in_flight.len() as u64;
                ("wamp.session.count", "[]".to_owned(), Expect::Count(lo, hi))
            }
            MetaQuery::SessionList => (
                "wamp.session.list",
                "[]".to_owned(),
                Expect::Ids {
                    must: joined,
                    may: in_flight,
                },
            ),
            MetaQuery::SessionGet(o) => {
                let id = self.clients[*o].session.map_or(0, |s| s.get());
                ("wamp.session.get", format!("[{id}]"), Expect::Session(id))
            }
            MetaQuery::SubscriptionLookup(uri, p) => {
                let (must, may, _) = pick(&subs, &|u, q| u == uri && q == *p);
                let e = match (must.first(), may.is_empty()) {
                    (Some(id), _) => Expect::One(Some(*id)),
                    (None, true) => Expect::One(None),
                    (None, false) => Expect::Any,
                };
                (
                    "wamp.subscription.lookup",
                    format!(r#"["{uri}",{{"match":"{}"}}]"#, p.as_str()),
                    e,
                )
            }
            MetaQuery::SubscriptionMatch(uri) => {
                let (must, may, _) = pick(&subs, &|u, p| p.matches(u, uri));
                (
                    "wamp.subscription.match",
                    format!(r#"["{uri}"]"#),
                    Expect::Ids { must, may },
                )
            }
            MetaQuery::SubscriptionList => {
                ("wamp.subscription.list", "[]".to_owned(), by_policy(&subs))
            }
            MetaQuery::CountSubscribers(c, tag) => {
                let id = client_sub(*c, *tag);
                let (must, may) = holders(id, true);
                let lo = must.len() as u64;
                (
                    "wamp.subscription.count_subscribers",
                    format!("[{id}]"),
                    Expect::Count(lo, lo + may.len() as u64),
                )
            }
            MetaQuery::ListSubscribers(c, tag) => {
                let id = client_sub(*c, *tag);
                let (must, may) = holders(id, true);
                (
                    "wamp.subscription.list_subscribers",
                    format!("[{id}]"),
                    Expect::Ids { must, may },
                )
            }
            MetaQuery::RegistrationLookup(uri, p) => {
                let (must, may, _) = pick(&regs, &|u, q| u == uri && q == *p);
                let e = match (must.first(), may.is_empty()) {
                    (Some(id), _) => Expect::One(Some(*id)),
                    (None, true) => Expect::One(None),
                    (None, false) => Expect::Any,
                };
                (
                    "wamp.registration.lookup",
                    format!(r#"["{uri}",{{"match":"{}"}}]"#, p.as_str()),
                    e,
                )
            }
            MetaQuery::RegistrationMatch(uri) => {
                let e = self.call_expect(uri);
                let ids: Vec<u64> = e
                    .callees
                    .iter()
                    .filter_map(|(c, t)| self.clients[*c].regs[*t].id.map(|i| i.get()))
                    .collect();
                let e = if e.stable {
                    Expect::One(ids.first().copied())
                } else {
                    Expect::Any
                };
                ("wamp.registration.match", format!(r#"["{uri}"]"#), e)
            }
            MetaQuery::RegistrationList => {
                ("wamp.registration.list", "[]".to_owned(), by_policy(&regs))
            }
            MetaQuery::ListCallees(c, tag) => {
                let id = client_reg(*c, *tag);
                let (must, may) = holders(id, false);
                let e = if sessions_unsettled {
                    Expect::Any
                } else {
                    Expect::Ids { must, may }
                };
                ("wamp.registration.list_callees", format!("[{id}]"), e)
            }
        }
    }

    /// Every subscription (or registration) id some live client holds or waits on:
    /// (id, uri, policy, settled). A key with no id yet (in flight) appears with id 0.
    fn ids_of(&self, subs: bool) -> Vec<(u64, String, Policy, bool)> {
        let mut out: Vec<(u64, String, Policy, bool)> = Vec::new();
        for c in &self.clients {
            if c.phase == Phase::Gone || c.session.is_none() {
                continue;
            }
            let recs: Vec<(Option<u64>, &str, Policy, &ReqState)> = if subs {
                c.subs
                    .iter()
                    .map(|s| (s.id.map(|i| i.get()), s.topic.as_str(), s.policy, &s.state))
                    .collect()
            } else {
                c.regs
                    .iter()
                    .map(|r| (r.id.map(|i| i.get()), r.uri.as_str(), r.policy, &r.state))
                    .collect()
            };
            for (id, uri, p, st) in recs {
                let settled = match st {
                    ReqState::Active => c.phase == Phase::Joined,
                    ReqState::Pending | ReqState::Ending => false,
                    ReqState::Ended | ReqState::Failed(_) => continue,
                };
                let id = id.unwrap_or(0);
                match out.iter_mut().find(|e| e.1 == uri && e.2 == p) {
                    Some(e) => {
                        // A key is settled if any holder is: the router keeps it.
                        if settled {
                            e.3 = true;
                            e.0 = id;
                        }
                    }
                    None => out.push((id, uri.to_owned(), p, settled)),
                }
            }
        }
        out
    }

    /// Encodes `json` in client `c`'s serializer, as a peer would, decodes it as the io
    /// layer would, and hands it to the client's shard.
    pub(crate) fn send_json(&mut self, c: usize, json: &str) {
        let client = &self.clients[c];
        if client.phase == Phase::Gone {
            return;
        }
        let (shard, conn, ser) = (usize::from(client.shard), client.conn(), client.serializer);
        let msg = match wire(json, ser) {
            Ok(m) => m,
            Err(e) => {
                self.problems
                    .push(format!("harness could not encode {json}: {e}"));
                return;
            }
        };
        let now = self.now;
        if let Some(s) = self.shards[shard].as_mut() {
            s.handle_message(now, conn, msg);
        }
        self.pump(shard);
    }

    /// Moves shard `i`'s outputs to clients and links.
    fn pump(&mut self, i: usize) {
        let Some(shard) = self.shards[i].as_mut() else {
            return;
        };
        let mut outputs = Vec::new();
        while let Some(o) = shard.poll_output() {
            outputs.push(o);
        }
        for o in outputs {
            match o {
                Output::Send { conn, bytes } => {
                    if let Some(c) = self.clients.get_mut(conn.0 as usize) {
                        if c.phase != Phase::Gone {
                            c.downlink.push_back(Some(bytes));
                        }
                    }
                }
                Output::Fanout {
                    conns,
                    serializer,
                    bytes,
                } => {
                    for conn in conns {
                        if let Some(c) = self.clients.get_mut(conn.0 as usize) {
                            if c.serializer != serializer {
                                self.problems.push(format!(
                                    "fan-out in {serializer:?} to a {:?} client",
                                    c.serializer
                                ));
                            }
                            if c.phase != Phase::Gone {
                                c.downlink.push_back(Some(bytes.clone()));
                            }
                        }
                    }
                }
                Output::Close { conn } => {
                    if let Some(c) = self.clients.get_mut(conn.0 as usize) {
                        if c.phase != Phase::Gone {
                            c.downlink.push_back(None);
                        }
                    }
                }
                Output::Peer { to, bytes } => {
                    let to = usize::from(to);
                    if to >= self.links.len() || to == i {
                        self.problems
                            .push(format!("shard {i} sent a peer message to {to}"));
                    } else if !self.broken[i][to] && self.shards[to].is_some() {
                        self.links[i][to].push_back(Link::Msg(bytes));
                    }
                }
            }
        }
    }

    /// Shard `k`'s process dies.
    fn kill(&mut self, k: u16) {
        let k = usize::from(k);
        if self.shards[k].take().is_none() {
            return;
        }
        self.deaths += 1;
        let step = self.step;
        for c in &mut self.clients {
            if usize::from(c.shard) == k && c.phase != Phase::Gone && c.phase != Phase::Idle {
                c.left_early = true;
                c.end(step);
            }
        }
        for j in 0..self.links.len() {
            if j != k {
                self.links[j][k].clear();
                self.broken[j][k] = true;
                self.links[k][j].push_back(Link::Down);
            }
        }
    }

    /// Shard `k` restarts empty and rejoins.
    fn restart(&mut self, k: u16) {
        let i = usize::from(k);
        if self.shards[i].is_some() {
            return;
        }
        self.incarnation += 1;
        self.shards[i] = Some(Shard::rejoin(ShardConfig {
            index: k,
            count: self.count,
            seed: self.seed ^ (self.incarnation << 40) ^ 0xDEAD,
            router: self.config.clone(),
        }));
        // The new life has learnt nothing stale: its links carry what it sends, and what
        // was queued toward the dead life (deaths of others it never heard of) is gone.
        for b in &mut self.broken[i] {
            *b = false;
        }
        for j in 0..self.links.len() {
            self.links[j][i].clear();
        }
        // Like the io layer, tell the joiner which shards are not running: it waits for
        // the snapshot of every shard it believes live.
        for j in 0..self.shards.len() {
            if j != i && self.shards[j].is_none() {
                if let Some(s) = self.shards[i].as_mut() {
                    s.handle_shard_down(self.now, j as u16);
                }
            }
        }
        self.pump(i);
    }
}

/// `json` as the message a peer using `ser` would have sent: encoded with `ser` and
/// decoded again, payload included.
fn wire(json: &str, ser: Serializer) -> Result<Message, String> {
    let msg = codec::decode(Serializer::Json, Bytes::copy_from_slice(json.as_bytes()))
        .map_err(|e| format!("{e:?}"))?;
    let msg = match ser {
        Serializer::Json => msg,
        Serializer::MsgPack => to_msgpack(msg)?,
    };
    let mut buf = Vec::new();
    codec::encode(ser, &msg, &mut buf).map_err(|e| format!("{e:?}"))?;
    codec::decode(ser, Bytes::from(buf)).map_err(|e| format!("{e:?}"))
}

/// The same message with its payload transcoded to MessagePack.
fn to_msgpack(mut msg: Message) -> Result<Message, String> {
    let payload = match &mut msg {
        Message::Publish(m) => &mut m.payload,
        Message::Call(m) => &mut m.payload,
        Message::Yield(m) => &mut m.payload,
        Message::Error(m) => &mut m.payload,
        _ => return Ok(msg),
    };
    if !payload.is_empty() {
        *payload = codec::transcode(payload, Serializer::MsgPack).map_err(|e| format!("{e:?}"))?;
    }
    Ok(msg)
}
