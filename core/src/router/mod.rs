//! The router as a sans-IO state machine: one [`Shard`] per core.
//!
//! # What it does
//!
//! A [`Shard`] owns the WAMP sessions of the connections accepted on its core and runs the
//! broker, the dealer and the meta API for them. It is driven quinn-proto style:
//!
//! - **Inputs** (`handle_*`): a connection opened ([`Shard::handle_open`]), a decoded message
//!   ([`Shard::handle_message`]), a frame that did not decode
//!   ([`Shard::handle_decode_error`]), a connection gone ([`Shard::handle_close`]), a message
//!   from another shard ([`Shard::handle_peer`]), another shard's death
//!   ([`Shard::handle_shard_down`]) and the passing of time ([`Shard::handle_timeout`]).
//! - **Outputs** (`poll_*`): after any input, drain [`Shard::poll_output`] until it returns
//!   `None` (frames for connections, closes, messages for other shards), then re-arm the
//!   timer from [`Shard::poll_timeout`].
//! - **Time** is the caller's: every input carries `now` ([`Time`], microseconds since an
//!   epoch the caller picks). The shard never reads a clock, so a simulation can run it on
//!   virtual time.
//!
//! # Across shards
//!
//! Shards share no memory. Everything that crosses shards is a [`peer::PeerMsg`], encoded
//! with a version byte ([`peer`]) and carried as [`Output::Peer`] over a FIFO link per
//! ordered pair of shards. The router-wide invariants hold as follows.
//!
//! - **One id per key.** Each subscription key (realm, topic, match policy) and registration
//!   key (realm, procedure, match policy) has an *owner* shard: the first live shard at or
//!   after `hash(key) % count`. The owner serializes every change to the key and picks its
//!   id; changes travel owner → every shard over FIFO links, so every replica applies them
//!   in the owner's order.
//! - **Causality.** The shard that asked for a change answers SUBSCRIBED/REGISTERED only when
//!   every live shard has acknowledged applying it, so any PUBLISH/CALL accepted anywhere
//!   afterwards sees it.
//! - **Publication order.** A publication is matched on the publisher's shard against the
//!   replicated *interest* table (which shards have subscribers for which keys) and sent once
//!   to each interested shard; FIFO links keep one publisher's order; the receiving shard
//!   fans out locally, encoding each EVENT once per subscription and serializer
//!   ([`Output::Fanout`]); a payload crossing serializers is transcoded once, on the
//!   publisher's shard, for all of them (see the `broker` module).
//! - **No lock on the data path.** PUBLISH, CALL, YIELD touch only the local shard and
//!   one-way peer messages.
//!
//! # Shard death and rejoin: the choice made
//!
//! Every shard holds the **full replica** of the interest and registration tables, not only
//! the keys it owns, and ownership is re-derived from the live membership (the first live
//! shard at or after `hash(key) % count`). So when a shard dies nothing it owned is lost:
//! the next live shard already holds every key's state and becomes its owner; requests in
//! flight to the dead owner are re-sent to the new one. `handle_shard_down` drops the dead
//! shard's interest and callees, fails calls pending on its callees with
//! `wamp.error.canceled`, and forgets invocations its callers had pending. A restarted
//! shard is built with [`Shard::rejoin`]: it asks every live shard for a snapshot of the
//! keys that shard owned, applies them, and only then accepts sessions ([`Shard::is_ready`];
//! HELLOs that arrive earlier are parked, owner requests deferred). See the `membership`
//! module for the ordering argument and its known gaps.
//!
//! # What it does not do
//!
//! No IO, no clock, no threads, no OS randomness (ids come from a SplitMix64 seeded by
//! [`ShardConfig::seed`]). It does not frame messages or decode frames: the io layer decodes
//! with [`crate::codec`] and hands over [`Message`]s, and sends the bytes of outputs.

mod auth;
mod authorizer;
mod broker;
mod config;
mod cookie;
mod dealer;
mod dynauth;
mod membership;
mod meta;
pub mod peer;
mod rng;
mod session;
mod values;

pub use auth::{
    cryptosign_sign, scram_auth_message, scram_client_proof, scram_credential,
    scram_salted_password, tls_fingerprint, wampcra_derive_key, wampcra_sign, Anonymous,
    AuthContext, AuthInfo, Authenticator, Challenged, Configured, Entropy, Step,
    AUTHENTICATION_FAILED, NOT_AUTHORIZED, NO_AUTH_METHOD, NO_SUCH_ROLE,
};
pub use config::{
    AnonymousConfig, AuthConfig, AuthLimits, CraSalt, CryptosignKeys, HistoryConfig, Limits,
    Permission, Principal, Principals, RealmConfig, RoleConfig, RouterConfig, ScramKdf,
    ScramSecret, ShardConfig, TicketSecret, TlsCertificate, WampCraSecret,
};
pub use dynauth::{DynamicConfig, DynamicRequest};
pub use peer::PeerError;
pub use session::ProtocolViolation;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{self, DecodeError, Serializer};
use crate::hash::Map;
use crate::id::Id;
use crate::matcher::Matcher;
use crate::message::{MatchPolicy as WirePolicy, Message, Payload};
use crate::uri::MatchPolicy;

