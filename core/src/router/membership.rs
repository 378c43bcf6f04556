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
//! round (replica changes), and dropped. A ready shard answers a `Withdraw` with `Ready`
//! (the joiner may have given up in its favour on another server's stale word).
//!
//! # Lives
//!
//! A shard dies and restarts, maybe several times, while messages about it are still
//! travelling between the others. Each life has a number: 0 for the router's first start,
//! 64 random bits (from the shard's seed) for each restart, announced in `Join`. Changes
//! naming a shard carry the life they are about (`InterestAdd`, `RegisterAdd`, the origin of
//! a `Forward`), snapshots carry the sender's view of every life, and a receiver applies
//! them only for the life it knows: a change about a previous life is dropped wherever and
//! whenever it arrives, also at a joiner that never saw that death. A joiner learns lives
//! from `Join`s (direct) and adopts the others from snapshots; learning a new life of a
//! shard whose old entries it holds drops them. Rounds start at a number drawn from the
//! life and snapshots name the joiner's life, so answers meant for a previous life of the
//! joiner (sent before the server learnt of the restart) are ignored.
//!
//! # Snapshots that left keys out
//!
//! A server snapshots the keys it owns in its view without the joiner; keys it thought
//! another shard owned are left for that shard's snapshot. When that shard is in fact dead,
//! withdrawn or in another life (in the joiner's view), those keys may come from nobody:
//! the joiner asks that server for a [`PeerMsg::Resync`] about the shard, which the server
//! answers with a full snapshot once it no longer counts the shard live, and the joiner opens
//! only when every such resync came. The check runs whenever the joiner learns something
//! (a snapshot, a death, a `Join`, a `Ready`); a resync whose reason went away is no
//! longer awaited.
//!
//! # Requests at a shard that is not the key's owner
//!
//! Ownership moves when a joiner is served: a shard that decided a key in the joiner's
//! absence (the interim owner) stops deciding it once it has sent its snapshot, but other
//! shards may not have processed the `Join` yet and still send it requests for the key.
//! Such requests are handed on to the owner of the receiving shard's view
//! ([`PeerMsg::Forward`], bounded hops), so one key never has two deciders. The shard that
//! handed a request on keeps it until the owner's decision passes by and handles it again
//! if the shard it went to gives up or dies first (the requester may have learnt that death
//! before it sent the request, and then never sends it again). Requesters stop waiting for
//! acknowledgements from a joiner that is being served (it has no sessions, and gets every
//! change from snapshots or later broadcasts); when an owner dies they keep the
//! acknowledgements already received (the dead owner's broadcast reached every shard before
//! its death did), and a re-sent register rejected as `procedure_already_exists` by the new
//! owner while the session holds the key nowhere else waits for the first decision instead.
//! Unsubscribe and unregister requests are kept by their requester until the owner's
//! `InterestRemove`/`RegisterRemove` naming it comes back, and re-sent to the new owner if
//! the one they went to dies first.
//!
//! An owner's change names the shards (and lives) it went to; the requester also waits for
//! those it counts live in that life, so a joiner the owner served before deciding
//! acknowledges it before the session gets SUBSCRIBED/REGISTERED (else the joiner could
//! open, its last snapshot coming from another shard, while the change still travels to
//! it). A joiner acknowledges a change it drops as stale too: it cannot open before the
//! sender's snapshot of its current attempt, which holds the change.
//!
//! What it does not do: a snapshot-based replica makes no attempt to be incremental. The
//! membership lists are bounded by the shard count or by the request limits, not by a
//! limit of their own.

use crate::message::Hello;

use super::broker::Interest;
use super::dealer::Registration;
use super::peer::{PeerMsg, Snapshot};
use super::{ConnId, Output, RouterConfig, Shard, ShardConfig, Time};

/// A rejoining shard's progress.
#[derive(Debug, Default)]
pub(super) struct Sync {
    /// The current attempt (the first drawn from the life, then counting up).
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
    /// Each snapped server's view when it took its latest snapshot: (server, shards it
    /// counted dead, lives it knew). Where it counted live a shard this one knows dead,
    /// gone or in another life, it may have left out keys it thought that shard owned.
    pub(super) views: Vec<(u16, Vec<u16>, Vec<u64>)>,
    /// HELLOs received before the replica was complete.
    pub(super) parked: Vec<(ConnId, Hello)>,
    /// Owner requests received before the replica was complete: (sender, origin, hops,
    /// request).
    pub(super) deferred: Vec<(u16, u16, u64, u8, PeerMsg)>,
}

