//! The node configuration: Crossbar.io's `config.json` (version 2), checked and typed.
//!
//! A user brings an existing Crossbar configuration and it runs, or [`check_str`] names,
//! by JSON path, each key Switchyard does not implement (`workers[0].transports[1].
//! endpoint.tls.dhparam: not supported by Switchyard`) and each invalid value with the
//! reason. A feature a user asked for is never silently missing: the parser reads every
//! object through a walker that reports each key it did not read. Keys that change nothing
//! observable here (a worker `id`, `debug`, `cache` on a permission, WebSocket options that
//! only tune Autobahn's own implementation) are accepted and listed as *ignored*, which is a
//! warning, not a refusal.
//!
//! What is understood: one `router` worker with `realms` (`roles`, `permissions` with `uri`,
//! `match`, `allow`, `disclose`, `cache`; `store` of type `memory` with `event-history`) and
//! `transports` of type `websocket`, `rawsocket`, `universal`, `web` (only `websocket` path
//! services) and `websocket.testee`, on `tcp` or `unix` endpoints, with `auth` sections of
//! static `anonymous`, `ticket`, `wampcra`, `cryptosign` and `scram` principals (secrets
//! may be `${VAR}`/`$VAR` environment references). The router worker's `options` also take
//! Switchyard's own `cores` (threads, one shard each, per worker process), `workers` (router
//! worker processes) and `auth` (authentication deadline and failure throttle), and the
//! WebSocket and RawSocket `options` take Switchyard's own `max_outbound_bytes` (the
//! slow-consumer bound per connection, [`DEFAULT_MAX_OUTBOUND_BYTES`] when absent).
//!
//! What it does not do: read files other than the one it is given, resolve host names, or
//! bind anything. The server turns a [`NodeConfig`] into listeners and shards.

mod parse;
mod walk;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use switchyard_core::codec::Serializer;
pub use switchyard_core::router::AuthConfig;
use switchyard_core::router::RouterConfig;

use crate::ws::conn::Config as WsConnConfig;
use crate::ws::cookie::CookieConfig;
use crate::ws::deflate::DeflateConfig;

/// The embedded configuration used when the node directory has none: realm `realm1`, role
/// `anonymous` allowed everything, WebSocket (path `/ws`) and RawSocket on 127.0.0.1:8080.
pub const DEFAULT_JSON: &str = include_str!("default.json");

/// The outbound bytes one connection may have queued (`max_outbound_bytes`) when its
/// transport's options set none: past it the connection is dropped as a slow consumer.
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 16 << 20;

/// How long a restarted worker's shard waits for another shard's state by default.
pub const DEFAULT_REJOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The bytes waiting for one stalled shard by default before it is treated as down.
pub const DEFAULT_LINK_BACKLOG: usize = 256 << 20;

/// A checked node configuration, ready for the server.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Realms, roles, permissions and limits, as every shard gets them.
    pub router: RouterConfig,
    /// The listeners, in configuration order.
    pub transports: Vec<Transport>,
    /// Threads (one shard each) per worker process; `None` means one per available core.
    pub cores: Option<usize>,
    /// Router worker processes under the controller.
    pub workers: usize,
    /// How long a restarted worker's shard waits for another shard's state before the
    /// controller restarts that silent shard's worker (`options.rejoin_timeout`, ms).
    pub rejoin_timeout: Duration,
    /// The bytes waiting for one other shard (on an in-process link or a link to another
    /// worker) past which that shard is treated as stalled (`options.link_backlog`).
    pub link_backlog: usize,
    /// How long each core busy-polls after connection activity before it sleeps (the
    /// router worker's `options.busy_poll_us`; zero, the default, is off).
    pub busy_poll: Duration,
    /// Every WAMP service's `auth` section, in configuration order (services name theirs
    /// by `auth_index`): what the router's [`switchyard_core::router::Configured`]
    /// authenticator serves.
    pub auth: Vec<AuthConfig>,
}

impl NodeConfig {
    /// Makes the relative file paths of the configuration (TLS key and certificate files,
    /// Unix socket paths) relative to the node directory `dir`, as Crossbar reads them.
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        for transport in &mut self.transports {
            match &mut transport.endpoint {
                Endpoint::Tcp(tcp) => {
                    if let Some(tls) = &mut tcp.tls {
                        let files = [&mut tls.key, &mut tls.certificate]
                            .into_iter()
                            .chain(&mut tls.chain_certificates)
                            .chain(&mut tls.ca_certificates);
                        for file in files {
                            *file = dir.join(&*file);
                        }
                    }
                }
                Endpoint::Unix(unix) => unix.path = dir.join(&unix.path),
            }
        }
    }
}

