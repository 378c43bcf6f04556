//! Dynamic authorization: a WAMP procedure decides each action of a role's sessions.
//!
//! A role configured with Crossbar's `"authorizer": "<procedure>"` has no static
//! permissions: every PUBLISH, SUBSCRIBE, CALL and REGISTER of its sessions is decided by
//! calling the procedure (registered by a component in the same realm) with
//! `(session_details, uri, action, options)`, as Crossbar's `RouterRoleDynamicAuth` does.
//! The answer is `true`/`false` or a dictionary `{allow, disclose?, cache?}` (keys
//! `validate` and `meta` are accepted and ignored; any other key, a non-boolean flag, a
//! missing `allow`, an ERROR or a timeout deny with `wamp.error.not_authorized`).
//! `disclose` decides caller/publisher disclosure; `cache: true` keeps the decision for
//! the rest of the session, per (session, uri, action), up to
//! [`super::Limits::authorization_cache_per_session`] entries.
//!
//! Ordering: while the authorizer runs, the action waits and every later message of the
//! same session waits behind it, in order (at most
//! [`super::Limits::held_messages_per_session`], past which the session is aborted). When
//! the decision arrives the action proceeds through the ordinary broker/dealer path, with
//! the decision standing in for the role's permission, then the waiting messages follow.
//!
//! What it does not do: payload validation (`validate`), Crossbar's automatic disclosure
//! for the `trusted` role, caching across sessions.

use std::collections::VecDeque;

use crate::hash::Map;
use crate::id::Id;
use crate::message::{Dict, Message, Value};
use crate::uri::MatchPolicy;

use super::dealer::{CallPurpose, RouterCallOutcome};
use super::{policy_of, ConnId, Permission, Shard};

/// An action a permission governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Action {
    Publish,
    Subscribe,
    Call,
    Register,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Call => "call",
            Self::Register => "register",
        }
    }
}

/// What the authorizer said about one (uri, action).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decision {
    allow: bool,
    disclose: bool,
    cache: bool,
}

/// A session's dynamic-authorization state (empty for sessions of static roles).
#[derive(Debug, Default)]
pub(super) struct Authz {
    /// The action waiting for the authorizer, with its URI and kind.
    held: Option<(Message, String, Action)>,
    /// Messages that arrived while `held` waits, in order.
    queue: VecDeque<Message>,
    /// Cached decisions.
    cache: Map<(String, Action), Decision>,
    /// The permission view the broker and dealer read for this session: flags of allowed
    /// actions, per URI.
    perms: Map<String, Permission>,
}

impl Authz {
    /// The permission the session's decisions grant on `uri`.
    pub(super) fn permission(&self, uri: &str) -> Option<&Permission> {
        self.perms.get(uri)
    }

    fn set(&mut self, uri: &str, action: Action, d: Option<Decision>) {
        let p = self
            .perms
            .entry(uri.to_owned())
            .or_insert_with(|| Permission {
                call: false,
                register: false,
                publish: false,
                subscribe: false,
                ..Permission::all(uri, MatchPolicy::Exact)
            });
        let (allow, disclose) = d.map_or((false, false), |d| (d.allow, d.disclose));
        match action {
            Action::Publish => {
                p.publish = allow;
                p.disclose_publisher = disclose;
            }
            Action::Subscribe => p.subscribe = allow,
            Action::Call => {
                p.call = allow;
                p.disclose_caller = disclose;
            }
            Action::Register => p.register = allow,
        }
        if !(p.publish || p.subscribe || p.call || p.register) {
            self.perms.remove(uri);
        }
    }
}

/// The URI, action and options an authorizer is asked about for `msg`, if it is an
/// action at all (a later chunk of a progressive call is not: its first chunk was).
fn action_of(
    msg: &Message,
    calls: &Map<Id, super::dealer::OutCall>,
) -> Option<(String, Action, Dict)> {
    let with_match = |p: Option<crate::message::MatchPolicy>| {
        let policy = policy_of(p);
        if policy == MatchPolicy::Exact {
            Dict::new()
        } else {
            Dict::new().with("match", policy.as_str())
        }
    };
    match msg {
        Message::Publish(m) => Some((m.topic.clone(), Action::Publish, Dict::new())),
        Message::Subscribe(m) => Some((
            m.topic.clone(),
            Action::Subscribe,
            with_match(m.options.match_policy),
        )),
        Message::Call(m) if !calls.contains_key(&m.request) => {
            Some((m.procedure.clone(), Action::Call, Dict::new()))
        }
        Message::Register(m) => {
            let mut o = with_match(m.options.match_policy);
            if let Some(i) = m.options.invoke {
                o.insert("invoke", Value::from(i.as_str()));
            }
            Some((m.procedure.clone(), Action::Register, o))
        }
        _ => None,
    }
}

/// Reads an authorizer's answer as Crossbar's `sanity_check` does; `None` denies.
fn decision(answer: Option<&Value>) -> Option<Decision> {
    match answer? {
        Value::Bool(allow) => Some(Decision {
            allow: *allow,
            disclose: false,
            cache: false,
        }),
        Value::Dict(d) => {
            let flag = |k: &str| match d.get(k) {
                None => Some(false),
                Some(v) => v.as_bool(),
            };
            let known = ["allow", "cache", "disclose", "validate", "meta"];
            if d.iter().any(|(k, _)| !known.contains(&k)) || !d.contains_key("allow") {
                return None;
            }
            Some(Decision {
                allow: flag("allow")?,
                disclose: flag("disclose")?,
                cache: flag("cache")?,
            })
        }
        _ => None,
    }
}