use broker::RealmBroker;
use dealer::RealmDealer;
use peer::PeerMsg;
use rng::SplitMix64;
use session::Session;

/// Time as the caller sees it: microseconds since an epoch the caller picks (virtual in tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms.saturating_mul(1000)))
    }
}

/// The io layer's handle for one connection on this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What the io layer knows about a connection's transport.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportInfo {
    /// The transport kind, e.g. `websocket` or `rawsocket`.
    pub kind: String,
    /// The peer's address as text, e.g. `tcp4:127.0.0.1:50000` (the failure throttle
    /// keys on its address part).
    pub peer: String,
    /// Which transport `auth` section applies: an index into the list given to
    /// [`Configured::new`] (0 for a single transport).
    pub auth: usize,
    /// The TLS channel id for cryptosign's `tls-unique` binding (32 bytes, as Autobahn
    /// computes it), if the transport has one; `None` refuses sessions asking for it.
    pub channel_binding: Option<Vec<u8>>,
    /// The id of the connection's tracking cookie (Crossbar's `cbtid`), verified by the io
    /// layer; a session authenticating on this connection binds it (see the `cookie`
    /// module).
    pub cbtid: Option<String>,
    /// How long the tracking cookie has left, in ms.
    pub cookie_ttl_ms: u64,
    /// Whether the transport accepts the `cookie` authentication method.
    pub cookie_auth: bool,
    /// On TLS endpoints that verify client certificates: the subject common name (CN) of
    /// the certificate the client presented and the endpoint verified, from which the
    /// `tls` authentication method takes the principal. `None` otherwise.
    pub client_cert_cn: Option<String>,
    /// On the same endpoints: the SHA-1 fingerprint of the verified client certificate's
    /// DER bytes, which the `tls` method matches against `certificate-sha1`.
    pub client_cert_sha1: Option<[u8; 20]>,
}

/// What a shard asks its caller to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// One encoded WAMP message for one connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The encoded message (in the connection's serializer).
        bytes: Bytes,
    },
    /// The same encoded message for many connections: encoded once per fan-out (per
    /// serializer); the io layer frames it once per transport kind and hands the same bytes
    /// to each connection.
    Fanout {
        /// The connections, all using `serializer`.
        conns: Vec<ConnId>,
        /// The serializer `bytes` is encoded with.
        serializer: Serializer,
        /// The encoded message.
        bytes: Bytes,
    },
    /// Close the connection after flushing what was sent before.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// A cross-shard message ([`peer`] encoding), FIFO per link.
    Peer {
        /// The receiving shard.
        to: u16,
        /// The encoded [`peer::PeerMsg`].
        bytes: Bytes,
    },
}

/// What [`Shard::pending_counts`] reports: call and control-plane state held by a shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Calls its sessions made that have not ended.
    pub calls: usize,
    /// The same calls as counted per callee shard for the in-flight bound (always equal
    /// to `calls`; reported separately so that a drift shows).
    pub calls_in_flight: usize,
    /// Invocations its sessions must still answer.
    pub invocations: usize,
    /// Invocations running here, indexed for the way back (one per running invocation).
    pub inbound_calls: usize,
    /// Control-plane requests (subscribe, register, meta) waiting on other shards.
    pub control_requests: usize,
    /// Call deadlines armed.
    pub timers: usize,
    /// Calls the router itself made (dynamic authenticator, authorizer) still waiting.
    pub router_calls: usize,
}

