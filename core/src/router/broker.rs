//! The broker: subscriptions, the replicated interest table, publication and fan-out.
//!
//! Each shard keeps, per realm, its *local* subscriptions (which of its sessions hold which
//! subscription) and a replica of the router-wide *interest* table: for each key (topic or
//! pattern, match policy) the router-wide subscription id and the shards with subscribers.
//! The key's owner shard decides the id and orders changes (see the parent module). A
//! publication is matched against the interest table on the publisher's shard, sent once to
//! each interested shard, and fanned out there: one EVENT encoding per subscription and
//! serializer, handed to every subscriber as the same bytes.
//!
//! Transcoding happens once per publication and target serializer router-wide: each shard
//! announces which serializers its subscribers of a key use ([`PeerMsg::InterestNeeds`],
//! a hint replicated with the interest), the publisher's shard transcodes once for every
//! remote shard that needs the other serializer and forwards both encodings. A shard that
//! lacks the encoding it needs (a hint still in flight, or lost on rejoin, which snapshots
//! do not carry) transcodes for itself, so correctness never depends on the hint.
//!
//! The fan-out's per-subscriber work is one comparison and one push: each local
//! subscription keeps its sessions' connections and serializers, so publications without
//! black/white lists look no session up.
//! Causality on subscribe: a session subscribing to a key its shard already holds (or is
//! already asking the owner for) joins it only after every other live shard answered a
//! [`PeerMsg::Fence`]: links are FIFO, so every publication those shards accepted before
//! the fence has reached this shard first and went only to the earlier subscribers. A new
//! key needs no fence: the owner's change is acknowledged by every shard the same way.
//! Retained events and the configured event histories are kept on every shard (those
//! publications go to all shards), so `get_retained` and `get_events` are local reads.
//!
//! What it does not do yet: subscription revocation, sharded subscriptions.

use bytes::Bytes;

use crate::codec::Serializer;
use crate::hash::Map;
use crate::id::Id;
use crate::matcher::Matcher;
use crate::message::{
    Dict, Event, EventDetails, Message, MessageType, Publish, Published, Subscribe, Subscribed,
    Unsubscribe, Unsubscribed,
};
use crate::uri::{self, MatchPolicy, UriCheck};

use super::peer::{PeerMsg, Publication};
use super::session::Joined;
use super::{fit, policy_of, ConnId, Output, Pending, Shard, Wait};

/// A realm's broker state on one shard.
#[derive(Debug, Default)]
pub(super) struct RealmBroker {
    /// Replica: key → (subscription id, shards with subscribers).
    pub(super) interest: Matcher<Interest>,
    /// Replica index: subscription id → key.
    pub(super) by_id: Map<Id, (String, MatchPolicy)>,
    /// Local subscriptions (confirmed): key → subscription id.
    local: Matcher<Id>,
    /// Local subscriptions: id → the sessions holding it.
    local_subs: Map<Id, LocalSub>,
    /// Keys with a subscribe request in flight → its token.
    in_flight: Map<(String, MatchPolicy), u64>,
    /// The retained event per topic.
    pub(super) retained: Map<String, Box<Publication>>,
    /// Topics with an event history → how many events to keep.
    history_limits: Map<String, usize>,
    /// The last events of each history topic, oldest first. Every shard keeps them, so
    /// `wamp.subscription.get_events` is answered locally.
    /// Each event carries its arrival number here, which orders the events of several
    /// topics for a pattern subscription's `get_events`.
    history: Map<String, std::collections::VecDeque<(u64, Box<Publication>)>>,
    /// The arrival number of the next history event.
    history_seq: u64,
    /// Keys this shard gave back to their owner (its last local subscriber left) → that
    /// subscriber, named by `wamp.subscription.on_delete` when the owner's removal comes
    /// back. At most one entry per key this shard held.
    given_back: Map<(String, MatchPolicy), Id>,
}

#[derive(Debug, Clone)]
pub(super) struct Interest {
    pub(super) id: Id,
    pub(super) shards: Vec<u16>,
    /// Which serializers each shard's subscribers use ([`PeerMsg::InterestNeeds`] bits),
    /// for the shards that said so.
    pub(super) needs: Vec<(u16, u8)>,
}

impl Interest {
    pub(super) fn new(id: Id, shards: Vec<u16>) -> Self {
        Self {
            id,
            shards,
            needs: Vec::new(),
        }
    }
}

/// The [`PeerMsg::InterestNeeds`] bit of a serializer.
fn need_bit(s: Serializer) -> u8 {
    match s {
        Serializer::Json => 1,
        Serializer::MsgPack => 2,
    }
}

#[derive(Debug)]
struct LocalSub {
    uri: String,
    policy: MatchPolicy,
    /// The subscribed sessions, in subscription order.
    sessions: Vec<Id>,
    /// Each session's connection and serializer (same index as `sessions`), so that the
    /// fan-out reaches a subscriber without looking its session up.
    targets: Vec<(ConnId, Serializer)>,
    /// The serializers of `targets` as last announced to the other shards.
    needs: u8,
}

