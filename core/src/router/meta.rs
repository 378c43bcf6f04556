//! The WAMP meta API: `wamp.session.*`, `wamp.subscription.*`, `wamp.registration.*`
//! procedures and the meta events.
//!
//! Subscriptions and registrations are replicated to every shard, so their `list`, `lookup`,
//! `match`, `get`, `list_callees` and `count_callees` are answered from the local replica.
//! Sessions live on one shard each: `count` and `list` (and `list_subscribers`, `kill_by_*`)
//! scatter a [`MetaQuery`] to every live shard and gather the replies; `get` and `kill` ask
//! the shard that owns the session id (`id % count`). Meta events are published through the
//! ordinary broker path with no publisher.
//!
//! `wamp.subscription.get_events` reads the event history every shard keeps for the topics
//! the realm configures ([`super::HistoryConfig`]), for exact subscriptions.
//!
//! `created` timestamps (`wamp.session.get`, `on_join`, `wamp.subscription.get`,
//! `wamp.registration.get`) are the `now` of the input that created the thing, turned into
//! wall-clock time with the base the caller gave ([`Shard::set_wall_clock`]); a
//! subscription's or registration's is when this shard's replica first held it (within a
//! link's latency of the owner's decision; for a rejoined shard, when the snapshot came).
//!
//! `on_create` and `on_delete` name the session whose request created or deleted the
//! subscription or registration, as Crossbar does; a subscription or registration that
//! goes because its shard died is deleted with a null session. A subscription's
//! `on_delete` is published by the shard whose last subscriber left, after that
//! subscriber's `on_unsubscribe`, when the owner's removal comes back to it.
//!
//! What it does not do yet: `wamp.session.on_stats`.

use crate::id::Id;
use crate::message::{
    Call, CallResult, Dict, Message, MessageType, Payload, PublishOptions, ResultDetails, Value,
};
use crate::uri::MatchPolicy;

use super::broker::Testament;
use super::peer::{KillTarget, MetaQuery, PeerMsg, Publication};
use super::session::Joined;
use super::values::{args_of, kwargs_of, payload};
use super::{ConnId, Pending, Shard};

/// A meta call waiting for other shards' replies.
#[derive(Debug)]
pub(super) struct PendingMeta {
    conn: ConnId,
    session: Id,
    request: Id,
    gather: Gather,
    remaining: Vec<u16>,
    values: Vec<Value>,
}

/// How replies are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gather {
    /// The number of values.
    Count,
    /// The values as a list.
    List,
    /// The first value; none is `no_such_session`.
    One,
    /// Nothing: answer with an empty result.
    Unit,
}

