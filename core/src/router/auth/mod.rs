//! The pluggable authentication step between HELLO and WELCOME, and the static methods.
//!
//! A shard asks its [`Authenticator`] what to do with a HELLO: welcome the session, send a
//! CHALLENGE, reject it, or wait ([`Step::Pending`]) while a dynamic authenticator (a WAMP
//! procedure) decides. A CHALLENGE carries its per-session state ([`Challenged`]: the
//! expected answer and who the session will be), which the shard keeps with the session and
//! hands back with the AUTHENTICATE; [`Challenged::verify`] checks the answer in constant
//! time. The shard owns the session state machine, the challenge timeout and the failure
//! throttle ([`throttle`]); the authenticator only decides.
//!
//! Methods: [`Anonymous`] (everyone in, the default), and [`Configured`], which serves the
//! transports' `auth` sections ([`super::AuthConfig`]): `anonymous`, `ticket`, `wampcra`
//! (salted or not), `cryptosign` (Ed25519, optional `tls-unique` channel binding) and
//! WAMP-SCRAM (`scram`/`wamp-scram`), each in its own module. Randomness (nonces,
//! challenges) comes from an [`Entropy`] the io layer seeds; nothing here reads the OS.
//!
//! `tls` takes the principal from the verified client certificate's fingerprint.
//!
//! Dynamic methods (a WAMP procedure decides) answer [`Step::Dynamic`]; the shard calls
//! the procedure (the `dynauth` module). For `anonymous`, `tls` and (at AUTHENTICATE)
//! `ticket` its answer decides; for `wampcra`, `cryptosign` and SCRAM it is asked at HELLO
//! and returns the principal's secret, public key or SCRAM credential, with which the shard
//! then challenges the client ([`Authenticator::dynamic_challenge`]). Cookie authentication is decided by the
//! shard before the authenticator (the `cookie` module).
//!
//! What it does not do: log any secret; channel bindings other than
//! `tls-unique` (and no transport offers that one).

mod cryptosign;
mod entropy;
mod scram;
pub(super) mod throttle;
mod ticket;
mod tls;
mod wampcra;

pub use cryptosign::sign_challenge as cryptosign_sign;
pub use entropy::Entropy;
pub use scram::{
    auth_message as scram_auth_message, client_proof as scram_client_proof,
    derive_credential as scram_credential, salted_password as scram_salted_password,
};
pub use tls::fingerprint as tls_fingerprint;
pub use wampcra::{derive_key as wampcra_derive_key, sign as wampcra_sign};

use crate::id::Id;
use crate::message::{Dict, Hello, Value};

use super::config::{AuthConfig, Principal, Principals};
use super::{Time, TransportInfo};

/// `wamp.error.not_authorized`: who the client claims to be may not join.
pub const NOT_AUTHORIZED: &str = "wamp.error.not_authorized";
/// `wamp.error.authentication_failed`: the client's proof was wrong or late.
pub const AUTHENTICATION_FAILED: &str = "wamp.error.authentication_failed";
/// `wamp.error.no_auth_method`: none of the offered methods is configured.
pub const NO_AUTH_METHOD: &str = "wamp.error.no_auth_method";
/// `wamp.error.no_such_role`: the principal's role is not a role of the realm.
pub const NO_SUCH_ROLE: &str = "wamp.error.no_such_role";

/// Who a session turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthInfo {
    /// `authid`.
    pub authid: String,
    /// `authrole`: the role whose permissions apply.
    pub authrole: String,
    /// `authmethod`, e.g. `anonymous`.
    pub authmethod: String,
    /// `authprovider`, e.g. `static`.
    pub authprovider: String,
    /// `authextra` for WELCOME and the session meta API (e.g. SCRAM's server signature).
    pub authextra: Option<Dict>,
}