/// One router core: its sessions, its replica of the router-wide tables, its outputs.
///
/// # Call protocol
///
/// - Build every shard of a router with the same `Arc<RouterConfig>`, `count`, and a
///   distinct `index` in `0..count` ([`Shard::new`]); a shard restarted after a crash is
///   built with [`Shard::rejoin`] instead and is ready once [`Shard::is_ready`] says so.
/// - Feed one input with a `handle_*` method, then drain [`Shard::poll_output`] until
///   `None`, then ask [`Shard::poll_timeout`] when to call [`Shard::handle_timeout`].
///   Outputs of one input are in the order they must be acted on.
/// - Deliver every [`Output::Peer`] to shard `to` with [`Shard::handle_peer`] (passing the
///   sender's index as `from`), in order per (from, to) link: the protocol relies on FIFO
///   links and on nothing else (any interleaving across links is allowed).
/// - Report a dead shard to every other shard with [`Shard::handle_shard_down`]; messages
///   to a shard this shard believes dead are not emitted.
/// - Time passed in must not go backwards.
///
/// Every `handle_*` is total: client-caused bad input ends in an ERROR, an ABORT or a close;
/// undecodable peer bytes are a [`PeerError`]; nothing panics.
#[derive(Debug)]
pub struct Shard {
    index: u16,
    count: u16,
    config: Arc<RouterConfig>,
    rng: SplitMix64,
    /// Which shards are alive, as far as this shard knows.
    live: Vec<bool>,
    sessions: Map<ConnId, Session>,
    /// Joined sessions by WAMP session id.
    by_id: Map<Id, ConnId>,
    realms: Vec<RealmState>,
    out: VecDeque<Output>,
    /// Peer messages this shard sent to itself, handled before the current input returns.
    loopback: VecDeque<PeerMsg>,
    /// Control-plane requests waiting on other shards, by token.
    pending: Map<u64, Pending>,
    next_token: u64,
    /// Call deadlines: (deadline, caller session, call request).
    timers: BTreeSet<(Time, Id, Id)>,
    /// Invocations running here for calls from any shard: (caller shard, caller, call) →
    /// (callee session, invocation request id).
    inbound_calls: Map<(u16, Id, Id), (Id, Id)>,
    authenticator: Box<dyn Authenticator>,
    session_counter: u64,
    /// Authentication deadlines (HELLO to WELCOME) and delayed failure ABORTs, by time.
    auth_timers: BTreeSet<(Time, ConnId)>,
    /// Recent authentication failures per peer address.
    throttle: auth::throttle::Throttle,
    now: Time,
    /// Each shard's life as this shard knows it (its own included): 0 for the router's
    /// first start, drawn at random by each restarted shard and announced in its `Join`.
    /// Changes naming a shard carry the life they are about, so a change about a previous
    /// life is recognised and dropped wherever and whenever it arrives.
    lives: Vec<u64>,
    /// Which entries of `lives` this shard learnt from the shard itself (its `Join`) or
    /// from the start (every shard but a restarted one starts knowing all lives are 0);
    /// the others were adopted from a snapshot.
    lives_known: Vec<bool>,
    /// Set while a rejoining shard waits for the replicated state.
    sync: Option<Box<membership::Sync>>,
    /// The joiner this shard has sent its snapshot to and whose `Ready` it awaits.
    serving: Option<u16>,
    /// Joiners waiting to be served: (shard, attempt).
    join_queue: Vec<(u16, u32)>,
    /// Every shard that sent a `Join` (they hear of this shard's readiness).
    joiners_seen: Vec<u16>,
    /// Requests handed on to another shard: (to, origin, origin's life, hops, request),
    /// handled again if that shard gives up or dies before its decision (the owner's
    /// broadcast naming the origin's token or key) arrives here: the origin may have
    /// learnt that death before it sent the request, and so will not send it again.
    /// Bounded by [`Limits::in_flight_peer_requests`] (the oldest entry goes first: a
    /// register rejection reaches only its requester, so such entries are not cleared).
    forwarded: Vec<(u16, u16, u64, u8, PeerMsg)>,
    /// Unsubscribe and unregister requests this shard sent to another shard whose
    /// owner's decision (the `InterestRemove` / `RegisterRemove` naming this shard) has
    /// not come back: (shard sent to, request, key of an unregister). Re-sent to the new
    /// owner when that shard dies first. Bounded by the sessions' subscription and
    /// registration limits (one entry per key this shard gives up).
    removals: Vec<(u16, PeerMsg, Option<Key>)>,
    /// Which shards were live when this shard served its current joiner (cleared per
    /// shard as deaths are learnt): a resync about one still set waits for its death.
    served_live: Vec<bool>,
    /// Resync requests waiting for this shard to learn a death: (joiner, round, dead).
    resync_deferred: Vec<(u16, u32, u16)>,
    /// Wall-clock microseconds since the Unix epoch at `Time(0)`, if the caller said
    /// ([`Shard::set_wall_clock`]): meta answers then carry `created` timestamps.
    wall_base: Option<u64>,
    /// When each local session joined.
    session_created: Map<Id, Time>,
    /// When this shard's replica first held each subscription.
    sub_created: Map<Id, Time>,
    /// Calls of this shard's callers in flight toward each shard (by index), bounded by
    /// [`Limits::in_flight_peer_requests`] for every shard but this one.
    calls_to: Vec<usize>,
    /// The caller id of the router's own calls ([`Shard::router_call`]): of this shard's
    /// id class, so answers route back here, and never given to a session.
    router_caller: Id,
    /// Calls the router made and waits on, by call id.
    router_calls: Map<Id, dealer::RouterCall>,
    last_router_call: u64,
    /// Tracking cookies bound to principals (cookie authentication).
    cookies: cookie::Cookies,
    /// Reused by every publication: the shards it goes to.
    scratch_shards: Vec<u16>,
    /// Reused by every publication: the local subscriptions it matches.
    scratch_subs: Vec<(Id, MatchPolicy)>,
}

/// The per-realm state of a shard.
#[derive(Debug)]
struct RealmState {
    broker: RealmBroker,
    dealer: RealmDealer,
    /// One permission matcher per role of the realm config, in config order.
    permissions: Vec<Matcher<Permission>>,
}

/// A subscription or registration key: pattern and match policy.
type Key = (String, MatchPolicy);

/// A control-plane request this shard waits on.
#[derive(Debug)]
enum Pending {
    Subscribe(broker::PendingSubscribe),
    Fence(broker::PendingFence),
    Register(dealer::PendingRegister),
    Meta(meta::PendingMeta),
}

impl Shard {
    /// A shard with no sessions, using the anonymous authenticator.
    pub fn new(config: ShardConfig) -> Self {
        Self::with_authenticator(config, Box::new(Anonymous))
    }

