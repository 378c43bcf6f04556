//! Shard membership: restarted shards rejoining the router, one at a time.
//!
//! Every shard holds the full replica of the interest and registration tables, so a
//! restarted shard rebuilds its replica from the live shards: it broadcasts
//! [`PeerMsg::Join`]; a live shard *serving* it first drops whatever the joiner's previous
//! life held (as on [`Shard::handle_shard_down`]), then answers with a [`Snapshot`] of the
//! keys *it* owned under the membership without the joiner, and from then on counts the
//! joiner as live: its later broadcasts include it, and the joiner owns its keys again.
//! Because each key has exactly one owner and the owner's snapshot precedes its later
//! changes on the FIFO link, the joiner sees every key's state exactly once and then every
//! later change in order. Until every snapshot has arrived the joiner parks HELLOs and
//! defers owner requests, so it accepts no session and decides nothing on a partial
//! replica; then it broadcasts [`PeerMsg::Ready`].
//!
//! # Several joiners at once
//!
//! The argument above needs every shard to see joins in one order. A shard serves one
//! joiner at a time (from its snapshot to that joiner's `Ready`, or its death), queues the
//! other `Join`s and answers them [`PeerMsg::Busy`] naming the joiner it serves; a joiner
//! that is still syncing counts as serving itself. Shards may still pick different joiners
//! first, which would deadlock, so the lower index wins: a joiner told `Busy` by a lower
//! joiner that is not ready yet gives up its attempt ([`PeerMsg::Withdraw`]: everyone drops
//! it as if it had died, it clears its replica) and joins again, in a new round, once that
//! joiner is ready or dead. Messages of an abandoned round are recognised by the round
//! number (snapshots, `Busy`) or by arriving before the sender's snapshot of the current
//! round (replica changes), and dropped.
//!
//! # Requests at a shard that is not the key's owner
//!
//! Ownership moves when a joiner is served: a shard that decided a key in the joiner's
//! absence (the interim owner) stops deciding it once it has sent its snapshot, but other
//! shards may not have processed the `Join` yet and still send it requests for the key.
//! Such requests are handed on to the owner of the receiving shard's view
//! ([`PeerMsg::Forward`], bounded hops), so one key never has two deciders. Forwards to a
//! joiner that gives up or dies are handled again by the shard that handed them on.
//! Requesters stop waiting for acknowledgements from a joiner that is being served (it has
//! no sessions, and gets every change from snapshots or later broadcasts).
//!
//! What it does not do: a joiner that dies (rather than gives up) loses the unsubscribe
//! and unregister requests deferred on it (subscribe and register requests are re-sent by
//! their requesters); a snapshot-based replica makes no attempt to be incremental.

use crate::message::Hello;

use super::broker::Interest;
use super::dealer::Registration;
use super::peer::{PeerMsg, Snapshot};
use super::{ConnId, Output, RouterConfig, Shard, ShardConfig, Time};

/// A rejoining shard's progress.
#[derive(Debug, Default)]
pub(super) struct Sync {
    /// The current attempt (1 for the first `Join`).
    pub(super) round: u32,
    /// Shards whose snapshot of this round has not arrived.
    pub(super) waiting: Vec<u16>,
    /// Shards whose snapshot of this round arrived: their later changes are current.
    pub(super) snapped: Vec<u16>,
    /// Set while the attempt is given up: join again once this shard is ready or dead.
    pub(super) blocked_on: Option<u16>,
    /// Joiners seen ready (their `Busy` means the server will serve us next).
    pub(super) ready_seen: Vec<u16>,
    /// Resync answers awaited: (server, dead shard).
    pub(super) resync_wait: Vec<(u16, u16)>,
    /// HELLOs received before the replica was complete.
    pub(super) parked: Vec<(ConnId, Hello)>,
    /// Owner requests received before the replica was complete: (sender, origin, hops,
    /// request).
    pub(super) deferred: Vec<(u16, u16, u8, PeerMsg)>,
}

