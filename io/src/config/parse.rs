//! Crossbar's node configuration schema, walked key by key into a [`NodeConfig`].
//!
//! Each function reads one kind of object; every key it does not read is judged at the end
//! (see `walk`), so a key Switchyard does not implement is reported, never dropped. The
//! judgements follow Crossbar 26.10 (`crossbar/common/checkconfig.py`): a key Crossbar
//! knows whose effect Switchyard lacks is *unsupported* (refused); a key that only tunes
//! something Switchyard does one fixed way is *ignored* (a warning). What this does not do:
//! check that files (TLS keys) exist or that ports are free; the server does that at start.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use switchyard_core::codec::Serializer;
use switchyard_core::router::{
    AnonymousConfig, AuthLimits, CraSalt, CryptosignKeys, DynamicConfig, HistoryConfig, Limits,
    Permission, Principal, Principals, RealmConfig, RoleConfig, RouterConfig, ScramKdf,
    ScramSecret, TicketSecret, TlsCertificate, WampCraSecret,
};
use switchyard_core::uri::{validate_pattern, validate_uri, MatchPolicy, UriCheck};

use super::walk::{none_known, Field, Leftover, Obj, Walk, NOT_SUPPORTED};
use super::{
    interface_addr, AuthConfig, Checked, Endpoint, NodeConfig, ProblemKind, RawSocketService,
    TcpEndpoint, TlsConfig, Transport, TransportKind, UnixEndpoint, WebSocketRoutes,
    WebSocketService, DEFAULT_LINK_BACKLOG, DEFAULT_MAX_OUTBOUND_BYTES, DEFAULT_REJOIN_TIMEOUT,
};
use crate::ws::conn::Config as WsConnConfig;
use crate::ws::cookie::CookieConfig;
use crate::ws::deflate::DeflateConfig;

/// The largest `max_message_size` Crossbar accepts (64 MiB).
const MAX_MESSAGE_SIZE: u64 = 64 << 20;
/// The opening-handshake deadline when none is configured (Crossbar's starter uses 2.5 s).
const DEFAULT_OPENING_TIMEOUT: Duration = Duration::from_secs(5);
/// The listen backlog when none is configured; the kernel caps it at `somaxconn`.
const DEFAULT_BACKLOG: u32 = 1024;
/// RawSocket frames carry at most 2^24 bytes, whatever a configuration asks for.
const RAWSOCKET_MAX: usize = 16 << 20;
/// The smallest message size RawSocket can announce.
const RAWSOCKET_MIN: usize = 512;
/// The bounds of `max_outbound_bytes`: below 64 KiB ordinary bursts would drop healthy
/// connections, and above 1 GiB one connection could hold most of a node's memory.
const MIN_OUTBOUND_BYTES: u64 = 64 << 10;
const MAX_OUTBOUND_BYTES: u64 = 1 << 30;
/// How long a RawSocket keep-alive PING waits for its PONG unless configured (the
/// WebSocket default).
const RAWSOCKET_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Walks a whole node configuration.
pub(super) fn node(root: &Value) -> Checked {
    let mut walk = Walk::default();
    let root_path = String::new();
    let config = node_inner(&mut walk, Field::new(root, &root_path));
    let config = if walk.has_errors() { None } else { config };
    Checked {
        config,
        problems: walk.problems,
    }
}

