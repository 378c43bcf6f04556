//! WAMP-CRA: the client proves it knows a secret by signing a challenge with HMAC-SHA256.
//!
//! The CHALLENGE extra holds `challenge`, a JSON string naming authid, authrole,
//! authmethod, authprovider, session, nonce and timestamp (Crossbar's shape); the client
//! answers `base64(HMAC-SHA256(key, challenge))`. With a salted secret the extra also
//! announces `salt`, `iterations` and `keylen`, and the key is the base64 text of
//! PBKDF2-HMAC-SHA256(password, salt, iterations, keylen) — which is what the
//! configuration stores as `secret`, so the router never derives anything per session.
//! What it does not do: store or see passwords of salted principals.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::message::{Dict, Value};

use super::super::config::WampCraSecret;
use super::{AuthContext, AuthInfo, Challenged, Entropy, Found, Inner, Step};

pub(super) struct Expect {
    info: AuthInfo,
    signature: [u8; 32],
}

/// `HMAC-SHA256(key, challenge)` in base64, as the client sends it.
pub fn sign(key: &str, challenge: &str) -> String {
    STANDARD.encode(mac(key, challenge))
}

/// The salted key a client derives from `password`: base64 of
/// PBKDF2-HMAC-SHA256(password, salt, iterations, keylen). Put it in the configuration as
/// the principal's `secret`, next to `salt`, `iterations` and `keylen`.
pub fn derive_key(password: &str, salt: &str, iterations: u32, keylen: u32) -> String {
    let mut key = vec![0u8; keylen as usize];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut key);
    STANDARD.encode(key)
}

fn mac(key: &str, challenge: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return [0; 32];
    };
    m.update(challenge.as_bytes());
    m.finalize().into_bytes().into()
}

pub(super) fn start(
    ctx: &AuthContext<'_>,
    found: Found<'_, WampCraSecret>,
    entropy: &mut Entropy,
    unix_us: u64,
) -> Step {
    let nonce = STANDARD.encode(entropy.bytes::<24>());
    let challenge = serde_json::json!({
        "authid": found.info.authid,
        "authrole": found.info.authrole,
        "authmethod": "wampcra",
        "authprovider": found.info.authprovider,
        "session": ctx.session.get(),
        "nonce": nonce,
        "timestamp": timestamp(unix_us),
    })
    .to_string();
    let secret = &found.principal.secret;
    let mut extra = Dict::new().with("challenge", challenge.as_str());
    if let Some(s) = &secret.salt {
        extra.insert("salt", Value::from(s.salt.as_str()));
        extra.insert("iterations", Value::from(u64::from(s.iterations)));
        extra.insert("keylen", Value::from(u64::from(s.keylen)));
    }
    Step::Challenge {
        method: "wampcra".to_owned(),
        extra,
        state: Challenged(Box::new(Inner::WampCra(Expect {
            info: found.info,
            signature: mac(&secret.secret, &challenge),
        }))),
    }
}

impl Expect {
    pub(super) fn verify(self, signature: &str) -> Step {
        let Ok(got) = STANDARD.decode(signature.trim()) else {
            return Step::failed("WAMP-CRA signature is not base64");
        };
        if bool::from(got.as_slice().ct_eq(&self.signature)) {
            Step::Welcome(self.info)
        } else {
            Step::failed("WAMP-CRA signature is invalid")
        }
    }
}

/// ISO 8601 UTC with milliseconds, as Crossbar's `utcnow()`: `2026-11-22T12:00:00.000Z`.
pub(super) fn timestamp(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let ms = (unix_us / 1000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}