impl Shard {
    pub(super) fn meta_call(&mut self, conn: ConnId, m: Call) {
        let Some((j, serializer)) = self.joined(conn) else {
            return;
        };
        if !self.permission(j, &m.procedure).is_some_and(|p| p.call) {
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                m.request,
                "wamp.error.not_authorized",
            );
            return;
        }
        let (realm, session) = (j.realm, j.id);
        let args = args_of(&m.payload);
        let kwargs = kwargs_of(&m.payload);
        let arg_id = |i: usize| args.get(i).and_then(Value::as_u64).and_then(Id::new);
        let arg_str = |i: usize| args.get(i).and_then(Value::as_str).map(str::to_owned);
        let b = &self.realms[usize::from(realm)].broker;
        let d = &self.realms[usize::from(realm)].dealer;
        let local: Result<Value, &str> = match m.procedure.as_str() {
            "wamp.session.count" | "wamp.session.list" => {
                let authroles = match args.first() {
                    Some(Value::List(l)) => Some(
                        l.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                };
                let gather = if m.procedure.ends_with("count") {
                    Gather::Count
                } else {
                    Gather::List
                };
                self.scatter(
                    conn,
                    session,
                    m.request,
                    realm,
                    gather,
                    MetaQuery::Sessions { authroles },
                );
                return;
            }
            "wamp.session.get" => {
                let Some(target) = arg_id(0) else {
                    self.send_error(
                        conn,
                        serializer,
                        MessageType::Call,
                        m.request,
                        "wamp.error.invalid_argument",
                    );
                    return;
                };
                self.ask_owner(
                    conn,
                    session,
                    m.request,
                    realm,
                    target,
                    Gather::One,
                    MetaQuery::Session { session: target },
                );
                return;
            }
            "wamp.session.kill" => {
                let Some(target) = arg_id(0).filter(|t| *t != session) else {
                    self.send_error(
                        conn,
                        serializer,
                        MessageType::Call,
                        m.request,
                        "wamp.error.no_such_session",
                    );
                    return;
                };
                let query = kill_query(KillTarget::Session(target), &kwargs, None);
                self.ask_owner(conn, session, m.request, realm, target, Gather::Unit, query);
                return;
            }
            "wamp.session.kill_by_authid" | "wamp.session.kill_by_authrole" => {
                let Some(who) = arg_str(0) else {
                    self.send_error(
                        conn,
                        serializer,
                        MessageType::Call,
                        m.request,
                        "wamp.error.invalid_argument",
                    );
                    return;
                };
                let target = if m.procedure.ends_with("authid") {
                    KillTarget::Authid(who)
                } else {
                    KillTarget::Authrole(who)
                };
                let query = kill_query(target, &kwargs, Some(session));
                self.scatter(conn, session, m.request, realm, Gather::Count, query);
                return;
            }
            "wamp.session.add_testament" => {
                return self.add_testament(conn, m.request, &args, &kwargs);
            }
            "wamp.session.flush_testaments" => {
                let n = self
                    .sessions
                    .get_mut(&conn)
                    .and_then(|s| s.joined_mut())
                    .map_or(0, |j| std::mem::take(&mut j.testaments).len());
                Ok(Value::UInt(n as u64))
            }
            "wamp.subscription.list" => Ok(by_policy(b.entries().map(|(id, _, p)| (id, p)))),
            "wamp.registration.list" => {
                // A registration whose callees all left here (withdrawn, waiting for the
                // owner) is not listed.
                Ok(by_policy(
                    d.by_id
                        .iter()
                        .filter(|(_, g)| !g.callees.is_empty())
                        .map(|(id, g)| (*id, g.policy)),
                ))
            }
            "wamp.subscription.lookup" | "wamp.registration.lookup" => match arg_str(0) {
                Some(uri) => {
                    let policy = match kwargs_or_options(&args)
                        .get("match")
                        .and_then(Value::as_str)
                    {
                        Some(s) => s.parse().unwrap_or(MatchPolicy::Exact),
                        None => MatchPolicy::Exact,
                    };
                    let found = if m.procedure.starts_with("wamp.subscription") {
                        b.lookup(&uri, policy)
                    } else {
                        d.lookup(&uri, policy)
                    };
                    Ok(found.map_or(Value::Null, Value::from))
                }
                None => Err("wamp.error.invalid_argument"),
            },
            "wamp.subscription.match" => match arg_str(0) {
                Some(topic) => {
                    let ids = b.matching(&topic);
                    Ok(if ids.is_empty() {
                        Value::Null
                    } else {
                        Value::List(ids.into_iter().map(Value::from).collect())
                    })
                }
                None => Err("wamp.error.invalid_argument"),
            },
            "wamp.registration.match" => match arg_str(0) {
                Some(procedure) => Ok(d.best(&procedure).map_or(Value::Null, Value::from)),
                None => Err("wamp.error.invalid_argument"),
            },
            "wamp.subscription.get" => match arg_id(0).and_then(|id| b.key(id).map(|k| (id, k))) {
                Some((id, (uri, policy))) => {
                    let mut d = Dict::new().with("id", id);
                    if let Some(t) = self.sub_created.get(&id).and_then(|t| self.wall(*t)) {
                        d = d.with("created", t.as_str());
                    }
                    Ok(Value::Dict(
                        d.with("uri", uri).with("match", policy.as_str()),
                    ))
                }
                None => Err("wamp.error.no_such_subscription"),
            },
            "wamp.registration.get" => {
                match arg_id(0).and_then(|id| d.by_id.get(&id).map(|g| (id, g))) {
                    Some((id, g)) => {
                        let mut d = Dict::new().with("id", id);
                        if let Some(t) = self.wall(g.created) {
                            d = d.with("created", t.as_str());
                        }
                        Ok(Value::Dict(
                            d.with("uri", g.uri.as_str())
                                .with("match", g.policy.as_str())
                                .with("invoke", g.invoke.as_str()),
                        ))
                    }
                    None => Err("wamp.error.no_such_registration"),
                }
            }
            "wamp.registration.list_callees" | "wamp.registration.count_callees" => {
                match arg_id(0).and_then(|id| d.by_id.get(&id)) {
                    Some(g) if m.procedure.ends_with("count_callees") => {
                        Ok(Value::UInt(g.callees.len() as u64))
                    }
                    Some(g) => Ok(Value::List(
                        g.callees.iter().map(|c| Value::from(c.1)).collect(),
                    )),
                    None => Err("wamp.error.no_such_registration"),
                }
            }
            "wamp.subscription.get_events" => match arg_id(0).and_then(|id| b.key(id)) {
                Some((uri, policy)) => {
                    let limit = args
                        .get(1)
                        .and_then(Value::as_u64)
                        .map_or(usize::MAX, |l| l as usize);
                    let events = b
                        .events(uri, policy, limit)
                        .into_iter()
                        .map(|p| {
                            let mut e = Dict::new()
                                .with("publication", p.publication)
                                .with("topic", p.topic.as_str())
                                .with("args", Value::List(args_of(&p.payload)));
                            let kw = kwargs_of(&p.payload);
                            if !kw.is_empty() {
                                e.insert("kwargs", Value::Dict(kw));
                            }
                            Value::Dict(e)
                        })
                        .collect();
                    Ok(Value::List(events))
                }
                None => Err("wamp.error.no_such_subscription"),
            },
            "wamp.subscription.remove_subscriber" | "wamp.registration.remove_callee" => {
                let (Some(id), Some(target)) = (arg_id(0), arg_id(1)) else {
                    self.send_error(
                        conn,
                        serializer,
                        MessageType::Call,
                        m.request,
                        "wamp.error.invalid_argument",
                    );
                    return;
                };
                let reason = kwargs
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let query = if m.procedure.starts_with("wamp.subscription") {
                    MetaQuery::RemoveSubscriber {
                        subscription: id,
                        session: target,
                        reason,
                    }
                } else {
                    MetaQuery::RemoveCallee {
                        registration: id,
                        session: target,
                        reason,
                    }
                };
                // The session's shard decides; an unknown session, or one that does not
                // hold the subscription or registration, gets `no_such_session`.
                self.ask_owner(conn, session, m.request, realm, target, Gather::Unit, query);
                return;
            }
            "wamp.subscription.list_subscribers" | "wamp.subscription.count_subscribers" => {
                let Some(id) = arg_id(0).filter(|id| b.key(*id).is_some()) else {
                    self.send_error(
                        conn,
                        serializer,
                        MessageType::Call,
                        m.request,
                        "wamp.error.no_such_subscription",
                    );
                    return;
                };
                let gather = if m.procedure.ends_with("count_subscribers") {
                    Gather::Count
                } else {
                    Gather::List
                };
                self.scatter(
                    conn,
                    session,
                    m.request,
                    realm,
                    gather,
                    MetaQuery::Subscribers { subscription: id },
                );
                return;
            }
            _ => Err("wamp.error.no_such_procedure"),
        };
        match local {
            Ok(v) => self.meta_result(conn, m.request, v),
            Err(e) => self.send_error(conn, serializer, MessageType::Call, m.request, e),
        }
    }