impl Shard {
    /// A restarted shard: empty, it asks every other shard for the replicated state and
    /// accepts sessions only once it has all of it ([`Shard::is_ready`]). Report the
    /// shards that are not running with [`Shard::handle_shard_down`] right away: the shard
    /// waits for every shard it believes live.
    pub fn rejoin(config: ShardConfig) -> Self {
        // A life number no earlier life of this shard used (with overwhelming
        // probability: 64 random bits, never 0, which is the first start's).
        let life = super::rng::SplitMix64::new(config.seed ^ 0x6C69_6665).next_u64() | 1;
        let mut s = Self::new(config);
        let me = usize::from(s.index);
        s.lives[me] = life;
        // Every other shard's life is learnt from its `Join` or from a snapshot.
        s.lives_known = (0..s.lives.len()).map(|i| i == me).collect();
        if s.count > 1 {
            // Rounds start at a number drawn from the life: answers meant for a previous
            // life's attempt (`Busy`, sent before the sender learnt of the restart) do not
            // match this life's rounds. Snapshots are also checked against the life.
            let first = (life >> 33) as u32;
            s.sync = Some(Box::new(Sync {
                round: first,
                ..Sync::default()
            }));
            s.start_round();
        }
        s
    }

    /// Drops the replica entries naming `shard` (a syncing shard learnt that they are
    /// about a previous life).
    fn forget_shard(&mut self, shard: u16) {
        for realm in 0..self.realms.len() {
            let b = &self.realms[realm].broker;
            let keys: Vec<(String, crate::uri::MatchPolicy)> = b
                .interest
                .iter()
                .filter(|m| m.value.shards.contains(&shard))
                .map(|m| (m.pattern.to_owned(), m.policy))
                .collect();
            // Realm count is bounded by the config (far below 2^16).
            let ri = realm as u16;
            for (uri, policy) in keys {
                self.apply_interest_remove(ri, &uri, policy, shard);
            }
            let gone: Vec<(crate::id::Id, crate::id::Id)> = self.realms[realm]
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
                self.apply_register_remove(ri, id, shard, session);
            }
        }
    }

    /// Whether the shard has its full replica and accepts sessions.
    pub fn is_ready(&self) -> bool {
        self.sync.is_none()
    }

    /// The shards a rejoining shard still waits for an answer from (a snapshot or a
    /// resync answer), in index order; empty once it is ready. A server that bounds the
    /// wait names these as the silent ones.
    pub fn awaited(&self) -> Vec<u16> {
        let Some(sync) = &self.sync else {
            return Vec::new();
        };
        let mut shards: Vec<u16> = sync.waiting.clone();
        shards.extend(sync.resync_wait.iter().map(|(server, _)| *server));
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// The lower joiner a rejoining shard gave its attempt up for and waits to see ready
    /// (or dead), if any: that joiner may itself be waiting for a silent shard.
    pub fn blocked_on(&self) -> Option<u16> {
        self.sync.as_ref().and_then(|s| s.blocked_on)
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
        sync.round = sync.round.wrapping_add(1);
        sync.blocked_on = None;
        sync.snapped.clear();
        sync.resync_wait.clear();
        sync.views.clear();
        sync.waiting = others;
        let round = sync.round;
        let life = self.life_of(self.index);
        self.broadcast(&PeerMsg::Join { round, life });
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
        let life = self.life_of(self.index);
        self.send_raw(from, &PeerMsg::Join { round, life });
    }

    pub(super) fn handle_join(&mut self, now: Time, from: u16, round: u32, life: u64) {
        let f = usize::from(from);
        let other_life = self.lives[f] != life;
        self.lives[f] = life;
        self.lives_known[f] = true;
        if other_life
            && self
                .sync
                .as_ref()
                .is_some_and(|s| !s.snapped.contains(&from))
        {
            // A syncing shard may hold entries of the previous life from other shards'
            // snapshots: they go (it has no sessions, so nothing else is affected).
            self.forget_shard(from);
        }
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
        self.check_views();
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
            lives: self.lives.clone(),
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
        let mine = snap.lives.get(usize::from(self.index)) == Some(&self.life_of(self.index));
        let Some(sync) = &mut self.sync else {
            return;
        };
        if snap.round != sync.round || sync.blocked_on.is_some() || !mine {
            // A snapshot of an abandoned attempt, or one meant for a previous life.
            return;
        }
        let initial = snap.resync.is_none();
        if let Some(dead) = snap.resync {
            if !sync.snapped.contains(&from) {
                // A resync answer racing a withdrawn server's state: its initial
                // snapshot is what counts.
                return;
            }
            sync.resync_wait.retain(|w| *w != (from, dead));
        } else if sync.waiting.contains(&from) {
            sync.snapped.push(from);
        } else {
            return;
        }
        sync.views.retain(|v| v.0 != from);
        sync.views
            .push((from, snap.dead.clone(), snap.lives.clone()));
        // Entries naming a shard are about the life the sender knew: one this shard
        // knows dead, or knows another life of, is left out. A life learnt from nobody
        // else is adopted.
        for (i, l) in snap.lives.iter().enumerate() {
            if i < self.lives.len() && !self.lives_known[i] {
                self.lives[i] = *l;
            }
        }
        let keep = |s: u16| {
            let i = usize::from(s);
            self.live.get(i).is_some_and(|l| *l) && snap.lives.get(i) == self.lives.get(i)
        };
        let keep: Vec<bool> = (0..self.count).map(keep).collect();
        let kept = |s: &u16| keep.get(usize::from(*s)).is_some_and(|k| *k);
        for (realm, uri, policy, id, mut shards) in snap.interest {
            let before = shards.len();
            shards.retain(kept);
            if shards.is_empty() && before > 0 {
                continue;
            }
            let Some(r) = self.realms.get_mut(usize::from(realm)) else {
                continue;
            };
            let _ = r
                .broker
                .interest
                .insert(&uri, policy, Interest::new(id, shards));
            r.broker.by_id.insert(id, (uri, policy));
            // `created` is when this replica first held the subscription, as for live
            // changes (a snapshot's sender does not send its own timestamps).
            self.sub_created.entry(id).or_insert(self.now);
        }
        let now = self.now;
        for (realm, uri, policy, invoke, id, mut callees) in snap.registrations {
            callees.retain(|c| kept(&c.0));
            // No callee left: callees of dead lives, or an owner's entry whose callees
            // all withdrew (waiting for its own removal) — nothing to route to.
            if callees.is_empty() {
                continue;
            }
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
                    created: now,
                    withdrawn: Vec::new(),
                },
            );
        }
        for p in snap.retained {
            if let Some(r) = self.realms.get_mut(usize::from(p.realm)) {
                r.broker.retained.insert(p.topic.clone(), Box::new(p));
            }
        }
        if initial {
            if let Some(sync) = &mut self.sync {
                sync.waiting.retain(|s| *s != from);
            }
        }
        // Resyncs first: the shard must not open before asking for them.
        self.check_views();
    }

    /// Asks every server whose snapshot counted live a shard that this shard knows dead,
    /// withdrawn or in another life for a [`PeerMsg::Resync`] about it (its snapshot may
    /// lack the keys it thought that shard owned), and stops waiting for resyncs whose
    /// reason went away (the shard turned out live in the life the server knew).
    fn check_views(&mut self) {
        let Some(sync) = &self.sync else {
            return;
        };
        if sync.blocked_on.is_some() {
            return;
        }
        let round = sync.round;
        let mut want = Vec::new();
        for (server, dead, lives) in &sync.views {
            for s in 0..self.count {
                let i = usize::from(s);
                if s == self.index || s == *server || dead.contains(&s) {
                    continue;
                }
                let other_life = self.lives_known[i] && lives.get(i) != self.lives.get(i);
                if !self.live[i] || other_life {
                    want.push((*server, s));
                }
            }
        }
        let Some(sync) = &mut self.sync else {
            return;
        };
        sync.resync_wait.retain(|w| want.contains(w));
        let new: Vec<(u16, u16)> = want
            .into_iter()
            .filter(|w| !sync.resync_wait.contains(w))
            .collect();
        sync.resync_wait.extend(new.iter().copied());
        for (server, dead) in new {
            self.send_raw(server, &PeerMsg::Resync { round, dead });
        }
        self.check_synced();
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
        for (from, origin, life, hops, msg) in sync.deferred {
            self.request(from, origin, life, hops, msg);
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
        for (from, origin, life, hops, msg) in deferred {
            self.bounce(from, origin, life, hops, msg);
        }
    }

    /// A request this shard will not decide: the requester re-sends subscribe and
    /// register requests itself (it counts this shard as gone); a shard that handed a
    /// request on handles it again; unsubscribe and unregister requests go back.
    fn bounce(&mut self, from: u16, origin: u16, life: u64, hops: u8, msg: PeerMsg) {
        let own = matches!(
            msg,
            PeerMsg::UnsubscribeRequest { .. } | PeerMsg::UnregisterRequest { .. }
        );
        if from == origin && own {
            self.send_raw(
                from,
                &PeerMsg::Forward {
                    origin,
                    life,
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
        if self.sync.is_none() {
            // It may have given up in favour of this shard on another server's word
            // that this shard was still joining; this shard's own `Ready` may have
            // gone to its previous life.
            self.send_raw(from, &PeerMsg::Ready);
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
        self.check_views();
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
            sync.views.retain(|v| v.0 != shard);
        }
        let _ = (was_live, real);
        self.check_views();
        self.join_queue.retain(|j| j.0 != shard);
        if self.serving == Some(shard) {
            self.serving = None;
        }
        // Requests handed on to it are handled again.
        let (again, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.forwarded)
            .into_iter()
            .partition(|f| f.0 == shard);
        self.forwarded = keep;
        for (_, origin, life, hops, msg) in again {
            self.request(origin, origin, life, hops, msg);
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
        life: u64,
        hops: u8,
        msg: PeerMsg,
    ) -> Option<PeerMsg> {
        let Some(sync) = &mut self.sync else {
            return Some(msg);
        };
        if sync.blocked_on.is_some() {
            self.bounce(from, origin, life, hops, msg);
        } else {
            sync.deferred.push((from, origin, life, hops, msg));
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
