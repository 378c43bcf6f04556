//! WAMP-SCRAM (RFC 5802 with SHA-256, over WAMP): password proof without the router ever
//! holding the password.
//!
//! HELLO carries the authid and `authextra.nonce` (base64). The CHALLENGE extra announces
//! the server `nonce` (client nonce ‖ 16 random bytes, base64), `kdf`, `salt` (base64),
//! `iterations` and, for Argon2, `memory`. The client answers the base64 ClientProof over
//! `AuthMessage = "n=<authid>,r=<client nonce>,r=<server nonce>,s=<salt>,i=<iterations>,
//! c=,r=<server nonce>"`; the router recovers ClientKey, checks `SHA256(ClientKey) ==
//! StoredKey` in constant time and sends `scram_server_signature` in WELCOME's authextra.
//! The configuration holds only StoredKey and ServerKey (Autobahn's
//! `derive_scram_credential` output). As in Autobahn, an Argon2 SaltedPassword is the
//! unpadded base64 text of the raw hash. What it does not do: channel binding
//! (`c=` stays empty, as in Crossbar), SASLprep of authids beyond taking them as they are.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::message::{Dict, Value};

use super::super::config::{ScramKdf, ScramSecret};
use super::{AuthInfo, Challenged, Entropy, Found, Inner, Step};

pub(super) struct Expect {
    info: AuthInfo,
    auth_message: String,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    m.update(data);
    m.finalize().into_bytes().into()
}

/// SaltedPassword for `password`, as the client computes it (Argon2id: the unpadded
/// base64 text of the 32-byte hash, Autobahn's convention; PBKDF2: the raw 32 bytes).
/// `None` if the Argon2 parameters are out of its range.
pub fn salted_password(
    kdf: ScramKdf,
    password: &str,
    salt: &[u8],
    iterations: u32,
    memory: u32,
) -> Option<Vec<u8>> {
    let mut out = [0u8; 32];
    match kdf {
        ScramKdf::Argon2id13 => {
            let params = argon2::Params::new(memory, iterations, 1, Some(32)).ok()?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(password.as_bytes(), salt, &mut out)
                .ok()?;
            Some(STANDARD_NO_PAD.encode(out).into_bytes())
        }
        ScramKdf::Pbkdf2 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
            Some(out.to_vec())
        }
    }
}

/// The credential to configure for `password`: StoredKey and ServerKey with the KDF
/// parameters (what Autobahn's `derive_scram_credential` prints).
pub fn derive_credential(
    kdf: ScramKdf,
    password: &str,
    salt: &[u8],
    iterations: u32,
    memory: u32,
) -> Option<ScramSecret> {
    let salted = salted_password(kdf, password, salt, iterations, memory)?;
    let client_key = hmac(&salted, b"Client Key");
    Some(ScramSecret {
        kdf,
        kdf_name: match kdf {
            ScramKdf::Argon2id13 => "argon2id-13",
            ScramKdf::Pbkdf2 => "pbkdf2",
        }
        .to_owned(),
        iterations,
        memory,
        salt: salt.to_vec(),
        stored_key: Sha256::digest(client_key).into(),
        server_key: hmac(&salted, b"Server Key"),
    })
}

/// The AuthMessage both sides sign.
pub fn auth_message(
    authid: &str,
    client_nonce: &str,
    server_nonce: &str,
    salt: &str,
    iterations: u32,
) -> String {
    format!(
        "n={authid},r={client_nonce},r={server_nonce},s={salt},i={iterations},c=,r={server_nonce}"
    )
}

