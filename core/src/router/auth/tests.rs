//! Unit tests of the authentication methods: the published vectors (Autobahn's WAMP-CRA,
//! PBKDF2, cryptosign and SCRAM test vectors), and whole HELLO → CHALLENGE → AUTHENTICATE
//! exchanges on one shard, including the deadline, the order rules and the throttle.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value as J};

use super::super::*;
use super::throttle::{address, Throttle};
use super::wampcra::timestamp;
use crate::codec::{self, Serializer};
use crate::message::{Dict, Hello};

// ---- vectors ----

#[test]
fn wampcra_signature_vector() {
    // autobahn/wamp/test/test_wamp_auth.py: test_compute_wcs.
    assert_eq!(
        wampcra_sign("L3L1YUE8Txlw", "[1, 2, 3]"),
        "1njQtmmeYO41N5EWEzD2kAjjEKRZ5kPZt/TzpYXOzR0="
    );
}

#[test]
fn wampcra_salted_key_vector() {
    // autobahn/wamp/test/test_wamp_auth.py: test_derive_key (1000 iterations, 32 bytes).
    assert_eq!(
        wampcra_derive_key("L3L1YUE8Txlw", "salt123", 1000, 32),
        "qzcdsr9uu/L5hnss3kjNTRe490ETgA70ZBaB5rvnJ5Y="
    );
}

#[test]
fn cryptosign_signature_vectors() {
    // autobahn/wamp/test/test_wamp_cryptosign.py: test_vectors_1.
    let cid = "62e935ae755f3d48f80d4d59f6121358c435722a67e859cc0caa8b539027f2ff";
    let check = |key: &str, challenge: &str, channel: Option<&str>, expect: &str| {
        let seed: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
        let channel = channel.map(|c| hex::decode(c).unwrap());
        assert_eq!(
            cryptosign_sign(&seed, challenge, channel.as_deref()).unwrap(),
            expect
        );
    };
    check(
        "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        None,
        "b32675b221f08593213737bef8240e7c15228b07028e19595294678c90d11c0cae80a357331bfc5cc9fb71081464e6e75013517c2cf067ad566a6b7b728e5d03ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    );
    check(
        "d511fe78e23934b3dadb52fcd022974b80bd92bccc7c5cf404e46cc0a8a2f5cd",
        "b26c1f87c13fc1da14997f1b5a71995dff8fbe0a62fae8473c7bdbd05bfb607d",
        None,
        "d4209ad10d5aff6bfbc009d7e924795de138a63515efc7afc6b01b7fe5201372190374886a70207b042294af5bd64ce725cd8dceb344e6d11c09d1aaaf4d660fb26c1f87c13fc1da14997f1b5a71995dff8fbe0a62fae8473c7bdbd05bfb607d",
    );
    check(
        "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        Some(cid),
        "9b6f41540c9b95b4b7b281c3042fa9c54cef43c842d62ea3fd6030fcb66e70b3e80d49d44c29d1635da9348d02ec93f3ed1ef227dfb59a07b580095c2b82f80f9d16ca518aa0c2b707f2b2a609edeca73bca8dd59817a633f35574ac6fd80d00",
    );
    check(
        "6e1fde9cf9e2359a87420b65a87dc0c66136e66945196ba2475990d8a0c3a25b",
        "b05e6b8ad4d69abf74aa3be3c0ee40ae07d66e1895b9ab09285a2f1192d562d2",
        Some(cid),
        "ee3c7644fd8070532bc1fde3d70d742267da545d8c8f03e63bda63f1ad4214f4d2c4bfdb4eb9526def42deeb7e31602a6ff99eba893e0a4ad4d45892ca75e608d2b75e24a189a7f78ca776ba36fc53f6c3e31c32f251f2c524f0a44202f2902d",
    );
}

#[test]
fn scram_kdf_vectors() {
    // autobahn/wamp/test/test_wamp_auth.py: TestScram (argon2 CLI: -id -t 32 -m 9 -p 1 -l 32).
    let salted = scram_salted_password(
        ScramKdf::Argon2id13,
        "p4ssw0rd",
        b"1234567890abcdef",
        32,
        512,
    )
    .unwrap();
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&salted)
        .unwrap();
    assert_eq!(
        hex::encode(raw),
        "ee4a8acf9d5958354fb79a95ae20692d05e42591ba49fae85eb6700e8b0ed293"
    );
    let salted =
        scram_salted_password(ScramKdf::Pbkdf2, "p4ssw0rd", b"1234567890abcdef", 8, 0).unwrap();
    assert_eq!(
        hex::encode(salted),
        "f6991a28c75f43751e0d75499fd7b8649f659118ddc1d61cee5883af547d15f5"
    );
}