impl LocalSub {
    fn needs(&self) -> u8 {
        self.targets.iter().fold(0, |n, t| n | need_bit(t.1))
    }

    fn add(&mut self, session: Id, target: (ConnId, Serializer)) {
        if !self.sessions.contains(&session) {
            self.sessions.push(session);
            self.targets.push(target);
        }
    }

    fn remove(&mut self, session: Id) {
        if let Some(i) = self.sessions.iter().position(|s| *s == session) {
            self.sessions.remove(i);
            self.targets.remove(i);
        }
    }
}

/// A subscribe waiting for the owner's decision and every shard's acknowledgement.
#[derive(Debug)]
pub(super) struct PendingSubscribe {
    realm: u16,
    uri: String,
    policy: MatchPolicy,
    /// The sessions waiting: (conn, session, request, get_retained).
    waiters: Vec<(ConnId, Id, Id, bool)>,
    pub(super) wait: Wait,
}

/// A session's subscribe to a key its shard already holds (or is asking for), waiting
/// for every other live shard to answer a [`PeerMsg::Fence`].
#[derive(Debug)]
pub(super) struct PendingFence {
    realm: u16,
    uri: String,
    policy: MatchPolicy,
    /// The session waiting: (conn, session, request, get_retained).
    waiter: (ConnId, Id, Id, bool),
    /// The shards still to answer.
    wait: Vec<u16>,
}

/// An event to publish when a session leaves.
#[derive(Debug, Clone)]
pub(super) struct Testament {
    pub(super) publication: Box<Publication>,
}

impl RealmBroker {
    /// A broker keeping event history for these (topic, length) pairs.
    pub(super) fn with_history(topics: impl Iterator<Item = (String, usize)>) -> Self {
        Self {
            history_limits: topics.filter(|t| t.1 > 0).collect(),
            ..Self::default()
        }
    }

    /// The last `limit` events of the histories of the topics a subscription `pattern`
    /// matches, oldest first (in the order they reached this shard).
    pub(super) fn events(
        &self,
        pattern: &str,
        policy: MatchPolicy,
        limit: usize,
    ) -> Vec<&Publication> {
        let mut found: Vec<&(u64, Box<Publication>)> = match policy {
            MatchPolicy::Exact => self
                .history
                .get(pattern)
                .map_or_else(Vec::new, |h| h.iter().collect()),
            _ => {
                let mut m = Matcher::new();
                if m.insert(pattern, policy, ()).is_err() {
                    return Vec::new();
                }
                let mut v = Vec::new();
                for (topic, h) in &self.history {
                    let mut hit = false;
                    m.for_each_match(topic, |_| hit = true);
                    if hit {
                        v.extend(h.iter());
                    }
                }
                v.sort_unstable_by_key(|e| e.0);
                v
            }
        };
        let skip = found.len().saturating_sub(limit);
        found.drain(..skip);
        found.into_iter().map(|e| &*e.1).collect()
    }

    /// The replica's entries, for the meta API: (id, uri, policy).
    pub(super) fn entries(&self) -> impl Iterator<Item = (Id, &str, MatchPolicy)> {
        self.by_id.iter().map(|(id, (u, p))| (*id, u.as_str(), *p))
    }

    pub(super) fn lookup(&self, uri: &str, policy: MatchPolicy) -> Option<Id> {
        self.interest.get(uri, policy).map(|i| i.id)
    }

    pub(super) fn matching(&self, topic: &str) -> Vec<Id> {
        let mut v = Vec::new();
        self.interest.for_each_match(topic, |m| v.push(m.value.id));
        v
    }

    pub(super) fn key(&self, id: Id) -> Option<(&str, MatchPolicy)> {
        self.by_id.get(&id).map(|(u, p)| (u.as_str(), *p))
    }

    pub(super) fn local_subscribers(&self, id: Id) -> &[Id] {
        self.local_subs
            .get(&id)
            .map_or(&[], |l| l.sessions.as_slice())
    }
}

