//! Router configuration as the shard sees it: realms, roles, permissions and limits.
//!
//! These types are the already-checked form of the node configuration (the io crate parses
//! Crossbar-compatible JSON into them). Every shard of a router gets the same
//! [`RouterConfig`] behind an `Arc`, so a realm is named across shards by its index in
//! [`RouterConfig::realms`]. Nothing here reads files or validates JSON.

use std::sync::Arc;

use crate::uri::MatchPolicy;

/// What one shard needs to start.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// This shard's index, in `0..count`.
    pub index: u16,
    /// How many shards the router has.
    pub count: u16,
    /// The seed of the shard's random source (ids, the `random` invocation policy).
    pub seed: u64,
    /// The router-wide configuration, the same for every shard.
    pub router: Arc<RouterConfig>,
}

/// The router-wide configuration.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// The realms sessions may join. Realms share nothing.
    pub realms: Vec<RealmConfig>,
    /// The bounds on everything a peer can grow.
    pub limits: Limits,
}

impl Default for RouterConfig {
    /// Crossbar's starter configuration: realm `realm1` with an `anonymous` role allowed
    /// everything.
    fn default() -> Self {
        Self {
            realms: vec![RealmConfig::open("realm1")],
            limits: Limits::default(),
        }
    }
}

/// One realm.
#[derive(Clone, Debug)]
pub struct RealmConfig {
    /// The realm's URI, as HELLO names it.
    pub name: String,
    /// The roles sessions of this realm can have; a session whose authrole is not listed
    /// joins but may do nothing (Crossbar's behaviour).
    pub roles: Vec<RoleConfig>,
    /// Which topics keep an event history for `wamp.subscription.get_events`, and how long.
    pub history: Vec<HistoryConfig>,
}

impl RealmConfig {
    /// A realm whose `anonymous` role may do everything, disclosing nothing.
    pub fn open(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            roles: vec![RoleConfig {
                name: "anonymous".to_owned(),
                permissions: vec![Permission::all("", MatchPolicy::Prefix)],
            }],
            history: Vec::new(),
        }
    }
}

/// Event history kept for one topic (exact URI).
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// The topic.
    pub topic: String,
    /// How many events to keep (capped by [`Limits::history_length`]).
    pub limit: usize,
}

/// One role of a realm.
#[derive(Clone, Debug)]
pub struct RoleConfig {
    /// The role's name (the session's `authrole`).
    pub name: String,
    /// What the role may do, per URI pattern; the best match (as for registrations) decides.
    pub permissions: Vec<Permission>,
}

/// What a role may do on URIs matching one pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The URI pattern.
    pub uri: String,
    /// How `uri` matches.
    pub policy: MatchPolicy,
    /// Whether CALL is allowed.
    pub call: bool,
    /// Whether REGISTER is allowed.
    pub register: bool,
    /// Whether PUBLISH is allowed.
    pub publish: bool,
    /// Whether SUBSCRIBE is allowed.
    pub subscribe: bool,
    /// Whether callees see the caller's identity (Crossbar: decided only here).
    pub disclose_caller: bool,
    /// Whether subscribers see the publisher's identity (Crossbar: decided only here).
    pub disclose_publisher: bool,
}

impl Permission {
    /// Everything allowed on `uri`, nothing disclosed.
    pub fn all(uri: &str, policy: MatchPolicy) -> Self {
        Self {
            uri: uri.to_owned(),
            policy,
            call: true,
            register: true,
            publish: true,
            subscribe: true,
            disclose_caller: false,
            disclose_publisher: false,
        }
    }
}

/// Named bounds on everything a peer can make the router hold. Exceeding one gives a WAMP
/// error (or an ABORT for sessions), never unbounded growth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sessions (connections, joined or not) per shard; past it a HELLO gets ABORT
    /// `wamp.error.system_shutdown`-style refusal `wamp.error.limit_exceeded`.
    pub sessions_per_shard: usize,
    /// Subscriptions one session may hold.
    pub subscriptions_per_session: usize,
    /// Registrations one session may hold.
    pub registrations_per_session: usize,
    /// Calls one session may have pending as caller.
    pub pending_calls_per_session: usize,
    /// Invocations one session may have pending as callee; past it calls get
    /// `wamp.error.limit_exceeded` instead of queueing at the callee.
    pub pending_invocations_per_session: usize,
    /// Requests this shard may have waiting on other shards at once: control-plane requests
    /// (subscribe, register, meta queries) in all, and calls whose callee lives on another
    /// shard, per such shard (the data plane's in-flight bound: a shard that stops
    /// answering cannot make its peers hold unbounded call state). Past it the request or
    /// CALL gets `wamp.error.limit_exceeded`.
    pub in_flight_peer_requests: usize,
    /// The largest payload (`args` + `kwargs` bytes) a message may carry.
    pub message_size: usize,
    /// The most events a topic's history may keep, whatever the realm configuration says.
    pub history_length: usize,
    /// The most topics with a retained event per realm.
    pub retained_topics: usize,
    /// The most testaments one session may add.
    pub testaments_per_session: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions_per_shard: 20_000,
            subscriptions_per_session: 1024,
            registrations_per_session: 1024,
            pending_calls_per_session: 1024,
            pending_invocations_per_session: 4096,
            in_flight_peer_requests: 65_536,
            message_size: 16 << 20,
            history_length: 1000,
            retained_topics: 100_000,
            testaments_per_session: 64,
        }
    }
}