#[test]
fn scram_credential_vector() {
    // autobahn/wamp/test/test_wamp_scram.py: the explicit-salt vector (t=4096, m=512).
    let salt = hex::decode("ae1f0d2f422757809077785e660b62c6").unwrap();
    let c = scram_credential(ScramKdf::Argon2id13, "secret123", &salt, 4096, 512).unwrap();
    assert_eq!(
        hex::encode(c.server_key),
        "0d8e7e9222a7c0e54c9e979aa342115699ff5696c45dc379b5ee241338a5861d"
    );
    assert_eq!(
        hex::encode(c.stored_key),
        "5f19358ff6f38e267b6ef1ea1d862514ec4e8745a84682259fd3894be09febb5"
    );
}

#[test]
fn timestamps() {
    assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(timestamp(1_700_000_000_123_456), "2023-11-14T22:13:20.123Z");
    assert_eq!(timestamp(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
}

#[test]
fn entropy_is_seeded_and_moves_on() {
    let mut a = Entropy::from_seed([1; 32]);
    let mut b = Entropy::from_seed([1; 32]);
    let mut c = Entropy::from_seed([2; 32]);
    let x: [u8; 40] = a.bytes();
    assert_eq!(x, b.bytes::<40>());
    assert_ne!(x, c.bytes::<40>());
    assert_ne!(x, a.bytes::<40>());
    assert!(!format!("{a:?}").contains('1'));
}

#[test]
fn throttle_addresses_and_delays() {
    assert_eq!(address("tcp4:10.0.0.1:5000"), "10.0.0.1");
    assert_eq!(address("tcp6:[::1]:5000"), "::1");
    assert_eq!(address("unix"), "unix");
    let limits = AuthLimits {
        free_failures: 2,
        failure_delay_ms: 100,
        max_failure_delay_ms: 350,
        forget_ms: 1000,
        throttled_addresses: 2,
        ..AuthLimits::default()
    };
    let mut t = Throttle::default();
    let delays: Vec<_> = (0..6).map(|_| t.failure(&limits, "a", Time(0))).collect();
    assert_eq!(
        delays,
        [None, None, Some(100), Some(200), Some(350), Some(350)]
    );
    // Forgotten after `forget_ms` without failures; cleared by a success.
    assert_eq!(t.failure(&limits, "a", Time(0).plus_ms(1000)), None);
    t.success("a");
    assert_eq!(t.len(), 0);
    // Bounded: a third address evicts the oldest.
    t.failure(&limits, "a", Time(1));
    t.failure(&limits, "b", Time(2));
    t.failure(&limits, "c", Time(3));
    assert_eq!(t.len(), 2);
}

// ---- exchanges on a shard ----

const CRA_PASSWORD: &str = "secret-cra";
const SCRAM_PASSWORD: &str = "secret-scram";
const SEED: [u8; 32] = [7; 32];
const CERT_SHA1: [u8; 20] = [0xab; 20];

fn principal<S>(role: &str, secret: S) -> Principal<S> {
    Principal {
        role: role.to_owned(),
        realm: None,
        secret,
    }
}

fn config() -> AuthConfig {
    let pubkey = ed25519_dalek::SigningKey::from_bytes(&SEED)
        .verifying_key()
        .to_bytes();
    let mut ticket = BTreeMap::new();
    ticket.insert(
        "joe".to_owned(),
        principal(
            "frontend",
            TicketSecret {
                ticket: "t0p".into(),
            },
        ),
    );
    let mut limited = principal(
        "frontend",
        TicketSecret {
            ticket: "t0p".into(),
        },
    );
    limited.realm = Some("other".into());
    ticket.insert("elsewhere".to_owned(), limited);
    ticket.insert(
        "ghost".to_owned(),
        principal(
            "no-such-role",
            TicketSecret {
                ticket: "boo".into(),
            },
        ),
    );
    let mut tls = BTreeMap::new();
    tls.insert(
        "carol".to_owned(),
        principal("certified", TlsCertificate { sha1: CERT_SHA1 }),
    );
    tls.insert(
        "ghost".to_owned(),
        principal("no-such-role", TlsCertificate { sha1: [0xee; 20] }),
    );
    let mut wampcra = BTreeMap::new();
    wampcra.insert(
        "peter".to_owned(),
        principal(
            "backend",
            WampCraSecret {
                secret: CRA_PASSWORD.into(),
                salt: None,
            },
        ),
    );
    wampcra.insert(
        "salty".to_owned(),
        principal(
            "backend",
            WampCraSecret {
                secret: wampcra_derive_key(CRA_PASSWORD, "pepper", 100, 32),
                salt: Some(CraSalt {
                    salt: "pepper".into(),
                    iterations: 100,
                    keylen: 32,
                }),
            },
        ),
    );
    let mut cryptosign = BTreeMap::new();
    cryptosign.insert(
        "alice".to_owned(),
        principal(
            "signer",
            CryptosignKeys {
                authorized_keys: vec![[9; 32], pubkey],
            },
        ),
    );
    let mut scram = BTreeMap::new();
    for (id, kdf, iterations, memory) in [
        ("argon", ScramKdf::Argon2id13, 2, 64),
        ("pbk", ScramKdf::Pbkdf2, 50, 0),
    ] {
        let c =
            scram_credential(kdf, SCRAM_PASSWORD, b"0123456789abcdef", iterations, memory).unwrap();
        scram.insert(id.to_owned(), principal("scrammer", c));
    }
    AuthConfig {
        anonymous: None,
        ticket: Some(ticket),
        wampcra: Some(wampcra),
        cryptosign: Some(cryptosign),
        scram: Some(scram),
        tls: Some(tls),
        ..AuthConfig::default()
    }
}

/// realm1 with the roles the principals of [`config`] have, except `ghost`'s.
fn router_config() -> RouterConfig {
    let mut router = RouterConfig::default();
    for name in ["frontend", "backend", "signer", "scrammer", "certified"] {
        router.realms[0].roles.push(RoleConfig {
            name: name.into(),
            permissions: vec![Permission::all("", MatchPolicy::Prefix)],
            authorizer: None,
        });
    }
    router
}

struct One {
    shard: Shard,
    now: Time,
    out: Vec<(u64, J)>,
    closed: Vec<u64>,
}

impl One {
    fn new() -> Self {
        let auth = Configured::new(
            vec![AuthConfig::anonymous(), config()],
            Entropy::from_seed([3; 32]),
            1_700_000_000_000_000,
        );
        let shard = Shard::with_authenticator(
            ShardConfig {
                index: 0,
                count: 1,
                seed: 1,
                router: Arc::new(router_config()),
            },
            Box::new(auth),
        );
        Self {
            shard,
            now: Time(0),
            out: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn open(&mut self, conn: u64, peer: &str, auth: usize, binding: Option<Vec<u8>>) {
        let t = TransportInfo {
            kind: "websocket".into(),
            peer: peer.into(),
            auth,
            channel_binding: binding,
            ..TransportInfo::default()
        };
        self.shard
            .handle_open(self.now, ConnId(conn), Serializer::Json, t);
    }

    /// Sends `json` on `conn`; what came back to it.
    fn send(&mut self, conn: u64, json: &str) -> Vec<J> {
        match codec::decode(Serializer::Json, Bytes::copy_from_slice(json.as_bytes())) {
            Ok(m) => self.shard.handle_message(self.now, ConnId(conn), m),
            Err(e) => self.shard.handle_decode_error(self.now, ConnId(conn), &e),
        }
        self.drain(conn)
    }

    fn drain(&mut self, conn: u64) -> Vec<J> {
        while let Some(o) = self.shard.poll_output() {
            match o {
                Output::Send { conn, bytes } => self
                    .out
                    .push((conn.0, serde_json::from_slice(&bytes).unwrap())),
                Output::Close { conn } => self.closed.push(conn.0),
                other => panic!("unexpected {other:?}"),
            }
        }
        let (mine, rest) = std::mem::take(&mut self.out)
            .into_iter()
            .partition(|(c, _)| *c == conn);
        self.out = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    fn timeout(&mut self, conn: u64, ms: u64) -> Vec<J> {
        self.now = self.now.plus_ms(ms);
        self.shard.handle_timeout(self.now);
        self.drain(conn)
    }

    /// Opens `conn` on the configured transport and says HELLO.
    fn hello(&mut self, conn: u64, peer: &str, details: J) -> Vec<J> {
        self.open(conn, peer, 1, None);
        self.send(conn, &json!([1, "realm1", details]).to_string())
    }
}

fn hello(methods: &[&str], authid: Option<&str>, authextra: J) -> J {
    let mut d = json!({"roles": {"caller": {}}, "authmethods": methods, "authextra": authextra});
    if let Some(a) = authid {
        d["authid"] = json!(a);
    }
    d
}

fn authenticate(signature: &str) -> String {
    json!([5, signature, {}]).to_string()
}

/// The message is a WELCOME for `authid` with `authrole` and `authmethod`.
fn welcomed(m: &[J], authid: &str, authrole: &str, authmethod: &str) -> J {
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0][0], 2, "{m:?}");
    let d = &m[0][2];
    assert_eq!(
        (
            d["authid"].as_str(),
            d["authrole"].as_str(),
            d["authmethod"].as_str()
        ),
        (Some(authid), Some(authrole), Some(authmethod)),
        "{m:?}"
    );
    assert_eq!(d["authprovider"], "static");
    d.clone()
}

fn aborted(m: &[J], reason: &str) {
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (m[0][0].as_u64(), m[0][2].as_str()),
        (Some(3), Some(reason)),
        "{m:?}"
    );
}

fn challenge(m: &[J], method: &str) -> J {
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (m[0][0].as_u64(), m[0][1].as_str()),
        (Some(4), Some(method)),
        "{m:?}"
    );
    m[0][2].clone()
}

const PEER: &str = "tcp4:127.0.0.1:4000";

#[test]
fn ticket_right_wrong_unknown_and_realm_bound() {
    let mut w = One::new();
    let c = w.hello(1, PEER, hello(&["ticket"], Some("joe"), json!({})));
    assert_eq!(challenge(&c, "ticket"), json!({}));
    welcomed(
        &w.send(1, &authenticate("t0p")),
        "joe",
        "frontend",
        "ticket",
    );

    w.hello(2, PEER, hello(&["ticket"], Some("joe"), json!({})));
    aborted(&w.send(2, &authenticate("t0q")), AUTHENTICATION_FAILED);
    assert!(w.closed.contains(&2));

    aborted(
        &w.hello(
            3,
            "tcp4:10.0.0.3:1",
            hello(&["ticket"], Some("nobody"), json!({})),
        ),
        NOT_AUTHORIZED,
    );
    aborted(
        &w.hello(
            4,
            "tcp4:10.0.0.4:1",
            hello(&["ticket"], Some("elsewhere"), json!({})),
        ),
        NOT_AUTHORIZED,
    );
    aborted(
        &w.hello(5, "tcp4:10.0.0.5:1", hello(&["ticket"], None, json!({}))),
        NOT_AUTHORIZED,
    );
}

#[test]
fn method_choice_follows_the_client_and_the_transport() {
    let mut w = One::new();
    // Anonymous is not configured on transport 1; the next offered method is used.
    let c = w.hello(
        1,
        PEER,
        hello(&["anonymous", "ticket"], Some("joe"), json!({})),
    );
    challenge(&c, "ticket");
    aborted(
        &w.hello(2, PEER, hello(&["anonymous"], None, json!({}))),
        NO_AUTH_METHOD,
    );
    // Transport 0 is anonymous only.
    w.open(3, PEER, 0, None);
    let m = w.send(3, r#"[1,"realm1",{"roles":{}}]"#);
    welcomed(
        &m,
        m[0][2]["authid"].as_str().unwrap(),
        "anonymous",
        "anonymous",
    );
    w.open(4, PEER, 0, None);
    aborted(
        &w.send(
            4,
            &json!([1, "realm1", hello(&["ticket"], Some("joe"), json!({}))]).to_string(),
        ),
        NO_AUTH_METHOD,
    );
}

#[test]
fn wampcra_plain_and_salted() {
    let mut w = One::new();
    let extra = challenge(
        &w.hello(1, PEER, hello(&["wampcra"], Some("peter"), json!({}))),
        "wampcra",
    );
    let text = extra["challenge"].as_str().unwrap();
    let fields: J = serde_json::from_str(text).unwrap();
    assert_eq!(fields["authid"], "peter");
    assert_eq!(fields["authrole"], "backend");
    assert_eq!(fields["authmethod"], "wampcra");
    assert_eq!(fields["authprovider"], "static");
    assert!(fields["session"].as_u64().unwrap() > 0);
    assert!(fields["nonce"].as_str().unwrap().len() >= 32);
    assert_eq!(fields["timestamp"], "2023-11-14T22:13:20.000Z");
    assert!(extra.get("salt").is_none());
    let m = w.send(1, &authenticate(&wampcra_sign(CRA_PASSWORD, text)));
    welcomed(&m, "peter", "backend", "wampcra");
    // The WELCOME's session id is the one the challenge named.
    assert_eq!(m[0][1], fields["session"]);

    let extra = challenge(
        &w.hello(2, PEER, hello(&["wampcra"], Some("salty"), json!({}))),
        "wampcra",
    );
    assert_eq!(
        (
            extra["salt"].as_str(),
            extra["iterations"].as_u64(),
            extra["keylen"].as_u64()
        ),
        (Some("pepper"), Some(100), Some(32))
    );
    let key = wampcra_derive_key(CRA_PASSWORD, "pepper", 100, 32);
    let m = w.send(
        2,
        &authenticate(&wampcra_sign(&key, extra["challenge"].as_str().unwrap())),
    );
    welcomed(&m, "salty", "backend", "wampcra");

    let extra = challenge(
        &w.hello(3, PEER, hello(&["wampcra"], Some("peter"), json!({}))),
        "wampcra",
    );
    let wrong = wampcra_sign("not-it", extra["challenge"].as_str().unwrap());
    aborted(&w.send(3, &authenticate(&wrong)), AUTHENTICATION_FAILED);
    w.hello(4, PEER, hello(&["wampcra"], Some("peter"), json!({})));
    aborted(
        &w.send(4, &authenticate("%%% not base64")),
        AUTHENTICATION_FAILED,
    );
}

#[test]
fn cryptosign_keys_and_channel_binding() {
    let mut w = One::new();
    let pubkey = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&SEED)
            .verifying_key()
            .to_bytes(),
    );
    for (conn, authid) in [(1, Some("alice")), (2, None)] {
        let extra = challenge(
            &w.hello(
                conn,
                PEER,
                hello(&["cryptosign"], authid, json!({"pubkey": pubkey})),
            ),
            "cryptosign",
        );
        assert_eq!(extra["channel_binding"], J::Null);
        let ch = extra["challenge"].as_str().unwrap();
        assert_eq!(ch.len(), 64);
        let sig = cryptosign_sign(&SEED, ch, None).unwrap();
        welcomed(
            &w.send(conn, &authenticate(&sig)),
            "alice",
            "signer",
            "cryptosign",
        );
    }
    // A signature by another key, a bit flipped, a signature over something else.
    let extra = challenge(
        &w.hello(
            3,
            PEER,
            hello(&["cryptosign"], Some("alice"), json!({"pubkey": pubkey})),
        ),
        "cryptosign",
    );
    let other = cryptosign_sign(&[8; 32], extra["challenge"].as_str().unwrap(), None).unwrap();
    aborted(&w.send(3, &authenticate(&other)), AUTHENTICATION_FAILED);
    let extra = challenge(
        &w.hello(
            4,
            PEER,
            hello(&["cryptosign"], Some("alice"), json!({"pubkey": pubkey})),
        ),
        "cryptosign",
    );
    let mut sig = cryptosign_sign(&SEED, extra["challenge"].as_str().unwrap(), None).unwrap();
    sig.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
    aborted(&w.send(4, &authenticate(&sig)), AUTHENTICATION_FAILED);
    w.hello(
        5,
        PEER,
        hello(&["cryptosign"], Some("alice"), json!({"pubkey": pubkey})),
    );
    let sig = cryptosign_sign(&SEED, &"00".repeat(32), None).unwrap();
    aborted(&w.send(5, &authenticate(&sig)), AUTHENTICATION_FAILED);
    // An unauthorized key; no key at all.
    let stranger = hex::encode([5u8; 32]);
    aborted(
        &w.hello(
            6,
            "tcp4:10.0.1.6:1",
            hello(&["cryptosign"], Some("alice"), json!({"pubkey": stranger})),
        ),
        NOT_AUTHORIZED,
    );
    aborted(
        &w.hello(
            7,
            "tcp4:10.0.1.7:1",
            hello(&["cryptosign"], Some("alice"), json!({})),
        ),
        NOT_AUTHORIZED,
    );
    // tls-unique: refused where the transport has no channel id, verified where it has.
    let bound = json!({"pubkey": pubkey, "channel_binding": "tls-unique"});
    let m = w.hello(
        8,
        "tcp4:10.0.1.8:1",
        hello(&["cryptosign"], Some("alice"), bound.clone()),
    );
    aborted(&m, NOT_AUTHORIZED);
    assert!(
        m[0][1]["message"].as_str().unwrap().contains("tls-unique"),
        "{m:?}"
    );
    let cid = vec![0x5a; 32];
    w.open(9, PEER, 1, Some(cid.clone()));
    let c = w.send(
        9,
        &json!([
            1,
            "realm1",
            hello(&["cryptosign"], Some("alice"), bound.clone())
        ])
        .to_string(),
    );
    let extra = challenge(&c, "cryptosign");
    assert_eq!(extra["channel_binding"], "tls-unique");
    let ch = extra["challenge"].as_str().unwrap();
    let unbound = cryptosign_sign(&SEED, ch, None).unwrap();
    w.open(10, PEER, 1, Some(cid.clone()));
    let c = w.send(
        10,
        &json!([1, "realm1", hello(&["cryptosign"], Some("alice"), bound)]).to_string(),
    );
    let ch10 = challenge(&c, "cryptosign")["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let sig = cryptosign_sign(&SEED, ch, Some(&cid)).unwrap();
    welcomed(
        &w.send(9, &authenticate(&sig)),
        "alice",
        "signer",
        "cryptosign",
    );
    let _ = unbound;
    let unbound10 = cryptosign_sign(&SEED, &ch10, None).unwrap();
    aborted(
        &w.send(10, &authenticate(&unbound10)),
        AUTHENTICATION_FAILED,
    );
}

#[test]
fn scram_with_both_kdfs() {
    let mut w = One::new();
    for (conn, authid, kdf, method) in [
        (1, "argon", ScramKdf::Argon2id13, "wamp-scram"),
        (2, "pbk", ScramKdf::Pbkdf2, "scram"),
    ] {
        let nonce = STANDARD.encode(b"client-nonce-123");
        let extra = challenge(
            &w.hello(
                conn,
                PEER,
                hello(&[method], Some(authid), json!({"nonce": nonce})),
            ),
            method,
        );
        let server_nonce = extra["nonce"].as_str().unwrap();
        assert!(STANDARD
            .decode(server_nonce)
            .unwrap()
            .starts_with(b"client-nonce-123"));
        let salt = extra["salt"].as_str().unwrap();
        let iterations = extra["iterations"].as_u64().unwrap() as u32;
        let memory = extra
            .get("memory")
            .map_or(0, |m| m.as_u64().unwrap() as u32);
        assert_eq!(
            extra["kdf"],
            if kdf == ScramKdf::Pbkdf2 {
                "pbkdf2"
            } else {
                "argon2id-13"
            }
        );
        let salted = scram_salted_password(
            kdf,
            SCRAM_PASSWORD,
            &STANDARD.decode(salt).unwrap(),
            iterations,
            memory,
        )
        .unwrap();
        let message = scram_auth_message(authid, &nonce, server_nonce, salt, iterations);
        let (proof, server_signature) = scram_client_proof(&salted, &message);
        let d = welcomed(
            &w.send(conn, &authenticate(&proof)),
            authid,
            "scrammer",
            method,
        );
        assert_eq!(
            d["authextra"]["scram_server_signature"],
            server_signature.as_str()
        );

        // The wrong password.
        let extra = challenge(
            &w.hello(
                conn + 10,
                PEER,
                hello(&[method], Some(authid), json!({"nonce": nonce})),
            ),
            method,
        );
        let wrong = scram_salted_password(
            kdf,
            "guess",
            &STANDARD.decode(salt).unwrap(),
            iterations,
            memory,
        )
        .unwrap();
        let message = scram_auth_message(
            authid,
            &nonce,
            extra["nonce"].as_str().unwrap(),
            salt,
            iterations,
        );
        aborted(
            &w.send(
                conn + 10,
                &authenticate(&scram_client_proof(&wrong, &message).0),
            ),
            AUTHENTICATION_FAILED,
        );
    }
    aborted(
        &w.hello(
            30,
            "tcp4:10.0.2.1:1",
            hello(&["scram"], Some("argon"), json!({})),
        ),
        NOT_AUTHORIZED,
    );
}

#[test]
fn order_rules_and_malformed_authenticate() {
    let mut w = One::new();
    // AUTHENTICATE before HELLO, and after WELCOME.
    w.open(1, PEER, 1, None);
    aborted(
        &w.send(1, &authenticate("x")),
        "wamp.error.protocol_violation",
    );
    w.hello(2, PEER, hello(&["ticket"], Some("joe"), json!({})));
    welcomed(
        &w.send(2, &authenticate("t0p")),
        "joe",
        "frontend",
        "ticket",
    );
    aborted(
        &w.send(2, &authenticate("t0p")),
        "wamp.error.protocol_violation",
    );
    // Another message instead of AUTHENTICATE.
    w.hello(3, PEER, hello(&["ticket"], Some("joe"), json!({})));
    aborted(
        &w.send(3, r#"[32,1,{},"a.b"]"#),
        "wamp.error.protocol_violation",
    );
    // A malformed AUTHENTICATE: no session.
    w.hello(4, PEER, hello(&["ticket"], Some("joe"), json!({})));
    aborted(&w.send(4, "[5, 17]"), "wamp.error.protocol_violation");
    assert!(w.closed.contains(&4));
    assert_eq!(w.shard.connection_count(), 0);
}

#[test]
fn unanswered_challenge_times_out() {
    let mut w = One::new();
    w.hello(1, PEER, hello(&["ticket"], Some("joe"), json!({})));
    assert_eq!(w.shard.poll_timeout(), Some(Time(0).plus_ms(10_000)));
    assert!(w.timeout(1, 9_999).is_empty());
    let m = w.timeout(1, 1);
    aborted(&m, AUTHENTICATION_FAILED);
    assert!(w.closed.contains(&1));
    assert_eq!(w.shard.connection_count(), 0);
    // A welcomed session leaves no timer behind.
    w.hello(2, PEER, hello(&["ticket"], Some("joe"), json!({})));
    w.send(2, &authenticate("t0p"));
    assert_eq!(w.shard.poll_timeout(), None);
}

#[test]
fn repeated_failures_from_one_address_are_slowed_down() {
    let mut w = One::new();
    let bad = "tcp4:192.0.2.1:";
    for conn in 1..=3 {
        w.hello(
            conn,
            &format!("{bad}{conn}"),
            hello(&["ticket"], Some("joe"), json!({})),
        );
        aborted(&w.send(conn, &authenticate("nope")), AUTHENTICATION_FAILED);
    }
    // The fourth failure waits 500 ms, the fifth 1000 ms; messages meanwhile change nothing.
    w.hello(
        4,
        &format!("{bad}4"),
        hello(&["ticket"], Some("joe"), json!({})),
    );
    assert!(w.send(4, &authenticate("nope")).is_empty());
    assert!(w.send(4, &authenticate("t0p")).is_empty());
    assert!(w.timeout(4, 499).is_empty());
    aborted(&w.timeout(4, 1), AUTHENTICATION_FAILED);
    w.hello(
        5,
        &format!("{bad}5"),
        hello(&["ticket"], Some("joe"), json!({})),
    );
    assert!(w.send(5, &authenticate("nope")).is_empty());
    assert!(w.timeout(5, 999).is_empty());
    aborted(&w.timeout(5, 1), AUTHENTICATION_FAILED);
    // Another address is not affected; a success clears the address.
    w.hello(
        6,
        "tcp4:192.0.2.2:6",
        hello(&["ticket"], Some("joe"), json!({})),
    );
    aborted(&w.send(6, &authenticate("nope")), AUTHENTICATION_FAILED);
    w.hello(
        7,
        &format!("{bad}7"),
        hello(&["ticket"], Some("joe"), json!({})),
    );
    welcomed(
        &w.send(7, &authenticate("t0p")),
        "joe",
        "frontend",
        "ticket",
    );
    w.hello(
        8,
        &format!("{bad}8"),
        hello(&["ticket"], Some("joe"), json!({})),
    );
    aborted(&w.send(8, &authenticate("nope")), AUTHENTICATION_FAILED);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let text = format!("{:?}", config());
    for secret in ["t0p", CRA_PASSWORD] {
        assert!(!text.contains(secret), "{text}");
    }
}

/// Challenges with a ticket, then leaves the AUTHENTICATE undecided, as a dynamic
/// authenticator does while its procedure runs.
#[derive(Debug)]
struct Undecided(Configured);

impl Authenticator for Undecided {
    fn start(&mut self, ctx: &AuthContext<'_>, hello: &Hello) -> Step {
        self.0.start(ctx, hello)
    }

    fn authenticate(&mut self, _: &AuthContext<'_>, _: Challenged, _: &str, _: &Dict) -> Step {
        Step::Pending
    }
}

#[test]
fn a_second_authenticate_while_the_first_is_undecided_is_a_violation() {
    let mut w = One::new();
    w.shard
        .set_authenticator(Box::new(Undecided(Configured::new(
            vec![AuthConfig::anonymous(), config()],
            Entropy::from_seed([3; 32]),
            0,
        ))));
    w.hello(1, PEER, hello(&["ticket"], Some("joe"), json!({})));
    assert!(w.send(1, &authenticate("t0p")).is_empty());
    let m = w.send(1, &authenticate("t0p"));
    aborted(&m, "wamp.error.protocol_violation");
    assert_eq!(m[0][1]["message"], "AUTHENTICATE repeated");
    // The late decision for a session that is gone changes nothing.
    w.shard.handle_auth_result(
        w.now,
        ConnId(1),
        Step::Welcome(AuthInfo {
            authid: "joe".into(),
            authrole: "frontend".into(),
            authmethod: "ticket".into(),
            authprovider: "static".into(),
            authextra: None,
        }),
    );
    assert!(w.drain(1).is_empty());
}

impl One {
    /// Opens `conn` on the configured transport as a TLS connection whose verified client
    /// certificate has fingerprint `sha1` (`None`: no certificate), and says HELLO.
    fn tls_hello(&mut self, conn: u64, sha1: Option<[u8; 20]>, details: J) -> Vec<J> {
        let t = TransportInfo {
            kind: "websocket".into(),
            peer: format!("tcp4:10.1.0.{conn}:1"),
            auth: 1,
            client_cert_cn: sha1.map(|_| "carol".to_owned()),
            client_cert_sha1: sha1,
            ..TransportInfo::default()
        };
        self.shard
            .handle_open(self.now, ConnId(conn), Serializer::Json, t);
        self.send(conn, &json!([1, "realm1", details]).to_string())
    }
}

#[test]
fn tls_principal_from_the_client_certificate() {
    let mut w = One::new();
    // The configured certificate: carol, whatever authid HELLO names; no CHALLENGE.
    welcomed(
        &w.tls_hello(
            1,
            Some(CERT_SHA1),
            hello(&["tls"], Some("mallory"), json!({})),
        ),
        "carol",
        "certified",
        "tls",
    );
    // No certificate, an unknown certificate, a certificate one bit away.
    let mut near = CERT_SHA1;
    near[19] ^= 1;
    for (conn, sha1) in [(2, None), (3, Some([1; 20])), (4, Some(near))] {
        aborted(
            &w.tls_hello(conn, sha1, hello(&["tls"], None, json!({}))),
            NOT_AUTHORIZED,
        );
        assert!(w.closed.contains(&conn));
    }
    // `tls` not offered: the next offered method decides.
    let c = w.tls_hello(
        5,
        Some(CERT_SHA1),
        hello(&["ticket"], Some("joe"), json!({})),
    );
    challenge(&c, "ticket");
    // The fingerprint in Crossbar's spelling.
    assert_eq!(
        tls_fingerprint(&[0xab; 20]),
        ["AB"; 20].join(":"),
        "pyOpenSSL's digest shape"
    );
}

#[test]
fn a_principal_whose_role_the_realm_lacks_does_not_join() {
    let mut w = One::new();
    // Static ticket: the right ticket, but role `no-such-role` is not a role of realm1.
    challenge(
        &w.hello(1, PEER, hello(&["ticket"], Some("ghost"), json!({}))),
        "ticket",
    );
    let m = w.send(1, &authenticate("boo"));
    aborted(&m, NO_SUCH_ROLE);
    assert!(
        m[0][1]["message"]
            .as_str()
            .is_some_and(|t| t.contains("no-such-role")),
        "{m:?}"
    );
    assert!(w.closed.contains(&1));
    // Static tls: the same.
    let mut w = One::new();
    aborted(
        &w.tls_hello(2, Some([0xee; 20]), hello(&["tls"], None, json!({}))),
        NO_SUCH_ROLE,
    );
    assert_eq!(w.shard.connection_count(), 0);
}
