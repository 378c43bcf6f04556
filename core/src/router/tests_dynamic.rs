//! Tests of the router's own calls: the dynamic authenticator and the dynamic authorizer,
//! over one and two shards (the component on one shard, the client on the other).

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const AUTHENTICATE: &str = "com.example.authenticate";
const AUTHORIZE: &str = "com.example.authorize";
const TIMEOUT_MS: u64 = 500;

/// realm1 with roles `backend` (everything), `user` (dynamic authorizer) and `guest`;
/// the transport's anonymous role is `backend`, ticket is dynamic.
fn world(count: u16, anonymous: Anon) -> World {
    // Many refusals come from one address here; the throttle has its own test.
    world_with(count, anonymous, 1000)
}

/// [`world`] answering `free_failures` failures per address without delay.
fn world_with(count: u16, anonymous: Anon, free_failures: u32) -> World {
    let mut config = RouterConfig::default();
    config.limits.router_call_timeout_ms = TIMEOUT_MS;
    config.limits.auth.free_failures = free_failures;
    config.realms[0].roles = vec![
        RoleConfig {
            name: "backend".into(),
            permissions: vec![Permission::all("", MatchPolicy::Prefix)],
            authorizer: None,
        },
        RoleConfig {
            name: "user".into(),
            permissions: Vec::new(),
            authorizer: Some(AUTHORIZE.into()),
        },
        RoleConfig {
            name: "guest".into(),
            permissions: vec![Permission::all("com.", MatchPolicy::Prefix)],
            authorizer: None,
        },
    ];
    let auth = auth_config(anonymous, true);
    let mut w = World::with_config(count, config.clone());
    let config = Arc::new(config);
    w.shards = (0..count)
        .map(|index| {
            Shard::with_authenticator(
                ShardConfig {
                    index,
                    count,
                    seed: 42 + u64::from(index),
                    router: config.clone(),
                },
                configured(auth.clone()),
            )
        })
        .collect();
    w
}

/// How `anonymous` is configured in these tests.
#[derive(Clone)]
enum Anon {
    Static(String),
    Dynamic(DynamicConfig),
}

fn backend() -> Anon {
    Anon::Static("backend".into())
}

/// A transport's `auth`: `anonymous` as given, and dynamic ticket if `ticket`.
fn auth_config(anonymous: Anon, ticket: bool) -> AuthConfig {
    let mut a = AuthConfig::default();
    match anonymous {
        Anon::Static(role) => a.anonymous = Some(AnonymousConfig { role }),
        Anon::Dynamic(d) => a.anonymous_dynamic = Some(d),
    }
    if ticket {
        let d = DynamicConfig {
            authenticator: AUTHENTICATE.into(),
            authenticator_realm: None,
            default_role: None,
        };
        a.ticket_dynamic = Some(d.clone());
        a.wampcra_dynamic = Some(d.clone());
        a.cryptosign_dynamic = Some(d.clone());
        a.scram_dynamic = Some(d.clone());
        a.tls_dynamic = Some(d);
    }
    a
}

