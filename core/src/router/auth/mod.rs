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
//! Dynamic `anonymous` and `ticket` (a WAMP procedure decides) answer [`Step::Dynamic`];
//! the shard calls the procedure (the `dynauth` module). Cookie authentication is decided
//! by the shard before the authenticator (the `cookie` module).
//!
//! What it does not do: TLS client-certificate authentication, dynamic WAMP-CRA and
//! cryptosign, logging of any secret.

mod cryptosign;
mod entropy;
mod scram;
pub(super) mod throttle;
mod ticket;
mod wampcra;

pub use cryptosign::sign_challenge as cryptosign_sign;
pub use entropy::Entropy;
pub use scram::{
    auth_message as scram_auth_message, client_proof as scram_client_proof,
    derive_credential as scram_credential, salted_password as scram_salted_password,
};
pub use wampcra::{derive_key as wampcra_derive_key, sign as wampcra_sign};

use crate::id::Id;
use crate::message::{Dict, Hello};

use super::config::{AuthConfig, Principal, Principals};
use super::{Time, TransportInfo};

/// `wamp.error.not_authorized`: who the client claims to be may not join.
pub const NOT_AUTHORIZED: &str = "wamp.error.not_authorized";
/// `wamp.error.authentication_failed`: the client's proof was wrong or late.
pub const AUTHENTICATION_FAILED: &str = "wamp.error.authentication_failed";
/// `wamp.error.no_auth_method`: none of the offered methods is configured.
pub const NO_AUTH_METHOD: &str = "wamp.error.no_auth_method";

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
                r.details
                    .insert("ticket", crate::message::Value::from(signature));
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
