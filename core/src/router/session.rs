//! Session lifecycle: HELLO → (CHALLENGE →) WELCOME → GOODBYE, ABORT on violations.
//!
//! Each connection is a [`Session`] whose [`State`] says which messages it may send. A joined
//! session's facts live in [`Joined`], which only the `Established` state holds, so code
//! that needs a session id or a realm cannot run before WELCOME. Protocol violations are a
//! typed [`ProtocolViolation`] turned into ABORT `wamp.error.protocol_violation` with the
//! variant's reason, then a close.
//!
//! Authentication runs between HELLO and WELCOME: the [`super::Authenticator`] decides,
//! this module keeps the challenge state, enforces the order (one AUTHENTICATE, only after
//! a CHALLENGE), the deadline from HELLO to WELCOME ([`super::AuthLimits::timeout_ms`]),
//! and the per-address failure throttle (a failing session's ABORT is held back).
//!
//! What it does not do: routing (the broker and dealer modules), authentication decisions
//! (the [`super::Authenticator`]).

use std::fmt;

use crate::codec::{DecodeError, Serializer};
use crate::hash::{Map, Set};
use crate::id::Id;
use crate::message::{
    Dict, ErrorMessage, Goodbye, Hello, Message, MessageType, Payload, Role, Roles, Value, Welcome,
    WelcomeDetails,
};

use super::auth::throttle;
use super::{AuthContext, AuthInfo, Challenged, ConnId, Output, Shard, Step, Time, TransportInfo};

/// A rule of the WAMP session protocol a client broke.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// AUTHENTICATE arrived though no CHALLENGE was sent.
    AuthenticateWithoutChallenge,
    /// A second AUTHENTICATE for one CHALLENGE.
    RepeatedAuthenticate,
    /// A frame's message type could not be read.
    Undecodable,
    /// ERROR from a client names a request type other than INVOCATION.
    ErrorForWrongRequestType(MessageType),
    /// CALL reuses the request id of a call still pending (and not a progressive
    /// invocation).
    CallIdInUse(Id),
    /// A message arrived before HELLO (the spec's "received other" while establishing).
    MessageBeforeHello(MessageType),
    /// A message other than AUTHENTICATE arrived while authenticating.
    MessageWhileAuthenticating(MessageType),
    /// A message the router sends and clients never do (WELCOME, EVENT, INVOCATION, ...).
    RouterOnlyMessage(MessageType),
    /// HELLO during the session's lifetime.
    SecondHello,
    /// A message with an unreadable field that has no ERROR answer.
    BadMessage(MessageType),
    /// YIELD or ERROR for an invocation id the router never issued on this session.
    UnknownInvocation(Id),
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthenticateWithoutChallenge => f.write_str("AUTHENTICATE without a CHALLENGE"),
            Self::RepeatedAuthenticate => f.write_str("AUTHENTICATE repeated"),
            Self::Undecodable => f.write_str("message could not be decoded"),
            Self::ErrorForWrongRequestType(t) => {
                write!(f, "ERROR for a {t:?} request, which clients never answer")
            }
            Self::CallIdInUse(id) => write!(f, "CALL request id {id} is still in use"),
            Self::MessageBeforeHello(t) => write!(f, "{t:?} before HELLO"),
            Self::MessageWhileAuthenticating(t) => write!(f, "{t:?} while authenticating"),
            Self::RouterOnlyMessage(t) => write!(f, "{t:?} is sent by routers only"),
            Self::SecondHello => f.write_str("HELLO after the session was established"),
            Self::BadMessage(t) => write!(f, "malformed {t:?}"),
            Self::UnknownInvocation(id) => write!(f, "no INVOCATION with request id {id} was sent"),
        }
    }
}

/// One connection.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) serializer: Serializer,
    pub(super) transport: TransportInfo,
    pub(super) state: State,
}

/// Where a session is in its lifecycle.
#[derive(Debug)]
pub(super) enum State {
    /// Waiting for HELLO.
    Opened,
    /// HELLO received; waiting for AUTHENTICATE (`challenge` is set) or a pending decision,
    /// until `deadline`.
    Authenticating {
        realm: u16,
        hello: Box<Hello>,
        /// The session id it will get (WAMP-CRA's challenge names it).
        session: Id,
        deadline: Time,
        challenge: Option<Challenged>,
        /// An AUTHENTICATE was received (a second one is a violation).
        answered: bool,
    },
    /// Authentication failed; the ABORT waits for the throttle's `deadline`. Messages are
    /// ignored meanwhile.
    Failing {
        deadline: Time,
        reason: String,
        message: String,
    },
    /// WELCOME sent.
    Established(Box<Joined>),
    /// The router sent GOODBYE and left the realm; waiting for the client's GOODBYE.
    Closing,
}