/// What the authenticator may know about the session it decides on.
#[derive(Clone, Copy, Debug)]
pub struct AuthContext<'a> {
    /// The realm HELLO asked for.
    pub realm: &'a str,
    /// The session id the session will get if welcomed (WAMP-CRA's challenge names it).
    pub session: Id,
    /// A fresh number per session (anonymous authids are derived from it).
    pub counter: u64,
    /// The connection's transport.
    pub transport: &'a TransportInfo,
    /// The shard's time.
    pub now: Time,
}

/// What the authenticator decided.
#[derive(Debug)]
pub enum Step {
    /// Send CHALLENGE with this method and extra, then wait for AUTHENTICATE.
    Challenge {
        /// The authentication method.
        method: String,
        /// Method-specific challenge data.
        extra: Dict,
        /// What the answer is checked against; the shard keeps it until AUTHENTICATE.
        state: Challenged,
    },
    /// Not decided yet (a dynamic authenticator is running); the shard waits.
    Pending,
    /// Refuse the session with ABORT.
    Reject {
        /// The ABORT reason URI.
        reason: String,
        /// The ABORT's `message`: why, without any secret.
        message: String,
    },
    /// Accept the session.
    Welcome(AuthInfo),
    /// Ask a dynamic authenticator (a WAMP procedure): the shard makes the call and the
    /// session waits for its outcome (see the `dynauth` module).
    Dynamic(Box<super::DynamicRequest>),
}

impl Step {
    /// A rejection with `reason` and `message`.
    pub fn reject(reason: &str, message: impl Into<String>) -> Self {
        Self::Reject {
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// `wamp.error.not_authorized` with `message`.
    pub fn not_authorized(message: impl Into<String>) -> Self {
        Self::reject(NOT_AUTHORIZED, message)
    }

    /// `wamp.error.authentication_failed` with `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::reject(AUTHENTICATION_FAILED, message)
    }
}

/// The state of one challenged session: the expected answer and the identity it proves.
/// Its `Debug` names the method only, so it can never leak a secret into a log.
pub struct Challenged(Box<Inner>);

enum Inner {
    Ticket(ticket::Expect),
    WampCra(wampcra::Expect),
    Cryptosign(cryptosign::Expect),
    Scram(scram::Expect),
    /// A dynamic ticket: the answer goes to the authenticator procedure.
    Dynamic(Box<super::DynamicRequest>),
}

impl std::fmt::Debug for Challenged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Challenged({})", self.method())
    }
}

impl Challenged {
    /// The method this challenge belongs to.
    pub fn method(&self) -> &'static str {
        match &*self.0 {
            Inner::Ticket(_) => "ticket",
            Inner::WampCra(_) => "wampcra",
            Inner::Cryptosign(_) => "cryptosign",
            Inner::Scram(_) => "scram",
            Inner::Dynamic(_) => "ticket",
        }
    }

    /// Checks the AUTHENTICATE `signature` (and `extra`) against the challenge: WELCOME
    /// with the principal's identity, or a rejection. Comparisons are constant-time.
    pub fn verify(self, signature: &str, extra: &Dict) -> Step {
        let _ = extra;
        match *self.0 {
            Inner::Ticket(e) => e.verify(signature),
            Inner::WampCra(e) => e.verify(signature),
            Inner::Cryptosign(e) => e.verify(signature),
            Inner::Scram(e) => e.verify(signature),
            Inner::Dynamic(mut r) => {
                r.details.insert("ticket", Value::from(signature));
                Step::Dynamic(r)
            }
        }
    }
}