fn configured(a: AuthConfig) -> Box<dyn Authenticator> {
    Box::new(Configured::new(vec![a], Entropy::from_seed([7; 32]), 0))
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// The component (conn 1, shard 0) registers `procedure`.
fn component(w: &mut World, procedure: &str) {
    w.join(0, 1, RPC);
    w.send(1, &format!(r#"[64,1,{{}},"{procedure}"]"#));
    let got = w.take(1);
    assert_eq!(json(&got[0])[0], 65, "{got:?}");
}

/// The one INVOCATION the component got: (request id, args).
fn invocation(w: &mut World) -> (u64, serde_json::Value) {
    let got = w.take(1);
    assert_eq!(got.len(), 1, "{got:?}");
    let v = json(&got[0]);
    assert_eq!(v[0], 68, "{got:?}");
    (v[1].as_u64().unwrap(), v[4].clone())
}

/// Client `conn` on `shard` offers ticket as `joe` with `ticket`; returns the
/// authenticator's INVOCATION.
fn ticket_hello(w: &mut World, shard: usize, conn: u64, ticket: &str) -> (u64, serde_json::Value) {
    w.open(shard, conn);
    w.send(
        conn,
        r#"[1,"realm1",{"roles":{"caller":{}},"authmethods":["ticket"],"authid":"joe"}]"#,
    );
    w.check(conn, &[r#"[4,"ticket",{}]"#]);
    w.send(conn, &format!(r#"[5,"{ticket}",{{}}]"#));
    w.check(conn, &[]);
    invocation(w)
}

/// WELCOME's (authid, authrole, authmethod, authprovider).
fn welcomed(w: &mut World, conn: u64) -> (String, String, String, String) {
    let got = w.take(conn);
    assert_eq!(got.len(), 1, "{got:?}");
    let v = json(&got[0]);
    assert_eq!(v[0], 2, "{got:?}");
    let s = |k: &str| v[2][k].as_str().unwrap().to_owned();
    (
        s("authid"),
        s("authrole"),
        s("authmethod"),
        s("authprovider"),
    )
}

fn aborted(w: &mut World, conn: u64, reason: &str) {
    let got = w.take(conn);
    assert_eq!(got.len(), 1, "{got:?}");
    let v = json(&got[0]);
    assert_eq!(
        (v[0].as_u64(), v[2].as_str()),
        (Some(3), Some(reason)),
        "{got:?}"
    );
    assert!(w.closed.contains(&ConnId(conn)));
}

#[test]
fn dynamic_ticket_decides_joins_across_shards() {
    for count in [1, 2] {
        let shard = usize::from(count - 1);
        let mut w = world(count, backend());
        component(&mut w, AUTHENTICATE);
        // A role string.
        let (req, args) = ticket_hello(&mut w, shard, 2, "s3cret");
        assert_eq!(args[0], "realm1");
        assert_eq!(args[1], "joe");
        assert_eq!(args[2]["ticket"], "s3cret");
        assert_eq!(args[2]["authmethod"], "ticket");
        assert!(args[2]["transport"].is_object(), "{args}");
        let pending = args[2]["session"].as_u64().expect("details.session");
        w.send(1, &format!(r#"[70,{req},{{}},["user"]]"#));
        let got = w.take(2);
        let v = json(&got[0]);
        // The pending session id is the one WELCOME gives.
        assert_eq!(
            (v[0].as_u64(), v[1].as_u64()),
            (Some(2), Some(pending)),
            "{got:?}"
        );
        let d = &v[2];
        assert_eq!(
            (
                &d["authid"],
                &d["authrole"],
                &d["authmethod"],
                &d["authprovider"]
            ),
            (
                &json(r#""joe""#),
                &json(r#""user""#),
                &json(r#""ticket""#),
                &json(r#""dynamic""#)
            )
        );
        // A principal dictionary overriding the authid.
        let (req, _) = ticket_hello(&mut w, shard, 3, "x");
        w.send(
            1,
            &format!(r#"[70,{req},{{}},[{{"role":"guest","authid":"joseph"}}]]"#),
        );
        let got = welcomed(&mut w, 3);
        assert_eq!((&*got.0, &*got.1), ("joseph", "guest"));
        // The authenticator raises: its error URI is the ABORT reason.
        let (req, _) = ticket_hello(&mut w, shard, 4, "wrong");
        w.send(
            1,
            &format!(r#"[8,68,{req},{{}},"com.example.invalid_ticket",["bad ticket"]]"#),
        );
        aborted(&mut w, 4, "com.example.invalid_ticket");
        // A role the realm does not have.
        let (req, _) = ticket_hello(&mut w, shard, 5, "x");
        w.send(1, &format!(r#"[70,{req},{{}},["nobody"]]"#));
        aborted(&mut w, 5, "wamp.error.no_such_role");
        // An answer of the wrong shape.
        let (req, _) = ticket_hello(&mut w, shard, 6, "x");
        w.send(1, &format!(r#"[70,{req},{{}},[42]]"#));
        aborted(&mut w, 6, "wamp.error.authentication_failed");
        // No answer: the deadline denies; a late answer changes nothing.
        let (req, _) = ticket_hello(&mut w, shard, 7, "x");
        w.advance(TIMEOUT_MS - 1);
        w.check(7, &[]);
        w.advance(1);
        aborted(&mut w, 7, "wamp.error.authentication_failed");
        w.send(1, &format!(r#"[70,{req},{{}},["user"]]"#));
        w.check(7, &[]);
        // Everything the router called is over.
        for s in &w.shards {
            assert_eq!(s.pending_counts().router_calls, 0);
        }
    }
}

#[test]
fn dynamic_ticket_without_authenticator_is_denied() {
    let mut w = world(1, backend());
    w.open(0, 2);
    w.send(
        2,
        r#"[1,"realm1",{"roles":{"caller":{}},"authmethods":["ticket"],"authid":"joe"}]"#,
    );
    w.take(2);
    w.send(2, r#"[5,"s3cret",{}]"#);
    aborted(&mut w, 2, "wamp.error.authentication_failed");
}

/// Lets the session whose HELLO names authid `component` in as `backend`, so the
/// component can register the authenticator that decides everybody else.
#[derive(Debug)]
struct ComponentFirst(Box<dyn Authenticator>);

impl Authenticator for ComponentFirst {
    fn start(&mut self, ctx: &AuthContext<'_>, hello: &crate::message::Hello) -> Step {
        if hello.details.authid.as_deref() == Some("component") {
            return Step::Welcome(AuthInfo {
                authid: "component".into(),
                authrole: "backend".into(),
                authmethod: "anonymous".into(),
                authprovider: "static".into(),
                authextra: None,
            });
        }
        self.0.start(ctx, hello)
    }
}

#[test]
fn dynamic_anonymous() {
    let config = DynamicConfig {
        authenticator: AUTHENTICATE.into(),
        authenticator_realm: Some("realm1".into()),
        default_role: Some("guest".into()),
    };
    let auth = configured(auth_config(Anon::Dynamic(config), false));
    let mut w = world(1, backend());
    let router = w.shards[0].config.clone();
    w.shards[0] = Shard::with_authenticator(
        ShardConfig {
            index: 0,
            count: 1,
            seed: 1,
            router,
        },
        Box::new(ComponentFirst(auth)),
    );
    // Nobody registered the authenticator yet: anonymous joins are denied.
    w.open(0, 9);
    w.send(9, r#"[1,"realm1",{"roles":{"caller":{}}}]"#);
    aborted(&mut w, 9, "wamp.error.authentication_failed");
    w.open(0, 1);
    w.send(
        1,
        &format!(r#"[1,"realm1",{{"roles":{RPC},"authid":"component"}}]"#),
    );
    w.take(1);
    w.send(1, &format!(r#"[64,1,{{}},"{AUTHENTICATE}"]"#));
    w.take(1);
    // The authenticator gets a generated authid; no role in the answer: `default-role`.
    w.open(0, 2);
    w.send(
        2,
        r#"[1,"realm1",{"roles":{"caller":{}},"authextra":{"k":1}}]"#,
    );
    let (req, args) = invocation(&mut w);
    assert_eq!(args[1].as_str().map(str::len), Some(29), "{args}");
    assert_eq!(args[2]["authmethod"], "anonymous");
    assert_eq!(args[2]["authextra"]["k"], 1);
    w.send(1, &format!(r#"[70,{req},{{}},[{{}}]]"#));
    let got = welcomed(&mut w, 2);
    assert_eq!(
        (&*got.1, &*got.2, &*got.3),
        ("guest", "anonymous", "dynamic")
    );
    // Anonymous failures are reported as `authentication_failed`, whatever the URI.
    w.open(0, 3);
    w.send(3, r#"[1,"realm1",{"roles":{"caller":{}}}]"#);
    let (req, _) = invocation(&mut w);
    w.send(1, &format!(r#"[8,68,{req},{{}},"com.example.go_away"]"#));
    aborted(&mut w, 3, "wamp.error.authentication_failed");
}

#[test]
fn dynamic_authorizer_decides_in_order_and_caches() {
    let mut w = world(2, backend());
    component(&mut w, AUTHENTICATE);
    w.send(1, r#"[64,2,{},"com.example.authorize"]"#);
    assert_eq!(json(&w.take(1)[0])[0], 65);
    // The client joins on shard 1 as `user`, whose actions the authorizer decides.
    let (req, _) = ticket_hello(&mut w, 1, 2, "t");
    w.send(1, &format!(r#"[70,{req},{{}},["user"]]"#));
    let session = json(&w.take(2)[0])[1].as_u64().unwrap();
    // SUBSCRIBE waits for the authorizer; an acknowledged PUBLISH sent meanwhile waits
    // behind it.
    w.send(2, r#"[32,1,{"match":"prefix"},"com.t"]"#);
    w.send(2, r#"[16,2,{"acknowledge":true},"com.t.x",[]]"#);
    w.check(2, &[]);
    let (req, args) = invocation(&mut w);
    assert_eq!(args[0]["session"].as_u64(), Some(session));
    assert_eq!(args[0]["authrole"], "user");
    assert_eq!(args[1], "com.t");
    assert_eq!(args[2], "subscribe");
    assert_eq!(args[3]["match"], "prefix");
    w.send(1, &format!(r#"[70,{req},{{}},[true]]"#));
    assert_eq!(json(&w.take(2)[0])[0], 33);
    // Now the PUBLISH is asked about; denied.
    let (req, args) = invocation(&mut w);
    assert_eq!(
        (&args[1], &args[2]),
        (&json("\"com.t.x\""), &json("\"publish\""))
    );
    w.send(1, &format!(r#"[70,{req},{{}},[false]]"#));
    w.check(2, &[r#"[8,16,2,{},"wamp.error.not_authorized"]"#]);
    // A CALL allowed with `cache`: the second CALL is not asked about.
    w.send(2, r#"[48,3,{},"com.example.authenticate",[]]"#);
    let (req, args) = invocation(&mut w);
    assert_eq!(args[2], "call");
    w.send(
        1,
        &format!(r#"[70,{req},{{}},[{{"allow":true,"cache":true}}]]"#),
    );
    // The call itself reaches the component (it is the callee of that procedure).
    let (inv, _) = invocation(&mut w);
    w.send(1, &format!("[70,{inv},{{}},[1]]"));
    w.check(2, &["[50,3,{},[1]]"]);
    w.send(2, r#"[48,4,{},"com.example.authenticate",[]]"#);
    let (inv, args) = invocation(&mut w);
    assert_eq!(args, json("[]"), "the call went straight to the callee");
    w.send(1, &format!("[70,{inv},{{}},[2]]"));
    w.check(2, &["[50,4,{},[2]]"]);
    // The authorizer raises: denied.
    w.send(2, r#"[64,5,{},"com.mine"]"#);
    let (req, _) = invocation(&mut w);
    w.send(1, &format!(r#"[8,68,{req},{{}},"com.example.oops"]"#));
    w.check(2, &[r#"[8,64,5,{},"wamp.error.not_authorized"]"#]);
    // The authorizer never answers: denied at the deadline, and what waited follows.
    w.send(2, r#"[32,6,{},"com.late"]"#);
    w.send(2, r#"[16,7,{"acknowledge":true},"com.t.y",[]]"#);
    let (_, args) = invocation(&mut w);
    assert_eq!(args[1], "com.late");
    w.advance(TIMEOUT_MS);
    w.check(2, &[r#"[8,32,6,{},"wamp.error.not_authorized"]"#]);
    // The authorizer (which supports call canceling) is told to stop.
    let got = w.take(1);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("[69,"), "{got:?}");
    w.inbox.insert(ConnId(1), vec![got[1].clone()]);
    let (req, args) = invocation(&mut w);
    assert_eq!(args[1], "com.t.y");
    w.send(1, &format!(r#"[70,{req},{{}},[{{"allow":true}}]]"#));
    let got = w.take(2);
    assert_eq!(json(&got[0])[0], 17, "{got:?}");
    // The client leaves while the authorizer runs: the answer finds nobody.
    w.send(2, r#"[32,8,{},"com.gone"]"#);
    let (req, _) = invocation(&mut w);
    w.shards[1].handle_close(w.now, ConnId(2));
    w.run();
    w.send(1, &format!(r#"[70,{req},{{}},[true]]"#));
    w.check(2, &[]);
    for s in &w.shards {
        assert_eq!(s.pending_counts().router_calls, 0);
    }
}

#[test]
fn held_messages_are_bounded() {
    let mut w = world(1, backend());
    let mut config = (*w.shards[0].config).clone();
    config.limits.held_messages_per_session = 2;
    w.shards[0] = Shard::with_authenticator(
        ShardConfig {
            index: 0,
            count: 1,
            seed: 1,
            router: Arc::new(config),
        },
        configured(auth_config(backend(), true)),
    );
    component(&mut w, AUTHENTICATE);
    let (req, _) = ticket_hello(&mut w, 0, 2, "t");
    w.send(1, &format!(r#"[70,{req},{{}},["user"]]"#));
    w.take(2);
    // No authorizer registered: denied at once, nothing waits.
    w.send(2, r#"[32,1,{},"com.t"]"#);
    w.check(2, &[r#"[8,32,1,{},"wamp.error.not_authorized"]"#]);
    w.send(1, &format!(r#"[64,2,{{}},"{AUTHORIZE}"]"#));
    w.take(1);
    // One action held, two waiting behind it, the next one is one too many.
    for i in 2..5 {
        w.send(2, &format!(r#"[32,{i},{{}},"com.t"]"#));
    }
    w.check(2, &[]);
    w.send(2, r#"[32,5,{},"com.t"]"#);
    aborted(&mut w, 2, "wamp.error.limit_exceeded");
    // The held action's answer finds nobody.
    let (req, _) = invocation(&mut w);
    w.send(1, &format!("[70,{req},{{}},[true]]"));
    assert_eq!(w.shards[0].pending_counts().router_calls, 0);
}

/// Opens `conn` on `shard` with tracking cookie `cbtid` (valid for `ttl_ms`).
fn open_with_cookie(w: &mut World, shard: usize, conn: u64, cbtid: &str, ttl_ms: u64) {
    let c = ConnId(conn);
    w.home.insert(c, shard);
    let t = TransportInfo {
        kind: "websocket".into(),
        peer: "tcp4:127.0.0.1:1".into(),
        cbtid: Some(cbtid.into()),
        cookie_ttl_ms: ttl_ms,
        cookie_auth: true,
        ..TransportInfo::default()
    };
    w.shards[shard].handle_open(w.now, c, Serializer::Json, t);
    w.run();
}

#[test]
fn a_bound_cookie_joins_as_the_same_principal_on_any_shard_until_it_expires() {
    let mut w = world(2, backend());
    component(&mut w, AUTHENTICATE);
    // Authenticate by ticket on shard 1 over a connection carrying cookie `c1`.
    open_with_cookie(&mut w, 1, 2, "c1", 1000);
    w.send(
        2,
        r#"[1,"realm1",{"roles":{"caller":{}},"authmethods":["cookie","ticket"],"authid":"joe"}]"#,
    );
    w.check(2, &[r#"[4,"ticket",{}]"#]);
    w.send(2, r#"[5,"s3cret",{}]"#);
    let (req, _) = invocation(&mut w);
    w.send(1, &format!(r#"[70,{req},{{}},["user"]]"#));
    welcomed(&mut w, 2);
    assert_eq!(
        w.shards[0].cookies.len(),
        1,
        "replicated to the other shard"
    );
    // The same cookie on shard 0: joined by cookie, no authenticator call.
    open_with_cookie(&mut w, 0, 3, "c1", 1000);
    w.send(
        3,
        r#"[1,"realm1",{"roles":{"caller":{}},"authmethods":["cookie"]}]"#,
    );
    let got = welcomed(&mut w, 3);
    assert_eq!(
        (&*got.0, &*got.1, &*got.2, &*got.3),
        ("joe", "user", "cookie", "cookie")
    );
    w.check(1, &[]);
    // Another cookie, or the cookie without offering `cookie`: no shortcut.
    open_with_cookie(&mut w, 0, 4, "c2", 1000);
    w.send(
        4,
        r#"[1,"realm1",{"roles":{"caller":{}},"authmethods":["cookie"]}]"#,
    );
    aborted(&mut w, 4, "wamp.error.no_auth_method");
    open_with_cookie(&mut w, 0, 5, "c1", 1000);
    w.send(5, r#"[1,"realm1",{"roles":{"caller":{}}}]"#);
    let got = welcomed(&mut w, 5);
    assert_eq!((&*got.1, &*got.2), ("backend", "anonymous"));
    // Expired: the binding no longer counts.
    w.advance(1000);
    open_with_cookie(&mut w, 1, 6, "c1", 1000);
    w.send(
        6,
        r#"[1,"realm1",{"roles":{"caller":{}},"authmethods":["cookie"]}]"#,
    );
    aborted(&mut w, 6, "wamp.error.no_auth_method");
}

/// Client `conn` on `shard` says HELLO with `details` (JSON) on a transport `t`; returns
/// what it got at once.
fn hello_on(
    w: &mut World,
    shard: usize,
    conn: u64,
    t: TransportInfo,
    details: &str,
) -> Vec<String> {
    let c = ConnId(conn);
    w.home.insert(c, shard);
    w.shards[shard].handle_open(w.now, c, Serializer::Json, t);
    w.run();
    w.send(conn, &format!(r#"[1,"realm1",{details}]"#));
    w.take(conn)
}

/// The CHALLENGE's extra, for `method`.
fn challenged(got: &[String], method: &str) -> serde_json::Value {
    assert_eq!(got.len(), 1, "{got:?}");
    let v = json(&got[0]);
    assert_eq!(
        (v[0].as_u64(), v[1].as_str()),
        (Some(4), Some(method)),
        "{got:?}"
    );
    v[2].clone()
}

fn wampcra_hello(w: &mut World, conn: u64) -> (u64, serde_json::Value) {
    let got = hello_on(
        w,
        1,
        conn,
        TransportInfo::default(),
        r#"{"roles":{"caller":{}},"authmethods":["wampcra"],"authid":"peter"}"#,
    );
    assert_eq!(got, Vec::<String>::new());
    invocation(w)
}

#[test]
fn dynamic_wampcra_challenges_with_the_returned_secret() {
    let mut w = world(2, backend());
    component(&mut w, AUTHENTICATE);
    // Plain secret: asked at HELLO, then CHALLENGE; the right signature joins.
    let (req, args) = wampcra_hello(&mut w, 2);
    assert_eq!(
        (&args[1], &args[2]["authmethod"]),
        (&json(r#""peter""#), &json(r#""wampcra""#))
    );
    w.send(
        1,
        &format!(r#"[70,{req},{{}},[{{"role":"user","secret":"s3"}}]]"#),
    );
    let extra = challenged(&w.take(2), "wampcra");
    let text = extra["challenge"].as_str().unwrap();
    assert_eq!(json(text)["authprovider"], "dynamic");
    w.send(2, &format!(r#"[5,"{}",{{}}]"#, wampcra_sign("s3", text)));
    let got = welcomed(&mut w, 2);
    assert_eq!(
        (&*got.0, &*got.1, &*got.2, &*got.3),
        ("peter", "user", "wampcra", "dynamic")
    );
    // A wrong signature does not.
    let (req, _) = wampcra_hello(&mut w, 3);
    w.send(
        1,
        &format!(r#"[70,{req},{{}},[{{"role":"user","secret":"s3"}}]]"#),
    );
    let extra = challenged(&w.take(3), "wampcra");
    let text = extra["challenge"].as_str().unwrap();
    w.send(3, &format!(r#"[5,"{}",{{}}]"#, wampcra_sign("s4", text)));
    aborted(&mut w, 3, "wamp.error.authentication_failed");
    // Salted: the challenge announces the returned salt, iterations and keylen.
    let key = wampcra_derive_key("pw", "NaCl", 10, 16);
    let (req, _) = wampcra_hello(&mut w, 4);
    w.send(
        1,
        &format!(r#"[70,{req},{{}},[{{"role":"guest","secret":"{key}","salt":"NaCl","iterations":10,"keylen":16}}]]"#),
    );
    let extra = challenged(&w.take(4), "wampcra");
    assert_eq!(
        (
            extra["salt"].as_str(),
            extra["iterations"].as_u64(),
            extra["keylen"].as_u64()
        ),
        (Some("NaCl"), Some(10), Some(16))
    );
    let text = extra["challenge"].as_str().unwrap();
    w.send(4, &format!(r#"[5,"{}",{{}}]"#, wampcra_sign(&key, text)));
    assert_eq!(welcomed(&mut w, 4).1, "guest");
    // No secret, a secret of the wrong type, a bad iteration count, an unknown role.
    for (conn, answer, reason) in [
        (5, r#"{"role":"user"}"#, "wamp.error.authentication_failed"),
        (
            6,
            r#"{"role":"user","secret":7}"#,
            "wamp.error.authentication_failed",
        ),
        (
            7,
            r#"{"role":"user","secret":"x","salt":"s","iterations":0}"#,
            "wamp.error.authentication_failed",
        ),
        (
            8,
            r#"{"role":"nobody","secret":"x"}"#,
            "wamp.error.no_such_role",
        ),
    ] {
        let (req, _) = wampcra_hello(&mut w, conn);
        w.send(1, &format!(r#"[70,{req},{{}},[{answer}]]"#));
        aborted(&mut w, conn, reason);
    }
    for s in &w.shards {
        assert_eq!(s.pending_counts().router_calls, 0);
    }
}

/// Client `conn` (shard 1) offers `method` (SCRAM) as `sam` with a nonce; returns the
/// authenticator's INVOCATION.
fn scram_hello(w: &mut World, conn: u64, method: &str) -> (u64, serde_json::Value) {
    let got = hello_on(
        w,
        1,
        conn,
        TransportInfo::default(),
        &format!(
            r#"{{"roles":{{"caller":{{}}}},"authmethods":["{method}"],"authid":"sam","authextra":{{"nonce":"{}"}}}}"#,
            STANDARD.encode(b"client-nonce")
        ),
    );
    assert_eq!(got, Vec::<String>::new());
    invocation(w)
}

/// The principal a dynamic authenticator returns for SCRAM: the credential of `password`
/// in the shape of Autobahn's `derive_scram_credential`.
fn scram_principal(role: &str, kdf: ScramKdf, password: &str) -> String {
    let memory = if kdf == ScramKdf::Pbkdf2 { 0 } else { 64 };
    let c = scram_credential(kdf, password, b"salt-of-sam", 2, memory).unwrap();
    format!(
        r#"{{"role":"{role}","kdf":"{}","iterations":2,"memory":{memory},"salt":"{}","stored-key":"{}","server-key":"{}"}}"#,
        c.kdf_name,
        hex::encode(&c.salt),
        hex::encode(c.stored_key),
        hex::encode(c.server_key)
    )
}

#[test]
fn dynamic_scram_challenges_with_the_returned_credential() {
    let mut w = world(2, backend());
    component(&mut w, AUTHENTICATE);
    for (conn, kdf, method) in [
        (2, ScramKdf::Pbkdf2, "wamp-scram"),
        (3, ScramKdf::Argon2id13, "scram"),
    ] {
        let (req, args) = scram_hello(&mut w, conn, method);
        assert_eq!(
            (&args[1], args[2]["authmethod"].as_str()),
            (&json(r#""sam""#), Some(method))
        );
        let answer = scram_principal("user", kdf, "pw");
        w.send(1, &format!(r#"[70,{req},{{}},[{answer}]]"#));
        let extra = challenged(&w.take(conn), method);
        let server_nonce = extra["nonce"].as_str().unwrap();
        let salt = extra["salt"].as_str().unwrap();
        let iterations = extra["iterations"].as_u64().unwrap() as u32;
        let memory = extra
            .get("memory")
            .map_or(0, |m| m.as_u64().unwrap() as u32);
        let salted = scram_salted_password(
            kdf,
            "pw",
            &STANDARD.decode(salt).unwrap(),
            iterations,
            memory,
        )
        .unwrap();
        let nonce = STANDARD.encode(b"client-nonce");
        let message = scram_auth_message("sam", &nonce, server_nonce, salt, iterations);
        let (proof, _) = scram_client_proof(&salted, &message);
        w.send(conn, &format!(r#"[5,"{proof}",{{}}]"#));
        let got = welcomed(&mut w, conn);
        assert_eq!(
            (&*got.0, &*got.1, &*got.2, &*got.3),
            ("sam", "user", method, "dynamic")
        );
    }
    // The wrong password does not join.
    let (req, _) = scram_hello(&mut w, 4, "wamp-scram");
    let answer = scram_principal("user", ScramKdf::Pbkdf2, "pw");
    w.send(1, &format!(r#"[70,{req},{{}},[{answer}]]"#));
    let extra = challenged(&w.take(4), "wamp-scram");
    let salt = extra["salt"].as_str().unwrap();
    let salted = scram_salted_password(
        ScramKdf::Pbkdf2,
        "guess",
        &STANDARD.decode(salt).unwrap(),
        2,
        0,
    )
    .unwrap();
    let nonce = STANDARD.encode(b"client-nonce");
    let message = scram_auth_message("sam", &nonce, extra["nonce"].as_str().unwrap(), salt, 2);
    let (proof, _) = scram_client_proof(&salted, &message);
    w.send(4, &format!(r#"[5,"{proof}",{{}}]"#));
    aborted(&mut w, 4, "wamp.error.authentication_failed");
    // Credentials of a bad shape, and a role the realm lacks, are refused.
    let good = scram_principal("user", ScramKdf::Pbkdf2, "pw");
    for (conn, answer, reason) in [
        (
            5,
            r#"{"role":"user"}"#.to_owned(),
            "wamp.error.authentication_failed",
        ),
        (
            6,
            good.replace("pbkdf2", "md5"),
            "wamp.error.authentication_failed",
        ),
        (
            7,
            good.replace(r#""iterations":2"#, r#""iterations":0"#),
            "wamp.error.authentication_failed",
        ),
        (
            8,
            good.replace(r#""salt":""#, r#""salt":"zz"#),
            "wamp.error.authentication_failed",
        ),
        (
            9,
            good.replace("stored-key", "stored_key"),
            "wamp.error.authentication_failed",
        ),
        (
            10,
            scram_principal("nobody", ScramKdf::Pbkdf2, "pw"),
            "wamp.error.no_such_role",
        ),
    ] {
        let (req, _) = scram_hello(&mut w, conn, "wamp-scram");
        w.send(1, &format!(r#"[70,{req},{{}},[{answer}]]"#));
        aborted(&mut w, conn, reason);
    }
    // Without a nonce the authenticator is not even asked.
    let got = hello_on(
        &mut w,
        1,
        11,
        TransportInfo::default(),
        r#"{"roles":{"caller":{}},"authmethods":["wamp-scram"],"authid":"sam"}"#,
    );
    assert_eq!(json(&got[0])[0], 3, "{got:?}");
    assert!(w.take(1).is_empty());
    for s in &w.shards {
        assert_eq!(s.pending_counts().router_calls, 0);
    }
}

#[test]
fn dynamic_cryptosign_challenges_with_the_returned_key() {
    let seed = [5_u8; 32];
    let pubkey = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes(),
    );
    let hello = |binding: &str| {
        format!(
            r#"{{"roles":{{"caller":{{}}}},"authmethods":["cryptosign"],"authid":"alice","authextra":{{"pubkey":"{pubkey}"{binding}}}}}"#
        )
    };
    let mut w = world(2, backend());
    component(&mut w, AUTHENTICATE);
    // The authenticator sees the client's key and returns it: CHALLENGE, signature, WELCOME.
    assert_eq!(
        hello_on(&mut w, 1, 2, TransportInfo::default(), &hello("")),
        Vec::<String>::new()
    );
    let (req, args) = invocation(&mut w);
    assert_eq!(
        args[2]["authextra"]["pubkey"].as_str(),
        Some(pubkey.as_str())
    );
    w.send(
        1,
        &format!(r#"[70,{req},{{}},[{{"role":"user","pubkey":"{pubkey}"}}]]"#),
    );
    let extra = challenged(&w.take(2), "cryptosign");
    let signature = cryptosign_sign(&seed, extra["challenge"].as_str().unwrap(), None).unwrap();
    w.send(2, &format!(r#"[5,"{signature}",{{}}]"#));
    let got = welcomed(&mut w, 2);
    assert_eq!(
        (&*got.0, &*got.1, &*got.2, &*got.3),
        ("alice", "user", "cryptosign", "dynamic")
    );
    // The principal's key is another one: refused before any CHALLENGE.
    hello_on(&mut w, 1, 3, TransportInfo::default(), &hello(""));
    let (req, _) = invocation(&mut w);
    let other = "11".repeat(32);
    w.send(
        1,
        &format!(r#"[70,{req},{{}},[{{"role":"user","pubkey":"{other}"}}]]"#),
    );
    aborted(&mut w, 3, "wamp.error.not_authorized");
    // No pubkey in the answer.
    hello_on(&mut w, 1, 4, TransportInfo::default(), &hello(""));
    let (req, _) = invocation(&mut w);
    w.send(1, &format!(r#"[70,{req},{{}},["user"]]"#));
    aborted(&mut w, 4, "wamp.error.authentication_failed");
    // A channel binding the transport cannot give, or one nobody defines: refused at
    // HELLO, the authenticator is not asked.
    for (conn, binding) in [
        (5, r#","channel_binding":"tls-unique""#),
        (6, r#","channel_binding":"tls-exporter""#),
    ] {
        let got = hello_on(&mut w, 1, conn, TransportInfo::default(), &hello(binding));
        let v = json(&got[0]);
        assert_eq!(
            (v[0].as_u64(), v[2].as_str()),
            (Some(3), Some("wamp.error.not_authorized")),
            "{got:?}"
        );
        assert!(
            v[1]["message"]
                .as_str()
                .unwrap()
                .contains("channel binding"),
            "{got:?}"
        );
        assert_eq!(w.take(1), Vec::<String>::new());
    }
}

#[test]
fn dynamic_tls_passes_the_certificate() {
    let mut w = world(2, backend());
    component(&mut w, AUTHENTICATE);
    let t = TransportInfo {
        kind: "websocket".into(),
        peer: "tcp4:127.0.0.1:9".into(),
        client_cert_cn: Some("carol".into()),
        client_cert_sha1: Some([0x0f; 20]),
        ..TransportInfo::default()
    };
    let details = r#"{"roles":{"caller":{}},"authmethods":["tls"]}"#;
    assert_eq!(
        hello_on(&mut w, 1, 2, t.clone(), details),
        Vec::<String>::new()
    );
    let (req, args) = invocation(&mut w);
    let cert = &args[2]["transport"]["client_cert"];
    assert_eq!(cert["sha1"].as_str(), Some(["0F"; 20].join(":").as_str()));
    assert_eq!(cert["subject"]["cn"], "carol");
    w.send(
        1,
        &format!(r#"[70,{req},{{}},[{{"role":"user","authid":"carol"}}]]"#),
    );
    let got = welcomed(&mut w, 2);
    assert_eq!(
        (&*got.0, &*got.1, &*got.2, &*got.3),
        ("carol", "user", "tls", "dynamic")
    );
    // Without a certificate the authenticator is not asked.
    let got = hello_on(&mut w, 1, 3, TransportInfo::default(), details);
    assert_eq!(json(&got[0])[2], "wamp.error.not_authorized", "{got:?}");
    assert_eq!(w.take(1), Vec::<String>::new());
}

#[test]
fn dynamic_failures_go_through_the_throttle() {
    // One free failure per address, then 500 ms, then 1000 ms.
    let mut w = world_with(1, backend(), 1);
    component(&mut w, AUTHENTICATE);
    // 1: the authenticator raises: ABORT at once.
    let (req, _) = ticket_hello(&mut w, 0, 2, "x");
    w.send(
        1,
        &format!(r#"[8,68,{req},{{}},"com.example.invalid_ticket"]"#),
    );
    aborted(&mut w, 2, "com.example.invalid_ticket");
    // 2: garbage: the ABORT waits 500 ms.
    let (req, _) = ticket_hello(&mut w, 0, 3, "x");
    w.send(1, &format!(r#"[70,{req},{{}},[[1,2]]]"#));
    w.check(3, &[]);
    w.advance(499);
    w.check(3, &[]);
    w.advance(1);
    aborted(&mut w, 3, "wamp.error.authentication_failed");
    // 3: a timeout: the ABORT comes 1000 ms after the deadline.
    let _ = ticket_hello(&mut w, 0, 4, "x");
    w.advance(TIMEOUT_MS);
    w.check(4, &[]);
    w.advance(999);
    w.check(4, &[]);
    w.advance(1);
    aborted(&mut w, 4, "wamp.error.authentication_failed");
    // 4: not registered any more.
    w.send(1, "[6,{},\"wamp.close.normal\"]");
    w.take(1);
    w.open(0, 5);
    w.send(
        5,
        r#"[1,"realm1",{"roles":{"caller":{}},"authmethods":["ticket"],"authid":"joe"}]"#,
    );
    w.take(5);
    w.send(5, r#"[5,"x",{}]"#);
    w.check(5, &[]);
    w.advance(2000);
    aborted(&mut w, 5, "wamp.error.authentication_failed");
}
