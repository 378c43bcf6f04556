//! The dealer: registrations replicated to every shard, calls routed to the callee's shard.
//!
//! Registrations are decided by the key's owner shard (conflicts: `single` registered twice,
//! a different invocation policy) and replicated to every shard, acknowledged by all before
//! REGISTERED. A CALL picks its registration from the local replica (the matcher's best
//! match gives the spec's precedence) and a callee by the invocation policy; the call
//! travels to the callee's shard as a peer message, and YIELD/ERROR travel back.
//!
//! Call state lives in two places: the caller's session holds an [`OutCall`] per pending
//! call (with the callee's shard, for CANCEL and timeouts), the callee's session holds an
//! [`InCall`] per INVOCATION (with the caller's shard and ids, for the way back).
//!
//! The router itself can call a procedure ([`Shard::router_call`]): the dynamic
//! authenticator and authorizer are procedures registered by components. Such a call uses
//! the same cross-shard path as a session's, with [`Shard`]'s reserved caller id
//! (`router_caller`, never given to a session); its RESULT or ERROR, or its timeout, comes
//! back as a [`RouterCallOutcome`] to the [`CallPurpose`] that made it. Every router call
//! has a deadline and their number in flight is bounded ([`super::Limits::router_calls`]).
//!
//! What it does not do yet: sharded registrations, registration revocation, call
//! re-routing; `roundrobin` rotates per caller shard (each shard keeps its own cursor).

use crate::codec::Serializer;
use crate::hash::Map;
use crate::id::Id;
use crate::matcher::Matcher;
use crate::message::Value;
use crate::message::{
    Call, CallResult, Cancel, CancelMode, Dict, ErrorMessage, Interrupt, InterruptOptions,
    Invocation, InvocationDetails, InvokePolicy, Message, MessageType, Payload, Register,
    Registered, ResultDetails, Role, Unregister, Unregistered, Yield,
};
use crate::uri::{self, MatchPolicy, UriCheck};

use super::peer::{CallError, Invoke, PeerMsg, YieldMsg};
use super::session::{Joined, ProtocolViolation};
use super::{fit, policy_of, ConnId, Pending, Shard, Time, Wait};

/// A realm's registrations on one shard (a full replica).
#[derive(Debug, Default)]
pub(super) struct RealmDealer {
    pub(super) regs: Matcher<Id>,
    pub(super) by_id: Map<Id, Registration>,
}

/// One registration, router-wide.
#[derive(Debug, Clone)]
pub(super) struct Registration {
    pub(super) uri: String,
    pub(super) policy: MatchPolicy,
    pub(super) invoke: InvokePolicy,
    /// (shard, session), in registration order.
    pub(super) callees: Vec<(u16, Id)>,
    pub(super) next: usize,
    /// When this shard's replica first held the registration (`wamp.registration.get`'s
    /// `created`).
    pub(super) created: Time,
    /// Callees of this shard removed here ahead of the owner's decision (so that no new
    /// call picks them) and not yet removed by the owner. The entry stays until they are,
    /// so that this replica still follows the owner's view: a REGISTER the owner adds
    /// meanwhile does not create the registration again, and the delete is decided when
    /// the owner's removal comes back.
    pub(super) withdrawn: Vec<(u16, Id)>,
}

impl Registration {
    /// The index its invocation policy picks among `n` (> 0) candidate callees now
    /// (advancing the round-robin cursor).
    fn pick(&mut self, n: usize, rng: &mut super::rng::SplitMix64) -> usize {
        match self.invoke {
            InvokePolicy::Single | InvokePolicy::First => 0,
            InvokePolicy::Last => n - 1,
            InvokePolicy::RoundRobin => {
                let i = self.next % n;
                self.next = self.next.wrapping_add(1);
                i
            }
            InvokePolicy::Random => rng.below(n as u64) as usize,
        }
    }
}

impl RealmDealer {
    pub(super) fn lookup(&self, uri: &str, policy: MatchPolicy) -> Option<Id> {
        self.regs.get(uri, policy).copied()
    }

    pub(super) fn best(&self, uri: &str) -> Option<Id> {
        self.regs.best_match(uri).map(|m| *m.value)
    }
}

/// Why the router made a call: where its outcome goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum CallPurpose {
    /// The dynamic authenticator, for the session authenticating on `conn`.
    Authenticate {
        /// The authenticating connection.
        conn: ConnId,
        /// What the answer is read with.
        auth: super::dynauth::PendingAuth,
    },
    /// The dynamic authorizer, for the action held by the session on `conn`.
    Authorize {
        /// The session's connection.
        conn: ConnId,
        /// The session id (a new session on a reused connection id must not get it).
        session: Id,
    },
}

/// How a router call ended.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum RouterCallOutcome {
    /// The callee answered: the result's positional and keyword arguments.
    Result(Vec<Value>, Dict),
    /// The callee (or the dealer) answered with an ERROR: its URI and first argument.
    Error(String, Option<String>),
    /// No answer before the deadline.
    Timeout,
}

/// A call the router made and waits on.
#[derive(Debug)]
pub(super) struct RouterCall {
    purpose: CallPurpose,
    callee_shard: u16,
    deadline: Time,
}

/// A call a caller on this shard waits on.
#[derive(Debug)]
pub(super) struct OutCall {
    callee_shard: u16,
    deadline: Option<Time>,
    /// A `kill` cancel was sent: the callee's ERROR ends the call.
    canceling: bool,
    /// The caller is still sending chunks of a progressive invocation.
    invoking: bool,
    /// The caller accepts progressive results.
    receive_progress: bool,
    /// Callees whose shard refused the invocation because they had unregistered
    /// ([`PeerMsg::Unrouted`]); the call is routed again without them. Empty (and not
    /// allocated) for nearly every call; at most [`MAX_REROUTES`] entries.
    tried: Vec<Id>,
}

/// How many times one call is routed again after callees unregistered under it, before
/// it fails with `wamp.error.no_such_procedure` (each time costs a round trip).
const MAX_REROUTES: usize = 4;

/// An invocation a callee on this shard must answer.
#[derive(Debug)]
pub(super) struct InCall {
    registration: Id,
    caller_shard: u16,
    caller: Id,
    call: Id,
}

