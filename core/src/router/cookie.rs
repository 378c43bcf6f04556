//! Cookie authentication (Crossbar's `cookie` method) over tracking cookies.
//!
//! The io layer verifies a WebSocket connection's tracking cookie (a signed, expiring
//! `cbtid` token, see `io::ws::cookie`) and hands its id over in
//! [`super::TransportInfo::cbtid`], with the time it has left. When a session on such a
//! connection authenticates with any other method, the cookie is bound to that principal
//! (realm, authid, authrole): here and, through [`super::peer::PeerMsg::CookieBind`], on
//! every other shard, so that the next connection presenting the cookie may land on any
//! core or worker. A later HELLO offering `cookie` on a transport that allows it
//! ([`super::TransportInfo::cookie_auth`]) then joins as that principal, without secrets,
//! until the cookie expires: authmethod `cookie`, authprovider `cookie`.
//!
//! The bindings are the only shared state, replicated by broadcast and bounded per shard
//! ([`super::Limits::cookie_bindings`]: past it, expired bindings go first, then the
//! oldest). A shard that restarts starts with none (those browsers authenticate again).
//! What it does not do: persist bindings, revoke them (a logout), bind `authextra`.

use std::collections::VecDeque;

use crate::hash::Map;
use crate::message::Hello;

use super::peer::PeerMsg;
use super::{AuthInfo, ConnId, Shard, Step, Time};

/// The principal a cookie stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Binding {
    realm: u16,
    authid: String,
    authrole: String,
    until: Time,
}

/// A shard's cookie bindings, oldest first for eviction.
#[derive(Debug, Default)]
pub(super) struct Cookies {
    by_id: Map<String, Binding>,
    order: VecDeque<String>,
}

impl Cookies {
    fn bind(&mut self, cbtid: String, b: Binding, limit: usize, now: Time) {
        if self.by_id.insert(cbtid.clone(), b).is_none() {
            self.order.push_back(cbtid);
        }
        if self.by_id.len() > limit {
            // Expired bindings go first; if none, the oldest.
            self.by_id.retain(|_, b| b.until > now);
            self.order.retain(|id| self.by_id.contains_key(id));
            while self.by_id.len() > limit {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.by_id.remove(&old);
            }
        }
    }

    fn get(&self, cbtid: &str, now: Time) -> Option<&Binding> {
        self.by_id.get(cbtid).filter(|b| b.until > now)
    }

    /// How many bindings the shard holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

impl Shard {
    /// The cookie-authentication decision for a HELLO on `conn`: `Some(Welcome)` when the
    /// client offers `cookie`, the transport allows it and its cookie is bound in `realm`.
    pub(super) fn cookie_step(&self, conn: ConnId, realm: u16, hello: &Hello) -> Option<Step> {
        let offered = hello.details.authmethods.as_deref()?;
        if !offered.iter().any(|m| m == "cookie") {
            return None;
        }
        let t = &self.sessions.get(&conn)?.transport;
        if !t.cookie_auth {
            return None;
        }
        let b = self.cookies.get(t.cbtid.as_deref()?, self.now)?;
        (b.realm == realm).then(|| {
            Step::Welcome(AuthInfo {
                authid: b.authid.clone(),
                authrole: b.authrole.clone(),
                authmethod: "cookie".to_owned(),
                authprovider: "cookie".to_owned(),
                authextra: None,
            })
        })
    }

    /// A session joined on `conn`: if its connection carries a tracking cookie and it
    /// authenticated by another method, the cookie now stands for it, on every shard.
    pub(super) fn cookie_joined(&mut self, conn: ConnId, realm: u16, auth: &AuthInfo) {
        if auth.authmethod == "cookie" {
            return;
        }
        let Some(t) = self.sessions.get(&conn).map(|s| &s.transport) else {
            return;
        };
        let Some(cbtid) = t.cbtid.clone() else {
            return;
        };
        let ttl_ms = t.cookie_ttl_ms;
        let msg = PeerMsg::CookieBind {
            cbtid: cbtid.clone(),
            realm,
            authid: auth.authid.clone(),
            authrole: auth.authrole.clone(),
            ttl_ms,
        };
        self.broadcast(&msg);
        self.cookie_bind(
            cbtid,
            realm,
            auth.authid.clone(),
            auth.authrole.clone(),
            ttl_ms,
        );
    }

    /// Records a binding (from this shard or another).
    pub(super) fn cookie_bind(
        &mut self,
        cbtid: String,
        realm: u16,
        authid: String,
        authrole: String,
        ttl_ms: u64,
    ) {
        if usize::from(realm) >= self.realms.len() {
            return;
        }
        let b = Binding {
            realm,
            authid,
            authrole,
            until: self.now.plus_ms(ttl_ms),
        };
        let limit = self.config.limits.cookie_bindings;
        self.cookies.bind(cbtid, b, limit, self.now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(until: u64) -> Binding {
        Binding {
            realm: 0,
            authid: "a".into(),
            authrole: "r".into(),
            until: Time(until),
        }
    }

    #[test]
    fn bounded_expired_first_then_oldest() {
        let mut c = Cookies::default();
        c.bind("x".into(), b(10), 2, Time(0));
        c.bind("y".into(), b(100), 2, Time(0));
        assert!(c.get("x", Time(5)).is_some());
        assert!(c.get("x", Time(10)).is_none(), "expired");
        // Full: the expired `x` goes, not the older-but-valid others.
        c.bind("z".into(), b(100), 2, Time(20));
        assert_eq!(c.len(), 2);
        assert!(c.get("y", Time(20)).is_some() && c.get("z", Time(20)).is_some());
        // Full of valid ones: the oldest goes.
        c.bind("w".into(), b(100), 2, Time(20));
        assert!(c.get("y", Time(20)).is_none());
        assert_eq!(c.len(), 2);
        // Re-binding an id replaces it without growing.
        c.bind("w".into(), b(200), 2, Time(20));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("w", Time(150)).map(|b| b.until), Some(Time(200)));
    }
}