/// Decides whether and how a session is authenticated.
pub trait Authenticator: std::fmt::Debug {
    /// The first decision, on HELLO.
    fn start(&mut self, ctx: &AuthContext<'_>, hello: &Hello) -> Step;
    /// The decision on an AUTHENTICATE answering the CHALLENGE whose state is `state`.
    fn authenticate(
        &mut self,
        ctx: &AuthContext<'_>,
        state: Challenged,
        signature: &str,
        extra: &Dict,
    ) -> Step {
        let _ = ctx;
        state.verify(signature, extra)
    }
    /// A dynamic authenticator returned `principal` (already read into `info`: authid,
    /// role) for a method that still needs the client's proof (`wampcra`, `cryptosign`):
    /// the CHALLENGE built from the returned secret or key, or a refusal.
    fn dynamic_challenge(
        &mut self,
        ctx: &AuthContext<'_>,
        hello: &Hello,
        info: AuthInfo,
        principal: &Dict,
    ) -> Step {
        let _ = (ctx, hello, info, principal);
        Step::failed("this authenticator cannot challenge a dynamic principal")
    }
}

/// The methods a HELLO offers, Crossbar's way: none listed means `anonymous`.
fn offered(hello: &Hello) -> Vec<&str> {
    match hello.details.authmethods.as_deref() {
        None | Some([]) => vec!["anonymous"],
        Some(m) => m.iter().map(String::as_str).collect(),
    }
}

/// Lets every session in as `anonymous`, with an authid derived from the session counter.
#[derive(Clone, Debug, Default)]
pub struct Anonymous;

impl Authenticator for Anonymous {
    fn start(&mut self, ctx: &AuthContext<'_>, hello: &Hello) -> Step {
        if !offered(hello).contains(&"anonymous") {
            return Step::reject(NO_AUTH_METHOD, "only anonymous authentication is offered");
        }
        Step::Welcome(anonymous_info(ctx.counter, "anonymous"))
    }
}

fn anonymous_info(counter: u64, role: &str) -> AuthInfo {
    AuthInfo {
        authid: anonymous_authid(counter),
        authrole: role.to_owned(),
        authmethod: "anonymous".to_owned(),
        authprovider: "static".to_owned(),
        authextra: None,
    }
}

/// The static methods of each transport's `auth` section ([`AuthConfig`]), chosen by
/// [`TransportInfo::auth`]. The first method the client offers that the transport has
/// decides, as in Crossbar.
#[derive(Debug)]
pub struct Configured {
    transports: Vec<AuthConfig>,
    entropy: Entropy,
    unix_epoch_us: u64,
}

impl Configured {
    /// An authenticator for `transports` (indexed by [`TransportInfo::auth`]), drawing
    /// nonces and challenges from `entropy`. `unix_epoch_us` is the Unix time (µs) at the
    /// shard's time zero, for WAMP-CRA's `timestamp`.
    pub fn new(transports: Vec<AuthConfig>, entropy: Entropy, unix_epoch_us: u64) -> Self {
        Self {
            transports,
            entropy,
            unix_epoch_us,
        }
    }
}

impl Authenticator for Configured {
    fn start(&mut self, ctx: &AuthContext<'_>, hello: &Hello) -> Step {
        let Some(config) = self.transports.get(ctx.transport.auth) else {
            return Step::not_authorized("no authentication is configured for this transport");
        };
        let authid = hello.details.authid.as_deref();
        let authextra = hello.details.authextra.as_ref();
        for method in offered(hello) {
            match method {
                "anonymous" if config.anonymous_dynamic.is_some() => {
                    if let Some(d) = &config.anonymous_dynamic {
                        // Crossbar hands the authenticator a freshly generated authid.
                        let authid = anonymous_authid(ctx.counter);
                        let r = super::dynauth::request("anonymous", d, Some(authid));
                        return Step::Dynamic(Box::new(r));
                    }
                }
                "ticket" if config.ticket_dynamic.is_some() => {
                    if let Some(d) = &config.ticket_dynamic {
                        let r = super::dynauth::request("ticket", d, None);
                        return Step::Challenge {
                            method: "ticket".to_owned(),
                            extra: Dict::new(),
                            state: Challenged(Box::new(Inner::Dynamic(Box::new(r)))),
                        };
                    }
                }
                "wampcra" if config.wampcra_dynamic.is_some() => {
                    if let Some(d) = &config.wampcra_dynamic {
                        let r = super::dynauth::request("wampcra", d, None);
                        return Step::Dynamic(Box::new(r));
                    }
                }
                "cryptosign" if config.cryptosign_dynamic.is_some() => {
                    if let Some(d) = &config.cryptosign_dynamic {
                        // What the router cannot do is refused before the call.
                        if let Err(step) = cryptosign::client_key(authextra) {
                            return step;
                        }
                        if let Err(step) = cryptosign::binding(ctx, authextra) {
                            return step;
                        }
                        let r = super::dynauth::request("cryptosign", d, None);
                        return Step::Dynamic(Box::new(r));
                    }
                }
                "scram" | "wamp-scram" if config.scram_dynamic.is_some() => {
                    if let Some(d) = &config.scram_dynamic {
                        // What the router cannot challenge is refused before the call.
                        if let Err(step) = scram::client_nonce(authextra) {
                            return step;
                        }
                        let r = super::dynauth::request(method, d, None);
                        return Step::Dynamic(Box::new(r));
                    }
                }
                "tls" if config.tls_dynamic.is_some() => {
                    if let Some(d) = &config.tls_dynamic {
                        if tls::certificate(ctx.transport).is_none() {
                            return Step::not_authorized(
                                "tls: a verified TLS client certificate is required",
                            );
                        }
                        let r = super::dynauth::request("tls", d, None);
                        return Step::Dynamic(Box::new(r));
                    }
                }
                "tls" => {
                    if let Some(p) = &config.tls {
                        return tls::start(ctx, p);
                    }
                }
                "anonymous" => {
                    if let Some(a) = &config.anonymous {
                        return Step::Welcome(anonymous_info(ctx.counter, &a.role));
                    }
                }
                "ticket" => {
                    if let Some(p) = &config.ticket {
                        return match principal(p, authid, ctx.realm, method) {
                            Ok(found) => ticket::start(found),
                            Err(step) => step,
                        };
                    }
                }
                "wampcra" => {
                    if let Some(p) = &config.wampcra {
                        return match principal(p, authid, ctx.realm, method) {
                            Ok(found) => {
                                let wall = self.unix_epoch_us.saturating_add(ctx.now.0);
                                wampcra::start(ctx, found, &mut self.entropy, wall)
                            }
                            Err(step) => step,
                        };
                    }
                }
                "cryptosign" => {
                    if let Some(p) = &config.cryptosign {
                        return cryptosign::start(ctx, p, authid, authextra, &mut self.entropy);
                    }
                }
                "scram" | "wamp-scram" => {
                    if let Some(p) = &config.scram {
                        return match principal(p, authid, ctx.realm, method) {
                            Ok(found) => scram::start(method, found, authextra, &mut self.entropy),
                            Err(step) => step,
                        };
                    }
                }
                _ => {}
            }
        }
        Step::reject(
            NO_AUTH_METHOD,
            "none of the offered authentication methods is configured on this transport",
        )
    }