impl Shard {
    pub(super) fn subscribe(&mut self, conn: ConnId, m: Subscribe) {
        let Some((j, serializer)) = self.joined(conn) else {
            return;
        };
        let (sid, realm) = (j.id, j.realm);
        let policy = policy_of(m.options.match_policy);
        let error = if uri::validate_pattern(&m.topic, policy, UriCheck::Loose).is_err() {
            Some("wamp.error.invalid_uri")
        } else if !self.permission(j, &m.topic).is_some_and(|p| p.subscribe) {
            Some("wamp.error.not_authorized")
        } else if j.subscriptions.len() + j.pending_subscribes
            >= self.config.limits.subscriptions_per_session
        {
            Some("wamp.error.limit_exceeded")
        } else {
            None
        };
        if let Some(e) = error {
            self.send_error(conn, serializer, MessageType::Subscribe, m.request, e);
            return;
        }
        self.count_pending_subscribe(conn, true);
        let waiter = (conn, sid, m.request, m.options.get_retained == Some(true));
        let b = &self.realms[usize::from(realm)].broker;
        let key = (m.topic, policy);
        let held = b.local.get(&key.0, policy).is_some() || b.in_flight.contains_key(&key);
        let others: Vec<u16> = self
            .live_shards()
            .into_iter()
            .filter(|s| *s != self.index)
            .collect();
        if !held || others.is_empty() {
            // A new key's request is acknowledged by every live shard over the same FIFO
            // links as their publications, which is the fence already.
            self.attach_subscriber(realm, key.0, policy, waiter);
            return;
        }
        if self.pending.len() >= self.config.limits.in_flight_peer_requests {
            self.count_pending_subscribe(conn, false);
            self.send_error(
                conn,
                serializer,
                MessageType::Subscribe,
                m.request,
                "wamp.error.limit_exceeded",
            );
            return;
        }
        // The key is held here already: before the session joins it, every other shard
        // answers a fence, so that publications accepted before this SUBSCRIBE (still
        // travelling toward this shard) arrive first and do not reach the new subscriber.
        let token = self.token();
        self.pending.insert(
            token,
            Pending::Fence(PendingFence {
                realm,
                uri: key.0,
                policy,
                waiter,
                wait: others.clone(),
            }),
        );
        for s in others {
            self.send_peer(s, PeerMsg::Fence { token });
        }
    }

    /// `from` answered the fence `token` (or died); the last answer lets the session in.
    pub(super) fn fence_ack(&mut self, from: u16, token: u64) {
        let Some(Pending::Fence(p)) = self.pending.get_mut(&token) else {
            return;
        };
        p.wait.retain(|s| *s != from);
        if !p.wait.is_empty() {
            return;
        }
        if let Some(Pending::Fence(p)) = self.pending.remove(&token) {
            self.attach_subscriber(p.realm, p.uri, p.policy, p.waiter);
        }
    }

    /// Adds a session (`waiter`: conn, session, request, get_retained) to the key: to the
    /// local subscription if there is one, to the request in flight if there is one,
    /// otherwise through a new request to the key's owner.
    fn attach_subscriber(
        &mut self,
        realm: u16,
        uri: String,
        policy: MatchPolicy,
        waiter: (ConnId, Id, Id, bool),
    ) {
        let (conn, sid, request, get_retained) = waiter;
        let Some(serializer) = self
            .sessions
            .get(&conn)
            .filter(|_| self.by_id.get(&sid) == Some(&conn))
            .map(|s| s.serializer)
        else {
            // The session left while its shard waited for the fence.
            return;
        };
        let b = &mut self.realms[usize::from(realm)].broker;
        if let Some(&id) = b.local.get(&uri, policy) {
            if let Some(l) = b.local_subs.get_mut(&id) {
                l.add(sid, (conn, serializer));
            }
            self.announce_needs(realm, id);
            self.confirm_subscription(conn, sid, request, id, realm, get_retained);
            return;
        }
        let key = (uri, policy);
        if let Some(token) = b.in_flight.get(&key).copied() {
            if let Some(Pending::Subscribe(p)) = self.pending.get_mut(&token) {
                p.waiters.push(waiter);
            }
            return;
        }
        if self.pending.len() >= self.config.limits.in_flight_peer_requests {
            self.count_pending_subscribe(conn, false);
            self.send_error(
                conn,
                serializer,
                MessageType::Subscribe,
                request,
                "wamp.error.limit_exceeded",
            );
            return;
        }
        let token = self.token();
        let (uri, policy) = key.clone();
        self.realms[usize::from(realm)]
            .broker
            .in_flight
            .insert(key, token);
        let owner = self.owner(realm, &uri, policy);
        self.pending.insert(
            token,
            Pending::Subscribe(PendingSubscribe {
                realm,
                uri: uri.clone(),
                policy,
                waiters: vec![waiter],
                wait: Wait::new(self.live_shards()),
            }),
        );
        self.send_peer(
            owner,
            PeerMsg::SubscribeRequest {
                token,
                realm,
                uri,
                policy,
            },
        );
    }

    /// Counts a SUBSCRIBE of the session on `conn` as accepted (`true`) or answered
    /// (`false`) while it waits; see `Joined::pending_subscribes`.
    fn count_pending_subscribe(&mut self, conn: ConnId, accepted: bool) {
        if let Some(j) = self.sessions.get_mut(&conn).and_then(|s| s.joined_mut()) {
            j.pending_subscribes = if accepted {
                j.pending_subscribes + 1
            } else {
                j.pending_subscribes.saturating_sub(1)
            };
        }
    }