/// A register waiting for the owner's decision and every shard's acknowledgement.
#[derive(Debug)]
pub(super) struct PendingRegister {
    conn: ConnId,
    session: Id,
    request: Id,
    realm: u16,
    uri: String,
    policy: MatchPolicy,
    invoke: InvokePolicy,
    pub(super) wait: Wait,
    /// Whether the request was sent again after a shard died (so it may be decided twice).
    resent: bool,
    /// Calls that reached the callee before its REGISTERED did, as (caller shard, call):
    /// another shard's replica may route to the callee as soon as it applied the owner's
    /// change, while this shard still waits for the other acknowledgements. They are
    /// handed to the callee right after REGISTERED, in arrival order.
    parked: Vec<(u16, Invoke)>,
}

impl Shard {
    pub(super) fn register(&mut self, conn: ConnId, m: Register) {
        let Some((j, serializer)) = self.joined(conn) else {
            return;
        };
        let policy = policy_of(m.options.match_policy);
        let error = if uri::validate_pattern(&m.procedure, policy, UriCheck::Loose).is_err() {
            Some("wamp.error.invalid_uri")
        } else if m.procedure.starts_with("wamp.") {
            // The router implements the `wamp.` procedures itself.
            Some("wamp.error.invalid_uri")
        } else if !self.permission(j, &m.procedure).is_some_and(|p| p.register) {
            Some("wamp.error.not_authorized")
        } else if j.registrations.len() + j.pending_registers
            >= self.config.limits.registrations_per_session
            || self.pending.len() >= self.config.limits.in_flight_peer_requests
        {
            Some("wamp.error.limit_exceeded")
        } else {
            None
        };
        if let Some(e) = error {
            self.send_error(conn, serializer, MessageType::Register, m.request, e);
            return;
        }
        let (session, realm) = (j.id, j.realm);
        let invoke = m.options.invoke.unwrap_or_default();
        if let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) {
            j.pending_registers += 1;
        }
        let token = self.token();
        self.pending.insert(
            token,
            Pending::Register(PendingRegister {
                conn,
                session,
                request: m.request,
                realm,
                uri: m.procedure.clone(),
                policy,
                invoke,
                wait: Wait::new(self.live_shards()),
                resent: false,
                parked: Vec::new(),
            }),
        );
        let owner = self.owner(realm, &m.procedure, policy);
        self.send_peer(
            owner,
            PeerMsg::RegisterRequest {
                token,
                realm,
                uri: m.procedure,
                policy,
                invoke,
                session,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn owner_register(
        &mut self,
        from: u16,
        life: u64,
        token: u64,
        realm: u16,
        uri: String,
        policy: MatchPolicy,
        invoke: InvokePolicy,
        session: Id,
    ) {
        let Some(r) = self.realms.get(usize::from(realm)) else {
            return;
        };
        let existing = r
            .dealer
            .lookup(&uri, policy)
            .and_then(|id| r.dealer.by_id.get(&id).map(|g| (id, g)));
        let id = match existing {
            Some((_, g)) if !g.callees.is_empty() && g.invoke != invoke => {
                let error =
                    "wamp.error.procedure_exists_with_different_invocation_policy".to_owned();
                self.send_peer(from, PeerMsg::RegisterReject { token, error });
                return;
            }
            Some((_, g))
                if !g.callees.is_empty()
                    && (invoke == InvokePolicy::Single
                        || g.callees.iter().any(|c| c.1 == session)) =>
            {
                let error = "wamp.error.procedure_already_exists".to_owned();
                self.send_peer(from, PeerMsg::RegisterReject { token, error });
                return;
            }
            Some((id, _)) => id,
            None => {
                let ids: Vec<Id> = r.dealer.by_id.keys().copied().collect();
                self.fresh_id(|id| ids.contains(&id))
            }
        };
        let msg = PeerMsg::RegisterAdd {
            realm,
            uri: uri.clone(),
            policy,
            invoke,
            registration: id,
            shard: from,
            life,
            session,
            requester: from,
            token,
            to: self.recipients(),
        };
        self.broadcast(&msg);
        if let PeerMsg::RegisterAdd { to, .. } = &msg {
            self.change_reached(from, token, to);
        }
        if self.current(from, life) {
            self.apply_register_add(realm, &uri, policy, invoke, id, from, session);
            self.applied(from, token, Some(id));
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_register_add(
        &mut self,
        realm: u16,
        uri: &str,
        policy: MatchPolicy,
        invoke: InvokePolicy,
        id: Id,
        shard: u16,
        session: Id,
    ) {
        let Some(r) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let d = &mut r.dealer;
        let now = self.now;
        let g = d.by_id.entry(id).or_insert_with(|| Registration {
            uri: uri.to_owned(),
            policy,
            invoke,
            callees: Vec::new(),
            next: 0,
            created: now,
            withdrawn: Vec::new(),
        });
        // Every replica applies the owner's decisions in the owner's order, so the
        // requester's replica sees the same first callee as the owner did (callees it
        // withdrew early still count until the owner removes them).
        let created = g.callees.is_empty() && g.withdrawn.is_empty();
        if !g.callees.contains(&(shard, session)) {
            g.callees.push((shard, session));
        }
        let _ = d.regs.insert(uri, policy, id);
        // Only the REGISTER that created the registration announces it, as in Crossbar,
        // from the callee's shard, before its REGISTERED and `on_register`.
        if created && shard == self.index {
            self.meta_on_create_registration(realm, session, id, uri, policy, invoke);
        }
    }

    /// Whether the session of the pending register `token` holds its key by another
    /// registration or another pending register.
    fn holds_key_elsewhere(&self, token: u64, p: &PendingRegister) -> bool {
        let other_pending = self.pending.iter().any(|(t, q)| {
            *t != token
                && matches!(q, Pending::Register(q)
                    if q.session == p.session && q.uri == p.uri && q.policy == p.policy)
        });
        let registered = self
            .sessions
            .get(&p.conn)
            .and_then(|s| s.joined())
            .is_some_and(|j| {
                j.registrations.iter().any(|id| {
                    self.realms[usize::from(p.realm)]
                        .dealer
                        .by_id
                        .get(id)
                        .is_some_and(|g| g.uri == p.uri && g.policy == p.policy)
                })
            });
        other_pending || registered
    }

    pub(super) fn register_rejected(&mut self, token: u64, error: &str) {
        // A request re-sent after a shard died (or handed back by a joiner that gave up)
        // may be decided twice; the second decision's rejection follows the first one's
        // RegisterAdd on the owner's link and is not news.
        if matches!(self.pending.get(&token), Some(Pending::Register(p)) if p.wait.id.is_some()) {
            return;
        }
        // The rejection may also come first: a re-sent request whose session holds the
        // key nowhere else was decided once already, and that decision's RegisterAdd is
        // on its way (it reached the shard that rejected the second time).
        if error == "wamp.error.procedure_already_exists"
            && matches!(self.pending.get(&token), Some(Pending::Register(p))
                if p.resent && !self.holds_key_elsewhere(token, p))
        {
            return;
        }
        let Some(Pending::Register(p)) = self.pending.remove(&token) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&p.conn) {
            let serializer = s.serializer;
            if let Some(j) = s.joined_mut() {
                j.pending_registers = j.pending_registers.saturating_sub(1);
                self.send_error(p.conn, serializer, MessageType::Register, p.request, error);
            }
        }
        self.unpark(p.parked);
    }

    /// Hands parked calls to `peer_invoke` again, in order: each is delivered, parked
    /// behind another pending REGISTER of its callee, or failed.
    fn unpark(&mut self, parked: Vec<(u16, Invoke)>) {
        for (from, i) in parked {
            self.peer_invoke(from, i);
        }
    }

    /// Parks a call for a callee whose REGISTER is still waiting for acknowledgements (or
    /// a later chunk of a call parked so); gives the call back when there is none.
    fn park_invoke(&mut self, from: u16, i: Invoke) -> Option<Invoke> {
        let key = (from, i.caller, i.call);
        let limit = self.config.limits.pending_invocations_per_session;
        let mut slot = None;
        for p in self.pending.values_mut() {
            let Pending::Register(p) = p else {
                continue;
            };
            let chunk = p.parked.iter().any(|(f, q)| (*f, q.caller, q.call) == key);
            if chunk || (slot.is_none() && p.session == i.callee) {
                slot = Some(p);
                if chunk {
                    break;
                }
            }
        }
        let Some(p) = slot else {
            return Some(i);
        };
        if p.parked.len() < limit {
            p.parked.push((from, i));
        } else {
            // The bound keeps a callee whose REGISTER never completes from holding an
            // unbounded queue; past it the call fails as a busy callee's would.
            let e = CallError {
                caller: i.caller,
                call: i.call,
                error: "wamp.error.limit_exceeded".to_owned(),
                details: Dict::new(),
                payload: Payload::empty(),
            };
            self.send_peer(from, PeerMsg::CallError(Box::new(e)));
        }
        None
    }

    /// A call for a callee that does not hold the registration yet but waits for its
    /// REGISTER to complete is parked (`None`); anything else is given back.
    fn park_if_registering(&mut self, from: u16, i: Invoke) -> Option<Invoke> {
        let holds = self
            .by_id
            .get(&i.callee)
            .and_then(|c| self.sessions.get(c))
            .and_then(|s| s.joined())
            .is_some_and(|j| j.registrations.contains(&i.registration));
        if holds {
            return Some(i);
        }
        self.park_invoke(from, i)
    }

    /// Takes a parked call back out (it was canceled before the callee saw it).
    fn unpark_one(&mut self, from: u16, caller: Id, call: Id) -> bool {
        for p in self.pending.values_mut() {
            let Pending::Register(p) = p else {
                continue;
            };
            let before = p.parked.len();
            p.parked
                .retain(|(f, q)| (*f, q.caller, q.call) != (from, caller, call));
            if p.parked.len() != before {
                return true;
            }
        }
        false
    }

    pub(super) fn register_done(&mut self, p: PendingRegister) {
        let Some(id) = p.wait.id else {
            return;
        };
        let alive = self.by_id.get(&p.session) == Some(&p.conn);
        if !alive {
            self.give_back_registration(p.realm, id, p.session);
            self.unpark(p.parked);
            return;
        }
        let Some(s) = self.sessions.get_mut(&p.conn) else {
            self.unpark(p.parked);
            return;
        };
        let serializer = s.serializer;
        if let Some(j) = s.joined_mut() {
            j.registrations.insert(id);
            j.pending_registers = j.pending_registers.saturating_sub(1);
        }
        let msg = Message::Registered(Registered {
            request: p.request,
            registration: id,
        });
        self.send(p.conn, serializer, &msg);
        self.meta_on_register(p.realm, p.session, id);
        self.unpark(p.parked);
    }

    /// Removes a callee here at once (so no new call picks it) and asks the owner to
    /// remove it everywhere.
    fn give_back_registration(&mut self, realm: u16, id: Id, session: Id) {
        let key = self.realms[usize::from(realm)]
            .dealer
            .by_id
            .get(&id)
            .map(|g| (g.uri.clone(), g.policy));
        self.withdraw_callee(realm, id, session);
        if let Some((uri, policy)) = key {
            let owner = self.owner(realm, &uri, policy);
            let msg = PeerMsg::UnregisterRequest {
                realm,
                registration: id,
                session,
            };
            self.send_removal(owner, msg, Some((uri, policy)));
            return;
        }
        // This shard does not know the registration (it cannot happen for a callee it
        // holds, which is in its replica): ask the shard of the id's class, which hands
        // it on to the owner if it knows the key.
        let owner = (id.get() % u64::from(self.count)) as u16;
        let owner = if self.live[usize::from(owner)] {
            owner
        } else {
            self.index
        };
        let msg = PeerMsg::UnregisterRequest {
            realm,
            registration: id,
            session,
        };
        self.send_removal(owner, msg, None);
    }

    pub(super) fn unregister(&mut self, conn: ConnId, m: Unregister) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            return;
        };
        if !j.registrations.remove(&m.registration) {
            self.send_error(
                conn,
                serializer,
                MessageType::Unregister,
                m.request,
                "wamp.error.no_such_registration",
            );
            return;
        }
        let (realm, session) = (j.realm, j.id);
        self.meta_on_unregister(realm, session, m.registration);
        self.give_back_registration(realm, m.registration, session);
        let msg = Message::Unregistered(Unregistered {
            request: Some(m.request),
            details: None,
        });
        self.send(conn, serializer, &msg);
    }

    /// `wamp.registration.remove_callee` on the session's shard: the callee leaves the
    /// registration and learns it from a router-initiated UNREGISTERED (invocations it is
    /// running still expect its answer). False when the session is not here or does not
    /// hold the registration.
    pub(super) fn remove_callee(
        &mut self,
        realm: u16,
        id: Id,
        session: Id,
        reason: Option<String>,
    ) -> bool {
        let Some((conn, serializer, j)) = self.local_session_mut(session, realm) else {
            return false;
        };
        if !j.registrations.remove(&id) {
            return false;
        }
        self.meta_on_unregister(realm, session, id);
        self.give_back_registration(realm, id, session);
        let mut details = Dict::new().with("registration", id);
        if let Some(r) = reason {
            details = details.with("reason", r.as_str());
        }
        let msg = Message::Unregistered(Unregistered {
            request: None,
            details: Some(details),
        });
        self.send(conn, serializer, &msg);
        true
    }

    pub(super) fn owner_unregister(
        &mut self,
        from: u16,
        realm: u16,
        registration: Id,
        session: Id,
    ) {
        let msg = PeerMsg::RegisterRemove {
            realm,
            registration,
            shard: from,
            session,
        };
        self.broadcast(&msg);
        if from == self.index {
            self.unregister_decided(realm, registration, session);
        }
        self.apply_register_remove(realm, registration, from, session);
    }

    /// Removes a callee of this shard here at once, ahead of the owner's decision: no new
    /// call picks it, and the entry keeps it as withdrawn until the owner's removal.
    fn withdraw_callee(&mut self, realm: u16, id: Id, session: Id) {
        let index = self.index;
        let Some(r) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let d = &mut r.dealer;
        let Some(g) = d.by_id.get_mut(&id) else {
            return;
        };
        if !g.callees.contains(&(index, session)) {
            return;
        }
        g.callees.retain(|c| *c != (index, session));
        g.withdrawn.push((index, session));
        if g.callees.is_empty() {
            let (uri, policy) = (g.uri.clone(), g.policy);
            if d.regs.get(&uri, policy) == Some(&id) {
                d.regs.remove(&uri, policy);
            }
        }
    }

    /// Applies the owner's removal of a callee; returns the registration id when that
    /// deleted the registration.
    pub(super) fn apply_register_remove(
        &mut self,
        realm: u16,
        id: Id,
        shard: u16,
        session: Id,
    ) -> Option<Id> {
        let r = self.realms.get_mut(usize::from(realm))?;
        let d = &mut r.dealer;
        let g = d.by_id.get_mut(&id)?;
        g.callees.retain(|c| *c != (shard, session));
        g.withdrawn.retain(|c| *c != (shard, session));
        if !g.callees.is_empty() {
            return None;
        }
        let (uri, policy) = (g.uri.clone(), g.policy);
        if d.regs.get(&uri, policy) == Some(&id) {
            d.regs.remove(&uri, policy);
        }
        if !g.withdrawn.is_empty() {
            return None;
        }
        d.by_id.remove(&id);
        // Published by the callee's shard, after the callee's on_unregister that went out
        // from here earlier; this replica follows the owner's order, so the registration
        // is gone router-wide exactly when it is gone here.
        if shard == self.index {
            self.meta_on_registration_delete(realm, Some(session), id);
        }
        Some(id)
    }

    pub(super) fn call(&mut self, conn: ConnId, m: Call) {
        let Some((j, serializer)) = self.joined(conn) else {
            return;
        };
        if m.procedure.starts_with("wamp.") {
            self.meta_call(conn, m);
            return;
        }
        // A progressive call's later chunks go to the callee the first chunk reached.
        if let Some(c) = j.calls.get(&m.request) {
            if !c.invoking {
                self.violation(conn, ProtocolViolation::CallIdInUse(m.request));
                return;
            }
            let callee_shard = c.callee_shard;
            let caller = j.id;
            let more = m.options.progress == Some(true);
            if let Some(c) = self
                .sessions
                .get_mut(&conn)
                .and_then(|s| s.joined_mut())
                .and_then(|j| j.calls.get_mut(&m.request))
            {
                c.invoking = more;
            }
            let invoke = Invoke {
                caller,
                call: m.request,
                registration: Id::MIN,
                callee: Id::MIN,
                procedure: None,
                pattern: false,
                disclosed: None,
                receive_progress: false,
                progress: more,
                timeout: 0,
                ppt: m.options.ppt,
                payload: m.payload,
            };
            self.send_peer(callee_shard, PeerMsg::Invoke(Box::new(invoke)));
            return;
        }
        let perm = self.permission(j, &m.procedure);
        let error = if uri::validate_uri(&m.procedure, UriCheck::Loose).is_err() {
            Some("wamp.error.invalid_uri")
        } else if !perm.is_some_and(|p| p.call) {
            Some("wamp.error.not_authorized")
        } else if j.calls.len() >= self.config.limits.pending_calls_per_session {
            Some("wamp.error.limit_exceeded")
        } else {
            None
        };
        if let Some(e) = error {
            self.send_error(conn, serializer, MessageType::Call, m.request, e);
            return;
        }
        let disclosed = perm
            .is_some_and(|p| p.disclose_caller)
            .then(|| (j.auth.authid.clone(), j.auth.authrole.clone()));
        let (caller, realm) = (j.id, j.realm);
        let Some((reg_id, callee_shard, callee, pattern)) = self.pick_callee(realm, &m.procedure)
        else {
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                m.request,
                "wamp.error.no_such_procedure",
            );
            return;
        };
        if callee_shard != self.index
            && self.calls_to[usize::from(callee_shard)]
                >= self.config.limits.in_flight_peer_requests
        {
            // The bound on calls in flight toward one shard: a callee shard that stopped
            // answering cannot make this one hold unbounded call state.
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                m.request,
                "wamp.error.limit_exceeded",
            );
            return;
        }
        let timeout = m.options.timeout.unwrap_or(0);
        let deadline = (timeout > 0).then(|| self.now.plus_ms(timeout));
        if let Some(d) = deadline {
            self.timers.insert((d, caller, m.request));
        }
        if let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) {
            self.calls_to[usize::from(callee_shard)] += 1;
            j.calls.insert(
                m.request,
                OutCall {
                    callee_shard,
                    deadline,
                    canceling: false,
                    invoking: m.options.progress == Some(true),
                    receive_progress: m.options.receive_progress == Some(true),
                    tried: Vec::new(),
                },
            );
        }
        let invoke = Invoke {
            caller,
            call: m.request,
            registration: reg_id,
            callee,
            // Always sent: the callee's shard hands it back if the callee unregistered
            // meanwhile, and this shard routes the call again by it.
            procedure: Some(m.procedure),
            pattern,
            disclosed,
            receive_progress: m.options.receive_progress == Some(true),
            progress: m.options.progress == Some(true),
            timeout,
            ppt: m.options.ppt,
            payload: m.payload,
        };
        self.send_peer(callee_shard, PeerMsg::Invoke(Box::new(invoke)));
    }

    /// The registration matching `procedure` in `realm` and the callee its invocation
    /// policy picks now: (registration, callee shard, callee session, whether the
    /// registration is a pattern). `None` when nothing matches.
    fn pick_callee(&mut self, realm: u16, procedure: &str) -> Option<(Id, u16, Id, bool)> {
        let d = &mut self.realms.get_mut(usize::from(realm))?.dealer;
        let reg_id = d.best(procedure)?;
        let g = d.by_id.get_mut(&reg_id)?;
        let n = g.callees.len();
        if n == 0 {
            return None;
        }
        let pick = g.pick(n, &mut self.rng);
        let (callee_shard, callee) = g.callees[pick];
        Some((reg_id, callee_shard, callee, g.policy != MatchPolicy::Exact))
    }

    /// Calls `procedure` in `realm` as the router itself, with `args` and `kwargs`, and
    /// hands the outcome to `purpose` when the callee answers or `timeout_ms` has passed
    /// (whichever comes first). The call takes the same path as a session's (to a callee
    /// on any shard). When it cannot start, the error URI says why and nothing is pending:
    /// `wamp.error.no_such_procedure` (no callee) or `wamp.error.limit_exceeded` (too many
    /// router calls in flight on this shard, or toward the callee's shard).
    pub(super) fn router_call(
        &mut self,
        realm: u16,
        procedure: &str,
        args: &[Value],
        kwargs: Option<&Dict>,
        timeout_ms: u64,
        purpose: CallPurpose,
    ) -> Result<(), &'static str> {
        if self.router_calls.len() >= self.config.limits.router_calls {
            return Err("wamp.error.limit_exceeded");
        }
        let (registration, callee_shard, callee, pattern) = self
            .pick_callee(realm, procedure)
            .ok_or("wamp.error.no_such_procedure")?;
        self.last_router_call += 1;
        // Router call ids count from 1 and never reach 2^53 in a shard's lifetime; past
        // it no more router calls can be made, which fails safe (denies).
        let call = Id::new(self.last_router_call).ok_or("wamp.error.limit_exceeded")?;
        let timeout_ms = timeout_ms.max(1);
        let deadline = self.now.plus_ms(timeout_ms);
        self.timers.insert((deadline, self.router_caller, call));
        self.router_calls.insert(
            call,
            RouterCall {
                purpose,
                callee_shard,
                deadline,
            },
        );
        let invoke = Invoke {
            caller: self.router_caller,
            call,
            registration,
            callee,
            procedure: pattern.then(|| procedure.to_owned()),
            pattern,
            disclosed: None,
            receive_progress: false,
            progress: false,
            timeout: timeout_ms,
            ppt: Default::default(),
            payload: super::values::payload(Serializer::Json, args, kwargs),
        };
        self.send_peer(callee_shard, PeerMsg::Invoke(Box::new(invoke)));
        Ok(())
    }

    /// A router call ended: its timer goes and its purpose gets the outcome.
    fn router_call_ended(&mut self, call: Id, outcome: RouterCallOutcome) {
        let Some(c) = self.router_calls.remove(&call) else {
            return;
        };
        self.timers.remove(&(c.deadline, self.router_caller, call));
        self.router_call_outcome(c.purpose, outcome);
    }

    fn router_call_outcome(&mut self, purpose: CallPurpose, outcome: RouterCallOutcome) {
        match purpose {
            CallPurpose::Authenticate { conn, auth } => {
                self.dynamic_auth_outcome(conn, auth, outcome);
            }
            CallPurpose::Authorize { conn, session } => {
                self.authorize_outcome(conn, session, outcome);
            }
        }
    }

    /// A call arrived for a callee on this shard.
    pub(super) fn peer_invoke(&mut self, from: u16, i: Invoke) {
        let key = (from, i.caller, i.call);
        let known = self.inbound_calls.get(&key).copied();
        let i = match known {
            Some(_) => i,
            None => match self.park_if_registering(from, i) {
                Some(i) => i,
                None => return,
            },
        };
        if let Some((callee, request)) = known {
            // A later chunk of a progressive invocation.
            let Some(&conn) = self.by_id.get(&callee) else {
                return;
            };
            let Some(s) = self.sessions.get(&conn) else {
                return;
            };
            let serializer = s.serializer;
            let Ok(payload) = fit(i.payload, serializer) else {
                return;
            };
            let registration = s
                .joined()
                .and_then(|j| j.invocations.get(&request))
                .map_or(Id::MIN, |c| c.registration);
            let msg = Message::Invocation(Invocation {
                request,
                registration,
                details: InvocationDetails {
                    progress: i.progress.then_some(true),
                    ppt: i.ppt,
                    ..InvocationDetails::default()
                },
                payload,
            });
            self.send(conn, serializer, &msg);
            return;
        }
        let fail = |shard: &mut Self, error: &str| {
            let e = CallError {
                caller: i.caller,
                call: i.call,
                error: error.to_owned(),
                details: Dict::new(),
                payload: Payload::empty(),
            };
            shard.send_peer(from, PeerMsg::CallError(Box::new(e)));
        };
        let Some(&conn) = self.by_id.get(&i.callee) else {
            fail(self, "wamp.error.canceled");
            return;
        };
        let limit = self.config.limits.pending_invocations_per_session;
        let Some(s) = self.sessions.get_mut(&conn) else {
            fail(self, "wamp.error.canceled");
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            fail(self, "wamp.error.canceled");
            return;
        };
        if !j.registrations.contains(&i.registration) {
            // The callee unregistered while the invocation travelled: the caller's shard
            // routes the call again (another callee of the registration, or a
            // lower-precedence one). A call whose later chunks follow is not moved.
            if i.procedure.is_some() && !i.progress {
                self.send_peer(from, PeerMsg::Unrouted(Box::new(i)));
            } else {
                fail(self, "wamp.error.no_such_procedure");
            }
            return;
        }
        if j.invocations.len() >= limit {
            fail(self, "wamp.error.limit_exceeded");
            return;
        }
        let Ok(payload) = fit(i.payload, serializer) else {
            fail(self, "wamp.error.invalid_argument");
            return;
        };
        j.last_invocation += 1;
        // Session-scope ids are sequential from 1 and stay below 2^53 for any realistic
        // session; past it the session would have to be retired, so fail the call.
        let Some(request) = Id::new(j.last_invocation) else {
            fail(self, "wamp.error.limit_exceeded");
            return;
        };
        j.invocations.insert(
            request,
            InCall {
                registration: i.registration,
                caller_shard: from,
                caller: i.caller,
                call: i.call,
            },
        );
        self.inbound_calls.insert(key, (i.callee, request));
        let (caller, authid, authrole) = match i.disclosed {
            Some((a, r)) => (Some(i.caller), Some(a), Some(r)),
            None => (None, None, None),
        };
        let msg = Message::Invocation(Invocation {
            request,
            registration: i.registration,
            details: InvocationDetails {
                caller,
                caller_authid: authid,
                caller_authrole: authrole,
                procedure: if i.pattern { i.procedure } else { None },
                receive_progress: i.receive_progress.then_some(true),
                progress: i.progress.then_some(true),
                timeout: (i.timeout > 0).then_some(i.timeout),
                ppt: i.ppt,
                extra: Dict::new(),
            },
            payload,
        });
        self.send(conn, serializer, &msg);
    }

    pub(super) fn yield_(&mut self, conn: ConnId, m: Yield) {
        let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
            return;
        };
        let progress = m.options.progress == Some(true);
        let Some(c) = (if progress {
            j.invocations.get(&m.request).map(InCall::copy)
        } else {
            j.invocations.remove(&m.request)
        }) else {
            if m.request.get() > j.last_invocation {
                self.violation(conn, ProtocolViolation::UnknownInvocation(m.request));
            }
            // Otherwise the invocation was canceled or timed out: the spec has the late
            // answer ignored.
            return;
        };
        if !progress {
            self.inbound_calls
                .remove(&(c.caller_shard, c.caller, c.call));
        }
        let y = YieldMsg {
            caller: c.caller,
            call: c.call,
            progress,
            ppt: m.options.ppt,
            extra: m.options.extra,
            payload: m.payload,
        };
        self.send_peer(c.caller_shard, PeerMsg::Yield(Box::new(y)));
    }

    pub(super) fn callee_error(&mut self, conn: ConnId, m: ErrorMessage) {
        if m.request_type != MessageType::Invocation {
            self.violation(
                conn,
                ProtocolViolation::ErrorForWrongRequestType(m.request_type),
            );
            return;
        }
        let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
            return;
        };
        let Some(c) = j.invocations.remove(&m.request) else {
            if m.request.get() > j.last_invocation {
                self.violation(conn, ProtocolViolation::UnknownInvocation(m.request));
            }
            return;
        };
        self.inbound_calls
            .remove(&(c.caller_shard, c.caller, c.call));
        let e = CallError {
            caller: c.caller,
            call: c.call,
            error: m.error,
            details: m.details,
            payload: m.payload,
        };
        self.send_peer(c.caller_shard, PeerMsg::CallError(Box::new(e)));
    }

    /// A result for a caller on this shard.
    pub(super) fn peer_yield(&mut self, y: YieldMsg) {
        if y.caller == self.router_caller {
            // Router calls never ask for progressive results; a final one ends the call.
            if !y.progress {
                let args = super::values::args_of(&y.payload);
                let kwargs = super::values::kwargs_of(&y.payload);
                self.router_call_ended(y.call, RouterCallOutcome::Result(args, kwargs));
            }
            return;
        }
        let Some(&conn) = self.by_id.get(&y.caller) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            return;
        };
        let Some(c) = j.calls.get(&y.call) else {
            return;
        };
        if y.progress && !c.receive_progress {
            // The caller did not ask for progressive results: the callee should not have
            // sent one, and the caller could not tell it from the final result.
            return;
        }
        let deadline = c.deadline;
        if !y.progress {
            if let Some(c) = j.calls.remove(&y.call) {
                call_ended(&mut self.calls_to, c.callee_shard);
            }
            if let Some(d) = deadline {
                self.timers.remove(&(d, y.caller, y.call));
            }
        }
        let Ok(payload) = fit(y.payload, serializer) else {
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                y.call,
                "wamp.error.invalid_argument",
            );
            return;
        };
        let msg = Message::Result(CallResult {
            request: y.call,
            details: ResultDetails {
                progress: y.progress.then_some(true),
                ppt: y.ppt,
                extra: y.extra,
            },
            payload,
        });
        self.send(conn, serializer, &msg);
    }

    /// An error for a caller on this shard.
    /// The callee's shard refused invocation `i` (sent from this shard to `from`): the
    /// callee had unregistered. Routes the call again without the callees tried so far,
    /// or fails it.
    pub(super) fn unrouted(&mut self, from: u16, i: Invoke) {
        let fail = |shard: &mut Self, error: &str| {
            shard.peer_call_error(CallError {
                caller: i.caller,
                call: i.call,
                error: error.to_owned(),
                details: Dict::new(),
                payload: Payload::empty(),
            });
        };
        if i.caller == self.router_caller {
            // The router's own calls are not routed again.
            fail(self, "wamp.error.no_such_procedure");
            return;
        }
        let Some(&conn) = self.by_id.get(&i.caller) else {
            return;
        };
        let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) else {
            return;
        };
        let realm = j.realm;
        let Some(c) = j.calls.get_mut(&i.call) else {
            // Answered meanwhile (canceled with skip, timed out, or the caller left).
            return;
        };
        if c.callee_shard != from {
            return;
        }
        c.tried.push(i.callee);
        if c.canceling {
            // The cancel went to the refusing shard, which holds nothing to interrupt.
            fail(self, "wamp.error.canceled");
            return;
        }
        if c.tried.len() > MAX_REROUTES {
            fail(self, "wamp.error.no_such_procedure");
            return;
        }
        let tried = c.tried.clone();
        let Some(procedure) = i.procedure.clone() else {
            fail(self, "wamp.error.no_such_procedure");
            return;
        };
        let Some((registration, callee_shard, callee, pattern)) =
            self.pick_callee_excluding(realm, &procedure, &tried)
        else {
            fail(self, "wamp.error.no_such_procedure");
            return;
        };
        if callee_shard != self.index
            && callee_shard != from
            && self.calls_to[usize::from(callee_shard)]
                >= self.config.limits.in_flight_peer_requests
        {
            fail(self, "wamp.error.limit_exceeded");
            return;
        }
        if let Some(c) = self
            .sessions
            .get_mut(&conn)
            .and_then(|s| s.joined_mut())
            .and_then(|j| j.calls.get_mut(&i.call))
        {
            c.callee_shard = callee_shard;
        }
        call_ended(&mut self.calls_to, from);
        self.calls_to[usize::from(callee_shard)] += 1;
        let invoke = Invoke {
            registration,
            callee,
            pattern,
            ..i
        };
        self.send_peer(callee_shard, PeerMsg::Invoke(Box::new(invoke)));
    }

    /// As [`Shard::pick_callee`], leaving out the callees in `tried` (whose shards
    /// refused the call): a registration left without callees gives way to the next one
    /// in precedence.
    fn pick_callee_excluding(
        &mut self,
        realm: u16,
        procedure: &str,
        tried: &[Id],
    ) -> Option<(Id, u16, Id, bool)> {
        let mut aside: Vec<(String, MatchPolicy, Id)> = Vec::new();
        let picked = loop {
            let Some(d) = self
                .realms
                .get_mut(usize::from(realm))
                .map(|r| &mut r.dealer)
            else {
                break None;
            };
            let Some(reg_id) = d.best(procedure) else {
                break None;
            };
            let Some(g) = d.by_id.get_mut(&reg_id) else {
                break None;
            };
            let left: Vec<(u16, Id)> = g
                .callees
                .iter()
                .filter(|c| !tried.contains(&c.1))
                .copied()
                .collect();
            if left.is_empty() {
                // Set aside while the next best is found; put back below.
                let (uri, policy) = (g.uri.clone(), g.policy);
                d.regs.remove(&uri, policy);
                aside.push((uri, policy, reg_id));
                continue;
            }
            let n = left.len();
            let pick = g.pick(n, &mut self.rng);
            let (callee_shard, callee) = left[pick];
            break Some((reg_id, callee_shard, callee, g.policy != MatchPolicy::Exact));
        };
        if let Some(d) = self
            .realms
            .get_mut(usize::from(realm))
            .map(|r| &mut r.dealer)
        {
            for (uri, policy, id) in aside {
                let _ = d.regs.insert(&uri, policy, id);
            }
        }
        picked
    }

    pub(super) fn peer_call_error(&mut self, e: CallError) {
        if e.caller == self.router_caller {
            let message = super::values::args_of(&e.payload)
                .first()
                .and_then(Value::as_str)
                .map(str::to_owned);
            self.router_call_ended(e.call, RouterCallOutcome::Error(e.error, message));
            return;
        }
        let Some(&conn) = self.by_id.get(&e.caller) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            return;
        };
        let Some(c) = j.calls.remove(&e.call) else {
            return;
        };
        call_ended(&mut self.calls_to, c.callee_shard);
        if let Some(d) = c.deadline {
            self.timers.remove(&(d, e.caller, e.call));
        }
        let payload = fit(e.payload, serializer).unwrap_or_default();
        let msg = Message::Error(ErrorMessage {
            request_type: MessageType::Call,
            request: e.call,
            details: e.details,
            error: e.error,
            payload,
        });
        self.send(conn, serializer, &msg);
    }

    pub(super) fn cancel(&mut self, conn: ConnId, m: Cancel) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            return;
        };
        let caller = j.id;
        let mode = m.options.mode.unwrap_or(CancelMode::Kill);
        let Some(c) = j.calls.get_mut(&m.request) else {
            // The call already ended: nothing to cancel.
            return;
        };
        let callee_shard = c.callee_shard;
        if mode == CancelMode::Kill {
            if c.canceling {
                return;
            }
            c.canceling = true;
        } else {
            let deadline = c.deadline;
            j.calls.remove(&m.request);
            call_ended(&mut self.calls_to, callee_shard);
            if let Some(d) = deadline {
                self.timers.remove(&(d, caller, m.request));
            }
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                m.request,
                "wamp.error.canceled",
            );
        }
        let reason = "wamp.error.canceled".to_owned();
        self.send_peer(
            callee_shard,
            PeerMsg::Cancel {
                caller,
                call: m.request,
                mode,
                reason,
            },
        );
    }

    /// A caller cancels an invocation running on this shard.
    pub(super) fn peer_cancel(
        &mut self,
        from: u16,
        caller: Id,
        call: Id,
        mode: CancelMode,
        reason: &str,
    ) {
        let Some(&(callee, request)) = self.inbound_calls.get(&(from, caller, call)) else {
            if self.unpark_one(from, caller, call) && mode == CancelMode::Kill {
                // The callee never saw the call; a `kill` caller waits for an answer.
                let e = CallError {
                    caller,
                    call,
                    error: reason.to_owned(),
                    details: Dict::new(),
                    payload: Payload::empty(),
                };
                self.send_peer(from, PeerMsg::CallError(Box::new(e)));
            }
            return;
        };
        let Some(&conn) = self.by_id.get(&callee) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            return;
        };
        let can_interrupt = j.roles.supports(Role::Callee, "call_canceling");
        let keep = mode == CancelMode::Kill && can_interrupt;
        if !keep {
            j.invocations.remove(&request);
            self.inbound_calls.remove(&(from, caller, call));
        }
        if mode != CancelMode::Skip && can_interrupt {
            let msg = Message::Interrupt(Interrupt {
                request,
                options: InterruptOptions {
                    mode: Some(mode),
                    reason: Some(reason.to_owned()),
                    extra: Dict::new(),
                },
            });
            self.send(conn, serializer, &msg);
        }
        if mode == CancelMode::Kill && !can_interrupt {
            // The callee cannot be interrupted: answer the waiting caller now, as `skip`.
            let e = CallError {
                caller,
                call,
                error: reason.to_owned(),
                details: Dict::new(),
                payload: Payload::empty(),
            };
            self.send_peer(from, PeerMsg::CallError(Box::new(e)));
        }
    }

    pub(super) fn fire_timeouts(&mut self, now: Time) {
        while let Some(&(t, caller, call)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if caller == self.router_caller {
                self.router_call_timeout(call);
                continue;
            }
            let Some(&conn) = self.by_id.get(&caller) else {
                continue;
            };
            let Some(s) = self.sessions.get_mut(&conn) else {
                continue;
            };
            let serializer = s.serializer;
            let Some(c) = s.joined_mut().and_then(|j| j.calls.remove(&call)) else {
                continue;
            };
            call_ended(&mut self.calls_to, c.callee_shard);
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                call,
                "wamp.error.timeout",
            );
            let reason = "wamp.error.timeout".to_owned();
            self.send_peer(
                c.callee_shard,
                PeerMsg::Cancel {
                    caller,
                    call,
                    mode: CancelMode::KillNoWait,
                    reason,
                },
            );
        }
    }

    /// A router call's deadline passed: the callee is told to stop (`killnowait`), the
    /// purpose gets [`RouterCallOutcome::Timeout`].
    fn router_call_timeout(&mut self, call: Id) {
        let Some(c) = self.router_calls.remove(&call) else {
            return;
        };
        let reason = "wamp.error.timeout".to_owned();
        let caller = self.router_caller;
        self.send_peer(
            c.callee_shard,
            PeerMsg::Cancel {
                caller,
                call,
                mode: CancelMode::KillNoWait,
                reason,
            },
        );
        self.router_call_outcome(c.purpose, RouterCallOutcome::Timeout);
    }

    pub(super) fn dealer_leave(&mut self, j: &Joined) {
        // As callee: registrations go, pending invocations fail at their callers.
        for id in j.registrations.iter().copied().collect::<Vec<_>>() {
            self.meta_on_unregister(j.realm, j.id, id);
            self.give_back_registration(j.realm, id, j.id);
        }
        for c in j.invocations.values() {
            self.inbound_calls
                .remove(&(c.caller_shard, c.caller, c.call));
            let e = CallError {
                caller: c.caller,
                call: c.call,
                error: "wamp.error.canceled".to_owned(),
                details: Dict::new().with("reason", "callee left"),
                payload: Payload::empty(),
            };
            self.send_peer(c.caller_shard, PeerMsg::CallError(Box::new(e)));
        }
        // As caller: pending calls are canceled at their callees.
        for (call, c) in &j.calls {
            call_ended(&mut self.calls_to, c.callee_shard);
            if let Some(d) = c.deadline {
                self.timers.remove(&(d, j.id, *call));
            }
            let reason = "wamp.error.canceled".to_owned();
            self.send_peer(
                c.callee_shard,
                PeerMsg::Cancel {
                    caller: j.id,
                    call: *call,
                    mode: CancelMode::KillNoWait,
                    reason,
                },
            );
        }
    }

    pub(super) fn dealer_shard_down(&mut self, shard: u16) {
        for realm in 0..self.realms.len() {
            let gone: Vec<(Id, Id)> = self.realms[realm]
                .dealer
                .by_id
                .iter()
                .flat_map(|(id, g)| {
                    g.callees
                        .iter()
                        .filter(|c| c.0 == shard)
                        .map(move |c| (*id, c.1))
                })
                .collect();
            for (id, session) in gone {
                let uri = self.realms[realm]
                    .dealer
                    .by_id
                    .get(&id)
                    .map(|g| (g.uri.clone(), g.policy));
                let deleted = self.apply_register_remove(realm as u16, id, shard, session);
                // Nobody is left to say who deleted it: the owner says it, with no session.
                if let (Some(id), Some((uri, policy))) = (deleted, uri) {
                    if self.owner(realm as u16, &uri, policy) == self.index {
                        self.meta_on_registration_delete(realm as u16, None, id);
                    }
                }
            }
        }
        // Router calls waiting on callees of the dead shard fail as canceled.
        let dead: Vec<Id> = self
            .router_calls
            .iter()
            .filter(|(_, c)| c.callee_shard == shard)
            .map(|(id, _)| *id)
            .collect();
        for call in dead {
            let outcome = RouterCallOutcome::Error("wamp.error.canceled".to_owned(), None);
            self.router_call_ended(call, outcome);
        }
        // Calls waiting on callees of the dead shard fail; invocations for its callers go.
        let mut failed = Vec::new();
        for (conn, s) in &mut self.sessions {
            let serializer = s.serializer;
            let Some(j) = s.joined_mut() else {
                continue;
            };
            let dead: Vec<Id> = j
                .calls
                .iter()
                .filter(|(_, c)| c.callee_shard == shard)
                .map(|(k, _)| *k)
                .collect();
            for call in dead {
                if let Some(c) = j.calls.remove(&call) {
                    if let Some(d) = c.deadline {
                        self.timers.remove(&(d, j.id, call));
                    }
                }
                failed.push((*conn, serializer, call));
            }
            j.invocations.retain(|_, c| c.caller_shard != shard);
        }
        self.inbound_calls.retain(|k, _| k.0 != shard);
        // Every call toward the dead shard was failed above.
        self.calls_to[usize::from(shard)] = 0;
        for (conn, serializer, call) in failed {
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                call,
                "wamp.error.canceled",
            );
        }
        let mut done = Vec::new();
        let mut resend = Vec::new();
        for (token, p) in &mut self.pending {
            if let Pending::Register(p) = p {
                if p.wait.id.is_none() {
                    resend.push(*token);
                }
                if p.wait.ack(shard, None) {
                    done.push(*token);
                }
            }
        }
        // As for subscriptions: the wait sets stay (see `broker_shard_down`).
        for token in resend {
            let Some(Pending::Register(p)) = self.pending.get_mut(&token) else {
                continue;
            };
            p.resent = true;
            let (realm, uri, policy) = (p.realm, p.uri.clone(), p.policy);
            let msg = PeerMsg::RegisterRequest {
                token,
                realm: p.realm,
                uri: p.uri.clone(),
                policy: p.policy,
                invoke: p.invoke,
                session: p.session,
            };
            let owner = self.owner(realm, &uri, policy);
            self.send_peer(owner, msg);
        }
        for token in done {
            if let Some(Pending::Register(p)) = self.pending.remove(&token) {
                self.register_done(p);
            }
        }
    }
}

/// One call toward `shard` ended (answered, failed, canceled, timed out or abandoned).
fn call_ended(calls_to: &mut [usize], shard: u16) {
    if let Some(n) = calls_to.get_mut(usize::from(shard)) {
        *n = n.saturating_sub(1);
    }
}

impl InCall {
    fn copy(&self) -> Self {
        Self {
            registration: self.registration,
            caller_shard: self.caller_shard,
            caller: self.caller,
            call: self.call,
        }
    }
}