/// One listening transport.
#[derive(Clone, Debug)]
pub struct Transport {
    /// Where the configuration put it, e.g. `workers[0].transports[1]`, for log lines.
    pub path: String,
    /// The Crossbar transport type it was configured as.
    pub kind: TransportKind,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// The RawSocket service, if connections starting with 0x7F are accepted.
    pub rawsocket: Option<RawSocketService>,
    /// The WebSocket services, if HTTP upgrade requests are accepted.
    pub websocket: WebSocketRoutes,
}

/// The Crossbar transport types Switchyard serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// `rawsocket`: RawSocket only.
    RawSocket,
    /// `universal`: RawSocket and WebSocket (by path) on one port.
    Universal,
    /// `web`: WebSocket path services.
    Web,
    /// `websocket`: WebSocket on any path.
    WebSocket,
    /// `websocket.testee`: the WebSocket echo endpoint for the Autobahn|Testsuite.
    WebSocketTestee,
}

/// Where a transport listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP port.
    Tcp(TcpEndpoint),
    /// A Unix domain socket.
    Unix(UnixEndpoint),
}

/// A TCP listening endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpEndpoint {
    /// The address bound (`interface` and `port`).
    pub addr: SocketAddr,
    /// The listen backlog.
    pub backlog: u32,
    /// TLS, if configured.
    pub tls: Option<TlsConfig>,
}

/// A Unix-socket listening endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixEndpoint {
    /// The socket's path.
    pub path: PathBuf,
    /// The listen backlog.
    pub backlog: u32,
}

/// TLS on a listening endpoint (`endpoint.tls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The private key file (PEM).
    pub key: PathBuf,
    /// The certificate chain file (PEM).
    pub certificate: PathBuf,
    /// Further certificates sent after `certificate` to complete the chain (PEM files).
    pub chain_certificates: Vec<PathBuf>,
    /// CA certificates to verify client certificates with; non-empty asks clients for one.
    pub ca_certificates: Vec<PathBuf>,
}

/// The WebSocket side of a transport.
// One per transport, built once at start: the size of the inline variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default)]
pub enum WebSocketRoutes {
    /// No WebSocket on this transport.
    #[default]
    None,
    /// One service answers every request path (a `websocket` transport).
    Any(WebSocketService),
    /// Services by exact request path, e.g. `/ws` (`web` and `universal` transports).
    Paths(Vec<(String, WebSocketService)>),
}

/// One WAMP-over-WebSocket service (or the echo endpoint).
#[derive(Clone, Debug)]
pub struct WebSocketService {
    /// `true` for `websocket.testee`: echo, no WAMP.
    pub testee: bool,
    /// The serializers offered, in order of preference.
    pub serializers: Vec<Serializer>,
    /// Frame and message limits and keep-alive.
    pub conn: WsConnConfig,
    /// How long a client has to complete the opening handshake.
    pub opening_timeout: Duration,
    /// permessage-deflate, if enabled.
    pub deflate: Option<DeflateConfig>,
    /// The outbound bytes a connection may have queued before it is dropped as a slow
    /// consumer (Switchyard's own `options.max_outbound_bytes`).
    pub max_outbound_bytes: usize,
    /// Authentication (absent in the configuration: anonymous with role `anonymous`).
    pub auth: Box<AuthConfig>,
    /// The index of `auth` in [`NodeConfig::auth`], which the connection passes to the
    /// router as [`switchyard_core::router::TransportInfo::auth`].
    pub auth_index: usize,
    /// Cookie tracking (`cookie`), if enabled.
    pub cookie: Option<CookieConfig>,
}

/// One WAMP-over-RawSocket service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSocketService {
    /// The serializers accepted.
    pub serializers: Vec<Serializer>,
    /// The largest message received.
    pub max_message_size: usize,
    /// The outbound bytes a connection may have queued before it is dropped as a slow
    /// consumer (Switchyard's own `options.max_outbound_bytes`).
    pub max_outbound_bytes: usize,
    /// Keep-alive: how long a connection may stay silent before the router sends PING
    /// (`options.auto_ping_interval`, milliseconds as for WebSocket); `None` never pings.
    pub ping_interval: Option<Duration>,
    /// Keep-alive: how long the router waits for the PONG before dropping the connection
    /// (`options.auto_ping_timeout`).
    pub ping_timeout: Duration,
    /// Authentication (absent in the configuration: anonymous with role `anonymous`).
    pub auth: Box<AuthConfig>,
    /// The index of `auth` in [`NodeConfig::auth`].
    pub auth_index: usize,
}