    fn confirm_subscription(
        &mut self,
        conn: ConnId,
        session: Id,
        request: Id,
        id: Id,
        realm: u16,
        get_retained: bool,
    ) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            return;
        };
        let fresh = j.subscriptions.insert(id);
        j.pending_subscribes = j.pending_subscribes.saturating_sub(1);
        let _ = session;
        self.send(
            conn,
            serializer,
            &Message::Subscribed(Subscribed {
                request,
                subscription: id,
            }),
        );
        if fresh {
            self.meta_on_subscribe(realm, session, id);
        }
        if get_retained {
            self.send_retained(conn, realm, id);
        }
    }

    /// The owner's side of a subscribe: decide the id, record the shard, broadcast.
    ///
    /// A shard decides every request sent to it, even one it would not have picked as the
    /// owner: the sender picked it from its own view of the membership, the only shard that
    /// could disagree is a dead one (which decides nothing any more), and every shard holds
    /// the full replica to decide from. Dropping such a request instead would leave the
    /// requester waiting forever.
    pub(super) fn owner_subscribe(
        &mut self,
        from: u16,
        life: u64,
        token: u64,
        realm: u16,
        uri: String,
        policy: MatchPolicy,
    ) {
        let Some(r) = self.realms.get(usize::from(realm)) else {
            return;
        };
        let id = match r.broker.interest.get(&uri, policy) {
            Some(i) => i.id,
            None => {
                let taken = &r.broker.by_id;
                let ids: Vec<Id> = taken.keys().copied().collect();
                self.fresh_id(|id| ids.contains(&id))
            }
        };
        let msg = PeerMsg::InterestAdd {
            realm,
            uri: uri.clone(),
            policy,
            subscription: id,
            shard: from,
            life,
            requester: from,
            token,
            to: self.recipients(),
        };
        self.broadcast(&msg);
        if let PeerMsg::InterestAdd { to, .. } = &msg {
            self.change_reached(from, token, to);
        }
        if self.current(from, life) {
            self.apply_interest_add(realm, &uri, policy, id, from, from, token);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_interest_add(
        &mut self,
        realm: u16,
        uri: &str,
        policy: MatchPolicy,
        id: Id,
        shard: u16,
        requester: u16,
        token: u64,
    ) {
        let Some(r) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let b = &mut r.broker;
        let created = match b.interest.get_mut(uri, policy) {
            Some(i) => {
                if i.id != id {
                    b.by_id.remove(&i.id);
                    i.id = id;
                    b.by_id.insert(id, (uri.to_owned(), policy));
                }
                if !i.shards.contains(&shard) {
                    i.shards.push(shard);
                }
                false
            }
            None => {
                // The owner validated the pattern; a matcher refusal (too many components)
                // leaves the key unrouted, which the subscriber's shard already refused.
                let _ = b
                    .interest
                    .insert(uri, policy, Interest::new(id, vec![shard]));
                b.by_id.insert(id, (uri.to_owned(), policy));
                true
            }
        };
        if created {
            self.sub_created.insert(id, self.now);
        }
        if created && requester == self.index {
            // The session whose SUBSCRIBE asked for the key (the first one waiting).
            let session = match self.pending.get(&token) {
                Some(Pending::Subscribe(p)) => p.waiters.first().map(|w| w.1),
                _ => None,
            };
            self.meta_on_create(realm, session, id, uri, policy);
        }
        self.applied(requester, token, Some(id));
    }

    /// Every shard applied the subscribe: confirm it to the waiting sessions.
    pub(super) fn subscribe_done(&mut self, p: PendingSubscribe) {
        let Some(id) = p.wait.id else {
            return;
        };
        let r = &mut self.realms[usize::from(p.realm)].broker;
        r.in_flight.remove(&(p.uri.clone(), p.policy));
        let mut sub = LocalSub {
            uri: p.uri,
            policy: p.policy,
            sessions: Vec::new(),
            targets: Vec::new(),
            needs: 0,
        };
        let mut confirm = Vec::new();
        let first = p.waiters.first().map(|w| w.1);
        for (conn, sid, request, retained) in p.waiters {
            let alive = self.by_id.get(&sid) == Some(&conn);
            if let (true, Some(s)) = (alive, self.sessions.get(&conn)) {
                sub.add(sid, (conn, s.serializer));
                confirm.push((conn, sid, request, retained));
            }
        }
        let r = &mut self.realms[usize::from(p.realm)].broker;
        if sub.sessions.is_empty() {
            // Everyone left while waiting: give the interest back.
            if let Some(session) = first {
                r.given_back.insert((sub.uri.clone(), sub.policy), session);
            }
            let owner = self.owner(p.realm, &sub.uri, sub.policy);
            self.send_removal(
                owner,
                PeerMsg::UnsubscribeRequest {
                    realm: p.realm,
                    uri: sub.uri,
                    policy: sub.policy,
                },
                None,
            );
            return;
        }
        let _ = r.local.insert(&sub.uri, sub.policy, id);
        r.local_subs.insert(id, sub);
        self.announce_needs(p.realm, id);
        for (conn, sid, request, retained) in confirm {
            self.confirm_subscription(conn, sid, request, id, p.realm, retained);
        }
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnId, m: Unsubscribe) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined_mut() else {
            return;
        };
        if !j.subscriptions.remove(&m.subscription) {
            self.send_error(
                conn,
                serializer,
                MessageType::Unsubscribe,
                m.request,
                "wamp.error.no_such_subscription",
            );
            return;
        }
        let (sid, realm) = (j.id, j.realm);
        self.drop_local_subscriber(realm, m.subscription, sid);
        self.send(
            conn,
            serializer,
            &Message::Unsubscribed(Unsubscribed {
                request: Some(m.request),
                details: None,
            }),
        );
    }

    /// `wamp.subscription.remove_subscriber` on the session's shard: the session leaves
    /// the subscription and learns it from a router-initiated UNSUBSCRIBED. False when the
    /// session is not here or does not hold the subscription.
    pub(super) fn remove_subscriber(
        &mut self,
        realm: u16,
        id: Id,
        session: Id,
        reason: Option<String>,
    ) -> bool {
        let Some((conn, serializer, j)) = self.local_session_mut(session, realm) else {
            return false;
        };
        if !j.subscriptions.remove(&id) {
            return false;
        }
        self.drop_local_subscriber(realm, id, session);
        let mut details = Dict::new().with("subscription", id);
        if let Some(r) = reason {
            details = details.with("reason", r.as_str());
        }
        let msg = Message::Unsubscribed(Unsubscribed {
            request: None,
            details: Some(details),
        });
        self.send(conn, serializer, &msg);
        true
    }

    /// Removes one session from a local subscription; the last one out gives the shard's
    /// interest back to the owner.
    fn drop_local_subscriber(&mut self, realm: u16, id: Id, session: Id) {
        let b = &mut self.realms[usize::from(realm)].broker;
        let Some(l) = b.local_subs.get_mut(&id) else {
            return;
        };
        l.remove(session);
        let empty = l.sessions.is_empty();
        let (uri, policy) = (l.uri.clone(), l.policy);
        if empty {
            b.local_subs.remove(&id);
            b.local.remove(&uri, policy);
        }
        self.meta_on_unsubscribe(realm, session, id);
        if !empty {
            self.announce_needs(realm, id);
        }
        if empty {
            self.realms[usize::from(realm)]
                .broker
                .given_back
                .insert((uri.clone(), policy), session);
            let owner = self.owner(realm, &uri, policy);
            let msg = PeerMsg::UnsubscribeRequest { realm, uri, policy };
            self.send_removal(owner, msg, None);
        }
    }

    pub(super) fn owner_unsubscribe(
        &mut self,
        from: u16,
        realm: u16,
        uri: String,
        policy: MatchPolicy,
    ) {
        let msg = PeerMsg::InterestRemove {
            realm,
            uri: uri.clone(),
            policy,
            shard: from,
        };
        self.broadcast(&msg);
        if from == self.index {
            self.removal_decided(realm, &uri, policy);
        }
        self.apply_interest_remove(realm, &uri, policy, from);
    }

    /// Removes `shard` from the key's interest; returns the subscription id when that
    /// deleted the subscription (no shard left with subscribers).
    pub(super) fn apply_interest_remove(
        &mut self,
        realm: u16,
        uri: &str,
        policy: MatchPolicy,
        shard: u16,
    ) -> Option<Id> {
        let r = self.realms.get_mut(usize::from(realm))?;
        let b = &mut r.broker;
        // The subscriber whose leaving made this shard give the key back, if it did.
        let by = if shard == self.index {
            b.given_back.remove(&(uri.to_owned(), policy))
        } else {
            None
        };
        let i = b.interest.get_mut(uri, policy)?;
        i.shards.retain(|s| *s != shard);
        i.needs.retain(|n| n.0 != shard);
        if !i.shards.is_empty() {
            return None;
        }
        let id = i.id;
        b.interest.remove(uri, policy);
        b.by_id.remove(&id);
        self.sub_created.remove(&id);
        // Published by the shard whose subscriber left: its on_unsubscribe went out
        // earlier from here, so every meta subscriber sees the delete after it. This
        // replica applies the owner's removals in the owner's order, so the key is gone
        // router-wide exactly when it is gone here.
        if shard == self.index {
            self.meta_on_delete(realm, by, id);
        }
        Some(id)
    }

    /// Tells every shard (this one included) which serializers this shard's subscribers of
    /// local subscription `id` use, when that changed since the last announcement.
    fn announce_needs(&mut self, realm: u16, id: Id) {
        let b = &mut self.realms[usize::from(realm)].broker;
        let Some(l) = b.local_subs.get_mut(&id) else {
            return;
        };
        let needs = l.needs();
        if needs == l.needs {
            return;
        }
        l.needs = needs;
        // Sent by the subscribers' shard itself: its announcements reach each shard in
        // order over its FIFO links, after the owner's InterestAdd (SUBSCRIBED waited for
        // every shard's acknowledgement of it).
        let msg = PeerMsg::InterestNeeds {
            realm,
            uri: l.uri.clone(),
            policy: l.policy,
            shard: self.index,
            needs,
        };
        self.broadcast(&msg);
        let PeerMsg::InterestNeeds { uri, policy, .. } = msg else {
            return;
        };
        self.apply_interest_needs(realm, &uri, policy, self.index, needs);
    }

    pub(super) fn apply_interest_needs(
        &mut self,
        realm: u16,
        uri: &str,
        policy: MatchPolicy,
        shard: u16,
        needs: u8,
    ) {
        let Some(i) = self
            .realms
            .get_mut(usize::from(realm))
            .and_then(|r| r.broker.interest.get_mut(uri, policy))
        else {
            return;
        };
        if !i.shards.contains(&shard) {
            // The shard's interest was removed meanwhile; a stale hint is dropped.
            return;
        }
        match i.needs.iter_mut().find(|n| n.0 == shard) {
            Some(n) => n.1 = needs,
            None => i.needs.push((shard, needs)),
        }
    }

    pub(super) fn broker_leave(&mut self, j: &Joined) {
        for id in j.subscriptions.iter().copied().collect::<Vec<_>>() {
            self.drop_local_subscriber(j.realm, id, j.id);
        }
        for t in &j.testaments {
            self.route_publication(&t.publication);
        }
    }

    pub(super) fn broker_shard_down(&mut self, shard: u16) {
        for realm in 0..self.realms.len() {
            let keys: Vec<(String, MatchPolicy)> = self.realms[realm]
                .broker
                .interest
                .iter()
                .filter(|m| m.value.shards.contains(&shard))
                .map(|m| (m.pattern.to_owned(), m.policy))
                .collect();
            for (uri, policy) in keys {
                let deleted = self.apply_interest_remove(realm as u16, &uri, policy, shard);
                // Nobody is left to say who deleted it: the owner says it, with no session.
                if let Some(id) = deleted {
                    if self.owner(realm as u16, &uri, policy) == self.index {
                        self.meta_on_delete(realm as u16, None, id);
                    }
                }
            }
        }
        // Requests waiting on the dead shard stop waiting for it; requests whose owner it
        // was are re-sent to the new owner.
        let mut done = Vec::new();
        let mut resend = Vec::new();
        for (token, p) in &mut self.pending {
            if let Pending::Subscribe(p) = p {
                if p.wait.id.is_none() {
                    resend.push((*token, p.realm, p.uri.clone(), p.policy));
                }
                if p.wait.ack(shard, None) {
                    done.push(*token);
                }
            }
        }
        // The wait sets stay: acknowledgements already received of the dead owner's
        // decision count (its broadcast reached every shard before its death did, and a
        // second decision of a known key may bring no new ones).
        for (token, realm, uri, policy) in resend {
            let owner = self.owner(realm, &uri, policy);
            self.send_peer(
                owner,
                PeerMsg::SubscribeRequest {
                    token,
                    realm,
                    uri,
                    policy,
                },
            );
        }
        for token in done {
            if let Some(Pending::Subscribe(p)) = self.pending.remove(&token) {
                self.subscribe_done(p);
            }
        }
        // Fences stop waiting for the dead shard: it sends nothing any more.
        let fences: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Fence(f) if f.wait.contains(&shard)))
            .map(|(t, _)| *t)
            .collect();
        for token in fences {
            self.fence_ack(shard, token);
        }
    }

    pub(super) fn publish(&mut self, conn: ConnId, m: Publish) {
        let Some((j, serializer)) = self.joined(conn) else {
            return;
        };
        let perm = self.permission(j, &m.topic);
        let error = if uri::validate_uri(&m.topic, UriCheck::Loose).is_err() {
            Some("wamp.error.invalid_uri")
        } else if !perm.is_some_and(|p| p.publish) {
            Some("wamp.error.not_authorized")
        } else {
            None
        };
        if let Some(e) = error {
            if m.options.acknowledge == Some(true) {
                self.send_error(conn, serializer, MessageType::Publish, m.request, e);
            }
            return;
        }
        let disclose = perm.is_some_and(|p| p.disclose_publisher) || m.topic.starts_with("wamp.");
        // The publisher's identity travels only when it is disclosed (saving two string
        // copies per PUBLISH otherwise).
        let (authid, authrole) = if disclose {
            (j.auth.authid.clone(), j.auth.authrole.clone())
        } else {
            (String::new(), String::new())
        };
        let (realm, sid) = (j.realm, j.id);
        let o = m.options;
        let p = Publication {
            realm,
            topic: m.topic,
            publication: self.rng.global_id(self.index, self.count),
            publisher: Some(sid),
            authid,
            authrole,
            disclose,
            exclude_me: o.exclude_me != Some(false),
            exclude: o.exclude.unwrap_or_default(),
            eligible: o.eligible,
            exclude_authid: o.exclude_authid.unwrap_or_default(),
            eligible_authid: o.eligible_authid,
            exclude_authrole: o.exclude_authrole.unwrap_or_default(),
            eligible_authrole: o.eligible_authrole,
            retain: o.retain == Some(true),
            ppt: o.ppt,
            payload: m.payload,
            transcoded: Default::default(),
        };
        let publication = p.publication;
        self.route_publication(&p);
        if o.acknowledge == Some(true) {
            self.send(
                conn,
                serializer,
                &Message::Published(Published {
                    request: m.request,
                    publication,
                }),
            );
        }
    }

    /// Sends a publication once to each interested shard (all shards when retained) and
    /// fans it out here if this shard is interested.
    pub(super) fn route_publication(&mut self, p: &Publication) {
        let Some(r) = self.realms.get(usize::from(p.realm)) else {
            return;
        };
        let b = &r.broker;
        // A buffer kept across publications: routing allocates nothing per PUBLISH.
        let mut shards = std::mem::take(&mut self.scratch_shards);
        shards.clear();
        // The serializers other shards' subscribers need (bits), as far as they said.
        let mut needs = 0;
        let me = self.index;
        b.interest.for_each_match(&p.topic, |m| {
            for s in &m.value.shards {
                if !shards.contains(s) {
                    shards.push(*s);
                }
            }
            for n in &m.value.needs {
                if n.0 != me {
                    needs |= n.1;
                }
            }
        });
        if p.retain || b.history_limits.contains_key(&p.topic) {
            // Retained events and history live on every shard, so that subscribing and
            // `get_events` are answered locally.
            shards.clear();
            shards.extend((0..self.count).filter(|s| self.live[usize::from(*s)]));
        }
        let remote = shards.iter().any(|s| *s != self.index);
        // Transcode once here for every remote shard that needs the other serializer,
        // rather than once on each of them.
        let other = match p.payload.serializer() {
            Serializer::Json => Serializer::MsgPack,
            Serializer::MsgPack => Serializer::Json,
        };
        let alt = if remote && needs & need_bit(other) != 0 && p.payload_in(other).is_none() {
            fit(p.payload.clone(), other).ok()
        } else {
            None
        };
        if remote {
            let bytes = p.to_peer_bytes(alt.as_ref());
            for &s in &shards {
                if s != self.index && self.live[usize::from(s)] {
                    self.out.push_back(Output::Peer {
                        to: s,
                        bytes: bytes.clone(),
                    });
                }
            }
        }
        let here = shards.contains(&self.index);
        self.scratch_shards = shards;
        if here {
            self.deliver_publication(p, alt.as_ref());
        }
    }

    /// Fans a publication out to this shard's subscribers.
    /// `alt` is the payload in the other serializer, when the caller has it already.
    pub(super) fn deliver_publication(
        &mut self,
        p: &Publication,
        alt: Option<&crate::message::Payload>,
    ) {
        let realm = usize::from(p.realm);
        if realm >= self.realms.len() {
            return;
        }
        if p.retain {
            let limit = self.config.limits.retained_topics;
            let b = &mut self.realms[realm].broker;
            if b.retained.len() < limit || b.retained.contains_key(&p.topic) {
                b.retained.insert(p.topic.clone(), Box::new(p.clone()));
            }
        }
        let b = &mut self.realms[realm].broker;
        if let Some(&limit) = b.history_limits.get(&p.topic) {
            let seq = b.history_seq;
            b.history_seq += 1;
            let h = b.history.entry(p.topic.clone()).or_default();
            if h.len() >= limit {
                h.pop_front();
            }
            h.push_back((seq, Box::new(p.clone())));
        }
        let b = &self.realms[realm].broker;
        let mut subs = std::mem::take(&mut self.scratch_subs);
        subs.clear();
        b.local
            .for_each_match(&p.topic, |m| subs.push((*m.value, m.policy)));
        // The payload per serializer (JSON, MessagePack), transcoded at most once each and
        // not at all when the publisher's shard sent it along.
        let mut transcoded: [Option<Option<crate::message::Payload>>; 2] = [None, None];
        for s in [Serializer::Json, Serializer::MsgPack] {
            let have = p
                .payload_in(s)
                .or(alt.filter(|a| !a.is_empty() && a.serializer() == s));
            if let Some(have) = have {
                transcoded[usize::from(s == Serializer::MsgPack)] = Some(Some(have.clone()));
            }
        }
        // Most publications filter subscribers by `exclude_me` alone: those reach each
        // subscriber with one comparison and one push, no session lookup.
        let filtered = p.filters_subscribers();
        let me = if p.exclude_me { p.publisher } else { None };
        for &(id, policy) in &subs {
            let Some(l) = self.realms[realm].broker.local_subs.get(&id) else {
                continue;
            };
            let mut json = Vec::new();
            let mut msgpack = Vec::new();
            let n = l.sessions.len();
            for (k, (sid, &(conn, serializer))) in l.sessions.iter().zip(&l.targets).enumerate() {
                if me == Some(*sid) || (filtered && !self.eligible_session(p, *sid)) {
                    continue;
                }
                let conns = match serializer {
                    Serializer::Json => &mut json,
                    Serializer::MsgPack => &mut msgpack,
                };
                if conns.capacity() == 0 {
                    // One allocation per serializer and publication, sized for the rest.
                    conns.reserve_exact(n - k);
                }
                conns.push(conn);
            }
            for (conns, serializer) in [(json, Serializer::Json), (msgpack, Serializer::MsgPack)] {
                if conns.is_empty() {
                    continue;
                }
                let slot = &mut transcoded[usize::from(serializer == Serializer::MsgPack)];
                let payload = slot.get_or_insert_with(|| fit(p.payload.clone(), serializer).ok());
                let Some(payload) = payload.clone() else {
                    continue;
                };
                if let Some(bytes) = encode_event(p, id, policy, false, payload, serializer) {
                    self.out.push_back(Output::Fanout {
                        conns,
                        serializer,
                        bytes,
                    });
                }
            }
        }
        self.scratch_subs = subs;
    }

    /// Whether the session `sid` passes the publication's black/white lists.
    fn eligible_session(&self, p: &Publication, sid: Id) -> bool {
        self.by_id
            .get(&sid)
            .and_then(|conn| self.sessions.get(conn))
            .and_then(|s| s.joined())
            .is_some_and(|j| eligible(p, j))
    }

    fn send_retained(&mut self, conn: ConnId, realm: u16, id: Id) {
        let b = &self.realms[usize::from(realm)].broker;
        let Some((uri, policy)) = b.key(id) else {
            return;
        };
        let mut matcher = Matcher::new();
        let _ = matcher.insert(uri, policy, ());
        let events: Vec<Box<Publication>> = b
            .retained
            .iter()
            .filter(|(topic, _)| {
                let mut hit = false;
                matcher.for_each_match(topic, |_| hit = true);
                hit
            })
            .map(|(_, p)| p.clone())
            .collect();
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let serializer = s.serializer;
        let Some(j) = s.joined() else {
            return;
        };
        for p in events {
            if !eligible(&p, j) {
                continue;
            }
            let Ok(payload) = fit(p.payload.clone(), serializer) else {
                continue;
            };
            if let Some(bytes) = encode_event(&p, id, policy, true, payload, serializer) {
                self.out.push_back(Output::Send { conn, bytes });
            }
        }
    }
}