    fn meta_result(&mut self, conn: ConnId, request: Id, v: Value) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let msg = Message::Result(CallResult {
            request,
            details: ResultDetails::default(),
            payload: payload(serializer, &[v], None),
        });
        self.send(conn, serializer, &msg);
    }

    #[allow(clippy::too_many_arguments)]
    fn ask_owner(
        &mut self,
        conn: ConnId,
        session: Id,
        request: Id,
        realm: u16,
        target: Id,
        gather: Gather,
        query: MetaQuery,
    ) {
        let owner = (target.get() % u64::from(self.count)) as u16;
        if !self.live[usize::from(owner)] {
            self.finish_meta(PendingMeta {
                conn,
                session,
                request,
                gather,
                remaining: Vec::new(),
                values: Vec::new(),
            });
            return;
        }
        self.start_meta(conn, session, request, realm, gather, query, vec![owner]);
    }

    fn scatter(
        &mut self,
        conn: ConnId,
        session: Id,
        request: Id,
        realm: u16,
        gather: Gather,
        query: MetaQuery,
    ) {
        let shards = self.live_shards();
        self.start_meta(conn, session, request, realm, gather, query, shards);
    }

    #[allow(clippy::too_many_arguments)]
    fn start_meta(
        &mut self,
        conn: ConnId,
        session: Id,
        request: Id,
        realm: u16,
        gather: Gather,
        query: MetaQuery,
        shards: Vec<u16>,
    ) {
        if self.pending.len() >= self.config.limits.in_flight_peer_requests {
            if let Some(s) = self.sessions.get(&conn) {
                let serializer = s.serializer;
                self.send_error(
                    conn,
                    serializer,
                    MessageType::Call,
                    request,
                    "wamp.error.limit_exceeded",
                );
            }
            return;
        }
        let token = self.token();
        self.pending.insert(
            token,
            Pending::Meta(PendingMeta {
                conn,
                session,
                request,
                gather,
                remaining: shards.clone(),
                values: Vec::new(),
            }),
        );
        for s in shards {
            self.send_peer(
                s,
                PeerMsg::MetaQuery {
                    token,
                    realm,
                    query: query.clone(),
                },
            );
        }
    }

    /// Another shard (or this one) asks about its local sessions.
    pub(super) fn meta_query(&mut self, from: u16, token: u64, realm: u16, query: MetaQuery) {
        let in_realm = |j: &Joined| j.realm == realm;
        let mut values = Vec::new();
        match query {
            MetaQuery::Sessions { authroles } => {
                for s in self.sessions.values() {
                    if let Some(j) = s.joined().filter(|j| in_realm(j)) {
                        if authroles
                            .as_ref()
                            .is_none_or(|r| r.contains(&j.auth.authrole))
                        {
                            values.push(Value::from(j.id));
                        }
                    }
                }
                values.sort_by_key(|v| v.as_u64());
            }
            MetaQuery::Session { session } => {
                if let Some(s) = self.by_id.get(&session).and_then(|c| self.sessions.get(c)) {
                    if let Some(j) = s.joined().filter(|j| in_realm(j)) {
                        let created = self.session_created.get(&j.id).and_then(|t| self.wall(*t));
                        values.push(Value::Dict(session_details(j, &s.transport, created)));
                    }
                }
            }
            MetaQuery::Kill {
                target,
                reason,
                message,
                except,
            } => {
                let victims: Vec<(ConnId, Id)> = self
                    .sessions
                    .iter()
                    .filter_map(|(c, s)| s.joined().filter(|j| in_realm(j)).map(|j| (*c, j)))
                    .filter(|(_, j)| Some(j.id) != except)
                    .filter(|(_, j)| match &target {
                        KillTarget::Authid(a) => &j.auth.authid == a,
                        KillTarget::Authrole(r) => &j.auth.authrole == r,
                        KillTarget::Session(id) => j.id == *id,
                    })
                    .map(|(c, j)| (c, j.id))
                    .collect();
                for (conn, id) in victims {
                    self.kill(conn, &reason, message.as_deref());
                    values.push(Value::from(id));
                }
            }
            MetaQuery::RemoveSubscriber {
                subscription,
                session,
                reason,
            } => {
                if self.remove_subscriber(realm, subscription, session, reason) {
                    values.push(Value::from(session));
                }
            }
            MetaQuery::RemoveCallee {
                registration,
                session,
                reason,
            } => {
                if self.remove_callee(realm, registration, session, reason) {
                    values.push(Value::from(session));
                }
            }
            MetaQuery::Subscribers { subscription } => {
                if let Some(r) = self.realms.get(usize::from(realm)) {
                    values.extend(
                        r.broker
                            .local_subscribers(subscription)
                            .iter()
                            .map(|id| Value::from(*id)),
                    );
                }
            }
        }
        self.send_peer(from, PeerMsg::MetaReply { token, values });
    }

    pub(super) fn meta_reply(&mut self, from: u16, token: u64, values: Vec<Value>) {
        let Some(Pending::Meta(p)) = self.pending.get_mut(&token) else {
            return;
        };
        p.values.extend(values);
        p.remaining.retain(|s| *s != from);
        if p.remaining.is_empty() {
            if let Some(Pending::Meta(p)) = self.pending.remove(&token) {
                self.finish_meta(p);
            }
        }
    }

    fn finish_meta(&mut self, p: PendingMeta) {
        if self.by_id.get(&p.session) != Some(&p.conn) {
            return;
        }
        let result = match p.gather {
            Gather::Count => Ok(Value::UInt(p.values.len() as u64)),
            Gather::List => Ok(Value::List(p.values)),
            Gather::One => p
                .values
                .into_iter()
                .next()
                .ok_or("wamp.error.no_such_session"),
            Gather::Unit if p.values.is_empty() => Err("wamp.error.no_such_session"),
            Gather::Unit => {
                if let Some(s) = self.sessions.get(&p.conn) {
                    let serializer = s.serializer;
                    let msg = Message::Result(CallResult {
                        request: p.request,
                        details: ResultDetails::default(),
                        payload: Payload::empty(),
                    });
                    self.send(p.conn, serializer, &msg);
                }
                return;
            }
        };
        match result {
            Ok(v) => self.meta_result(p.conn, p.request, v),
            Err(e) => {
                if let Some(s) = self.sessions.get(&p.conn) {
                    let serializer = s.serializer;
                    self.send_error(p.conn, serializer, MessageType::Call, p.request, e);
                }
            }
        }
    }

    pub(super) fn meta_shard_down(&mut self, shard: u16) {
        let mut done = Vec::new();
        for (token, p) in &mut self.pending {
            if let Pending::Meta(p) = p {
                p.remaining.retain(|s| *s != shard);
                if p.remaining.is_empty() {
                    done.push(*token);
                }
            }
        }
        for token in done {
            if let Some(Pending::Meta(p)) = self.pending.remove(&token) {
                self.finish_meta(p);
            }
        }
    }

    fn add_testament(&mut self, conn: ConnId, request: Id, args: &[Value], kwargs: &Dict) {
        let limit = self.config.limits.testaments_per_session;
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined() else {
            return;
        };
        let Some(topic) = args.first().and_then(Value::as_str) else {
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                request,
                "wamp.error.invalid_argument",
            );
            return;
        };
        if crate::uri::validate_uri(topic, crate::uri::UriCheck::Loose).is_err() {
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                request,
                "wamp.error.invalid_uri",
            );
            return;
        }
        if j.testaments.len() >= limit {
            self.send_error(
                conn,
                serializer,
                MessageType::Call,
                request,
                "wamp.error.limit_exceeded",
            );
            return;
        }
        let t_args = match args.get(1) {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        };
        let t_kwargs = match args.get(2) {
            Some(Value::Dict(d)) => Some(d.clone()),
            _ => None,
        };
        let _ = kwargs;
        let publication = self.rng.global_id(self.index, self.count);
        let p = internal_publication(
            j.realm,
            topic,
            publication,
            &t_args,
            t_kwargs.as_ref(),
            &PublishOptions::default(),
        );
        if let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) {
            j.testaments.push(Testament {
                publication: Box::new(p),
            });
        }
        self.meta_result(conn, request, Value::Null);
    }

    /// Publishes a meta event from the router.
    fn meta_event(&mut self, realm: u16, topic: &str, args: &[Value]) {
        let publication = self.rng.global_id(self.index, self.count);
        let p = internal_publication(
            realm,
            topic,
            publication,
            args,
            None,
            &PublishOptions::default(),
        );
        self.route_publication(&p);
    }

    pub(super) fn meta_on_join(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let Some(j) = s.joined() else {
            return;
        };
        self.session_created.insert(j.id, self.now);
        let created = self.wall(self.now);
        let (realm, details) = (j.realm, session_details(j, &s.transport, created));
        self.meta_event(realm, "wamp.session.on_join", &[Value::Dict(details)]);
    }

    pub(super) fn meta_on_leave(&mut self, j: &Joined) {
        self.session_created.remove(&j.id);
        let args = [
            Value::from(j.id),
            Value::from(j.auth.authid.as_str()),
            Value::from(j.auth.authrole.as_str()),
        ];
        self.meta_event(j.realm, "wamp.session.on_leave", &args);
    }

    pub(super) fn meta_on_create(
        &mut self,
        realm: u16,
        session: Option<Id>,
        id: Id,
        uri: &str,
        policy: MatchPolicy,
    ) {
        let mut details = Dict::new().with("id", id);
        if let Some(t) = self.sub_created.get(&id).and_then(|t| self.wall(*t)) {
            details = details.with("created", t.as_str());
        }
        let details = details.with("uri", uri).with("match", policy.as_str());
        self.meta_event(
            realm,
            "wamp.subscription.on_create",
            &[
                session.map_or(Value::Null, Value::from),
                Value::Dict(details),
            ],
        );
    }

    pub(super) fn meta_on_subscribe(&mut self, realm: u16, session: Id, id: Id) {
        self.meta_event(
            realm,
            "wamp.subscription.on_subscribe",
            &[Value::from(session), Value::from(id)],
        );
    }

    pub(super) fn meta_on_unsubscribe(&mut self, realm: u16, session: Id, id: Id) {
        self.meta_event(
            realm,
            "wamp.subscription.on_unsubscribe",
            &[Value::from(session), Value::from(id)],
        );
    }

    pub(super) fn meta_on_delete(&mut self, realm: u16, session: Option<Id>, id: Id) {
        self.meta_event(
            realm,
            "wamp.subscription.on_delete",
            &[session.map_or(Value::Null, Value::from), Value::from(id)],
        );
    }

    /// `wamp.registration.on_create`: only for the REGISTER that created the registration.
    pub(super) fn meta_on_create_registration(
        &mut self,
        realm: u16,
        session: Id,
        id: Id,
        uri: &str,
        policy: MatchPolicy,
        invoke: crate::message::InvokePolicy,
    ) {
        let mut details = Dict::new().with("id", id);
        let created = self.realms[usize::from(realm)]
            .dealer
            .by_id
            .get(&id)
            .and_then(|g| self.wall(g.created));
        if let Some(t) = created {
            details = details.with("created", t.as_str());
        }
        let details = details
            .with("uri", uri)
            .with("match", policy.as_str())
            .with("invoke", invoke.as_str());
        self.meta_event(
            realm,
            "wamp.registration.on_create",
            &[Value::from(session), Value::Dict(details)],
        );
    }

    pub(super) fn meta_on_register(&mut self, realm: u16, session: Id, id: Id) {
        self.meta_event(
            realm,
            "wamp.registration.on_register",
            &[Value::from(session), Value::from(id)],
        );
    }

    pub(super) fn meta_on_unregister(&mut self, realm: u16, session: Id, id: Id) {
        self.meta_event(
            realm,
            "wamp.registration.on_unregister",
            &[Value::from(session), Value::from(id)],
        );
    }

    pub(super) fn meta_on_registration_delete(&mut self, realm: u16, session: Option<Id>, id: Id) {
        self.meta_event(
            realm,
            "wamp.registration.on_delete",
            &[session.map_or(Value::Null, Value::from), Value::from(id)],
        );
    }
}