/// A joined session's facts and what it holds.
#[derive(Debug)]
pub(super) struct Joined {
    pub(super) id: Id,
    pub(super) realm: u16,
    pub(super) auth: AuthInfo,
    /// The index of the session's role in the realm config, if the role exists.
    pub(super) role: Option<usize>,
    pub(super) roles: Roles,
    pub(super) subscriptions: Set<Id>,
    pub(super) registrations: Set<Id>,
    /// Calls this session made that have not ended, by CALL request id.
    pub(super) calls: Map<Id, super::dealer::OutCall>,
    /// Invocations this session must answer, by INVOCATION request id.
    pub(super) invocations: Map<Id, super::dealer::InCall>,
    /// The last INVOCATION request id used (sequential from 1).
    pub(super) last_invocation: u64,
    /// Events to publish when the session leaves (`wamp.session.add_testament`).
    pub(super) testaments: Vec<super::broker::Testament>,
    /// Dynamic authorization: decisions and the messages waiting for one.
    pub(super) authz: super::authorizer::Authz,
    /// SUBSCRIBEs accepted but not yet answered (waiting for a fence or the key's owner):
    /// counted against the subscription limit, so pipelining cannot get past it.
    pub(super) pending_subscribes: usize,
    /// REGISTERs accepted but not yet answered, counted against the registration limit.
    pub(super) pending_registers: usize,
}

impl Session {
    pub(super) fn new(serializer: Serializer, transport: TransportInfo) -> Self {
        Self {
            serializer,
            transport,
            state: State::Opened,
        }
    }

    pub(super) fn joined(&self) -> Option<&Joined> {
        match &self.state {
            State::Established(j) => Some(j),
            _ => None,
        }
    }

    pub(super) fn joined_mut(&mut self) -> Option<&mut Joined> {
        match &mut self.state {
            State::Established(j) => Some(j),
            _ => None,
        }
    }
}

/// The features this router announces: only those that work.
fn router_roles() -> Roles {
    Roles::default()
        .with(
            Role::Broker,
            &[
                "event_history",
                "event_retention",
                "pattern_based_subscription",
                "payload_passthru_mode",
                "publisher_exclusion",
                "publisher_identification",
                "session_meta_api",
                "subscriber_blackwhite_listing",
                "subscription_meta_api",
            ],
        )
        .with(
            Role::Dealer,
            &[
                "call_canceling",
                "call_timeout",
                "caller_identification",
                "pattern_based_registration",
                "payload_passthru_mode",
                "progressive_call_invocations",
                "progressive_call_results",
                "registration_meta_api",
                "session_meta_api",
                "shared_registration",
                // `wamp.session.add_testament`/`flush_testaments` (Crossbar's name).
                "testament_meta_api",
            ],
        )
}