    fn dynamic_challenge(
        &mut self,
        ctx: &AuthContext<'_>,
        hello: &Hello,
        info: AuthInfo,
        principal: &Dict,
    ) -> Step {
        self.challenge_dynamic(ctx, hello, info, principal)
            .unwrap_or_else(|step| step)
    }
}

impl Configured {
    /// [`Authenticator::dynamic_challenge`] for the configured methods.
    fn challenge_dynamic(
        &mut self,
        ctx: &AuthContext<'_>,
        hello: &Hello,
        info: AuthInfo,
        principal: &Dict,
    ) -> Result<Step, Step> {
        match info.authmethod.as_str() {
            "wampcra" => {
                let text = |k: &str| match principal.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Str(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(Step::failed(format!(
                        "dynamic authenticator returned a bad `{k}`"
                    ))),
                };
                let number = |k: &str, max: u64, default: u32| match principal.get(k) {
                    None | Some(Value::Null) => Ok(default),
                    Some(v) => v
                        .as_u64()
                        .filter(|n| (1..=max).contains(n))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            Step::failed(format!("dynamic authenticator returned a bad `{k}`"))
                        }),
                };
                let secret = text("secret")?.ok_or_else(|| {
                    Step::failed("dynamic authenticator returned no `secret` for wampcra")
                })?;
                let salt = match text("salt")? {
                    Some(salt) => Some(super::config::CraSalt {
                        salt,
                        iterations: number("iterations", 100_000_000, 1000)?,
                        keylen: number("keylen", 1024, 32)?,
                    }),
                    None => None,
                };
                let p = Principal {
                    role: info.authrole.clone(),
                    realm: None,
                    secret: super::config::WampCraSecret { secret, salt },
                };
                let wall = self.unix_epoch_us.saturating_add(ctx.now.0);
                let found = Found {
                    info,
                    principal: &p,
                };
                Ok(wampcra::start(ctx, found, &mut self.entropy, wall))
            }
            "cryptosign" => {
                let authextra = hello.details.authextra.as_ref();
                let key = cryptosign::client_key(authextra)?;
                let binding = cryptosign::binding(ctx, authextra)?;
                let Some(Value::Str(pubkey)) = principal.get("pubkey") else {
                    return Err(Step::failed(
                        "dynamic authenticator returned no `pubkey` for cryptosign",
                    ));
                };
                let Some(theirs) = hex::decode(pubkey)
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                else {
                    return Err(Step::failed(
                        "dynamic authenticator returned a `pubkey` that is not 32 bytes of hex",
                    ));
                };
                if theirs != key {
                    return Err(Step::not_authorized(
                        "cryptosign: the public key is not the principal's",
                    ));
                }
                Ok(cryptosign::challenge(info, key, binding, &mut self.entropy))
            }
            "scram" | "wamp-scram" => {
                let secret = scram::dynamic_secret(principal)
                    .map_err(|why| Step::failed(format!("dynamic authenticator returned {why}")))?;
                let p = Principal {
                    role: info.authrole.clone(),
                    realm: None,
                    secret,
                };
                let method = info.authmethod.clone();
                let found = Found {
                    info,
                    principal: &p,
                };
                let authextra = hello.details.authextra.as_ref();
                Ok(scram::start(&method, found, authextra, &mut self.entropy))
            }
            other => Err(Step::failed(format!(
                "no challenge for a dynamic {other} principal"
            ))),
        }
    }
}