fn kill_query(target: KillTarget, kwargs: &Dict, except: Option<Id>) -> MetaQuery {
    MetaQuery::Kill {
        target,
        reason: kwargs
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("wamp.close.killed")
            .to_owned(),
        message: kwargs
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned),
        except,
    }
}

/// The options dictionary given as second positional argument (`lookup(uri, {match})`).
fn kwargs_or_options(args: &[Value]) -> Dict {
    match args.get(1) {
        Some(Value::Dict(d)) => d.clone(),
        _ => Dict::new(),
    }
}

fn by_policy(entries: impl Iterator<Item = (Id, MatchPolicy)>) -> Value {
    let (mut exact, mut prefix, mut wildcard) = (Vec::new(), Vec::new(), Vec::new());
    for (id, p) in entries {
        match p {
            MatchPolicy::Exact => exact.push(id),
            MatchPolicy::Prefix => prefix.push(id),
            MatchPolicy::Wildcard => wildcard.push(id),
        }
    }
    let list = |mut v: Vec<Id>| {
        v.sort();
        Value::List(v.into_iter().map(Value::from).collect())
    };
    Value::Dict(
        Dict::new()
            .with("exact", list(exact))
            .with("prefix", list(prefix))
            .with("wildcard", list(wildcard)),
    )
}