/// The client's answer: base64 ClientProof for `salted` (see [`salted_password`]) over
/// `auth_message`; and the ServerSignature (base64) the client expects in WELCOME.
pub fn client_proof(salted: &[u8], auth_message: &str) -> (String, String) {
    let client_key = hmac(salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac(salted, b"Server Key");
    (
        STANDARD.encode(proof),
        STANDARD.encode(hmac(&server_key, auth_message.as_bytes())),
    )
}

/// The client's nonce from HELLO's `authextra.nonce`, or the refusal.
pub(super) fn client_nonce(authextra: Option<&Dict>) -> Result<Vec<u8>, Step> {
    let Some(Value::Str(nonce)) = authextra.and_then(|e| e.get("nonce")) else {
        return Err(Step::not_authorized(
            "scram: the client sent no nonce (authextra.nonce)",
        ));
    };
    let Ok(client_nonce) = STANDARD.decode(nonce) else {
        return Err(Step::not_authorized("scram: authextra.nonce is not base64"));
    };
    if client_nonce.is_empty() || client_nonce.len() > 256 {
        return Err(Step::not_authorized(
            "scram: authextra.nonce must be 1 to 256 bytes",
        ));
    }
    Ok(client_nonce)
}

/// The SCRAM credential a dynamic authenticator returned, in the shape of a static
/// principal's (and of Autobahn's `derive_scram_credential`): `kdf` (`argon2id13`,
/// `argon2id-13` or `pbkdf2`), `iterations`, `memory` (KiB, argon2 only), `salt` and the
/// two keys as hex. `Err` says what is wrong, never the key material.
pub(super) fn dynamic_secret(principal: &Dict) -> Result<ScramSecret, String> {
    let text = |k: &str| match principal.get(k) {
        Some(Value::Str(s)) => Ok(s.as_str()),
        _ => Err(format!("no `{k}` text for scram")),
    };
    let number = |k: &str, min: u64, max: u64| {
        principal
            .get(k)
            .and_then(Value::as_u64)
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("a bad `{k}` for scram ({min} to {max})"))
    };
    let kdf_name = text("kdf")?;
    let kdf = match kdf_name {
        "argon2id13" | "argon2id-13" => ScramKdf::Argon2id13,
        "pbkdf2" => ScramKdf::Pbkdf2,
        _ => return Err("an unknown `kdf` for scram (argon2id13 or pbkdf2)".to_owned()),
    };
    let iterations = number("iterations", 1, u64::from(u32::MAX))?;
    let memory = match kdf {
        ScramKdf::Argon2id13 => number("memory", 8, 4 << 20)?,
        ScramKdf::Pbkdf2 => 0,
    };
    let salt = hex::decode(text("salt")?)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or("a `salt` for scram that is not hex")?;
    let key = |k: &str| {
        hex::decode(text(k)?)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("a `{k}` for scram that is not 32 bytes of hex"))
    };
    Ok(ScramSecret {
        kdf,
        kdf_name: kdf_name.to_owned(),
        iterations,
        memory,
        salt,
        stored_key: key("stored-key")?,
        server_key: key("server-key")?,
    })
}

pub(super) fn start(
    method: &str,
    found: Found<'_, ScramSecret>,
    authextra: Option<&Dict>,
    entropy: &mut Entropy,
) -> Step {
    let client_nonce = match client_nonce(authextra) {
        Ok(n) => n,
        Err(step) => return step,
    };
    let secret = &found.principal.secret;
    let mut server_nonce = client_nonce.clone();
    server_nonce.extend_from_slice(&entropy.bytes::<16>());
    let client_b64 = STANDARD.encode(&client_nonce);
    let server_b64 = STANDARD.encode(&server_nonce);
    let salt_b64 = STANDARD.encode(&secret.salt);
    let mut extra = Dict::new()
        .with("nonce", server_b64.as_str())
        .with("kdf", secret.kdf_name.as_str())
        .with("salt", salt_b64.as_str())
        .with("iterations", u64::from(secret.iterations));
    if secret.kdf == ScramKdf::Argon2id13 {
        extra.insert("memory", Value::from(u64::from(secret.memory)));
    }
    let mut info = found.info;
    info.authmethod = method.to_owned();
    Step::Challenge {
        method: method.to_owned(),
        extra,
        state: Challenged(Box::new(Inner::Scram(Expect {
            auth_message: auth_message(
                &info.authid,
                &client_b64,
                &server_b64,
                &salt_b64,
                secret.iterations,
            ),
            info,
            stored_key: secret.stored_key,
            server_key: secret.server_key,
        }))),
    }
}

impl Expect {
    pub(super) fn verify(self, signature: &str) -> Step {
        let Some(proof) = STANDARD
            .decode(signature.trim())
            .ok()
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
        else {
            return Step::failed("scram: the client proof is not 32 bytes of base64");
        };
        let client_signature = hmac(&self.stored_key, self.auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key
            .iter_mut()
            .zip(proof.iter().zip(client_signature))
        {
            *k = p ^ s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(stored.ct_eq(&self.stored_key)) {
            return Step::failed("scram: authentication failed");
        }
        let server_signature = hmac(&self.server_key, self.auth_message.as_bytes());
        let mut info = self.info;
        info.authextra =
            Some(Dict::new().with("scram_server_signature", STANDARD.encode(server_signature)));
        Step::Welcome(info)
    }
}
