//! TLS client-certificate authentication (`tls`): the principal is the one whose
//! configured `certificate-sha1` equals the SHA-1 fingerprint of the certificate the
//! client presented and the TLS endpoint verified (Crossbar's `auth/tls.py`).
//!
//! There is no CHALLENGE: the proof is the TLS handshake, done by the io layer, which
//! hands over the fingerprint in [`TransportInfo::client_cert_sha1`]. An authid sent in
//! HELLO is ignored (the certificate decides who the client is), as in Crossbar. What it
//! does not do: check the certificate (the endpoint's `ca_certificates` did), match by
//! subject name.

use subtle::ConstantTimeEq;

use super::super::config::{Principals, TlsCertificate};
use super::super::TransportInfo;
use super::{AuthContext, Step};

/// The static decision: WELCOME as the principal holding the certificate, or a refusal.
pub(super) fn start(ctx: &AuthContext<'_>, principals: &Principals<TlsCertificate>) -> Step {
    let Some(sha1) = certificate(ctx.transport) else {
        return Step::not_authorized("tls: a verified TLS client certificate is required");
    };
    // Every principal is compared (no early exit), so timing says nothing about which
    // fingerprints are configured.
    let mut hit = None;
    for (authid, p) in principals {
        if bool::from(p.secret.sha1.ct_eq(sha1)) && hit.is_none() {
            hit = Some((authid, p));
        }
    }
    let Some((authid, p)) = hit else {
        return Step::not_authorized("tls: no principal has this client certificate");
    };
    match super::found(authid, p, ctx.realm, "tls") {
        Ok(found) => Step::Welcome(found.info),
        Err(step) => step,
    }
}

/// The fingerprint of the transport's verified client certificate, if it has one.
pub(super) fn certificate(t: &TransportInfo) -> Option<&[u8; 20]> {
    t.client_cert_sha1.as_ref()
}

/// A fingerprint as Crossbar shows it (pyOpenSSL's `digest("sha1")`): upper-case hex
/// bytes separated by colons.
pub fn fingerprint(sha1: &[u8; 20]) -> String {
    let mut s = String::with_capacity(59);
    for (i, b) in sha1.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}