    /// A shard with no sessions and the given authenticator.
    pub fn with_authenticator(config: ShardConfig, authenticator: Box<dyn Authenticator>) -> Self {
        let count = config.count.max(1);
        let realms = Self::fresh_realms(&config.router);
        Self {
            index: config.index,
            count,
            rng: SplitMix64::new(config.seed),
            live: vec![true; usize::from(count)],
            lives: vec![0; usize::from(count)],
            lives_known: vec![true; usize::from(count)],
            config: config.router,
            sessions: Map::default(),
            by_id: Map::default(),
            realms,
            out: VecDeque::new(),
            loopback: VecDeque::new(),
            pending: Map::default(),
            next_token: 1,
            timers: BTreeSet::new(),
            inbound_calls: Map::default(),
            authenticator,
            session_counter: 0,
            auth_timers: BTreeSet::new(),
            throttle: auth::throttle::Throttle::default(),
            now: Time(0),
            sync: None,
            serving: None,
            join_queue: Vec::new(),
            joiners_seen: Vec::new(),
            forwarded: Vec::new(),
            removals: Vec::new(),
            served_live: Vec::new(),
            resync_deferred: Vec::new(),
            wall_base: None,
            session_created: Map::default(),
            sub_created: Map::default(),
            calls_to: vec![0; usize::from(count)],
            router_caller: router_caller_id(config.index, count),
            router_calls: Map::default(),
            last_router_call: 0,
            cookies: cookie::Cookies::default(),
            scratch_shards: Vec::new(),
            scratch_subs: Vec::new(),
        }
    }

    /// Empty per-realm state for every realm of `config`.
    fn fresh_realms(config: &RouterConfig) -> Vec<RealmState> {
        config
            .realms
            .iter()
            .map(|r| RealmState {
                broker: RealmBroker::with_history(
                    r.history
                        .iter()
                        .map(|h| (h.topic.clone(), h.limit.min(config.limits.history_length))),
                ),
                dealer: RealmDealer::default(),
                permissions: r
                    .roles
                    .iter()
                    .map(|role| {
                        let mut m = Matcher::new();
                        for p in &role.permissions {
                            // A pattern too long for the matcher cannot grant anything; the
                            // config checker reports it, the shard just skips it.
                            let _ = m.insert(&p.uri, p.policy, p.clone());
                        }
                        m
                    })
                    .collect(),
            })
            .collect()
    }

    /// Tells the shard what wall-clock time `Time(0)` is (microseconds since the Unix
    /// epoch), so that the meta API can answer `created` timestamps as Crossbar does
    /// (ISO 8601, UTC, milliseconds). Without it `created` is left out. The shard still
    /// reads no clock: this is arithmetic on the `now` every input carries.
    pub fn set_wall_clock(&mut self, unix_micros_at_zero: u64) {
        self.wall_base = Some(unix_micros_at_zero);
    }