fn node_inner(w: &mut Walk, field: Field<'_>) -> Option<NodeConfig> {
    let mut obj = w.obj(field)?;
    match obj.take("version") {
        Some((path, value)) if value.as_u64() == Some(2) => drop(path),
        Some((path, _)) => w.invalid(
            &path,
            "only version 2 is supported (`crossbar upgrade` converts older files)",
        ),
        None => w.invalid(
            &obj.key_path("version"),
            "missing: version 1 configurations are not supported (`crossbar upgrade` converts them)",
        ),
    }
    if let Some((path, value)) = obj.take("controller") {
        controller(w, Field::new(value, &path));
    }
    let mut found = None;
    if let Some((path, value)) = obj.need(w, "workers") {
        for (item_path, item) in w.list(Field::new(value, &path)).unwrap_or_default() {
            let worker = worker(w, Field::new(item, &item_path), found.is_some());
            if found.is_none() {
                found = worker;
            }
        }
        let routers = value.as_array().map_or(0, |items| {
            items.iter().filter(|i| i["type"] == "router").count()
        });
        if routers == 0 {
            w.invalid(
                &path,
                "no worker of type `router`: there is nothing to serve",
            );
        }
    }
    obj.finish(w, |key| match key {
        "$schema" => Leftover::Ignored("a schema reference for editors"),
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
    found
}

/// Crossbar's controller section: Switchyard's controller has nothing to configure.
fn controller(w: &mut Walk, field: Field<'_>) {
    let Some(obj) = w.obj(field) else { return };
    obj.finish(w, |key| match key {
        "id" => Leftover::Ignored("the node id names the node in Crossbar's management API"),
        _ => Leftover::Ignored("the controller section is not used by Switchyard"),
    });
}

/// One worker; only the first `router` worker is served.
fn worker(w: &mut Walk, field: Field<'_>, have_router: bool) -> Option<NodeConfig> {
    let mut obj = w.obj(field)?;
    let (type_path, type_value) = obj.need(w, "type")?;
    let kind = w.str(Field::new(type_value, &type_path))?;
    match kind {
        "router" if have_router => {
            w.unsupported(
                obj.path(),
                "a second router worker (Switchyard serves one router per node; \
                 `options.workers` sets its number of processes)",
            );
            return None;
        }
        "router" => {}
        "container" | "guest" | "websocket-testee" | "proxy" | "xbrmm" | "marketplace" => {
            w.unsupported(&type_path, format!("worker type `{kind}` is not supported"));
            return None;
        }
        other => {
            w.invalid(&type_path, format!("unknown worker type `{other}`"));
            return None;
        }
    }
    obj.take("id");

    let mut cores = None;
    let mut workers = 1;
    let mut rejoin_timeout = DEFAULT_REJOIN_TIMEOUT;
    let mut link_backlog = DEFAULT_LINK_BACKLOG;
    let mut busy_poll = Duration::ZERO;
    let mut auth_limits = AuthLimits::default();
    let mut limits = Limits::default();
    if let Some((path, value)) = obj.take("options") {
        if let Some(mut options) = w.obj(Field::new(value, &path)) {
            if let Some((p, v)) = options.take("cores") {
                cores = w.int(Field::new(v, &p), 1, 1024).map(|n| n as usize);
            }
            if let Some((p, v)) = options.take("auth") {
                auth_limits = auth_options(w, Field::new(v, &p));
            }
            if let Some((p, v)) = options.take("workers") {
                workers = w.int(Field::new(v, &p), 1, 256).map_or(1, |n| n as usize);
            }
            // Switchyard's own: how long a restarted worker's shard waits for the state of
            // the others before the controller restarts the silent one (milliseconds).
            if let Some((p, v)) = options.take("rejoin_timeout") {
                if let Some(ms) = w.int(Field::new(v, &p), 100, 3_600_000) {
                    rejoin_timeout = Duration::from_millis(ms);
                }
            }
            // Switchyard's own: the bytes waiting for one stalled shard before it is treated
            // as down (and its worker restarted).
            if let Some((p, v)) = options.take("link_backlog") {
                if let Some(bytes) = w.int(Field::new(v, &p), 64 << 10, 1 << 30) {
                    link_backlog = usize::try_from(bytes).unwrap_or(usize::MAX);
                }
            }
            // Switchyard's own: how long a dynamic authenticator or authorizer may take.
            if let Some((p, v)) = options.take("dynamic_auth_timeout") {
                if let Some(ms) = w.int(Field::new(v, &p), 1, 3_600_000) {
                    limits.router_call_timeout_ms = ms;
                }
            }
            // Switchyard's own: microseconds a core busy-polls after activity (0: off).
            if let Some((p, v)) = options.take("busy_poll_us") {
                if let Some(us) = w.int(Field::new(v, &p), 0, 1_000_000) {
                    busy_poll = Duration::from_micros(us);
                }
            }
            options.take("title");
            options.finish(w, |key| match key {
                "reactor" => Leftover::Ignored("Switchyard runs on io_uring, not Twisted"),
                "python" | "pythonpath" => Leftover::Ignored("Switchyard runs no Python"),
                _ => Leftover::Unsupported(NOT_SUPPORTED),
            });
        }
    }

    let mut realms = Vec::new();
    if let Some((path, value)) = obj.take("realms") {
        for (item_path, item) in w.list(Field::new(value, &path)).unwrap_or_default() {
            if let Some(r) = realm(w, Field::new(item, &item_path)) {
                if realms.iter().any(|x: &RealmConfig| x.name == r.name) {
                    w.report(
                        &item_path,
                        ProblemKind::Duplicate(format!("realm `{}`", r.name)),
                    );
                } else {
                    realms.push(r);
                }
            }
        }
    }

    let mut transports: Vec<Transport> = Vec::new();
    if let Some((path, value)) = obj.take("transports") {
        for (item_path, item) in w.list(Field::new(value, &path)).unwrap_or_default() {
            if let Some(t) = transport(w, Field::new(item, &item_path)) {
                if let Some(other) = transports.iter().find(|x| x.endpoint == t.endpoint) {
                    w.report(
                        &item_path,
                        ProblemKind::Duplicate(format!("listening endpoint (also {})", other.path)),
                    );
                } else {
                    transports.push(t);
                }
            }
        }
    }

    for key in ["components", "connections"] {
        if let Some((path, value)) = obj.take(key) {
            if value.as_array().is_some_and(Vec::is_empty) {
                continue;
            }
            w.unsupported(
                &path,
                format!("router {key} (application code run inside the router) are not supported"),
            );
        }
    }
    obj.finish(w, none_known);

    // Number the services' `auth` sections so a connection can name its own to the router.
    let mut auth = Vec::new();
    for t in &mut transports {
        let mut number = |config: &AuthConfig, index: &mut usize| {
            *index = auth.len();
            auth.push(config.clone());
        };
        if let Some(r) = &mut t.rawsocket {
            number(&r.auth, &mut r.auth_index);
        }
        match &mut t.websocket {
            WebSocketRoutes::None => {}
            WebSocketRoutes::Any(s) => number(&s.auth, &mut s.auth_index),
            WebSocketRoutes::Paths(paths) => {
                for (_, s) in paths {
                    number(&s.auth, &mut s.auth_index);
                }
            }
        }
    }

    Some(NodeConfig {
        router: RouterConfig {
            realms,
            limits: Limits {
                auth: auth_limits,
                ..limits
            },
        },
        transports,
        cores,
        workers,
        rejoin_timeout,
        link_backlog,
        busy_poll,
        auth,
    })
}

fn realm(w: &mut Walk, field: Field<'_>) -> Option<RealmConfig> {
    let mut obj = w.obj(field)?;
    obj.take("id");
    let name = match obj.need(w, "name") {
        Some((path, value)) => {
            let name = w.str(Field::new(value, &path));
            if let Some(Err(e)) = name.map(|n| validate_uri(n, UriCheck::Loose)) {
                w.invalid(&path, format!("invalid realm name: {e}"));
            }
            name
        }
        None => None,
    };
    let mut roles: Vec<RoleConfig> = Vec::new();
    if let Some((path, value)) = obj.take("roles") {
        for (item_path, item) in w.list(Field::new(value, &path)).unwrap_or_default() {
            if let Some(r) = role(w, Field::new(item, &item_path)) {
                if roles.iter().any(|x| x.name == r.name) {
                    w.report(
                        &item_path,
                        ProblemKind::Duplicate(format!("role `{}`", r.name)),
                    );
                } else {
                    roles.push(r);
                }
            }
        }
    }
    let mut history = Vec::new();
    if let Some((path, value)) = obj.take("store") {
        history = store(w, Field::new(value, &path));
    }
    if let Some((path, value)) = obj.take("options") {
        realm_options(w, Field::new(value, &path));
    }
    obj.finish(w, none_known);
    Some(RealmConfig {
        name: name?.to_owned(),
        roles,
        history,
    })
}

/// A realm store: only the in-memory event history is supported.
fn store(w: &mut Walk, field: Field<'_>) -> Vec<HistoryConfig> {
    let mut out = Vec::new();
    let Some(mut obj) = w.obj(field) else {
        return out;
    };
    if let Some((path, value)) = obj.need(w, "type") {
        match w.str(Field::new(value, &path)) {
            Some("memory") | None => {}
            Some(other) => w.unsupported(
                &path,
                format!("realm store type `{other}` is not supported (only `memory`)"),
            ),
        }
    }
    if let Some((path, value)) = obj.take("event-history") {
        let max = Limits::default().history_length as u64;
        for (item_path, item) in w.list(Field::new(value, &path)).unwrap_or_default() {
            let Some(mut entry) = w.obj(Field::new(item, &item_path)) else {
                continue;
            };
            let topic = entry.need(w, "uri").and_then(|(p, v)| {
                let uri = w.str(Field::new(v, &p))?;
                match validate_uri(uri, UriCheck::Loose) {
                    Ok(()) => Some(uri.to_owned()),
                    Err(e) => {
                        w.invalid(&p, format!("invalid topic URI: {e}"));
                        None
                    }
                }
            });
            let limit = entry
                .need(w, "limit")
                .and_then(|(p, v)| w.int(Field::new(v, &p), 1, max));
            entry.finish(w, none_known);
            if let (Some(topic), Some(limit)) = (topic, limit) {
                out.push(HistoryConfig {
                    topic,
                    limit: limit as usize,
                });
            }
        }
    }
    obj.finish(w, |key| match key {
        "call-queue" => Leftover::Unsupported("call queues are not supported"),
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
    out
}

fn realm_options(w: &mut Walk, field: Field<'_>) {
    let Some(mut obj) = w.obj(field) else { return };
    for (key, supported, why) in [
        ("enable_meta_api", true, "the meta API cannot be disabled"),
        (
            "bridge_meta_api",
            false,
            "bridging the meta API is not supported",
        ),
    ] {
        if let Some((p, v)) = obj.take(key) {
            if w.bool(Field::new(v, &p)).is_some_and(|b| b != supported) {
                w.unsupported(&p, why);
            }
        }
    }
    if let Some((p, v)) = obj.take("uri_check") {
        match w.str(Field::new(v, &p)) {
            Some("loose") | None => {}
            Some("strict") => w.unsupported(&p, "strict URI checking is not yet supported"),
            Some(other) => w.invalid(&p, format!("unknown URI check `{other}` (loose or strict)")),
        }
    }
    obj.finish(w, |key| match key {
        "event_dispatching_chunk_size" => {
            Leftover::Ignored("Switchyard dispatches events without chunking")
        }
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
}

fn role(w: &mut Walk, field: Field<'_>) -> Option<RoleConfig> {
    let mut obj = w.obj(field)?;
    obj.take("id");
    let name = obj
        .need(w, "name")
        .and_then(|(p, v)| w.str(Field::new(v, &p)));
    let mut permissions = Vec::new();
    if let Some((path, value)) = obj.take("permissions") {
        for (item_path, item) in w.list(Field::new(value, &path)).unwrap_or_default() {
            if let Some(p) = permission(w, Field::new(item, &item_path)) {
                permissions.push(p);
            }
        }
    }
    // Crossbar's dynamic authorizer: a procedure URI deciding every action of the role.
    let authorizer = match obj.take("authorizer") {
        Some((p, v)) => {
            let uri = w.str(Field::new(v, &p));
            if let Some(u) = uri {
                if validate_uri(u, UriCheck::Loose).is_err() {
                    w.invalid(&p, format!("`{u}` is not a valid procedure URI"));
                }
            }
            if permissions_given(&permissions) {
                w.invalid(
                    &p,
                    "a role has either `permissions` or an `authorizer`, not both",
                );
            }
            uri.map(str::to_owned)
        }
        None => None,
    };
    obj.finish(w, |_| Leftover::Unsupported(NOT_SUPPORTED));
    Some(RoleConfig {
        name: name?.to_owned(),
        permissions,
        authorizer,
    })
}

/// Whether a role listed permissions (which an authorizer would silently override).
fn permissions_given(permissions: &[Permission]) -> bool {
    !permissions.is_empty()
}

fn permission(w: &mut Walk, field: Field<'_>) -> Option<Permission> {
    let mut obj = w.obj(field)?;
    let uri_field = obj.need(w, "uri");
    let uri = uri_field
        .as_ref()
        .and_then(|(p, v)| w.str(Field::new(v, p)));
    let policy = match obj.take("match") {
        Some((p, v)) => match w.str(Field::new(v, &p)).map(str::parse::<MatchPolicy>) {
            Some(Ok(policy)) => Some(policy),
            Some(Err(e)) => {
                w.invalid(&p, e.to_string());
                None
            }
            None => None,
        },
        None => None,
    };
    // Crossbar's shorthand: without `match`, a trailing `*` makes a prefix permission.
    let (uri, policy) = match (uri, policy) {
        (Some(uri), Some(policy)) => (Some(uri), Some(policy)),
        (Some(uri), None) => match uri.strip_suffix('*') {
            Some(prefix) => (Some(prefix), Some(MatchPolicy::Prefix)),
            None => (Some(uri), Some(MatchPolicy::Exact)),
        },
        (None, policy) => (None, policy),
    };
    if let (Some(uri), Some(policy), Some((path, _))) = (uri, policy, &uri_field) {
        if let Err(e) = validate_pattern(uri, policy, UriCheck::Loose) {
            w.invalid(path, format!("invalid {policy} pattern: {e}"));
        }
    }
    let mut perm = Permission {
        call: false,
        register: false,
        publish: false,
        subscribe: false,
        ..Permission::all(uri.unwrap_or_default(), policy.unwrap_or_default())
    };
    if let Some((path, value)) = obj.take("allow") {
        if let Some(mut allow) = w.obj(Field::new(value, &path)) {
            for (key, slot) in [
                ("call", &mut perm.call),
                ("register", &mut perm.register),
                ("publish", &mut perm.publish),
                ("subscribe", &mut perm.subscribe),
            ] {
                if let Some((p, v)) = allow.take(key) {
                    *slot = w.bool(Field::new(v, &p)).unwrap_or(false);
                }
            }
            allow.finish(w, none_known);
        }
    }
    if let Some((path, value)) = obj.take("disclose") {
        if let Some(mut disclose) = w.obj(Field::new(value, &path)) {
            for (key, slot) in [
                ("caller", &mut perm.disclose_caller),
                ("publisher", &mut perm.disclose_publisher),
            ] {
                if let Some((p, v)) = disclose.take(key) {
                    *slot = w.bool(Field::new(v, &p)).unwrap_or(false);
                }
            }
            disclose.finish(w, none_known);
        }
    }
    // Static permissions are always resolved from memory, so `cache` changes nothing.
    if let Some((p, v)) = obj.take("cache") {
        w.bool(Field::new(v, &p));
    }
    obj.finish(w, |key| match key {
        "validate" => Leftover::Unsupported("payload validation is not supported"),
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
    (uri.is_some() && policy.is_some()).then_some(perm)
}

fn transport(w: &mut Walk, field: Field<'_>) -> Option<Transport> {
    let mut obj = w.obj(field)?;
    obj.take("id");
    let (type_path, type_value) = obj.need(w, "type")?;
    let kind = match w.str(Field::new(type_value, &type_path))? {
        "websocket" => TransportKind::WebSocket,
        "rawsocket" => TransportKind::RawSocket,
        "universal" => TransportKind::Universal,
        "web" => TransportKind::Web,
        "websocket.testee" => TransportKind::WebSocketTestee,
        other @ ("mqtt" | "flashpolicy" | "stream.testee") => {
            w.unsupported(
                &type_path,
                format!("transport type `{other}` is not supported"),
            );
            return None;
        }
        other => {
            w.invalid(&type_path, format!("unknown transport type `{other}`"));
            return None;
        }
    };
    let endpoint = obj
        .need(w, "endpoint")
        .and_then(|(p, v)| endpoint(w, Field::new(v, &p)));
    let mut rawsocket = None;
    let mut websocket = WebSocketRoutes::None;
    match kind {
        TransportKind::WebSocket => {
            websocket = WebSocketRoutes::Any(ws_service(w, &mut obj, false));
        }
        TransportKind::WebSocketTestee => {
            let mut service = ws_service(w, &mut obj, true);
            service.testee = true;
            websocket = WebSocketRoutes::Any(service);
        }
        TransportKind::RawSocket => rawsocket = Some(raw_service(w, &mut obj)),
        TransportKind::Web => {
            let paths = obj
                .need(w, "paths")
                .map(|(p, v)| web_paths(w, Field::new(v, &p)))
                .unwrap_or_default();
            if let Some((p, v)) = obj.take("options") {
                web_options(w, Field::new(v, &p));
            }
            websocket = WebSocketRoutes::Paths(paths);
        }
        TransportKind::Universal => {
            if let Some((p, v)) = obj.take("rawsocket") {
                if let Some(mut raw) = w.obj(Field::new(v, &p)) {
                    rawsocket = Some(raw_service(w, &mut raw));
                    raw.finish(w, none_known);
                }
            }
            let mut paths = Vec::new();
            if let Some((p, v)) = obj.take("websocket") {
                if let Some(mut map) = w.obj(Field::new(v, &p)) {
                    for (key, item_path, item) in map.entries() {
                        if let Some(mut service) = w.obj(Field::new(item, &item_path)) {
                            if let Some((tp, tv)) = service.take("type") {
                                if w.str(Field::new(tv, &tp)).is_some_and(|t| t != "websocket") {
                                    w.invalid(&tp, "a universal transport's `websocket` services must have type `websocket`");
                                }
                            }
                            let s = ws_service(w, &mut service, false);
                            service.finish(w, ws_leftover);
                            paths.push((normalize_path(key), s));
                        }
                    }
                }
            }
            if let Some((p, v)) = obj.take("web") {
                if let Some(mut web) = w.obj(Field::new(v, &p)) {
                    if let Some((pp, pv)) = web.take("paths") {
                        paths.extend(web_paths(w, Field::new(pv, &pp)));
                    }
                    if let Some((op, ov)) = web.take("options") {
                        web_options(w, Field::new(ov, &op));
                    }
                    web.finish(w, none_known);
                }
            }
            if rawsocket.is_none() && paths.is_empty() {
                w.invalid(
                    obj.path(),
                    "a universal transport needs `rawsocket`, `websocket` or `web`",
                );
            }
            websocket = WebSocketRoutes::Paths(paths);
        }
    }
    let path = obj.path().to_owned();
    obj.finish(w, ws_leftover);
    Some(Transport {
        path,
        kind,
        endpoint: endpoint?,
        rawsocket,
        websocket,
    })
}

/// Leftover keys of a transport or WebSocket service object.
fn ws_leftover(key: &str) -> Leftover {
    match key {
        "debug" => Leftover::Ignored("per-transport debug logging; use --loglevel"),
        "url" => Leftover::Ignored("the URL is only informational here"),
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    }
}

/// A WebSocket service's `cookie` (Crossbar's cookie tracking): `name`, `length`,
/// `max_age` (seconds) as Crossbar checks them; `store` is accepted and not used.
fn cookie(w: &mut Walk, field: Field<'_>) -> Option<CookieConfig> {
    let mut obj = w.obj(field)?;
    let mut config = CookieConfig::default();
    if let Some((p, v)) = obj.take("name") {
        if let Some(name) = w.str(Field::new(v, &p)) {
            let mut chars = name.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && name.len() >= 2
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if ok {
                name.clone_into(&mut config.name);
            } else {
                w.invalid(
                    &p,
                    format!("invalid cookie name `{name}` (^[a-z][a-z0-9_]+$)"),
                );
            }
        }
    }
    if let Some((p, v)) = obj.take("length") {
        if let Some(n) = w.int(Field::new(v, &p), 6, 64) {
            config.length = n as usize;
        }
    }
    if let Some((p, v)) = obj.take("max_age") {
        if let Some(n) = w.int(Field::new(v, &p), 1, 86_400 * 360 * 10) {
            config.max_age = n;
        }
    }
    obj.finish(w, |key| match key {
        "store" => {
            Leftover::Ignored("cookies are signed tokens bound by the router; no store is kept")
        }
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
    Some(config)
}

/// Crossbar names web paths relative to the root (`ws`, `/`); requests carry absolute ones.
fn normalize_path(key: &str) -> String {
    if key.starts_with('/') {
        key.to_owned()
    } else {
        format!("/{key}")
    }
}

/// A web transport's `paths`: only WebSocket services are served.
fn web_paths(w: &mut Walk, field: Field<'_>) -> Vec<(String, WebSocketService)> {
    let mut out = Vec::new();
    let Some(mut map) = w.obj(field) else {
        return out;
    };
    for (key, item_path, item) in map.entries() {
        let Some(mut service) = w.obj(Field::new(item, &item_path)) else {
            continue;
        };
        let Some((tp, tv)) = service.need(w, "type") else {
            continue;
        };
        match w.str(Field::new(tv, &tp)) {
            Some("websocket") => {
                let s = ws_service(w, &mut service, false);
                service.finish(w, ws_leftover);
                out.push((normalize_path(key), s));
            }
            Some(
                other @ ("none"
                | "path"
                | "redirect"
                | "resource"
                | "reverseproxy"
                | "nodeinfo"
                | "json"
                | "cgi"
                | "wsgi"
                | "static"
                | "websocket-reverseproxy"
                | "longpoll"
                | "caller"
                | "publisher"
                | "webhook"
                | "archive"
                | "wap"
                | "catalog"
                | "upload"
                | "schemadoc"),
            ) => {
                w.unsupported(
                    &tp,
                    format!("web service type `{other}` is not yet supported"),
                );
            }
            Some(other) => w.invalid(&tp, format!("unknown web service type `{other}`")),
            None => {}
        }
    }
    out
}

fn web_options(w: &mut Walk, field: Field<'_>) {
    let Some(obj) = w.obj(field) else { return };
    obj.finish(w, |key| match key {
        "access_log" => Leftover::Ignored("HTTP access logging is not implemented"),
        "display_tracebacks" => Leftover::Ignored("Switchyard has no Python tracebacks"),
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
}

/// The WebSocket service keys of `obj` (serializers, options, auth); the caller finishes
/// `obj`, as it may hold transport keys too.
fn ws_service(w: &mut Walk, obj: &mut Obj<'_>, testee: bool) -> WebSocketService {
    let mut service = WebSocketService {
        testee,
        serializers: vec![Serializer::Json, Serializer::MsgPack],
        conn: WsConnConfig::default(),
        opening_timeout: DEFAULT_OPENING_TIMEOUT,
        deflate: None,
        max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
        auth: Box::new(AuthConfig::anonymous()),
        auth_index: 0,
        cookie: None,
    };
    if !testee {
        if let Some((p, v)) = obj.take("serializers") {
            service.serializers = serializers(w, Field::new(v, &p));
        }
        if let Some((p, v)) = obj.take("auth") {
            service.auth = Box::new(auth(w, Field::new(v, &p)));
        }
    }
    if let Some((p, v)) = obj.take("options") {
        ws_options(w, Field::new(v, &p), &mut service);
    }
    if !testee {
        if let Some((p, v)) = obj.take("cookie") {
            service.cookie = cookie(w, Field::new(v, &p));
        }
    }
    service
}

fn ws_options(w: &mut Walk, field: Field<'_>, service: &mut WebSocketService) {
    let Some(mut obj) = w.obj(field) else { return };
    if let Some((p, v)) = obj.take("max_outbound_bytes") {
        if let Some(n) = w.int(Field::new(v, &p), MIN_OUTBOUND_BYTES, MAX_OUTBOUND_BYTES) {
            service.max_outbound_bytes = n as usize;
        }
    }
    if let Some((p, v)) = obj.take("max_message_size") {
        if let Some(n) = w.int(Field::new(v, &p), 1, MAX_MESSAGE_SIZE) {
            service.conn.max_message_size = n as usize;
        }
    }
    if let Some((p, v)) = obj.take("max_frame_size") {
        if let Some(n) = w.int(Field::new(v, &p), 1, MAX_MESSAGE_SIZE) {
            service.conn.max_frame_size = n as usize;
        }
    }
    for key in [
        "open_handshake_timeout",
        "opening_handshake_timeout",
        "opening_timeout",
    ] {
        if let Some((p, v)) = obj.take(key) {
            if let Some(ms) = w.int(Field::new(v, &p), 1, 3_600_000) {
                service.opening_timeout = Duration::from_millis(ms);
            }
        }
    }
    if let Some((p, v)) = obj.take("auto_ping_interval") {
        if let Some(ms) = w.int(Field::new(v, &p), 0, 3_600_000) {
            service.conn.ping_interval = (ms > 0).then(|| Duration::from_millis(ms));
        }
    }
    if let Some((p, v)) = obj.take("auto_ping_timeout") {
        if let Some(ms) = w.int(Field::new(v, &p), 1, 3_600_000) {
            service.conn.ping_timeout = Duration::from_millis(ms);
        }
    }
    if let Some((p, v)) = obj.take("enable_compression") {
        if w.bool(Field::new(v, &p)) == Some(true) && service.deflate.is_none() {
            service.deflate = Some(DeflateConfig::default());
        }
    }
    if let Some((p, v)) = obj.take("compression") {
        if let Some(mut compression) = w.obj(Field::new(v, &p)) {
            if let Some((dp, dv)) = compression.take("deflate") {
                service.deflate = deflate(w, Field::new(dv, &dp));
            }
            compression.finish(w, none_known);
        }
    }
    if let Some((p, v)) = obj.take("allowed_origins") {
        if let Some(origins) = w.strings(Field::new(v, &p)) {
            if origins.iter().any(|(_, o)| *o != "*") {
                w.unsupported(&p, "origin checking is not yet supported (only [\"*\"])");
            }
        }
    }
    if let Some((p, v)) = obj.take("enable_webstatus") {
        if w.bool(Field::new(v, &p)) == Some(true) {
            w.unsupported(&p, "the web status page is not supported");
        }
    }
    // `allow_null_origin` only matters once origins are checked, which they are not.
    if let Some((p, v)) = obj.take("allow_null_origin") {
        w.bool(Field::new(v, &p));
    }
    obj.finish(w, |key| match key {
        "close_handshake_timeout" => {
            Leftover::Ignored("the close-handshake deadline is fixed in Switchyard")
        }
        "auto_fragment_size" => {
            Leftover::Ignored("outgoing messages are sent unfragmented (invisible to WAMP)")
        }
        "fail_by_drop" | "echo_close_codereason" | "apply_mask" => {
            Leftover::Ignored("Switchyard's close behaviour follows RFC 6455 and is fixed")
        }
        "tcp_nodelay" => Leftover::Ignored("TCP_NODELAY is always set"),
        "auto_ping_size" | "auto_ping_restart_on_any_traffic" => {
            Leftover::Ignored("the keep-alive ping's payload and restart rule are fixed")
        }
        "enable_hixie76" | "enable_hybi10" | "enable_rfc6455" => {
            Leftover::Ignored("only RFC 6455 is spoken")
        }
        "validate_utf8" => Leftover::Ignored("UTF-8 is always validated"),
        "mask_server_frames" | "require_masked_client_frames" => {
            Leftover::Ignored("masking follows RFC 6455 (clients mask, the server does not)")
        }
        "require_websocket_subprotocol" => {
            Leftover::Ignored("WAMP services always require a WAMP subprotocol")
        }
        "external_port" => Leftover::Ignored("only used by origin checking"),
        "show_server_version" | "server" => Leftover::Ignored("the Server header is fixed"),
        "enable_flash_policy" | "flash_policy" => {
            Leftover::Unsupported("Flash policy files are not supported")
        }
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
}

fn deflate(w: &mut Walk, field: Field<'_>) -> Option<DeflateConfig> {
    let mut obj = w.obj(field)?;
    let mut config = DeflateConfig::default();
    for (key, slot) in [
        (
            "request_no_context_takeover",
            &mut config.request_no_context_takeover,
        ),
        (
            "no_context_takeover",
            &mut config.server_no_context_takeover,
        ),
    ] {
        if let Some((p, v)) = obj.take(key) {
            *slot = w.bool(Field::new(v, &p)).unwrap_or(*slot);
        }
    }
    // zlib's raw deflate cannot use an 8-bit window; Crossbar's 0 means "do not ask".
    if let Some((p, v)) = obj.take("max_window_bits") {
        if let Some(n) = w.int(Field::new(v, &p), 9, 15) {
            config.server_max_window_bits = n as u8;
        }
    }
    if let Some((p, v)) = obj.take("request_max_window_bits") {
        match w.int(Field::new(v, &p), 0, 15) {
            Some(0) => config.client_max_window_bits = 15,
            Some(n) if n >= 9 => config.client_max_window_bits = n as u8,
            Some(n) => w.report(
                &p,
                ProblemKind::OutOfRange {
                    value: n.to_string(),
                    min: 9,
                    max: 15,
                },
            ),
            None => {}
        }
    }
    if let Some((p, v)) = obj.take("memory_level") {
        if let Some(n) = w.int(Field::new(v, &p), 1, 9) {
            config.mem_level = n as u8;
        }
    }
    obj.finish(w, none_known);
    Some(config)
}

/// The RawSocket service keys of `obj`; the caller finishes `obj`.
fn raw_service(w: &mut Walk, obj: &mut Obj<'_>) -> RawSocketService {
    let mut service = RawSocketService {
        serializers: vec![Serializer::Json, Serializer::MsgPack],
        max_message_size: RAWSOCKET_MAX,
        max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
        ping_interval: None,
        ping_timeout: RAWSOCKET_PING_TIMEOUT,
        auth: Box::new(AuthConfig::anonymous()),
        auth_index: 0,
    };
    if let Some((p, v)) = obj.take("serializers") {
        service.serializers = serializers(w, Field::new(v, &p));
    }
    if let Some((p, v)) = obj.take("auth") {
        service.auth = Box::new(auth(w, Field::new(v, &p)));
    }
    // RawSocket announces its limit as a power of two between 512 bytes and 16 MiB, so any
    // configured size is rounded into that range by the transport itself.
    let mut size = |w: &mut Walk, p: &String, v: &Value| {
        if let Some(n) = w.int(Field::new(v, p), 1, MAX_MESSAGE_SIZE) {
            service.max_message_size = (n as usize).clamp(RAWSOCKET_MIN, RAWSOCKET_MAX);
        }
    };
    if let Some((p, v)) = obj.take("max_message_size") {
        size(w, &p, v);
    }
    if let Some((p, v)) = obj.take("options") {
        if let Some(mut options) = w.obj(Field::new(v, &p)) {
            if let Some((op, ov)) = options.take("max_message_size") {
                size(w, &op, ov);
            }
            if let Some((op, ov)) = options.take("max_outbound_bytes") {
                if let Some(n) = w.int(Field::new(ov, &op), MIN_OUTBOUND_BYTES, MAX_OUTBOUND_BYTES)
                {
                    service.max_outbound_bytes = n as usize;
                }
            }
            // Crossbar's RawSocket has no keep-alive; the names and units are those of its
            // WebSocket options, so one habit serves both.
            if let Some((op, ov)) = options.take("auto_ping_interval") {
                if let Some(ms) = w.int(Field::new(ov, &op), 0, 3_600_000) {
                    service.ping_interval = (ms > 0).then(|| Duration::from_millis(ms));
                }
            }
            if let Some((op, ov)) = options.take("auto_ping_timeout") {
                if let Some(ms) = w.int(Field::new(ov, &op), 1, 3_600_000) {
                    service.ping_timeout = Duration::from_millis(ms);
                }
            }
            options.finish(w, none_known);
        }
    }
    service
}

fn serializers(w: &mut Walk, field: Field<'_>) -> Vec<Serializer> {
    let mut out = Vec::new();
    let list_path = field.path().to_owned();
    for (path, name) in w.strings(field).unwrap_or_default() {
        let serializer = match name {
            "json" => Serializer::Json,
            "msgpack" => Serializer::MsgPack,
            "cbor" | "ubjson" | "flatbuffers" => {
                w.ignored(
                    &path,
                    format!("serializer `{name}` is not supported and not offered"),
                );
                continue;
            }
            other => {
                w.invalid(&path, format!("unknown serializer `{other}`"));
                continue;
            }
        };
        if !out.contains(&serializer) {
            out.push(serializer);
        }
    }
    if out.is_empty() {
        w.invalid(&list_path, "no supported serializer listed (json, msgpack)");
    }
    out
}

/// Switchyard's own `options.auth` of the router worker: the time from HELLO to WELCOME and
/// the per-address failure throttle ([`AuthLimits`]); all in milliseconds but the counts.
fn auth_options(w: &mut Walk, field: Field<'_>) -> AuthLimits {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let mut out = AuthLimits::default();
    let Some(mut obj) = w.obj(field) else {
        return out;
    };
    let int = |w: &mut Walk, obj: &mut Obj<'_>, key: &'static str, min: u64, max: u64| {
        obj.take(key)
            .and_then(|(p, v)| w.int(Field::new(v, &p), min, max))
    };
    if let Some(n) = int(w, &mut obj, "timeout", 1, DAY_MS) {
        out.timeout_ms = n;
    }
    if let Some(n) = int(w, &mut obj, "free_failures", 0, 1_000_000) {
        out.free_failures = n as u32;
    }
    if let Some(n) = int(w, &mut obj, "failure_delay", 0, DAY_MS) {
        out.failure_delay_ms = n;
    }
    if let Some(n) = int(w, &mut obj, "max_failure_delay", 0, DAY_MS) {
        out.max_failure_delay_ms = n;
    }
    if let Some(n) = int(w, &mut obj, "forget", 0, DAY_MS) {
        out.forget_ms = n;
    }
    if let Some(n) = int(w, &mut obj, "addresses", 0, 10_000_000) {
        out.throttled_addresses = n as usize;
    }
    obj.finish(w, none_known);
    out
}

/// A transport's `auth` section, Crossbar's shape: one key per method.
fn auth(w: &mut Walk, field: Field<'_>) -> AuthConfig {
    let mut out = AuthConfig::default();
    let Some(mut obj) = w.obj(field) else {
        return out;
    };
    let path = obj.path().to_owned();
    let entries = obj.entries();
    if entries.is_empty() {
        w.invalid(&path, "no authentication method configured");
    }
    for (key, key_path, value) in entries {
        let field = Field::new(value, &key_path);
        // `"type": "dynamic"`: an authenticator procedure decides (the `dynauth` module).
        let dynamic = value.get("type").and_then(Value::as_str) == Some("dynamic");
        match key {
            "anonymous" | "ticket" | "wampcra" | "cryptosign" | "scram" | "wamp-scram" | "tls"
                if dynamic =>
            {
                let d = w.obj(field).and_then(|mut obj| {
                    obj.take("type");
                    let d = dynamic_method(w, &mut obj);
                    obj.finish(w, none_known);
                    d
                });
                match key {
                    "anonymous" => out.anonymous_dynamic = d,
                    "ticket" => out.ticket_dynamic = d,
                    "wampcra" => out.wampcra_dynamic = d,
                    "cryptosign" => out.cryptosign_dynamic = d,
                    "scram" | "wamp-scram" => out.scram_dynamic = d,
                    _ => out.tls_dynamic = d,
                }
            }
            "cookie" => {
                if let Some(obj) = w.obj(field) {
                    obj.finish(w, none_known);
                    out.cookie = true;
                }
            }
            "anonymous" => out.anonymous = anonymous(w, field),
            "ticket" => out.ticket = method(w, field, key, ticket_secret),
            "wampcra" => out.wampcra = method(w, field, key, cra_secret),
            "cryptosign" => out.cryptosign = method(w, field, key, cryptosign_keys),
            "scram" | "wamp-scram" => out.scram = method(w, field, key, scram_secret),
            "tls" => out.tls = method(w, field, key, tls_certificate),
            "cryptosign-proxy" | "anonymous-proxy" => w.unsupported(
                &key_path,
                format!("authentication method `{key}` is not yet supported"),
            ),
            _ => w.invalid(&key_path, format!("unknown authentication method `{key}`")),
        }
    }
    obj.finish(w, none_known);
    out
}

/// A dynamic method's keys: `authenticator` (mandatory), `authenticator-realm` and
/// `default-role`.
fn dynamic_method(w: &mut Walk, obj: &mut Obj<'_>) -> Option<DynamicConfig> {
    let authenticator = obj
        .need(w, "authenticator")
        .and_then(|(p, v)| w.str(Field::new(v, &p)).map(|s| (p.clone(), s)));
    if let Some((p, uri)) = &authenticator {
        if validate_uri(uri, UriCheck::Loose).is_err() {
            w.invalid(p, format!("`{uri}` is not a valid procedure URI"));
        }
    }
    let mut text = |key: &'static str| {
        obj.take(key)
            .and_then(|(p, v)| w.str(Field::new(v, &p)).map(str::to_owned))
    };
    let authenticator_realm = text("authenticator-realm");
    let default_role = text("default-role");
    Some(DynamicConfig {
        authenticator: authenticator?.1.to_owned(),
        authenticator_realm,
        default_role,
    })
}

/// The `type` of a method section: `true` for `static`; other types are reported.
fn static_type(w: &mut Walk, obj: &mut Obj<'_>) -> bool {
    match obj.need(w, "type") {
        Some((tp, tv)) => is_static(w, &tp, tv),
        None => false,
    }
}

fn is_static(w: &mut Walk, tp: &str, tv: &Value) -> bool {
    match w.str(Field::new(tv, tp)) {
        Some("static") => true,
        Some("dynamic" | "function") => {
            w.unsupported(
                tp,
                "dynamic authentication is not supported for this method",
            );
            false
        }
        Some(other) => {
            w.invalid(tp, format!("unknown type `{other}` (static or dynamic)"));
            false
        }
        None => false,
    }
}

fn anonymous(w: &mut Walk, field: Field<'_>) -> Option<AnonymousConfig> {
    let mut obj = w.obj(field)?;
    // Switchyard has always read a type-less `anonymous` as static.
    let ok = match obj.take("type") {
        Some((tp, tv)) => is_static(w, &tp, tv),
        None => true,
    };
    let role = match obj.take("role") {
        Some((rp, rv)) => w.str(Field::new(rv, &rp)).unwrap_or("anonymous"),
        None => "anonymous",
    };
    if !ok {
        // The rest of a dynamic section says nothing worth a second report.
        obj.finish(w, |_| Leftover::Ignored("part of an unsupported method"));
        return None;
    }
    obj.finish(w, none_known);
    Some(AnonymousConfig {
        role: role.to_owned(),
    })
}

/// What reads one principal's proof of identity (and removes its keys from `obj`).
type SecretReader<S> = fn(&mut Walk, &mut Obj<'_>) -> Option<S>;

/// A static method section: `{"type": "static", "principals": {authid: {...}}}` (WAMP-CRA
/// also takes Crossbar's older `users`).
fn method<S>(
    w: &mut Walk,
    field: Field<'_>,
    name: &str,
    read: SecretReader<S>,
) -> Option<Principals<S>> {
    let mut obj = w.obj(field)?;
    if !static_type(w, &mut obj) {
        obj.finish(w, |_| Leftover::Ignored("part of an unsupported method"));
        return None;
    }
    let list = obj.take("principals").or_else(|| {
        if name == "wampcra" {
            obj.take("users")
        } else {
            None
        }
    });
    let mut out = Principals::new();
    match list {
        Some((lp, lv)) => {
            if let Some(mut map) = w.obj(Field::new(lv, &lp)) {
                for (authid, ap, av) in map.entries() {
                    if let Some(p) = principal(w, Field::new(av, &ap), read) {
                        out.insert(authid.to_owned(), p);
                    }
                }
                map.finish(w, none_known);
            }
        }
        None => w.invalid(obj.path(), format!("static `{name}` needs `principals`")),
    }
    obj.finish(w, none_known);
    Some(out)
}

fn principal<S>(w: &mut Walk, field: Field<'_>, read: SecretReader<S>) -> Option<Principal<S>> {
    let mut obj = w.obj(field)?;
    let role = obj
        .need(w, "role")
        .and_then(|(p, v)| w.str(Field::new(v, &p)));
    let realm = obj
        .take("realm")
        .and_then(|(p, v)| w.str(Field::new(v, &p)));
    let secret = read(w, &mut obj);
    obj.finish(w, none_known);
    Some(Principal {
        role: role?.to_owned(),
        realm: realm.map(str::to_owned),
        secret: secret?,
    })
}

/// A secret string; `${NAME}` or `$NAME` reads environment variable `NAME`, as Crossbar
/// allows. An unset variable is an error (the message names the variable, never a value).
fn secret(w: &mut Walk, obj: &mut Obj<'_>, key: &'static str) -> Option<String> {
    let (p, v) = obj.need(w, key)?;
    let text = w.str(Field::new(v, &p))?;
    let name = text
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .or_else(|| text.strip_prefix('$'));
    let is_name = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match name {
        Some(n) if is_name(n) => match std::env::var(n) {
            Ok(value) => Some(value),
            Err(_) => {
                w.invalid(&p, format!("environment variable `{n}` is not set"));
                None
            }
        },
        _ => Some(text.to_owned()),
    }
}

fn ticket_secret(w: &mut Walk, obj: &mut Obj<'_>) -> Option<TicketSecret> {
    Some(TicketSecret {
        ticket: secret(w, obj, "ticket")?,
    })
}

/// A `tls` principal's `certificate-sha1`: 20 bytes of hex, with or without colons
/// (pyOpenSSL and Crossbar print `AB:CD:...`), any case.
fn tls_certificate(w: &mut Walk, obj: &mut Obj<'_>) -> Option<TlsCertificate> {
    let (p, v) = obj.need(w, "certificate-sha1")?;
    let text = w.str(Field::new(v, &p))?;
    let digits: String = text.chars().filter(|&c| c != ':').collect();
    Some(TlsCertificate {
        sha1: hex_bytes::<20>(w, &p, &digits)?,
    })
}

fn cra_secret(w: &mut Walk, obj: &mut Obj<'_>) -> Option<WampCraSecret> {
    let secret = secret(w, obj, "secret");
    let salt = obj.take("salt").and_then(|(p, v)| w.str(Field::new(v, &p)));
    let iterations = obj
        .take("iterations")
        .map(|(p, v)| w.int(Field::new(v, &p), 1, 100_000_000));
    let keylen = obj
        .take("keylen")
        .map(|(p, v)| w.int(Field::new(v, &p), 1, 1024));
    let salt = salt.map(|s| CraSalt {
        salt: s.to_owned(),
        iterations: iterations.flatten().unwrap_or(1000) as u32,
        keylen: keylen.flatten().unwrap_or(32) as u32,
    });
    Some(WampCraSecret {
        secret: secret?,
        salt,
    })
}

/// `n` bytes given as hex, or a reported problem.
fn hex_bytes<const N: usize>(w: &mut Walk, path: &str, text: &str) -> Option<[u8; N]> {
    let bytes: Option<Vec<u8>> = (text.len() == 2 * N)
        .then(|| {
            (0..N)
                .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    match bytes.and_then(|b| <[u8; N]>::try_from(b).ok()) {
        Some(b) => Some(b),
        None => {
            w.invalid(path, format!("expected {N} bytes as {} hex digits", 2 * N));
            None
        }
    }
}

fn cryptosign_keys(w: &mut Walk, obj: &mut Obj<'_>) -> Option<CryptosignKeys> {
    let (p, v) = obj.need(w, "authorized_keys")?;
    let mut keys = Vec::new();
    for (kp, k) in w.strings(Field::new(v, &p))? {
        keys.push(hex_bytes::<32>(w, &kp, k)?);
    }
    if keys.is_empty() {
        w.invalid(&p, "no authorized key listed");
        return None;
    }
    Some(CryptosignKeys {
        authorized_keys: keys,
    })
}

fn scram_secret(w: &mut Walk, obj: &mut Obj<'_>) -> Option<ScramSecret> {
    let (kp, kv) = obj.need(w, "kdf")?;
    let kdf_name = w.str(Field::new(kv, &kp))?;
    let kdf = match kdf_name {
        "argon2id13" | "argon2id-13" => ScramKdf::Argon2id13,
        "pbkdf2" => ScramKdf::Pbkdf2,
        other => {
            w.invalid(&kp, format!("unknown kdf `{other}` (argon2id13 or pbkdf2)"));
            return None;
        }
    };
    let iterations = obj
        .need(w, "iterations")
        .and_then(|(p, v)| w.int(Field::new(v, &p), 1, u64::from(u32::MAX)));
    let memory = match (kdf, obj.take("memory")) {
        (_, Some((p, v))) => w.int(Field::new(v, &p), 8, 4 << 20),
        (ScramKdf::Argon2id13, None) => {
            w.invalid(obj.path(), "kdf argon2id13 needs `memory` (KiB)");
            None
        }
        (_, None) => Some(0),
    };
    let salt = obj.need(w, "salt").and_then(|(p, v)| {
        let text = w.str(Field::new(v, &p))?;
        let bytes: Option<Vec<u8>> = (text.len() % 2 == 0)
            .then(|| {
                (0..text.len() / 2)
                    .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect()
            })
            .flatten();
        if bytes.is_none() {
            w.invalid(&p, "the salt must be hex");
        }
        bytes
    });
    let key = |w: &mut Walk, obj: &mut Obj<'_>, name: &'static str| {
        let path = obj.key_path(name);
        let text = secret(w, obj, name)?;
        hex_bytes::<32>(w, &path, &text)
    };
    let stored_key = key(w, obj, "stored-key");
    let server_key = key(w, obj, "server-key");
    Some(ScramSecret {
        kdf,
        kdf_name: kdf_name.to_owned(),
        iterations: iterations? as u32,
        memory: memory? as u32,
        salt: salt?,
        stored_key: stored_key?,
        server_key: server_key?,
    })
}

fn endpoint(w: &mut Walk, field: Field<'_>) -> Option<Endpoint> {
    let mut obj = w.obj(field)?;
    let (tp, tv) = obj.need(w, "type")?;
    let kind = w.str(Field::new(tv, &tp))?;
    let result = match kind {
        "tcp" => tcp_endpoint(w, &mut obj),
        "unix" => {
            let path = obj
                .need(w, "path")
                .and_then(|(p, v)| w.str(Field::new(v, &p)))
                .map(PathBuf::from);
            let backlog = backlog(w, &mut obj);
            path.map(|path| Endpoint::Unix(UnixEndpoint { path, backlog }))
        }
        // The other keys of an endpoint we cannot serve say nothing more worth reading.
        other @ ("twisted" | "onion") => {
            w.unsupported(&tp, format!("endpoint type `{other}` is not supported"));
            return None;
        }
        other => {
            w.invalid(
                &tp,
                format!("unknown endpoint type `{other}` (tcp or unix)"),
            );
            return None;
        }
    };
    obj.finish(w, none_known);
    result
}

fn backlog(w: &mut Walk, obj: &mut Obj<'_>) -> u32 {
    obj.take("backlog")
        .and_then(|(p, v)| w.int(Field::new(v, &p), 1, 65535))
        .map_or(DEFAULT_BACKLOG, |n| n as u32)
}

fn tcp_endpoint(w: &mut Walk, obj: &mut Obj<'_>) -> Option<Endpoint> {
    let port = obj.need(w, "port").and_then(|(p, v)| match v {
        // Crossbar reads `"$NAME"` from the environment.
        Value::String(s) if s.starts_with('$') => match std::env::var(&s[1..]) {
            Ok(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    w.invalid(
                        &p,
                        format!("environment variable {} is not a port: {text:?}", &s[1..]),
                    );
                    None
                }
            },
            Err(_) => {
                w.invalid(&p, format!("environment variable {} is not set", &s[1..]));
                None
            }
        },
        _ => w.int(Field::new(v, &p), 1, 65535).map(|n| n as u16),
    });
    let version = obj
        .take("version")
        .and_then(|(p, v)| match w.int(Field::new(v, &p), 4, 6) {
            Some(5) => {
                w.invalid(&p, "IP version must be 4 or 6");
                None
            }
            other => other,
        });
    let ip = match obj.take("interface") {
        Some((p, v)) => w
            .str(Field::new(v, &p))
            .and_then(|s| match interface_addr(s) {
                Some(ip) => Some(ip),
                None => {
                    w.invalid(
                        &p,
                        format!("`{s}` is not an IP address (host names are not resolved)"),
                    );
                    None
                }
            }),
        None if version == Some(6) => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        None => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    };
    // Switchyard always shares its ports among its own cores and worker processes.
    if let Some((p, v)) = obj.take("shared") {
        w.bool(Field::new(v, &p));
    }
    let backlog = backlog(w, obj);
    let tls = obj.take("tls").and_then(|(p, v)| tls(w, Field::new(v, &p)));
    Some(Endpoint::Tcp(TcpEndpoint {
        addr: SocketAddr::new(ip?, port?),
        backlog,
        tls,
    }))
}

fn tls(w: &mut Walk, field: Field<'_>) -> Option<TlsConfig> {
    let mut obj = w.obj(field)?;
    let key = file(w, &mut obj, "key");
    let certificate = file(w, &mut obj, "certificate");
    let chain_certificates = files(w, &mut obj, "chain_certificates");
    let ca_certificates = files(w, &mut obj, "ca_certificates");
    obj.finish(w, |key| match key {
        "dhparam" => Leftover::Unsupported(
            "rustls offers no finite-field DHE cipher suites (only ECDHE), so DH parameters \
             cannot be used; remove the key",
        ),
        "ciphers" => Leftover::Unsupported(
            "OpenSSL cipher lists are not supported (rustls offers its own safe suites); \
             remove the key",
        ),
        _ => Leftover::Unsupported(NOT_SUPPORTED),
    });
    Some(TlsConfig {
        key: key?,
        certificate: certificate?,
        chain_certificates,
        ca_certificates,
    })
}

/// An optional list-of-file-names key of `obj`.
fn files(w: &mut Walk, obj: &mut Obj<'_>, key: &'static str) -> Vec<PathBuf> {
    obj.take(key)
        .and_then(|(p, v)| w.strings(Field::new(v, &p)))
        .map(|list| list.into_iter().map(|(_, s)| PathBuf::from(s)).collect())
        .unwrap_or_default()
}

/// A mandatory file-name key of `obj`.
fn file(w: &mut Walk, obj: &mut Obj<'_>, key: &'static str) -> Option<PathBuf> {
    obj.need(w, key)
        .and_then(|(p, v)| w.str(Field::new(v, &p)))
        .map(PathBuf::from)
}
