//! The `tls` authentication method against the real `switchyard` binary, with
//! Autobahn|Python presenting client certificates (`tests/clients/py/tlsauth_checks.py`).
//!
//! Certificates are made at test time with `rcgen`: a test-only CA, a server certificate
//! for 127.0.0.1, client certificates `alice` (configured as a static principal by its
//! SHA-1 fingerprint, in Crossbar's colon-separated spelling) and `bob` from that CA, and
//! `mallory` from another CA. The node has a TLS WebSocket transport requiring client
//! certificates with static `tls`, one not asking for certificates with static `tls`, one
//! requiring certificates with dynamic `tls` (the authenticator is registered by the
//! client program over a plain transport). The right certificate joins with the
//! principal's role; an unknown one, another CA's, or none never gets a session.
//!
//! Autobahn|JS (`tests/clients/js/tlsauth_checks.js`) joins a TLS RawSocket transport with
//! static `tls`: its RawSocket transport's `net.connect` is swapped for `tls.connect` with
//! the client certificate, since Autobahn|JS on Node has no client-certificate option (its
//! WebSocket is Node's built-in one, which has none either).
//!
//! What it does not cover: Autobahn|JS over `wss://` with a client certificate (see above).

use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use switchyard_tests::{free_port, node_js, python, workspace_root, ClientRun, Node};

fn make_ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.self_signed(&key).unwrap(), key)
}

/// A leaf certificate: (certificate PEM, key PEM, SHA-1 of the DER as `AB:CD:...`).
fn leaf(
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &(Certificate, KeyPair),
) -> (String, String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    let sha1: Vec<String> = Sha1::digest(cert.der())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    (cert.pem(), key.serialize_pem(), sha1.join(":"))
}

fn config(ports: [u16; 5], alice_sha1: &str) -> Value {
    let [static_port, open_port, dynamic_port, plain_port, raw_port] = ports;
    let all = json!({"call": true, "register": true, "publish": true, "subscribe": true});
    let tls = |ca: bool| {
        let mut t = json!({"key": "server.key", "certificate": "server.crt"});
        if ca {
            t["ca_certificates"] = json!(["ca.crt"]);
        }
        t
    };
    let endpoint = |port: u16, tls: Option<Value>| {
        let mut e = json!({"type": "tcp", "port": port, "interface": "127.0.0.1"});
        if let Some(t) = tls {
            e["tls"] = t;
        }
        e
    };
    let static_tls = json!({"tls": {"type": "static", "principals": {
        "alice": {"role": "certified", "certificate-sha1": alice_sha1}
    }}});
    json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "realms": [{"name": "realm1", "roles": [
                {"name": "backend", "permissions": [{"uri": "", "match": "prefix", "allow": all}]},
                {"name": "certified", "permissions": [{"uri": "com.", "match": "prefix", "allow": all}]}
            ]}],
            "transports": [
                {"type": "websocket", "endpoint": endpoint(static_port, Some(tls(true))), "auth": static_tls},
                {"type": "websocket", "endpoint": endpoint(open_port, Some(tls(false))), "auth": static_tls},
                {"type": "websocket", "endpoint": endpoint(dynamic_port, Some(tls(true))), "auth": {
                    "tls": {"type": "dynamic", "authenticator": "com.example.tls_authenticate"}
                }},
                {"type": "websocket", "endpoint": endpoint(plain_port, None), "auth": {
                    "anonymous": {"type": "static", "role": "backend"}
                }},
                {"type": "rawsocket", "endpoint": endpoint(raw_port, Some(tls(true))), "auth": static_tls}
            ]
        }]
    })
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn client_certificates_decide_tls_authentication() {
    let ca = make_ca("Switchyard test CA (test only)");
    let other_ca = make_ca("Another test CA (test only)");
    let server = leaf(
        &["127.0.0.1", "localhost"],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    let client = |cn: &str, issuer| leaf(&[], cn, ExtendedKeyUsagePurpose::ClientAuth, issuer);
    let (alice, bob, mallory) = (
        client("alice", &ca),
        client("bob", &ca),
        client("mallory", &other_ca),
    );
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let files = [
        ("server.key", server.1.clone()),
        ("server.crt", server.0.clone()),
        ("ca.crt", ca.0.pem()),
    ];
    let node = Node::start_with_files(&config(ports, &alice.2), 2, &ports, &files);
    let certs = node.dir.join("client-certs");
    std::fs::create_dir_all(&certs).unwrap();
    for (name, c) in [("alice", &alice), ("bob", &bob), ("mallory", &mallory)] {
        write(&certs, &format!("{name}.crt"), &c.0);
        write(&certs, &format!("{name}.key"), &c.1);
    }
    for serializer in ["json", "msgpack"] {
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/clients/py/tlsauth_checks.py"));
        for (flag, port) in [
            "--static-port",
            "--open-port",
            "--dynamic-port",
            "--plain-port",
        ]
        .iter()
        .zip(ports)
        {
            cmd.args([flag.to_string(), port.to_string()]);
        }
        cmd.arg("--ca")
            .arg(node.dir.join("ca.crt"))
            .arg("--certs")
            .arg(&certs)
            .args(["--serializer", serializer]);
        let run = ClientRun::run(cmd);
        assert!(
            run.status.success(),
            "{serializer}: {}\n{:#?}",
            run.stderr,
            node.log_lines()
        );
        assert_eq!(
            run.checks(),
            [
                "static-right-cert",
                "static-unknown-cert",
                "static-other-ca",
                "static-no-cert",
                "open-no-cert",
                "dynamic-right-cert",
                "dynamic-refused",
            ],
            "{serializer}"
        );
    }
    let mut cmd = node_js();
    cmd.arg("tlsauth_checks.js")
        .args(["--raw-port", &ports[4].to_string()])
        .arg("--ca")
        .arg(node.dir.join("ca.crt"))
        .arg("--certs")
        .arg(&certs);
    let run = ClientRun::run(cmd);
    assert!(
        run.status.success(),
        "Autobahn|JS failed after {:?}:\n{}\n{:#?}",
        run.checks(),
        run.stderr,
        node.log_lines()
    );
    assert_eq!(
        run.checks(),
        ["js-right-cert", "js-unknown-cert", "js-other-ca"]
    );
}