    /// Replaces the authenticator (before any session opens: sessions already
    /// authenticating would meet a decider that never challenged them).
    pub fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        self.authenticator = authenticator;
    }

    /// This shard's index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// How many connections this shard holds (joined or not).
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// A connection was accepted; its first message must be HELLO.
    pub fn handle_open(
        &mut self,
        now: Time,
        conn: ConnId,
        serializer: Serializer,
        transport: TransportInfo,
    ) {
        self.now = now;
        if self.sessions.len() >= self.config.limits.sessions_per_shard {
            // Refusing before HELLO: the client learns why from the ABORT it reads first.
            self.send_abort(
                conn,
                serializer,
                "wamp.error.limit_exceeded",
                "too many sessions on this core",
            );
            self.out.push_back(Output::Close { conn });
            return;
        }
        self.sessions
            .insert(conn, Session::new(serializer, transport));
    }

    /// A message from a connection.
    pub fn handle_message(&mut self, now: Time, conn: ConnId, msg: Message) {
        self.now = now;
        self.session_message(conn, msg);
        self.drain_loopback();
    }

    /// A frame that did not decode. A frame whose type could not be read aborts the
    /// session; a bad request whose id was read gets an ERROR where the spec has one (and
    /// the session stays), otherwise it aborts too.
    pub fn handle_decode_error(&mut self, now: Time, conn: ConnId, err: &DecodeError) {
        self.now = now;
        self.decode_error(conn, err);
        self.drain_loopback();
    }

    /// The transport is gone: the session (if joined) leaves its realm.
    pub fn handle_close(&mut self, now: Time, conn: ConnId) {
        self.now = now;
        if let Some(s) = self.sessions.remove(&conn) {
            self.leave(conn, s);
        }
        self.drain_loopback();
    }

    /// A message from shard `from`.
    pub fn handle_peer(&mut self, now: Time, from: u16, bytes: &[u8]) -> Result<(), PeerError> {
        self.now = now;
        if from >= self.count {
            return Err(PeerError::UnknownShard(from));
        }
        let msg = PeerMsg::decode(bytes)?;
        self.peer_message(from, msg);
        self.drain_loopback();
        Ok(())
    }

    /// Shard `shard` died: drop everything that belonged to it.
    pub fn handle_shard_down(&mut self, now: Time, shard: u16) {
        self.shard_down(now, shard, true);
    }

    /// `shard` is gone: dead (`real`), or a joiner that gave up its attempt (it held
    /// nothing, and nothing names it).
    fn shard_down(&mut self, now: Time, shard: u16, real: bool) {
        self.now = now;
        if shard >= self.count || shard == self.index {
            return;
        }
        let slot = &mut self.live[usize::from(shard)];
        let was_live = *slot;
        *slot = false;
        if real {
            // Before the subscribe and register requests are re-sent: a key given up and
            // taken again is removed, then added, in that order.
            self.resend_removals(shard);
        }
        if was_live {
            self.broker_shard_down(shard);
            self.dealer_shard_down(shard);
            self.meta_shard_down(shard);
        }
        self.membership_down(shard, was_live, real);
        self.snapshot_arrived(shard);
        self.serve_next();
        self.drain_loopback();
    }

    /// Time passed: fire the call timeouts, authentication deadlines and delayed
    /// authentication failures that are due.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        self.fire_timeouts(now);
        self.fire_auth_timers(now);
        self.drain_loopback();
    }

    /// The next thing to do, or `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Shard::handle_timeout`] should next be called, if at all.
    pub fn poll_timeout(&self) -> Option<Time> {
        let calls = self.timers.first().map(|t| t.0);
        let auth = self.auth_timers.first().map(|t| t.0);
        match (calls, auth) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How much call and control-plane state this shard holds, for leak checks: after
    /// every session has left and the links are drained, all of it is zero.
    pub fn pending_counts(&self) -> PendingCounts {
        let mut c = PendingCounts {
            calls_in_flight: self.calls_to.iter().sum(),
            control_requests: self.pending.len(),
            inbound_calls: self.inbound_calls.len(),
            timers: self.timers.len(),
            router_calls: self.router_calls.len(),
            ..PendingCounts::default()
        };
        for s in self.sessions.values() {
            if let Some(j) = s.joined() {
                c.calls += j.calls.len();
                c.invocations += j.invocations.len();
            }
        }
        c
    }

    /// Answers a [`Step::Pending`] authentication: the dynamic authenticator decided.
    pub fn handle_auth_result(&mut self, now: Time, conn: ConnId, step: Step) {
        self.now = now;
        self.auth_step(conn, step);
        self.drain_loopback();
    }

    // ---- helpers shared by the submodules ----

    /// Sends `msg` to the shard `to`; to itself it is queued and handled before the current
    /// input returns, without encoding.
    fn send_peer(&mut self, to: u16, msg: PeerMsg) {
        if to == self.index {
            self.loopback.push_back(msg);
        } else if self.live[usize::from(to)] {
            self.out.push_back(Output::Peer {
                to,
                bytes: msg.to_bytes(),
            });
        }
    }

    /// Sends `msg` to every live shard but this one (encoded once).
    fn broadcast(&mut self, msg: &PeerMsg) {
        let bytes = msg.to_bytes();
        for s in 0..self.count {
            if s != self.index && self.live[usize::from(s)] {
                self.out.push_back(Output::Peer {
                    to: s,
                    bytes: bytes.clone(),
                });
            }
        }
    }

    /// The live shards, this one included, but not a joiner being served: the shards
    /// whose acknowledgements a change waits for (a joiner has no sessions yet, and every
    /// change reaches it through a snapshot or a later broadcast).
    fn live_shards(&self) -> Vec<u16> {
        (0..self.count)
            .filter(|s| self.live[usize::from(*s)] && self.serving != Some(*s))
            .collect()
    }

    fn drain_loopback(&mut self) {
        while let Some(msg) = self.loopback.pop_front() {
            self.peer_message(self.index, msg);
        }
    }

    fn peer_message(&mut self, from: u16, msg: PeerMsg) {
        if self.stale(from, &msg) {
            // A joiner acknowledges the change all the same: it cannot open before the
            // sender's snapshot of its current attempt, which includes the change.
            if let PeerMsg::InterestAdd {
                shard,
                life,
                requester,
                token,
                ..
            }
            | PeerMsg::RegisterAdd {
                shard,
                life,
                requester,
                token,
                ..
            } = &msg
            {
                if self.current(*shard, *life) && *requester != self.index {
                    self.send_peer(*requester, PeerMsg::Ack { token: *token });
                }
            }
            return;
        }
        match msg {
            PeerMsg::Join { round, life } => self.handle_join(self.now, from, round, life),
            PeerMsg::Snapshot(s) => self.apply_snapshot(from, *s),
            PeerMsg::Busy { joiner, round } => self.handle_busy(joiner, round),
            PeerMsg::Withdraw => self.handle_cancel(self.now, from),
            PeerMsg::Ready => self.handle_ready(from),
            PeerMsg::Resync { round, dead } => self.handle_resync(from, round, dead),
            PeerMsg::Forward {
                origin,
                life,
                hops,
                msg,
            } => self.request(from, origin, life, hops, *msg),
            m @ (PeerMsg::SubscribeRequest { .. }
            | PeerMsg::UnsubscribeRequest { .. }
            | PeerMsg::RegisterRequest { .. }
            | PeerMsg::UnregisterRequest { .. }) => {
                // Links are FIFO and a shard's lives follow each other on them: a request
                // straight from its maker is from the life this shard knows.
                let life = self.life_of(from);
                self.request(from, from, life, 0, m);
            }
            PeerMsg::InterestAdd {
                realm,
                uri,
                policy,
                subscription,
                shard,
                life,
                requester,
                token,
                to,
            } => {
                self.forward_decided(requester, Some(token), None);
                self.change_reached(requester, token, &to);
                // A change about a previous life of `shard` (the owner sent it before it
                // learnt the death) would leave interest nobody removes.
                if self.current(shard, life) {
                    self.apply_interest_add(
                        realm,
                        &uri,
                        policy,
                        subscription,
                        shard,
                        requester,
                        token,
                    );
                }
            }
            PeerMsg::Ack { token } => self.ack(from, token),
            PeerMsg::Fence { token } => self.send_peer(from, PeerMsg::Ack { token }),
            PeerMsg::InterestRemove {
                realm,
                uri,
                policy,
                shard,
            } => {
                if shard == self.index {
                    self.removal_decided(realm, &uri, policy);
                }
                let key = PeerMsg::UnsubscribeRequest {
                    realm,
                    uri: uri.clone(),
                    policy,
                };
                self.forward_decided(shard, None, Some(&key));
                self.apply_interest_remove(realm, &uri, policy, shard);
            }
            PeerMsg::Publish(p) => self.deliver_publication(&p, None),
            PeerMsg::InterestNeeds {
                realm,
                uri,
                policy,
                shard,
                needs,
            } => self.apply_interest_needs(realm, &uri, policy, shard, needs),
            PeerMsg::RegisterAdd {
                realm,
                uri,
                policy,
                invoke,
                registration,
                shard,
                life,
                session,
                requester,
                token,
                to,
            } => {
                self.forward_decided(requester, Some(token), None);
                self.change_reached(requester, token, &to);
                // As for InterestAdd: a callee of a previous life is not added.
                if self.current(shard, life) {
                    self.apply_register_add(
                        realm,
                        &uri,
                        policy,
                        invoke,
                        registration,
                        shard,
                        session,
                    );
                    self.applied(requester, token, Some(registration));
                }
            }
            PeerMsg::RegisterReject { token, error } => self.register_rejected(token, &error),
            PeerMsg::RegisterRemove {
                realm,
                registration,
                shard,
                session,
            } => {
                if shard == self.index {
                    self.unregister_decided(realm, registration, session);
                }
                let key = PeerMsg::UnregisterRequest {
                    realm,
                    registration,
                    session,
                };
                self.forward_decided(shard, None, Some(&key));
                self.apply_register_remove(realm, registration, shard, session);
            }
            PeerMsg::Invoke(i) => self.peer_invoke(from, *i),
            PeerMsg::Unrouted(i) => self.unrouted(from, *i),
            PeerMsg::Yield(y) => self.peer_yield(*y),
            PeerMsg::CallError(e) => self.peer_call_error(*e),
            PeerMsg::Cancel {
                caller,
                call,
                mode,
                reason,
            } => self.peer_cancel(from, caller, call, mode, &reason),
            PeerMsg::MetaQuery {
                token,
                realm,
                query,
            } => self.meta_query(from, token, realm, query),
            PeerMsg::MetaReply { token, values } => self.meta_reply(from, token, values),
            PeerMsg::CookieBind {
                cbtid,
                realm,
                authid,
                authrole,
                ttl_ms,
            } => self.cookie_bind(cbtid, realm, authid, authrole, ttl_ms),
        }
    }

    /// Whether a change naming `life` of `shard` is about its current life: `shard` is
    /// live and `life` is the life this shard knows.
    fn current(&self, shard: u16, life: u64) -> bool {
        self.live.get(usize::from(shard)).is_some_and(|l| *l)
            && self.lives.get(usize::from(shard)) == Some(&life)
    }

    /// The life of `shard` as this shard knows it.
    fn life_of(&self, shard: u16) -> u64 {
        self.lives.get(usize::from(shard)).copied().unwrap_or(0)
    }

    /// An owner request made by `origin` (handed over by `from`, `hops` times): deferred
    /// while the replica is incomplete, handed on when another shard owns the key in this
    /// shard's view (see the `membership` module), decided here otherwise.
    fn request(&mut self, from: u16, origin: u16, life: u64, hops: u8, msg: PeerMsg) {
        let Some(msg) = self.defer(from, origin, life, hops, msg) else {
            return;
        };
        if let Some(owner) = self.request_owner(&msg) {
            if owner != self.index && hops < u8::try_from(self.count).unwrap_or(u8::MAX) {
                if self.forwarded.len() >= self.config.limits.in_flight_peer_requests.max(1) {
                    self.forwarded.remove(0);
                }
                self.forwarded
                    .push((owner, origin, life, hops + 1, msg.clone()));
                self.send_peer(
                    owner,
                    PeerMsg::Forward {
                        origin,
                        life,
                        hops: hops + 1,
                        msg: Box::new(msg),
                    },
                );
                return;
            }
        }
        match msg {
            PeerMsg::SubscribeRequest {
                token,
                realm,
                uri,
                policy,
            } => self.owner_subscribe(origin, life, token, realm, uri, policy),
            // A previous life's removal must not touch the current life's entries (its
            // own were dropped when the death was learnt).
            PeerMsg::UnsubscribeRequest { .. } | PeerMsg::UnregisterRequest { .. }
                if life != self.life_of(origin) => {}
            PeerMsg::UnsubscribeRequest { realm, uri, policy } => {
                self.owner_unsubscribe(origin, realm, uri, policy)
            }
            PeerMsg::RegisterRequest {
                token,
                realm,
                uri,
                policy,
                invoke,
                session,
            } => self.owner_register(origin, life, token, realm, uri, policy, invoke, session),
            PeerMsg::UnregisterRequest {
                realm,
                registration,
                session,
            } => self.owner_unregister(origin, realm, registration, session),
            _ => {}
        }
    }

    /// The owner of the key an owner request is about, in this shard's view.
    fn request_owner(&self, msg: &PeerMsg) -> Option<u16> {
        match msg {
            PeerMsg::SubscribeRequest {
                realm, uri, policy, ..
            }
            | PeerMsg::UnsubscribeRequest { realm, uri, policy }
            | PeerMsg::RegisterRequest {
                realm, uri, policy, ..
            } => Some(self.owner(*realm, uri, *policy)),
            PeerMsg::UnregisterRequest {
                realm,
                registration,
                ..
            } => {
                let g = self
                    .realms
                    .get(usize::from(*realm))?
                    .dealer
                    .by_id
                    .get(registration)?;
                Some(self.owner(*realm, &g.uri, g.policy))
            }
            _ => None,
        }
    }

    /// The live shards (this one included) with their lives: the recipients of an owner's
    /// change.
    fn recipients(&self) -> Vec<(u16, u64)> {
        (0..self.count)
            .filter(|s| self.live[usize::from(*s)])
            .map(|s| (s, self.life_of(s)))
            .collect()
    }

    /// The owner's change for this shard's request `token` names the shards it went to:
    /// the request also waits for those this shard counts live in the same life (a joiner
    /// served since the request was made acknowledges it; one the owner had not served
    /// gets the change from the owner's snapshot before it opens).
    fn change_reached(&mut self, requester: u16, token: u64, to: &[(u16, u64)]) {
        if requester != self.index {
            return;
        }
        let add: Vec<u16> = to
            .iter()
            .filter(|(s, l)| self.live[usize::from(*s)] && self.life_of(*s) == *l)
            .map(|(s, _)| *s)
            .collect();
        match self.pending.get_mut(&token) {
            Some(Pending::Subscribe(p)) => p.wait.widen(&add),
            Some(Pending::Register(p)) => p.wait.widen(&add),
            _ => {}
        }
    }

    /// Sends an unsubscribe or unregister request to `to` (the key's owner in this
    /// shard's view) and remembers it until the decision comes back, so that it is
    /// re-sent if `to` dies first. `key` is an unregister's (pattern, policy).
    fn send_removal(&mut self, to: u16, msg: PeerMsg, key: Option<Key>) {
        if to != self.index {
            self.removals.push((to, msg.clone(), key));
        }
        self.send_peer(to, msg);
    }

    /// An owner decided a request of `origin` (by token, or a removal equal to `removal`):
    /// a copy this shard handed on is done.
    fn forward_decided(&mut self, origin: u16, token: Option<u64>, removal: Option<&PeerMsg>) {
        if self.forwarded.is_empty() {
            return;
        }
        self.forwarded.retain(|f| {
            if f.1 != origin {
                return true;
            }
            let t = match &f.4 {
                PeerMsg::SubscribeRequest { token, .. }
                | PeerMsg::RegisterRequest { token, .. } => Some(*token),
                _ => None,
            };
            let done = match (token, removal) {
                (Some(k), _) => t == Some(k),
                (None, Some(r)) => f.4 == *r,
                (None, None) => false,
            };
            !done
        });
    }

    /// The owner decided this shard's unsubscribe of a key.
    fn removal_decided(&mut self, realm: u16, uri: &str, policy: MatchPolicy) {
        self.removals.retain(|r| {
            !matches!(&r.1, PeerMsg::UnsubscribeRequest { realm: a, uri: u, policy: p }
                if *a == realm && u == uri && *p == policy)
        });
    }

    /// The owner decided this shard's unregister of a callee.
    fn unregister_decided(&mut self, realm: u16, registration: Id, session: Id) {
        self.removals.retain(|r| {
            !matches!(&r.1, PeerMsg::UnregisterRequest { realm: a, registration: g, session: s }
                if *a == realm && *g == registration && *s == session)
        });
    }

    /// `dead` died: the removal requests sent to it go to the new owners.
    fn resend_removals(&mut self, dead: u16) {
        let (again, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.removals)
            .into_iter()
            .partition(|r| r.0 == dead);
        self.removals = keep;
        for (_, msg, key) in again {
            let owner = match (&msg, &key) {
                (PeerMsg::UnsubscribeRequest { realm, uri, policy }, _) => {
                    self.owner(*realm, uri, *policy)
                }
                (PeerMsg::UnregisterRequest { realm, .. }, Some((uri, policy))) => {
                    self.owner(*realm, uri, *policy)
                }
                // Without its key the request is decided here: any shard can broadcast
                // the removal of this shard's own callee.
                _ => self.index,
            };
            self.send_removal(owner, msg, key);
        }
    }

    /// This shard applied a change asked for by `requester` under `token`: acknowledge it,
    /// or, when this shard is the requester, count its own application.
    fn applied(&mut self, requester: u16, token: u64, id: Option<Id>) {
        if requester == self.index {
            self.ack_with_id(self.index, token, id);
        } else {
            self.send_peer(requester, PeerMsg::Ack { token });
        }
    }

    fn ack(&mut self, from: u16, token: u64) {
        if matches!(self.pending.get(&token), Some(Pending::Fence(_))) {
            self.fence_ack(from, token);
            return;
        }
        self.ack_with_id(from, token, None);
    }

    fn ack_with_id(&mut self, from: u16, token: u64, id: Option<Id>) {
        let done = match self.pending.get_mut(&token) {
            Some(Pending::Subscribe(p)) => p.wait.ack(from, id),
            Some(Pending::Register(p)) => p.wait.ack(from, id),
            _ => false,
        };
        if done {
            match self.pending.remove(&token) {
                Some(Pending::Subscribe(p)) => self.subscribe_done(p),
                Some(Pending::Register(p)) => self.register_done(p),
                _ => {}
            }
        }
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// The owner of a key: the first live shard at or after `hash(key) % count`.
    fn owner(&self, realm: u16, uri: &str, policy: MatchPolicy) -> u16 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = crate::hash::State::default().build_hasher();
        realm.hash(&mut h);
        uri.hash(&mut h);
        policy.hash(&mut h);
        let start = (h.finish() % u64::from(self.count)) as u16;
        (0..self.count)
            .map(|i| (start + i) % self.count)
            .find(|s| self.live[usize::from(*s)])
            .unwrap_or(self.index)
    }

    /// A fresh global id of this shard's class that `taken` does not hold.
    fn fresh_id(&mut self, taken: impl Fn(Id) -> bool) -> Id {
        loop {
            let id = self.rng.global_id(self.index, self.count);
            if !taken(id) {
                return id;
            }
        }
    }

    /// Encodes `msg` for `conn` and queues it.
    fn send(&mut self, conn: ConnId, serializer: Serializer, msg: &Message) {
        let mut buf = Vec::with_capacity(64 + msg.payload().map_or(0, Payload::len));
        // Callers fit payloads to the serializer first (`fit`); an encoding error left
        // here means a value JSON cannot carry (a non-finite float in a dictionary), and
        // dropping that one message is the only thing left to do.
        if codec::encode(serializer, msg, &mut buf).is_ok() {
            self.out.push_back(Output::Send {
                conn,
                bytes: Bytes::from(buf),
            });
        }
    }

    fn send_abort(&mut self, conn: ConnId, serializer: Serializer, reason: &str, message: &str) {
        let msg = Message::Abort(crate::message::Abort {
            details: crate::message::Dict::new().with("message", message),
            reason: reason.to_owned(),
        });
        self.send(conn, serializer, &msg);
    }
}

