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

/// The client's public key from HELLO's `authextra.pubkey`, or a refusal.
pub(super) fn client_key(authextra: Option<&Dict>) -> Result<[u8; 32], Step> {
    let Some(Value::Str(pubkey)) = authextra.and_then(|e| e.get("pubkey")) else {
        return Err(Step::not_authorized(
            "cryptosign: the client sent no public key (authextra.pubkey)",
        ));
    };
    hex::decode(pubkey)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| Step::not_authorized("cryptosign: authextra.pubkey is not 32 bytes of hex"))
}

/// The channel binding HELLO asks for (`authextra.channel_binding`): `None` for none, the
/// transport's 32-byte channel id for `tls-unique`, or a refusal naming why. Autobahn and
/// Crossbar know only `tls-unique`, which TLS 1.3 does not define and rustls does not
/// offer, so today every binding request is refused.
pub(super) fn binding<'t>(
    ctx: &AuthContext<'t>,
    authextra: Option<&Dict>,
) -> Result<Option<&'t [u8]>, Step> {
    match authextra.and_then(|e| e.get("channel_binding")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s == "tls-unique" => match ctx.transport.channel_binding.as_deref() {
            Some(c) if c.len() == 32 => Ok(Some(c)),
            _ => Err(Step::not_authorized(
                "cryptosign: channel binding tls-unique was requested but this transport cannot provide it",
            )),
        },
        Some(other) => Err(Step::not_authorized(format!(
            "cryptosign: unsupported channel binding {other:?} (only tls-unique)"
        ))),
    }
}

pub(super) fn start(
    ctx: &AuthContext<'_>,
    principals: &Principals<CryptosignKeys>,
    authid: Option<&str>,
    authextra: Option<&Dict>,
    entropy: &mut Entropy,
) -> Step {
    let key = match client_key(authextra) {
        Ok(k) => k,
        Err(step) => return step,
    };
    let binding = match binding(ctx, authextra) {
        Ok(b) => b,
        Err(step) => return step,
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
    match found {
        Ok(f) => challenge(f.info, key, binding, entropy),
        Err(step) => step,
    }
}

/// The CHALLENGE for a principal (`info`) proving it holds the private half of `key`.
pub(super) fn challenge(
    info: AuthInfo,
    key: [u8; 32],
    binding: Option<&[u8]>,
    entropy: &mut Entropy,
) -> Step {
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
        state: Challenged(Box::new(Inner::Cryptosign(Expect { info, key, message }))),
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
