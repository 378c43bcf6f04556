//! Shard membership: a restarted shard rejoining the router.
//!
//! Every shard holds the full replica of the interest and registration tables, so a
//! restarted shard rebuilds its replica from the live shards: it broadcasts
//! [`PeerMsg::Join`]; each live shard first drops whatever the joiner's previous life held
//! (as on [`Shard::handle_shard_down`]), then answers with a [`Snapshot`] of the keys *it*
//! owned under the membership without the joiner, and from then on counts the joiner as
//! live (its later broadcasts include it). Because each key has exactly one owner and the
//! owner's snapshot precedes its later changes on the FIFO link, the joiner sees every
//! key's state exactly once and then every later change in order. Until every snapshot
//! has arrived the joiner parks HELLOs and defers owner requests, so it accepts no
//! session and decides nothing on a partial replica.
//!
//! What it does not do: it does not handle two shards rejoining at once, nor a request
//! that an interim owner decides after the joiner took its keys back (the window between
//! the interim owner processing `Join` and the requester learning of it); both are
//! documented gaps.

use crate::message::Hello;

use super::broker::Interest;
use super::dealer::Registration;
use super::peer::{PeerMsg, Snapshot};
use super::{ConnId, Output, RouterConfig, Shard, ShardConfig, Time};

/// A rejoining shard's progress.
#[derive(Debug, Default)]
pub(super) struct Sync {
    /// Shards whose snapshot has not arrived.
    pub(super) waiting: Vec<u16>,
    /// HELLOs received before the replica was complete.
    pub(super) parked: Vec<(ConnId, Hello)>,
    /// Owner requests received before the replica was complete.
    pub(super) deferred: Vec<(u16, PeerMsg)>,
}

impl Shard {
    /// A restarted shard: empty, it asks every other shard for the replicated state and
    /// accepts sessions only once it has all of it ([`Shard::is_ready`]).
    pub fn rejoin(config: ShardConfig) -> Self {
        let mut s = Self::new(config);
        let waiting: Vec<u16> = (0..s.count).filter(|i| *i != s.index).collect();
        if !waiting.is_empty() {
            s.sync = Some(Box::new(Sync {
                waiting,
                ..Sync::default()
            }));
            s.broadcast(&PeerMsg::Join);
        }
        s
    }

    /// Whether the shard has its full replica and accepts sessions.
    pub fn is_ready(&self) -> bool {
        self.sync.is_none()
    }

    /// The router-wide configuration this shard runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub(super) fn handle_join(&mut self, now: Time, from: u16) {
        if self.live[usize::from(from)] {
            // The joiner restarted before anyone reported its death: drop its old life.
            self.handle_shard_down(now, from);
        }
        let mut snap = Snapshot::default();
        for (ri, r) in self.realms.iter().enumerate() {
            // Realm count is bounded by the config (far below 2^16).
            let realm = ri as u16;
            for m in r.broker.interest.iter() {
                if self.owner(realm, m.pattern, m.policy) == self.index {
                    let i = m.value;
                    snap.interest.push((
                        realm,
                        m.pattern.to_owned(),
                        m.policy,
                        i.id,
                        i.shards.clone(),
                    ));
                }
            }
            for (id, g) in &r.dealer.by_id {
                if self.owner(realm, &g.uri, g.policy) == self.index {
                    snap.registrations.push((
                        realm,
                        g.uri.clone(),
                        g.policy,
                        g.invoke,
                        *id,
                        g.callees.clone(),
                    ));
                }
            }
            for (topic, p) in &r.broker.retained {
                if self.owner(realm, topic, crate::uri::MatchPolicy::Exact) == self.index {
                    snap.retained.push((**p).clone());
                }
            }
        }
        self.live[usize::from(from)] = true;
        self.out.push_back(Output::Peer {
            to: from,
            bytes: PeerMsg::Snapshot(Box::new(snap)).to_bytes(),
        });
    }

    pub(super) fn apply_snapshot(&mut self, from: u16, snap: Snapshot) {
        for (realm, uri, policy, id, shards) in snap.interest {
            let Some(r) = self.realms.get_mut(usize::from(realm)) else {
                continue;
            };
            let _ = r
                .broker
                .interest
                .insert(&uri, policy, Interest::new(id, shards));
            r.broker.by_id.insert(id, (uri, policy));
        }
        for (realm, uri, policy, invoke, id, callees) in snap.registrations {
            let Some(r) = self.realms.get_mut(usize::from(realm)) else {
                continue;
            };
            let _ = r.dealer.regs.insert(&uri, policy, id);
            r.dealer.by_id.insert(
                id,
                Registration {
                    uri,
                    policy,
                    invoke,
                    callees,
                    next: 0,
                },
            );
        }
        for p in snap.retained {
            if let Some(r) = self.realms.get_mut(usize::from(p.realm)) {
                r.broker.retained.insert(p.topic.clone(), Box::new(p));
            }
        }
        self.snapshot_arrived(from);
    }

    /// `from` answered (or died): when nothing is left to wait for, open for business.
    pub(super) fn snapshot_arrived(&mut self, from: u16) {
        let Some(sync) = &mut self.sync else {
            return;
        };
        sync.waiting.retain(|s| *s != from);
        if !sync.waiting.is_empty() {
            return;
        }
        let Some(sync) = self.sync.take() else {
            return;
        };
        for (from, msg) in sync.deferred {
            self.peer_message(from, msg);
        }
        for (conn, hello) in sync.parked {
            if self.sessions.contains_key(&conn) {
                self.hello(conn, hello);
            }
        }
    }

    /// Whether a peer message must wait for the replica (requests this shard decides).
    pub(super) fn defer(&mut self, from: u16, msg: PeerMsg) -> Option<PeerMsg> {
        let Some(sync) = &mut self.sync else {
            return Some(msg);
        };
        match msg {
            PeerMsg::SubscribeRequest { .. }
            | PeerMsg::UnsubscribeRequest { .. }
            | PeerMsg::RegisterRequest { .. }
            | PeerMsg::UnregisterRequest { .. } => {
                sync.deferred.push((from, msg));
                None
            }
            other => Some(other),
        }
    }

    /// Parks a HELLO while the replica is incomplete; gives it back when the shard is ready.
    pub(super) fn park(&mut self, conn: ConnId, hello: Hello) -> Option<Hello> {
        match &mut self.sync {
            Some(sync) => {
                sync.parked.push((conn, hello));
                None
            }
            None => Some(hello),
        }
    }
}