/// The largest id of shard `index`'s class (`id % count == index`): the router's own
/// caller id. Derived rather than drawn, so the shard's random sequence is unchanged.
fn router_caller_id(index: u16, count: u16) -> Id {
    const MAX: u64 = 1 << 53;
    let count = u64::from(count.max(1));
    let id = MAX - (MAX - u64::from(index)) % count;
    // `id` lies in (MAX - count, MAX], far inside [1, 2^53].
    Id::new(id).unwrap_or(Id::MIN)
}

/// `payload` in `to`, transcoded if needed.
fn fit(payload: Payload, to: Serializer) -> Result<Payload, codec::TranscodeError> {
    if payload.is_empty() || payload.serializer() == to {
        Ok(payload)
    } else {
        codec::transcode(&payload, to)
    }
}

/// The matcher's policy for a wire policy. Written against an alias so that it holds
/// whether the message model keeps its own policy type or reuses the matcher's.
fn policy_of(p: Option<WirePolicy>) -> MatchPolicy {
    match p.unwrap_or_default() {
        WirePolicy::Exact => MatchPolicy::Exact,
        WirePolicy::Prefix => MatchPolicy::Prefix,
        WirePolicy::Wildcard => MatchPolicy::Wildcard,
    }
}

/// A set of shards still to hear from, plus the id the change carries.
#[derive(Debug)]
struct Wait {
    shards: Vec<u16>,
    id: Option<Id>,
    /// Shards already heard from (acknowledged, or gone): never waited for again.
    heard: Vec<u16>,
}

impl Wait {
    fn new(shards: Vec<u16>) -> Self {
        Self {
            shards,
            id: None,
            heard: Vec::new(),
        }
    }

    /// Counts `from`'s acknowledgement; true when nothing is left to wait for.
    fn ack(&mut self, from: u16, id: Option<Id>) -> bool {
        self.shards.retain(|s| *s != from);
        if !self.heard.contains(&from) {
            self.heard.push(from);
        }
        if id.is_some() {
            self.id = id;
        }
        self.shards.is_empty() && self.id.is_some()
    }

    /// Also waits for `shards` not heard from yet.
    fn widen(&mut self, shards: &[u16]) {
        for s in shards {
            if !self.heard.contains(s) && !self.shards.contains(s) {
                self.shards.push(*s);
            }
        }
    }
}

#[cfg(test)]
mod tests;