impl Shard {
    pub(super) fn session_message(&mut self, conn: ConnId, msg: Message) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let t = msg.message_type();
        if let Some(len) = msg.payload().map(Payload::len) {
            if len > self.config.limits.message_size {
                self.abort(
                    conn,
                    "wamp.error.payload_size_exceeded",
                    "payload larger than the limit",
                );
                return;
            }
        }
        match (&s.state, msg) {
            (State::Opened, Message::Hello(h)) => self.hello(conn, h),
            (State::Opened, _) => self.violation(conn, ProtocolViolation::MessageBeforeHello(t)),
            (State::Authenticating { .. }, Message::Authenticate(a)) => {
                self.authenticate(conn, &a.signature, &a.extra);
            }
            (State::Authenticating { .. } | State::Failing { .. }, Message::Abort(_)) => {
                self.close_now(conn)
            }
            // The ABORT is decided; what the client says until it goes out changes nothing.
            (State::Failing { .. }, _) => {}
            (State::Authenticating { .. }, _) => {
                self.violation(conn, ProtocolViolation::MessageWhileAuthenticating(t));
            }
            (State::Closing, Message::Goodbye(_)) => {
                self.sessions.remove(&conn);
                self.out.push_back(Output::Close { conn });
            }
            // The spec: after sending GOODBYE, other messages are ignored.
            (State::Closing, _) => {}
            (State::Established(_), msg) => self.established_message(conn, msg),
        }
    }

    /// A joined session's message: through the dynamic authorizer's gate (which may hold
    /// it), then to the broker, dealer or session logic.
    pub(super) fn established_message(&mut self, conn: ConnId, msg: Message) {
        if let Some(msg) = self.authorize_gate(conn, msg) {
            self.established_dispatch(conn, msg);
        }
    }

    /// A joined session's message, past authorization.
    pub(super) fn established_dispatch(&mut self, conn: ConnId, msg: Message) {
        match msg {
            Message::Hello(_) => self.violation(conn, ProtocolViolation::SecondHello),
            Message::Goodbye(_) => {
                let serializer = self
                    .sessions
                    .get(&conn)
                    .map_or(Serializer::Json, |s| s.serializer);
                let reply = Message::Goodbye(Goodbye {
                    details: Dict::new(),
                    reason: "wamp.close.goodbye_and_out".to_owned(),
                });
                self.send(conn, serializer, &reply);
                if let Some(s) = self.sessions.remove(&conn) {
                    self.leave(conn, s);
                }
                self.out.push_back(Output::Close { conn });
            }
            Message::Abort(_) => self.close_now(conn),
            Message::Publish(m) => self.publish(conn, m),
            Message::Subscribe(m) => self.subscribe(conn, m),
            Message::Unsubscribe(m) => self.unsubscribe(conn, m),
            Message::Call(m) => self.call(conn, m),
            Message::Cancel(m) => self.cancel(conn, m),
            Message::Register(m) => self.register(conn, m),
            Message::Unregister(m) => self.unregister(conn, m),
            Message::Yield(m) => self.yield_(conn, m),
            Message::Error(m) => self.callee_error(conn, m),
            Message::Authenticate(_) => {
                self.violation(conn, ProtocolViolation::AuthenticateWithoutChallenge)
            }
            other => self.violation(
                conn,
                ProtocolViolation::RouterOnlyMessage(other.message_type()),
            ),
        }
    }

    pub(super) fn hello(&mut self, conn: ConnId, hello: Hello) {
        let Some(hello) = self.park(conn, hello) else {
            return;
        };
        let Some(realm) = self
            .config
            .realms
            .iter()
            .position(|r| r.name == hello.realm)
        else {
            self.abort(conn, "wamp.error.no_such_realm", "no such realm");
            return;
        };
        // Realm count is bounded by the config, which the io crate caps far below 2^16.
        let realm = u16::try_from(realm).unwrap_or(u16::MAX);
        self.session_counter += 1;
        let by_id = &self.by_id;
        let router_caller = self.router_caller;
        let session = loop {
            let id = self.rng.global_id(self.index, self.count);
            if !by_id.contains_key(&id) && id != router_caller {
                break id;
            }
        };
        let deadline = self.now.plus_ms(self.config.limits.auth.timeout_ms);
        // Cookie authentication is the shard's: it knows the cookie bindings.
        let by_cookie = self.cookie_step(conn, realm, &hello);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let ctx = AuthContext {
            realm: &hello.realm,
            session,
            counter: self.session_counter,
            transport: &s.transport,
            now: self.now,
        };
        let step = match by_cookie {
            Some(step) => step,
            None => self.authenticator.start(&ctx, &hello),
        };
        s.state = State::Authenticating {
            realm,
            hello: Box::new(hello),
            session,
            deadline,
            challenge: None,
            answered: false,
        };
        self.auth_timers.insert((deadline, conn));
        self.auth_step(conn, step);
    }

    /// An AUTHENTICATE while authenticating: checked against the challenge sent.
    fn authenticate(&mut self, conn: ConnId, signature: &str, extra: &Dict) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let State::Authenticating {
            realm,
            hello,
            session,
            challenge,
            answered,
            ..
        } = &mut s.state
        else {
            return;
        };
        let Some(state) = challenge.take() else {
            let v = if *answered {
                ProtocolViolation::RepeatedAuthenticate
            } else {
                ProtocolViolation::AuthenticateWithoutChallenge
            };
            self.violation(conn, v);
            return;
        };
        *answered = true;
        let realm_name = &self.config.realms[usize::from(*realm)].name;
        let _ = hello;
        let ctx = AuthContext {
            realm: realm_name,
            session: *session,
            counter: self.session_counter,
            transport: &s.transport,
            now: self.now,
        };
        let step = self
            .authenticator
            .authenticate(&ctx, state, signature, extra);
        self.auth_step(conn, step);
    }

    /// Authentication deadlines and held-back failure ABORTs that are due.
    pub(super) fn fire_auth_timers(&mut self, now: Time) {
        while let Some(&(at, conn)) = self.auth_timers.first() {
            if at > now {
                break;
            }
            self.auth_timers.remove(&(at, conn));
            let Some(s) = self.sessions.get(&conn) else {
                continue;
            };
            match &s.state {
                State::Authenticating { deadline, .. } if *deadline == at => {
                    let ms = self.config.limits.auth.timeout_ms;
                    self.abort(
                        conn,
                        super::AUTHENTICATION_FAILED,
                        &format!("authentication not completed within {ms} ms"),
                    );
                }
                State::Failing {
                    deadline,
                    reason,
                    message,
                } if *deadline == at => {
                    let (reason, message) = (reason.clone(), message.clone());
                    self.abort(conn, &reason, &message);
                }
                _ => {}
            }
        }
    }

    /// A rejected authentication: ABORT now, or after the throttle's delay for an address
    /// that failed too often.
    pub(super) fn auth_failed(&mut self, conn: ConnId, reason: String, message: String) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let addr = throttle::address(&s.transport.peer);
        let delay = self
            .throttle
            .failure(&self.config.limits.auth, addr, self.now);
        let Some(delay) = delay else {
            self.abort(conn, &reason, &message);
            return;
        };
        if let State::Authenticating { deadline, .. } = &s.state {
            self.auth_timers.remove(&(*deadline, conn));
        }
        let deadline = self.now.plus_ms(delay);
        s.state = State::Failing {
            deadline,
            reason,
            message,
        };
        self.auth_timers.insert((deadline, conn));
    }

    pub(super) fn auth_step(&mut self, conn: ConnId, step: Step) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        match step {
            Step::Pending => {}
            Step::Challenge {
                method,
                extra,
                state,
            } => {
                let State::Authenticating {
                    challenge,
                    answered,
                    ..
                } = &mut s.state
                else {
                    return;
                };
                *challenge = Some(state);
                *answered = false;
                let msg = Message::Challenge(crate::message::Challenge {
                    authmethod: method,
                    extra,
                });
                self.send(conn, serializer, &msg);
            }
            Step::Reject { reason, message } => self.auth_failed(conn, reason, message),
            Step::Welcome(auth) => {
                let State::Authenticating { realm, .. } = &s.state else {
                    return;
                };
                // Crossbar refuses a principal whose role the realm does not define, rather
                // than letting in a session that may do nothing.
                let realm = &self.config.realms[usize::from(*realm)];
                if !realm.roles.iter().any(|r| r.name == auth.authrole) {
                    let message = format!(
                        "the realm \"{}\" has no role \"{}\"",
                        realm.name, auth.authrole
                    );
                    self.auth_failed(conn, super::NO_SUCH_ROLE.to_owned(), message);
                    return;
                }
                let addr = throttle::address(&s.transport.peer);
                self.throttle.success(addr);
                self.welcome(conn, auth);
            }
            Step::Dynamic(req) => self.dynamic_auth_start(conn, *req),
        }
    }

    fn welcome(&mut self, conn: ConnId, auth: AuthInfo) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let State::Authenticating {
            realm,
            hello,
            session,
            deadline,
            ..
        } = std::mem::replace(&mut s.state, State::Opened)
        else {
            return;
        };
        self.auth_timers.remove(&(deadline, conn));
        let serializer = s.serializer;
        let by_id = &self.by_id;
        // The id chosen at HELLO, unless another session took it meanwhile.
        let mut id = session;
        while by_id.contains_key(&id) || id == self.router_caller {
            id = self.rng.global_id(self.index, self.count);
        }
        let role = self.config.realms[usize::from(realm)]
            .roles
            .iter()
            .position(|r| r.name == auth.authrole);
        let auth_for_cookie = auth.clone();
        let joined = Joined {
            id,
            realm,
            auth: auth.clone(),
            role,
            roles: hello.details.roles,
            subscriptions: Set::default(),
            registrations: Set::default(),
            calls: Map::default(),
            invocations: Map::default(),
            last_invocation: 0,
            testaments: Vec::new(),
            authz: super::authorizer::Authz::default(),
            pending_subscribes: 0,
            pending_registers: 0,
        };
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.state = State::Established(Box::new(joined));
        self.by_id.insert(id, conn);
        let msg = Message::Welcome(Welcome {
            session: id,
            details: WelcomeDetails {
                roles: router_roles(),
                authid: Some(auth.authid),
                authrole: Some(auth.authrole),
                authmethod: Some(auth.authmethod),
                authprovider: Some(auth.authprovider),
                authextra: auth.authextra,
                extra: Dict::new()
                    .with(
                        "realm",
                        self.config.realms[usize::from(realm)].name.as_str(),
                    )
                    .with("agent", "switchyard"),
            },
        });
        self.send(conn, serializer, &msg);
        self.cookie_joined(conn, realm, &auth_for_cookie);
        self.meta_on_join(conn);
    }

    /// The session leaves its realm (transport gone, GOODBYE, kill): its subscriptions,
    /// registrations, calls and invocations are cleaned up, testaments published.
    pub(super) fn leave(&mut self, conn: ConnId, s: Session) {
        let State::Established(j) = s.state else {
            return;
        };
        self.by_id.remove(&j.id);
        self.broker_leave(&j);
        self.dealer_leave(&j);
        self.meta_on_leave(&j);
        let _ = conn;
    }

    /// ABORT with `reason`, leave, close.
    pub(super) fn abort(&mut self, conn: ConnId, reason: &str, message: &str) {
        let Some(s) = self.sessions.remove(&conn) else {
            return;
        };
        self.send_abort(conn, s.serializer, reason, message);
        self.leave(conn, s);
        self.out.push_back(Output::Close { conn });
    }

    pub(super) fn violation(&mut self, conn: ConnId, v: ProtocolViolation) {
        self.abort(conn, "wamp.error.protocol_violation", &v.to_string());
    }

    fn close_now(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.remove(&conn) {
            self.leave(conn, s);
        }
        self.out.push_back(Output::Close { conn });
    }

    /// The router ends a session with GOODBYE (`wamp.session.kill`).
    pub(super) fn kill(&mut self, conn: ConnId, reason: &str, message: Option<&str>) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let old = std::mem::replace(&mut s.state, State::Closing);
        let mut details = Dict::new();
        if let Some(m) = message {
            details.insert("message", Value::from(m));
        }
        let transport = s.transport.clone();
        let msg = Message::Goodbye(Goodbye {
            details,
            reason: reason.to_owned(),
        });
        self.send(conn, serializer, &msg);
        self.leave(
            conn,
            Session {
                serializer,
                transport,
                state: old,
            },
        );
    }

    pub(super) fn decode_error(&mut self, conn: ConnId, err: &DecodeError) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        match (err, &s.state) {
            (
                DecodeError::Message {
                    message_type,
                    request: Some(request),
                    ..
                },
                State::Established(_),
            ) if message_type.has_request_id() && *message_type != MessageType::Yield => {
                let serializer = s.serializer;
                self.send_error(
                    conn,
                    serializer,
                    *message_type,
                    *request,
                    "wamp.error.invalid_argument",
                );
            }
            (DecodeError::Message { message_type, .. }, _) => {
                self.violation(conn, ProtocolViolation::BadMessage(*message_type));
            }
            (DecodeError::Frame(_), _) => self.violation(conn, ProtocolViolation::Undecodable),
        }
    }

    /// ERROR `error` answering request `request` of type `request_type`.
    pub(super) fn send_error(
        &mut self,
        conn: ConnId,
        serializer: Serializer,
        request_type: MessageType,
        request: Id,
        error: &str,
    ) {
        let msg = Message::Error(ErrorMessage {
            request_type,
            request,
            details: Dict::new(),
            error: error.to_owned(),
            payload: Payload::empty(),
        });
        self.send(conn, serializer, &msg);
    }

    /// The joined session `session` of `realm` if it lives on this shard, with its
    /// connection and serializer.
    pub(super) fn local_session_mut(
        &mut self,
        session: Id,
        realm: u16,
    ) -> Option<(ConnId, Serializer, &mut Joined)> {
        let conn = *self.by_id.get(&session)?;
        let s = self.sessions.get_mut(&conn)?;
        let serializer = s.serializer;
        let j = s.joined_mut().filter(|j| j.realm == realm)?;
        Some((conn, serializer, j))
    }

    /// The session on `conn` if it is joined, with its serializer.
    pub(super) fn joined(&self, conn: ConnId) -> Option<(&Joined, Serializer)> {
        let s = self.sessions.get(&conn)?;
        Some((s.joined()?, s.serializer))
    }

    /// Whether the session's role allows `action` on `uri`; the best-matching permission
    /// decides, as for registrations.
    pub(super) fn permission<'a>(
        &'a self,
        j: &'a Joined,
        uri: &str,
    ) -> Option<&'a super::Permission> {
        let role = j.role?;
        let realm = &self.config.realms[usize::from(j.realm)];
        if realm.roles[role].authorizer.is_some() {
            // A dynamic role's permission is what its authorizer decided for this action.
            return j.authz.permission(uri);
        }
        self.realms[usize::from(j.realm)].permissions[role]
            .best_match(uri)
            .map(|m| m.value)
    }

    #[allow(dead_code)]
    pub(super) fn now(&self) -> Time {
        self.now
    }
}