/// A principal found for a HELLO, with what its [`AuthInfo`] will say.
struct Found<'a, S> {
    info: AuthInfo,
    principal: &'a Principal<S>,
}

/// The static principal `authid` of `principals`, if it exists and may join `realm`.
fn principal<'a, S>(
    principals: &'a Principals<S>,
    authid: Option<&str>,
    realm: &str,
    method: &str,
) -> Result<Found<'a, S>, Step> {
    let Some(authid) = authid else {
        return Err(Step::not_authorized(format!(
            "{method} authentication needs an authid"
        )));
    };
    let Some(p) = principals.get(authid) else {
        return Err(Step::not_authorized(format!(
            "no principal with authid \"{authid}\" exists"
        )));
    };
    found(authid, p, realm, method)
}

fn found<'a, S>(
    authid: &str,
    p: &'a Principal<S>,
    realm: &str,
    method: &str,
) -> Result<Found<'a, S>, Step> {
    if p.realm.as_deref().is_some_and(|r| r != realm) {
        return Err(Step::not_authorized(format!(
            "principal \"{authid}\" may not join realm \"{realm}\""
        )));
    }
    Ok(Found {
        info: AuthInfo {
            authid: authid.to_owned(),
            authrole: p.role.clone(),
            authmethod: method.to_owned(),
            authprovider: "static".to_owned(),
            authextra: None,
        },
        principal: p,
    })
}

/// Crossbar's anonymous authid shape, `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`, from a number.
fn anonymous_authid(counter: u64) -> String {
    const ALPHABET: &[u8] = b"3479ACEFHJKLMNPRTUVWXY";
    // Spread the counter over the 24 characters with a fixed mixing so ids look random.
    let mut rng = super::rng::SplitMix64::new(counter ^ 0x5a5a_5a5a_5a5a_5a5a);
    let mut s = String::with_capacity(29);
    for i in 0..24 {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        let c = ALPHABET[rng.below(22) as usize];
        s.push(char::from(c));
    }
    s
}

#[cfg(test)]
pub(super) mod tests;
