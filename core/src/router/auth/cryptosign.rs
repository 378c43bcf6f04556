//! Cryptosign: the client proves it holds an Ed25519 private key by signing a challenge.
//!
//! HELLO's authextra carries the client's `pubkey` (hex) and optionally
//! `channel_binding: "tls-unique"`. The principal is the authid's (whose `authorized_keys`
//! must hold the key), or, without an authid, the one principal holding the key. The
//! CHALLENGE extra has `challenge` (32 random bytes, hex) and `channel_binding`; the client
//! signs the challenge (XORed with the transport's 32-byte channel id when bound) and
//! answers `hex(signature ‖ signed message)` (96 bytes). What it does not do: router
//! authentication (the router signing the client's challenge: it has no key), trustroots.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use subtle::ConstantTimeEq;

use crate::message::{Dict, Value};

use super::super::config::{CryptosignKeys, Principals};
use super::{AuthContext, AuthInfo, Challenged, Entropy, Inner, Step};

pub(super) struct Expect {
    info: AuthInfo,
    key: [u8; 32],
    message: [u8; 32],
}

/// The AUTHENTICATE signature a client with private key `seed` sends for the hex
/// `challenge` (with `channel_id` XORed in when bound): `hex(signature ‖ message)`.
/// `None` if the challenge is not 32 bytes of hex.
pub fn sign_challenge(
    seed: &[u8; 32],
    challenge: &str,
    channel_id: Option<&[u8]>,
) -> Option<String> {
    let mut message: [u8; 32] = hex::decode(challenge).ok()?.try_into().ok()?;
    if let Some(c) = channel_id {
        let c: &[u8; 32] = c.try_into().ok()?;
        for (m, c) in message.iter_mut().zip(c) {
            *m ^= c;
        }
    }
    let sig = SigningKey::from_bytes(seed).sign(&message);
    let mut out = hex::encode(sig.to_bytes());
    out.push_str(&hex::encode(message));
    Some(out)
}

pub(super) fn start(
    ctx: &AuthContext<'_>,
    principals: &Principals<CryptosignKeys>,
    authid: Option<&str>,
    authextra: Option<&Dict>,
    entropy: &mut Entropy,
) -> Step {
    let Some(Value::Str(pubkey)) = authextra.and_then(|e| e.get("pubkey")) else {
        return Step::not_authorized(
            "cryptosign: the client sent no public key (authextra.pubkey)",
        );
    };
    let Some(key) = hex::decode(pubkey)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
    else {
        return Step::not_authorized("cryptosign: authextra.pubkey is not 32 bytes of hex");
    };
    let binding = match authextra.and_then(|e| e.get("channel_binding")) {
        None | Some(Value::Null) => None,
        Some(Value::Str(s)) if s == "tls-unique" => {
            match ctx.transport.channel_binding.as_deref() {
                Some(c) if c.len() == 32 => Some(c),
                _ => {
                    return Step::not_authorized(
                    "cryptosign: channel binding tls-unique was requested but this transport cannot provide it",
                );
                }
            }
        }
        Some(other) => {
            return Step::not_authorized(format!(
                "cryptosign: unsupported channel binding {other:?} (only tls-unique)"
            ));
        }
    };
    let found = match authid {
        Some(id) => match principals.get(id) {
            Some(p) if p.secret.authorized_keys.contains(&key) => {
                super::found(id, p, ctx.realm, "cryptosign")
            }
            Some(_) => {
                return Step::not_authorized(format!(
                    "cryptosign: the public key is not authorized for \"{id}\""
                ));
            }
            None => {
                return Step::not_authorized(format!("no principal with authid \"{id}\" exists"));
            }
        },
        None => match principals
            .iter()
            .find(|(_, p)| p.secret.authorized_keys.contains(&key))
        {
            Some((id, p)) => super::found(id, p, ctx.realm, "cryptosign"),
            None => return Step::not_authorized("cryptosign: no principal has this public key"),
        },
    };
    let found = match found {
        Ok(f) => f,
        Err(step) => return step,
    };
    let challenge = entropy.bytes::<32>();
    let mut message = challenge;
    if let Some(c) = binding {
        for (m, c) in message.iter_mut().zip(c) {
            *m ^= c;
        }
    }
    let extra = Dict::new().with("challenge", hex::encode(challenge)).with(
        "channel_binding",
        binding.map_or(Value::Null, |_| Value::from("tls-unique")),
    );
    Step::Challenge {
        method: "cryptosign".to_owned(),
        extra,
        state: Challenged(Box::new(Inner::Cryptosign(Expect {
            info: found.info,
            key,
            message,
        }))),
    }
}

impl Expect {
    pub(super) fn verify(self, signature: &str) -> Step {
        let Some(raw) = hex::decode(signature.trim())
            .ok()
            .and_then(|b| <[u8; 96]>::try_from(b).ok())
        else {
            return Step::failed("cryptosign: the signature is not 96 bytes of hex");
        };
        let (sig, message) = raw.split_at(64);
        if !bool::from(message.ct_eq(&self.message)) {
            return Step::failed("cryptosign: the signed message is not the challenge");
        }
        let Ok(key) = VerifyingKey::from_bytes(&self.key) else {
            return Step::failed("cryptosign: the public key is not a valid Ed25519 point");
        };
        let Ok(sig) = Signature::from_slice(sig) else {
            return Step::failed("cryptosign: malformed signature");
        };
        match key.verify_strict(&self.message, &sig) {
            Ok(()) => Step::Welcome(self.info),
            Err(_) => Step::failed("cryptosign: the signature is invalid"),
        }
    }
}