/// A session's details as `wamp.session.get` and `on_join` give them (Crossbar's keys).
fn session_details(j: &Joined, transport: &super::TransportInfo, created: Option<String>) -> Dict {
    let mut details = Dict::new()
        .with("type", transport.kind.as_str())
        .with("peer", transport.peer.as_str());
    // Crossbar's shape for a verified client certificate (only the subject's CN here).
    if let Some(cn) = &transport.client_cert_cn {
        details = details.with(
            "peer_cert",
            Dict::new().with("subject", Dict::new().with("cn", cn.as_str())),
        );
    }
    let d = Dict::new().with("session", j.id);
    let d = match created {
        Some(c) => d.with("created", c.as_str()),
        None => d,
    };
    let d = d
        .with("authid", j.auth.authid.as_str())
        .with("authrole", j.auth.authrole.as_str())
        .with("authmethod", j.auth.authmethod.as_str())
        .with("authprovider", j.auth.authprovider.as_str());
    // `authextra` as WELCOME carried it (Crossbar's session details have it too).
    let d = match &j.auth.authextra {
        Some(extra) => d.with("authextra", extra.clone()),
        None => d,
    };
    d.with("transport", details)
}

fn internal_publication(
    realm: u16,
    topic: &str,
    publication: Id,
    args: &[Value],
    kwargs: Option<&Dict>,
    _options: &PublishOptions,
) -> Publication {
    Publication {
        realm,
        topic: topic.to_owned(),
        publication,
        publisher: None,
        authid: String::new(),
        authrole: String::new(),
        disclose: false,
        exclude_me: false,
        exclude: Vec::new(),
        eligible: None,
        exclude_authid: Vec::new(),
        eligible_authid: None,
        exclude_authrole: Vec::new(),
        eligible_authrole: None,
        retain: false,
        ppt: Default::default(),
        payload: payload(crate::codec::Serializer::Json, args, kwargs),
        transcoded: Default::default(),
    }
}

impl Shard {
    /// `t` as wall-clock text, if the caller gave the clock's base.
    pub(super) fn wall(&self, t: super::Time) -> Option<String> {
        self.wall_base.map(|b| iso8601(b.saturating_add(t.0)))
    }
}

/// Microseconds since the Unix epoch as ISO 8601 UTC with milliseconds, the way Crossbar
/// writes `created` (`2026-11-22T13:20:00.123Z`).
fn iso8601(unix_micros: u64) -> String {
    let ms = (unix_micros / 1000) % 1000;
    let secs = unix_micros / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, for u64 days).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod clock_tests {
    use super::iso8601;

    fn check(unix_micros: u64, expect: &str) {
        assert_eq!(iso8601(unix_micros), expect, "{unix_micros}");
    }

    #[test]
    fn iso8601_dates() {
        check(0, "1970-01-01T00:00:00.000Z");
        check(951_782_400_000_000, "2000-02-29T00:00:00.000Z");
        check(1_795_872_000_123_456, "2026-11-28T13:20:00.123Z");
        check(4_102_444_799_999_999, "2099-12-31T23:59:59.999Z");
    }
}