impl Shard {
    /// A restarted shard: empty, it asks every other shard for the replicated state and
    /// accepts sessions only once it has all of it ([`Shard::is_ready`]). Report the
    /// shards that are not running with [`Shard::handle_shard_down`] right away: the shard
    /// waits for every shard it believes live.
    pub fn rejoin(config: ShardConfig) -> Self {
        let mut s = Self::new(config);
        if s.count > 1 {
            s.sync = Some(Box::default());
            s.start_round();
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

    /// Starts (or restarts) this shard's attempt to join.
    fn start_round(&mut self) {
        let others: Vec<u16> = (0..self.count)
            .filter(|s| *s != self.index && self.live[usize::from(*s)])
            .collect();
        let Some(sync) = &mut self.sync else {
            return;
        };
        sync.round += 1;
        sync.blocked_on = None;
        sync.snapped.clear();
        sync.resync_wait.clear();
        sync.waiting = others;
        let round = sync.round;
        self.broadcast(&PeerMsg::Join { round });
        self.check_synced();
    }

    /// The joiner this shard serves (or itself while it syncs), if any.
    fn busy_with(&self) -> Option<u16> {
        match &self.sync {
            Some(s) if s.blocked_on.is_none() => Some(self.index),
            _ => self.serving,
        }
    }

    /// Sends `msg` to `to` even if this shard does not count `to` as live (joiners).
    fn send_raw(&mut self, to: u16, msg: &PeerMsg) {
        if to != self.index && to < self.count {
            self.out.push_back(Output::Peer {
                to,
                bytes: msg.to_bytes(),
            });
        }
    }

    /// A syncing shard heard from `from`, which runs: if its attempt does not count on
    /// `from` yet, it asks `from` too (a joiner's round covers every running shard).
    fn learn_running(&mut self, from: u16) {
        let Some(sync) = &mut self.sync else {
            return;
        };
        self.live[usize::from(from)] = true;
        if sync.blocked_on.is_some() || sync.waiting.contains(&from) || sync.snapped.contains(&from)
        {
            return;
        }
        sync.waiting.push(from);
        let round = sync.round;
        self.send_raw(from, &PeerMsg::Join { round });
    }

    pub(super) fn handle_join(&mut self, now: Time, from: u16, round: u32) {
        self.joiners_seen.retain(|s| *s != from);
        self.joiners_seen.push(from);
        self.join_queue.retain(|j| j.0 != from);
        // The joiner restarted before anyone reported its death: drop its old life. A
        // syncing shard has nothing of a shard whose snapshot it has not applied (it may
        // only have heard from that joiner), so there is no old life to drop.
        let had_life = match &self.sync {
            Some(sync) => sync.snapped.contains(&from),
            None => true,
        };
        if had_life && self.live[usize::from(from)] {
            self.handle_shard_down(now, from);
        }
        self.learn_running(from);
        if self.sync.as_ref().is_some_and(|s| s.blocked_on.is_some()) {
            // Not taking part right now: the joiner must not wait for this shard.
            self.send_raw(from, &PeerMsg::Withdraw);
            return;
        }
        match self.busy_with() {
            Some(b) if b != from => {
                self.join_queue.push((from, round));
                self.send_raw(from, &PeerMsg::Busy { joiner: b, round });
            }
            _ => self.serve(from, round),
        }
    }

    /// Sends `from` the snapshot of the keys this shard owns and counts it as live.
    fn serve(&mut self, from: u16, round: u32) {
        let snap = self.snapshot(from, round, None);
        self.live[usize::from(from)] = true;
        self.serving = Some(from);
        self.served_live = self.live.clone();
        self.out.push_back(Output::Peer {
            to: from,
            bytes: PeerMsg::Snapshot(Box::new(snap)).to_bytes(),
        });
        // The joiners still queued learn whom they wait for (the higher ones give up).
        for (j, r) in self.join_queue.clone() {
            self.send_raw(
                j,
                &PeerMsg::Busy {
                    joiner: from,
                    round: r,
                },
            );
        }
    }

    /// A joiner learnt of `dead`'s death: answer with a snapshot again once this shard
    /// knows of it too (if it counted `dead` as live when it served the joiner).
    pub(super) fn handle_resync(&mut self, from: u16, round: u32, dead: u16) {
        let known = self.served_live.get(usize::from(dead)).is_some_and(|l| *l);
        if self.serving == Some(from) && known {
            self.resync_deferred.push((from, round, dead));
            return;
        }
        let snap = self.snapshot(from, round, Some(dead));
        self.send_raw(from, &PeerMsg::Snapshot(Box::new(snap)));
    }

    /// The keys this shard owns in its current view without `joiner` (whose own keys
    /// come from the shards that held them in its absence).
    fn snapshot(&mut self, joiner: u16, round: u32, resync: Option<u16>) -> Snapshot {
        let was = std::mem::replace(&mut self.live[usize::from(joiner)], false);
        let snap = self.owned_snapshot(round, resync);
        self.live[usize::from(joiner)] = was;
        snap
    }

    fn owned_snapshot(&self, round: u32, resync: Option<u16>) -> Snapshot {
        let mut snap = Snapshot {
            round,
            resync,
            dead: (0..self.count)
                .filter(|s| !self.live[usize::from(*s)])
                .collect(),
            ..Snapshot::default()
        };
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
        snap
    }

    /// Serves the lowest queued joiner if this shard is free.
    pub(super) fn serve_next(&mut self) {
        if self.busy_with().is_some() || self.join_queue.is_empty() {
            return;
        }
        self.join_queue.sort_unstable();
        let (j, round) = self.join_queue.remove(0);
        self.serve(j, round);
    }

    pub(super) fn apply_snapshot(&mut self, from: u16, snap: Snapshot) {
        let Some(sync) = &mut self.sync else {
            return;
        };
        if snap.round != sync.round || sync.blocked_on.is_some() {
            // A snapshot of an abandoned attempt.
            return;
        }
        let initial = snap.resync.is_none();
        // The sender knew of these deaths when it took the snapshot: its later changes
        // name only later lives.
        let sender = from;
        self.stale_from
            .retain(|p| !(p.0 == sender && snap.dead.contains(&p.1)));
        let Some(sync) = &mut self.sync else {
            return;
        };
        if let Some(dead) = snap.resync {
            sync.resync_wait.retain(|w| *w != (from, dead));
        } else if sync.waiting.contains(&from) {
            sync.snapped.push(from);
        } else {
            return;
        }
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
        if initial {
            self.snapshot_arrived(from);
        } else {
            self.check_synced();
        }
    }

    /// `from` answered, gave up or died: when nothing is left to wait for, open for
    /// business.
    pub(super) fn snapshot_arrived(&mut self, from: u16) {
        let Some(sync) = &mut self.sync else {
            return;
        };
        sync.waiting.retain(|s| *s != from);
        self.check_synced();
    }

    fn check_synced(&mut self) {
        let Some(sync) = &self.sync else {
            return;
        };
        if !sync.waiting.is_empty() || !sync.resync_wait.is_empty() || sync.blocked_on.is_some() {
            return;
        }
        let Some(sync) = self.sync.take() else {
            return;
        };
        // Everyone that may wait for this shard's readiness hears of it: the live shards
        // and every joiner seen (a joiner that gave up waits for it).
        let mut to: Vec<u16> = (0..self.count)
            .filter(|s| *s != self.index && self.live[usize::from(*s)])
            .collect();
        for j in self.joiners_seen.clone() {
            if !to.contains(&j) {
                to.push(j);
            }
        }
        let ready = PeerMsg::Ready.to_bytes();
        for s in to {
            self.out.push_back(Output::Peer {
                to: s,
                bytes: ready.clone(),
            });
        }
        for (from, origin, hops, msg) in sync.deferred {
            self.request(from, origin, hops, msg);
        }
        for (conn, hello) in sync.parked {
            if self.sessions.contains_key(&conn) {
                self.hello(conn, hello);
            }
        }
        self.serve_next();
    }

    pub(super) fn handle_busy(&mut self, joiner: u16, round: u32) {
        let Some(sync) = &self.sync else {
            return;
        };
        if round != sync.round
            || sync.blocked_on.is_some()
            || joiner >= self.index
            || sync.ready_seen.contains(&joiner)
        {
            // A stale answer, or a higher joiner (it gives up), or one that is ready (the
            // server serves this shard next).
            return;
        }
        self.give_up(joiner);
    }

    /// Gives up this attempt in favour of the lower joiner `winner`.
    fn give_up(&mut self, winner: u16) {
        self.broadcast(&PeerMsg::Withdraw);
        // Joiners queued here wait for this shard too, live or not.
        for (j, _) in self.join_queue.clone() {
            if !self.live[usize::from(j)] {
                self.send_raw(j, &PeerMsg::Withdraw);
            }
        }
        let Some(sync) = &mut self.sync else {
            return;
        };
        sync.blocked_on = Some(winner);
        sync.waiting.clear();
        sync.snapped.clear();
        sync.resync_wait.clear();
        let deferred = std::mem::take(&mut sync.deferred);
        // Joiners queued here no longer wait for this shard (they got the Withdraw).
        self.join_queue.clear();
        self.realms = Self::fresh_realms(&self.config);
        for (from, origin, hops, msg) in deferred {
            self.bounce(from, origin, hops, msg);
        }
    }

    /// A request this shard will not decide: the requester re-sends subscribe and
    /// register requests itself (it counts this shard as gone); a shard that handed a
    /// request on handles it again; unsubscribe and unregister requests go back.
    fn bounce(&mut self, from: u16, origin: u16, hops: u8, msg: PeerMsg) {
        let own = matches!(
            msg,
            PeerMsg::UnsubscribeRequest { .. } | PeerMsg::UnregisterRequest { .. }
        );
        if from == origin && own {
            self.send_raw(
                from,
                &PeerMsg::Forward {
                    origin,
                    hops,
                    msg: Box::new(msg),
                },
            );
        }
    }

    pub(super) fn handle_cancel(&mut self, now: Time, from: u16) {
        // It may be waiting for this shard's readiness.
        if !self.joiners_seen.contains(&from) {
            self.joiners_seen.push(from);
        }
        self.join_queue.retain(|j| j.0 != from);
        if self.live[usize::from(from)] {
            self.shard_down(now, from, false);
        }
        self.snapshot_arrived(from);
        self.serve_next();
    }

    pub(super) fn handle_ready(&mut self, from: u16) {
        self.learn_running(from);
        if self.serving == Some(from) {
            self.serving = None;
            self.forwarded.retain(|f| f.0 != from);
        }
        if let Some(sync) = &mut self.sync {
            if !sync.ready_seen.contains(&from) {
                sync.ready_seen.push(from);
            }
            if sync.blocked_on == Some(from) {
                self.start_round();
            }
        }
        self.serve_next();
    }

    /// Membership bookkeeping when `shard` is reported dead (called whether or not this
    /// shard counted it as live; `was_live` says which; `real` is false for a joiner that
    /// gave up, which owned nothing).
    pub(super) fn membership_down(&mut self, shard: u16, was_live: bool, real: bool) {
        if let Some(l) = self.served_live.get_mut(usize::from(shard)) {
            *l = false;
        }
        for (j, round, dead) in std::mem::take(&mut self.resync_deferred) {
            if dead == shard {
                let snap = self.snapshot(j, round, Some(dead));
                self.send_raw(j, &PeerMsg::Snapshot(Box::new(snap)));
            } else if j != shard {
                self.resync_deferred.push((j, round, dead));
            }
        }
        // A joiner's servers may have left out the keys the dead shard owned.
        if let Some(sync) = &mut self.sync {
            sync.resync_wait.retain(|w| w.0 != shard);
            if was_live && real && sync.blocked_on.is_none() {
                let round = sync.round;
                let servers: Vec<u16> = (0..self.count)
                    .filter(|s| *s != self.index && *s != shard && self.live[usize::from(*s)])
                    .collect();
                for s in servers {
                    if let Some(sync) = &mut self.sync {
                        sync.resync_wait.push((s, shard));
                    }
                    self.send_raw(s, &PeerMsg::Resync { round, dead: shard });
                }
            }
        }
        self.join_queue.retain(|j| j.0 != shard);
        if self.serving == Some(shard) {
            self.serving = None;
        }
        // Requests handed on to it are handled again.
        let (again, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.forwarded)
            .into_iter()
            .partition(|f| f.0 == shard);
        self.forwarded = keep;
        for (_, origin, hops, msg) in again {
            self.request(origin, origin, hops, msg);
        }
        if let Some(sync) = &mut self.sync {
            sync.ready_seen.retain(|s| *s != shard);
            if sync.blocked_on == Some(shard) {
                self.start_round();
            }
        }
    }

    /// Whether a message from `from` is a replica change sent before that shard's
    /// snapshot of this shard's current attempt (an abandoned attempt's): dropped.
    pub(super) fn stale(&self, from: u16, msg: &PeerMsg) -> bool {
        let Some(sync) = &self.sync else {
            return false;
        };
        if from == self.index {
            return false;
        }
        let change = matches!(
            msg,
            PeerMsg::InterestAdd { .. }
                | PeerMsg::InterestRemove { .. }
                | PeerMsg::InterestNeeds { .. }
                | PeerMsg::RegisterAdd { .. }
                | PeerMsg::RegisterRemove { .. }
                | PeerMsg::Publish(_)
        );
        change && (sync.blocked_on.is_some() || !sync.snapped.contains(&from))
    }

    /// Whether an owner request must wait for the replica (or go back, when this shard
    /// gave up its attempt); gives it back when the shard may decide it.
    pub(super) fn defer(
        &mut self,
        from: u16,
        origin: u16,
        hops: u8,
        msg: PeerMsg,
    ) -> Option<PeerMsg> {
        let Some(sync) = &mut self.sync else {
            return Some(msg);
        };
        if sync.blocked_on.is_some() {
            self.bounce(from, origin, hops, msg);
        } else {
            sync.deferred.push((from, origin, hops, msg));
        }
        None
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
