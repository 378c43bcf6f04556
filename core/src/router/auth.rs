//! The pluggable authentication step between HELLO and WELCOME.
//!
//! A shard asks its [`Authenticator`] what to do with a HELLO: welcome the session, send a
//! CHALLENGE, reject it, or wait ([`Step::Pending`]) while a dynamic authenticator (a WAMP
//! procedure) decides. The shard owns the session state machine; the authenticator only
//! decides. [`Anonymous`] is the only method implemented: ticket, WAMP-CRA, cryptosign and
//! the dynamic authenticator's procedure call are not written yet, but fit behind this trait
//! (`Pending` is answered later through [`super::Shard::handle_auth_result`]).

use crate::message::{Dict, Hello};

/// Who a session turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    /// `authid`.
    pub authid: String,
    /// `authrole`: the role whose permissions apply.
    pub authrole: String,
    /// `authmethod`, e.g. `anonymous`.
    pub authmethod: String,
    /// `authprovider`, e.g. `static`.
    pub authprovider: String,
}

/// What the authenticator decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Send CHALLENGE with this method and extra, then wait for AUTHENTICATE.
    Challenge {
        /// The authentication method.
        method: String,
        /// Method-specific challenge data.
        extra: Dict,
    },
    /// Not decided yet (a dynamic authenticator is running); the shard waits.
    Pending,
    /// Refuse the session with ABORT and this reason URI.
    Reject(String),
    /// Accept the session.
    Welcome(AuthInfo),
}

/// Decides whether and how a session is authenticated.
pub trait Authenticator: std::fmt::Debug {
    /// The first decision, on HELLO for realm `realm`. `counter` is a fresh number per
    /// session the authenticator may use to make anonymous authids unique.
    fn start(&mut self, realm: &str, hello: &Hello, counter: u64) -> Step;
    /// The decision on an AUTHENTICATE after a CHALLENGE.
    fn authenticate(&mut self, signature: &str, extra: &Dict) -> Step;
}

/// Lets every session in as `anonymous`, with an authid derived from the session counter.
#[derive(Clone, Debug, Default)]
pub struct Anonymous;

impl Authenticator for Anonymous {
    fn start(&mut self, _realm: &str, hello: &Hello, counter: u64) -> Step {
        let offered = hello.details.authmethods.as_deref();
        let anonymous_ok =
            offered.is_none_or(|m| m.is_empty() || m.iter().any(|s| s == "anonymous"));
        if !anonymous_ok {
            return Step::Reject("wamp.error.no_auth_method".to_owned());
        }
        Step::Welcome(AuthInfo {
            authid: anonymous_authid(counter),
            authrole: "anonymous".to_owned(),
            authmethod: "anonymous".to_owned(),
            authprovider: "static".to_owned(),
        })
    }

    fn authenticate(&mut self, _signature: &str, _extra: &Dict) -> Step {
        // Anonymous never challenges, so an AUTHENTICATE here is out of place.
        Step::Reject("wamp.error.not_authorized".to_owned())
    }
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
mod tests {
    use super::*;
    use crate::message::HelloDetails;

    fn check(methods: Option<Vec<&str>>, welcomed: bool) {
        let hello = Hello {
            realm: "realm1".into(),
            details: HelloDetails {
                authmethods: methods.map(|m| m.into_iter().map(String::from).collect()),
                ..HelloDetails::default()
            },
        };
        let step = Anonymous.start("realm1", &hello, 1);
        assert_eq!(matches!(step, Step::Welcome(_)), welcomed, "{step:?}");
    }

    #[test]
    fn anonymous_only_when_offered_or_unspecified() {
        check(None, true);
        check(Some(vec![]), true);
        check(Some(vec!["ticket", "anonymous"]), true);
        check(Some(vec!["ticket"]), false);
    }

    #[test]
    fn authid_shape() {
        let a = anonymous_authid(1);
        assert_eq!(a.len(), 29);
        assert_eq!(a.matches('-').count(), 5);
        assert_ne!(a, anonymous_authid(2));
    }
}