impl Shard {
    /// Lets `msg` of the joined session on `conn` through (`Some`) or keeps it: queued
    /// behind an action the authorizer is deciding, or held while the authorizer decides
    /// it. Sessions of roles without an authorizer always pass.
    pub(super) fn authorize_gate(&mut self, conn: ConnId, msg: Message) -> Option<Message> {
        let limit = self.config.limits.held_messages_per_session;
        let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
            return Some(msg);
        };
        if j.authz.held.is_some() {
            if j.authz.queue.len() >= limit {
                self.abort(
                    conn,
                    "wamp.error.limit_exceeded",
                    "too many messages waiting for the dynamic authorizer",
                );
                return None;
            }
            j.authz.queue.push_back(msg);
            return None;
        }
        let Some(role) = j.role else {
            return Some(msg);
        };
        let realm = j.realm;
        let Some(authorizer) = self.config.realms[usize::from(realm)].roles[role]
            .authorizer
            .clone()
        else {
            return Some(msg);
        };
        let Some((uri, action, options)) = action_of(&msg, &j.calls) else {
            return Some(msg);
        };
        if j.authz.cache.contains_key(&(uri.clone(), action)) {
            return Some(msg);
        }
        let session = j.id;
        let details = Dict::new()
            .with("session", j.id)
            .with("authid", j.auth.authid.as_str())
            .with("authrole", j.auth.authrole.as_str())
            .with("authmethod", j.auth.authmethod.as_str())
            .with("authprovider", j.auth.authprovider.as_str())
            .with("authextra", Value::Null);
        let transport = self.sessions.get(&conn).map(|s| {
            Dict::new()
                .with("type", s.transport.kind.as_str())
                .with("peer", s.transport.peer.as_str())
        });
        let details = details.with("transport", transport.unwrap_or_default());
        let args = [
            Value::Dict(details),
            Value::from(uri.as_str()),
            Value::from(action.as_str()),
            Value::Dict(options),
        ];
        let timeout = self.config.limits.router_call_timeout_ms;
        let purpose = CallPurpose::Authorize { conn, session };
        if self
            .router_call(realm, &authorizer, &args, None, timeout, purpose)
            .is_err()
        {
            // No authorizer registered (or too many router calls): deny this action.
            self.decided(conn, msg, &uri, action, None);
            return None;
        }
        if let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) {
            j.authz.held = Some((msg, uri, action));
        }
        None
    }

    /// The authorizer answered (or failed, or timed out) for the action held by `session`.
    pub(super) fn authorize_outcome(
        &mut self,
        conn: ConnId,
        session: Id,
        outcome: RouterCallOutcome,
    ) {
        let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
            return;
        };
        if j.id != session {
            return;
        }
        let Some((msg, uri, action)) = j.authz.held.take() else {
            return;
        };
        let d = match outcome {
            RouterCallOutcome::Result(args, _) => decision(args.first()),
            RouterCallOutcome::Error(..) | RouterCallOutcome::Timeout => None,
        };
        self.decided(conn, msg, &uri, action, d);
        self.release_held(conn);
    }

    /// Runs `msg` with decision `d` (`None`: denied) in place of the role's permission.
    fn decided(
        &mut self,
        conn: ConnId,
        msg: Message,
        uri: &str,
        action: Action,
        d: Option<Decision>,
    ) {
        let cache_limit = self.config.limits.authorization_cache_per_session;
        let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
            return;
        };
        j.authz.set(uri, action, d);
        self.established_dispatch(conn, msg);
        let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
            return;
        };
        match d {
            Some(d) if d.cache => {
                if j.authz.cache.len() >= cache_limit {
                    // Start over rather than grow: the authorizer is asked again.
                    j.authz.cache.clear();
                    j.authz.perms.clear();
                    j.authz.set(uri, action, Some(d));
                }
                j.authz.cache.insert((uri.to_owned(), action), d);
            }
            _ => j.authz.set(uri, action, None),
        }
    }

    /// Hands the messages that waited behind a decided action back to the session, in
    /// order, until one needs the authorizer again (or the session is gone).
    fn release_held(&mut self, conn: ConnId) {
        loop {
            let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
                return;
            };
            if j.authz.held.is_some() {
                return;
            }
            let Some(msg) = j.authz.queue.pop_front() else {
                return;
            };
            self.established_message(conn, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(answer: Option<Value>, expect: Option<(bool, bool, bool)>) {
        let got = decision(answer.as_ref()).map(|d| (d.allow, d.disclose, d.cache));
        assert_eq!(got, expect, "{answer:?}");
    }

    #[test]
    fn answers_as_crossbar_reads_them() {
        check(Some(Value::Bool(true)), Some((true, false, false)));
        check(Some(Value::Bool(false)), Some((false, false, false)));
        let d = Dict::new().with("allow", true).with("cache", true);
        check(Some(Value::Dict(d)), Some((true, false, true)));
        let d = Dict::new().with("allow", true).with("disclose", true);
        check(Some(Value::Dict(d)), Some((true, true, false)));
        let d = Dict::new().with("allow", true).with("meta", Value::Null);
        check(Some(Value::Dict(d)), Some((true, false, false)));
        // Denials: no allow, an unknown key, a non-boolean flag, another type, nothing.
        check(Some(Value::Dict(Dict::new().with("cache", true))), None);
        let d = Dict::new().with("allow", true).with("colour", "red");
        check(Some(Value::Dict(d)), None);
        check(Some(Value::Dict(Dict::new().with("allow", "yes"))), None);
        check(Some(Value::from("true")), None);
        check(None, None);
    }
}
