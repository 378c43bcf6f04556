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
    /// is refused at join with ABORT `wamp.error.no_such_role` (Crossbar's behaviour).
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
                authorizer: None,
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
    /// A dynamic authorizer (Crossbar's `authorizer`): the procedure, registered by a
    /// component in the same realm, that decides each action of the role's sessions in
    /// place of `permissions`.
    pub authorizer: Option<String>,
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
    /// How long authentication may take and how repeated failures are slowed down.
    pub auth: AuthLimits,
    /// Calls the router itself may have in flight per shard (dynamic authenticator and
    /// authorizer calls); past it the authentication or the action is denied.
    pub router_calls: usize,
    /// How long the router waits for a dynamic authenticator or authorizer, in ms; no
    /// answer by then denies.
    pub router_call_timeout_ms: u64,
    /// Messages a session may send while its dynamic authorizer decides an earlier one
    /// (they wait, in order); past it the session is aborted with
    /// `wamp.error.limit_exceeded`.
    pub held_messages_per_session: usize,
    /// Authorizer decisions cached per session (`cache: true` answers); past it the
    /// session's cache starts over.
    pub authorization_cache_per_session: usize,
    /// Tracking cookies bound to principals, per shard (cookie authentication); past it
    /// expired bindings go, then the oldest.
    pub cookie_bindings: usize,
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
            auth: AuthLimits::default(),
            router_calls: 4096,
            router_call_timeout_ms: 10_000,
            held_messages_per_session: 1024,
            authorization_cache_per_session: 1024,
            cookie_bindings: 100_000,
        }
    }
}

/// The session-side bounds of authentication: the time a session has from HELLO to
/// WELCOME, and the per-address throttle of failed attempts.
///
/// The throttle: every failed authentication from one peer address (IP, without the port)
/// counts against that address. The first `free_failures` failures are answered at once;
/// each later one is answered (ABORT) only after `failure_delay_ms`, doubled per further
/// failure up to `max_failure_delay_ms`. An address with no failure for `forget_ms` starts
/// over, and a success clears it. Each shard keeps its own table of at most
/// `throttled_addresses` addresses (the oldest is dropped when full), so with `n` cores an
/// address may get up to `n` times the free failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthLimits {
    /// Milliseconds from HELLO to WELCOME (including an unanswered CHALLENGE); past it the
    /// session is aborted with `wamp.error.authentication_failed`.
    pub timeout_ms: u64,
    /// Failures per address answered without delay.
    pub free_failures: u32,
    /// The delay before answering the first failure past the free ones, in milliseconds.
    pub failure_delay_ms: u64,
    /// The longest delay, in milliseconds.
    pub max_failure_delay_ms: u64,
    /// Milliseconds without a failure after which an address is forgotten.
    pub forget_ms: u64,
    /// The most addresses one shard remembers.
    pub throttled_addresses: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            free_failures: 3,
            failure_delay_ms: 500,
            max_failure_delay_ms: 8_000,
            forget_ms: 60_000,
            throttled_addresses: 4096,
        }
    }
}

/// A transport's authentication methods, in Crossbar's shape (the transport's `auth`
/// section). A method that is `None` is not offered on the transport.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// `anonymous`: everyone joins with this role.
    pub anonymous: Option<AnonymousConfig>,
    /// `ticket`: static principals with a shared ticket.
    pub ticket: Option<Principals<TicketSecret>>,
    /// `wampcra`: static principals with a (possibly PBKDF2-derived) secret.
    pub wampcra: Option<Principals<WampCraSecret>>,
    /// `cryptosign`: static principals with their Ed25519 public keys.
    pub cryptosign: Option<Principals<CryptosignKeys>>,
    /// `scram` (WAMP-SCRAM, `wamp-scram` on the wire too): static principals with their
    /// SCRAM credentials.
    pub scram: Option<Principals<ScramSecret>>,
    /// `anonymous` with `"type": "dynamic"`: the authenticator procedure decides.
    pub anonymous_dynamic: Option<super::DynamicConfig>,
    /// `ticket` with `"type": "dynamic"`: the authenticator procedure decides.
    pub ticket_dynamic: Option<super::DynamicConfig>,
    /// `wampcra` with `"type": "dynamic"`: the authenticator procedure returns the
    /// principal with its `secret` (and `salt`, `iterations`, `keylen`); the router then
    /// challenges the client with it.
    pub wampcra_dynamic: Option<super::DynamicConfig>,
    /// `cryptosign` with `"type": "dynamic"`: the authenticator procedure returns the
    /// principal with its `pubkey`; the router then challenges the client to sign.
    pub cryptosign_dynamic: Option<super::DynamicConfig>,
    /// `scram` (or `wamp-scram`) with `"type": "dynamic"`: the authenticator procedure
    /// returns the principal with its SCRAM credential (`kdf`, `iterations`, `memory`,
    /// `salt`, `stored-key`, `server-key`); the router then challenges the client with it.
    pub scram_dynamic: Option<super::DynamicConfig>,
    /// `tls`: static principals identified by their client certificate's SHA-1
    /// fingerprint (`certificate-sha1`).
    pub tls: Option<Principals<TlsCertificate>>,
    /// `tls` with `"type": "dynamic"`: the authenticator procedure decides, given the
    /// verified client certificate in `details.transport.client_cert`.
    pub tls_dynamic: Option<super::DynamicConfig>,
    /// `cookie`: a connection whose tracking cookie is bound joins as its principal.
    pub cookie: bool,
}