/// The outcome of checking a configuration: the configuration if nothing refuses it, and
/// every problem found (warnings included), in document order.
#[derive(Debug)]
pub struct Checked {
    /// `Some` exactly when no problem is an error.
    pub config: Option<NodeConfig>,
    /// Everything worth telling the user, one line each.
    pub problems: Vec<Problem>,
}

impl Checked {
    /// The problems that refuse the configuration.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    /// The problems that are only warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.is_error())
    }
}

/// One thing `check` has to say about one place in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The JSON path, e.g. `workers[0].transports[1].endpoint.port` (`$` for the root).
    pub path: String,
    /// What is wrong there.
    pub kind: ProblemKind,
}

/// What is wrong at one place of the configuration: one variant per rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file is not JSON.
    Syntax(String),
    /// A mandatory key is absent.
    Missing,
    /// The value has the wrong JSON type.
    WrongType {
        /// What was expected, e.g. `an integer`.
        expected: &'static str,
    },
    /// A number outside its allowed range.
    OutOfRange {
        /// The value as written.
        value: String,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A value of the right type that is not allowed, with the reason.
    Invalid(String),
    /// The same name (realm, role, listening address) is given twice.
    Duplicate(String),
    /// A key or value whose feature Switchyard does not implement (or not yet): the
    /// configuration is refused rather than run without it.
    Unsupported(String),
    /// A key accepted without effect, with the reason; only a warning.
    Ignored(String),
}

impl Problem {
    /// Whether the problem refuses the configuration (all but [`ProblemKind::Ignored`]).
    pub fn is_error(&self) -> bool {
        !matches!(self.kind, ProblemKind::Ignored(_))
    }
}

impl fmt::Display for Problem {
    /// `path: reason`, the line `check` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) => write!(f, "not valid JSON: {e}"),
            Self::Missing => f.write_str("missing mandatory key"),
            Self::WrongType { expected } => write!(f, "must be {expected}"),
            Self::OutOfRange { value, min, max } => {
                write!(f, "{value} is out of range (must be from {min} to {max})")
            }
            Self::Invalid(reason) => f.write_str(reason),
            Self::Duplicate(what) => write!(f, "duplicate {what}"),
            Self::Unsupported(reason) => f.write_str(reason),
            Self::Ignored(reason) => write!(f, "ignored: {reason}"),
        }
    }
}

/// Checks a configuration given as JSON text.
pub fn check_str(text: &str) -> Checked {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => check_value(&value),
        Err(e) => Checked {
            config: None,
            problems: vec![Problem {
                path: "$".to_owned(),
                kind: ProblemKind::Syntax(e.to_string()),
            }],
        },
    }
}

/// Checks a configuration given as a parsed JSON document.
pub fn check_value(value: &serde_json::Value) -> Checked {
    parse::node(value)
}

/// The embedded default configuration ([`DEFAULT_JSON`]), checked.
pub fn default_config() -> NodeConfig {
    // The embedded text is fixed at build time and a unit test checks it parses without
    // problems, so the fallback below is unreachable in a tested build; it still gives a
    // usable node rather than a panic.
    check_str(DEFAULT_JSON)
        .config
        .unwrap_or_else(|| NodeConfig {
            router: RouterConfig::default(),
            transports: Vec::new(),
            cores: None,
            workers: 1,
            rejoin_timeout: DEFAULT_REJOIN_TIMEOUT,
            link_backlog: DEFAULT_LINK_BACKLOG,
            busy_poll: Duration::ZERO,
            auth: Vec::new(),
        })
}

/// The address an `interface` string names: an IP literal or `localhost`. Host names are
/// not resolved, because a listener bound to whatever DNS said at start is a surprise.
fn interface_addr(interface: &str) -> Option<IpAddr> {
    match interface {
        "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_has_no_problems() {
        let checked = check_str(DEFAULT_JSON);
        assert_eq!(checked.problems, Vec::new());
        assert!(checked.config.is_some());
    }
}