/// Whether subscriber `j` gets publication `p` (exclusion and black/white listing).
fn eligible(p: &Publication, j: &Joined) -> bool {
    if p.exclude_me && p.publisher == Some(j.id) {
        return false;
    }
    if p.exclude.contains(&j.id)
        || p.exclude_authid.contains(&j.auth.authid)
        || p.exclude_authrole.contains(&j.auth.authrole)
    {
        return false;
    }
    p.eligible.as_ref().is_none_or(|e| e.contains(&j.id))
        && p.eligible_authid
            .as_ref()
            .is_none_or(|e| e.contains(&j.auth.authid))
        && p.eligible_authrole
            .as_ref()
            .is_none_or(|e| e.contains(&j.auth.authrole))
}

fn encode_event(
    p: &Publication,
    subscription: Id,
    policy: MatchPolicy,
    retained: bool,
    payload: crate::message::Payload,
    serializer: Serializer,
) -> Option<Bytes> {
    let disclosed = p.disclose && p.publisher.is_some();
    let msg = Message::Event(Event {
        subscription,
        publication: p.publication,
        details: EventDetails {
            publisher: if disclosed { p.publisher } else { None },
            publisher_authid: disclosed.then(|| p.authid.clone()),
            publisher_authrole: disclosed.then(|| p.authrole.clone()),
            topic: (policy != MatchPolicy::Exact).then(|| p.topic.clone()),
            retained: retained.then_some(true),
            ppt: p.ppt.clone(),
            extra: Default::default(),
        },
        payload,
    });
    let mut buf = Vec::with_capacity(64 + msg.payload().map_or(0, crate::message::Payload::len));
    crate::codec::encode(serializer, &msg, &mut buf).ok()?;
    Some(Bytes::from(buf))
}