impl AuthConfig {
    /// Only `anonymous`, with role `anonymous`: Crossbar's behaviour without `auth`.
    pub fn anonymous() -> Self {
        Self {
            anonymous: Some(AnonymousConfig {
                role: "anonymous".to_owned(),
            }),
            ..Self::default()
        }
    }
}

/// `auth.anonymous`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnonymousConfig {
    /// The role anonymous sessions get.
    pub role: String,
}

/// Static principals of one method, by authid.
pub type Principals<S> = std::collections::BTreeMap<String, Principal<S>>;

/// One configured principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal<S> {
    /// The role the principal gets.
    pub role: String,
    /// The only realm the principal may join, if restricted.
    pub realm: Option<String>,
    /// What proves the principal's identity.
    pub secret: S,
}

/// A ticket principal's ticket.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketSecret {
    /// The ticket, compared in constant time.
    pub ticket: String,
}

impl std::fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs, not even through `{:?}`.
        f.write_str("TicketSecret(..)")
    }
}

/// A WAMP-CRA principal's secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WampCraSecret {
    /// The HMAC key: the password, or (salted) the base64 PBKDF2 key derived from it, as
    /// Crossbar stores it.
    pub secret: String,
    /// The key derivation parameters announced in the CHALLENGE, if the secret is salted.
    pub salt: Option<CraSalt>,
}

impl std::fmt::Debug for WampCraSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WampCraSecret")
            .field("secret", &"..")
            .field("salt", &self.salt)
            .finish()
    }
}

/// PBKDF2-HMAC-SHA256 parameters of a salted WAMP-CRA secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CraSalt {
    /// The salt, as text (Crossbar's `salt`).
    pub salt: String,
    /// PBKDF2 iterations (default 1000).
    pub iterations: u32,
    /// The derived key length in bytes (default 32).
    pub keylen: u32,
}

/// A cryptosign principal's Ed25519 public keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptosignKeys {
    /// `authorized_keys`: any of them may sign.
    pub authorized_keys: Vec<[u8; 32]>,
}

/// A `tls` principal's client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCertificate {
    /// The SHA-1 fingerprint of the certificate's DER bytes: 20 bytes (Crossbar's
    /// `certificate-sha1`, configured as hex with or without colons).
    pub sha1: [u8; 20],
}

/// The key derivation function of a SCRAM credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScramKdf {
    /// Argon2id version 1.3 (`argon2id13`, Autobahn's `argon2id-13`).
    Argon2id13,
    /// PBKDF2-HMAC-SHA256 (`pbkdf2`).
    Pbkdf2,
}

/// A SCRAM principal's credential, as `autobahn.wamp.auth.derive_scram_credential` prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// The KDF, and its name as configured (announced verbatim in the CHALLENGE).
    pub kdf: ScramKdf,
    /// The KDF name as configured.
    pub kdf_name: String,
    /// KDF iterations (Argon2 time cost).
    pub iterations: u32,
    /// Argon2 memory cost in KiB (unused for PBKDF2).
    pub memory: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `StoredKey = SHA256(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSecret")
            .field("kdf", &self.kdf)
            .field("iterations", &self.iterations)
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}
