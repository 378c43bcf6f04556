//! The invariants checked after a run, from what the clients recorded and what the oracle
//! fixed when each message was sent.
//!
//! Checked: exactly-once delivery per matching subscription (and nothing to a
//! subscription that does not match or was excluded), per-publisher order, the concrete
//! topic in pattern events, one subscription/registration id per key, causality (a
//! subscription or registration acknowledged before a publication or call was sent is
//! part of the oracle's `must` set), registration precedence and invocation policies,
//! one final answer per call with an allowed error, interrupts only where the spec allows
//! them, and the meta API answers. It does not check what the oracle cannot know (which
//! of several racing registrations the owner ordered first, timings).

use std::collections::BTreeMap;

use crate::client::{Client, Final, Policy, ReqState};
use crate::world::{Expect, World};

/// Every broken invariant of the run, as sentences.
pub(crate) fn check(w: &World) -> Vec<String> {
    let mut out = w.problems.clone();
    for c in &w.clients {
        for p in &c.problems {
            // A router GOODBYE is a kill; the scenarios here never ask for one.
            out.push(format!("client {}: {p}", c.index));
        }
        if c.phase != crate::client::Phase::Gone && !c.script.is_empty() {
            out.push(format!(
                "client {} stuck in {:?} before {:?}",
                c.index,
                c.phase,
                c.script.front()
            ));
        }
    }
    events(w, &mut out);
    ids_per_key(w, &mut out);
    calls(w, &mut out);
    metas(w, &mut out);
    out
}

fn events(w: &World, out: &mut Vec<String>) {
    // (client, tag, publication) → deliveries.
    let mut got: BTreeMap<(usize, usize, usize), u32> = BTreeMap::new();
    for c in &w.clients {
        // Per subscription tag, the last sequence number seen from each publisher.
        let mut last: BTreeMap<(usize, u64), u64> = BTreeMap::new();
        for e in &c.events {
            let Some(p) = w.pubs.get(e.seq as usize) else {
                out.push(format!(
                    "client {} got an event for an unknown publication",
                    c.index
                ));
                continue;
            };
            if p.publisher as u64 != e.publisher {
                out.push(format!("client {} got a corrupted event payload", c.index));
                continue;
            }
            // The subscription tags that carry this id and may get this publication.
            let tag = c.subs.iter().enumerate().find(|(t, s)| {
                s.id == Some(e.subscription)
                    && (p.must.contains(&(c.index, *t)) || p.may.contains(&(c.index, *t)))
            });
            let Some((tag, _)) = tag else {
                // In flight and never acknowledged (the client left first): any pending
                // matching subscription without an id may explain it.
                let unknown = c
                    .subs
                    .iter()
                    .enumerate()
                    .any(|(t, s)| s.id.is_none() && p.may.contains(&(c.index, t)));
                // Nothing else explains it: in particular a subscription whose SUBSCRIBE was
                // sent after the publication was accepted must not get it (causality).
                if !unknown {
                    // Say which rule it broke, so that a failure reads without a replay.
                    let why = if p.excluded.contains(&c.index) {
                        "excluded"
                    } else if c.subs.iter().any(|s| {
                        s.id == Some(e.subscription)
                            && s.sent_at > p.at
                            && s.policy.matches(&s.topic, &p.topic)
                    }) {
                        "SUBSCRIBE sent after the publication (causality)"
                    } else {
                        "not matching"
                    };
                    out.push(format!(
                            "client {} got publication {} ({} from client {}) on subscription {} it should not have: {why}",
                            c.index, e.seq, p.topic, p.publisher, e.subscription
                        ));
                }
                continue;
            };
            *got.entry((c.index, tag, e.seq as usize)).or_default() += 1;
            let s = &c.subs[tag];
            let topic_ok = match s.policy {
                Policy::Exact => e.topic.as_deref().is_none_or(|t| t == p.topic),
                _ => e.topic.as_deref() == Some(p.topic.as_str()),
            };
            if !topic_ok {
                out.push(format!(
                    "client {} got publication {} on {} ({}) with topic detail {:?}",
                    c.index,
                    e.seq,
                    s.topic,
                    s.policy.as_str(),
                    e.topic
                ));
            }
            if let Some(prev) = last.insert((tag, e.publisher), e.seq) {
                if prev >= e.seq {
                    out.push(format!(
                        "client {} subscription {tag}: publication {} from client {} after {prev} (order)",
                        c.index, e.seq, e.publisher
                    ));
                }
            }
        }
    }
    for (k, n) in &got {
        if *n > 1 {
            out.push(format!(
                "client {} subscription {} got publication {} {n} times",
                k.0, k.1, k.2
            ));
        }
    }
    for (i, p) in w.pubs.iter().enumerate() {
        for &(c, tag) in &p.must {
            let client = &w.clients[c];
            // Once the client unsubscribes or leaves, events still travelling may be
            // dropped: only a subscription kept to the end owes every publication.
            if client.left_early || client.subs[tag].active.1 != u64::MAX {
                continue;
            }
            if !got.contains_key(&(c, tag, i)) {
                let s = &client.subs[tag];
                out.push(format!(
                    "client {c} subscription {tag} ({} {}, id {:?}) missed publication {i} to {} from client {}",
                    s.topic,
                    s.policy.as_str(),
                    s.id,
                    p.topic,
                    p.publisher
                ));
            }
        }
    }
}

/// One id per (topic, match) while two holders overlap, and distinct keys never share one.
fn ids_per_key(w: &World, out: &mut Vec<String>) {
    let mut subs = Vec::new();
    let mut regs = Vec::new();
    for c in &w.clients {
        for s in &c.subs {
            if let Some(id) = s.id {
                subs.push((s.topic.as_str(), s.policy, id, s.active));
            }
        }
        for r in &c.regs {
            if let Some(id) = r.id {
                regs.push((r.uri.as_str(), r.policy, id, r.active));
            }
        }
    }
    for (what, list) in [("subscription", &subs), ("registration", &regs)] {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let overlap = a.3 .0 <= b.3 .1 && b.3 .0 <= a.3 .1;
                if !overlap {
                    continue;
                }
                let same_key = a.0 == b.0 && a.1 == b.1;
                if same_key && a.2 != b.2 {
                    out.push(format!(
                        "{what} {} {} has two ids at once: {} and {}",
                        a.0,
                        a.1.as_str(),
                        a.2,
                        b.2
                    ));
                }
                if !same_key && a.2 == b.2 {
                    out.push(format!(
                        "{what} id {} names both {} {} and {} {}",
                        a.2,
                        a.0,
                        a.1.as_str(),
                        b.0,
                        b.1.as_str()
                    ));
                }
            }
        }
    }
}

/// Whether every registration of `tags` either was not acknowledged when the call was
/// sent (it may not have been seen) or stopped counting afterwards (unregistered or its
/// session went), so a router routing the call again may find none of them.
fn all_went(w: &World, tags: &[(usize, usize)], sent_at: u64) -> bool {
    tags.iter().all(|&(o, t)| {
        let r = &w.clients[o].regs[t];
        r.active.0 == u64::MAX || r.active.0 >= sent_at || r.active.1 != u64::MAX
    })
}

fn calls(w: &World, out: &mut Vec<String>) {
    // Invocations per call, and routing.
    let mut invoked: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
    for x in &w.clients {
        for v in &x.invocations {
            invoked.entry((v.caller, v.call)).or_default().push(x.index);
            let Some(call) = w
                .clients
                .get(v.caller as usize)
                .and_then(|c| c.calls.get(v.call as usize))
            else {
                out.push(format!("client {} invoked for an unknown call", x.index));
                continue;
            };
            let mine =
                |&&(c, t): &&(usize, usize)| c == x.index && x.regs[t].id == Some(v.registration);
            // Routed again (every callee in reach when the CALL was sent went): to a
            // lower key, or to a matching registration made since.
            let again = all_went(w, &call.expect.callees, call.sent_at);
            let since: Vec<(usize, usize)> = (0..x.regs.len())
                .filter(|t| x.regs[*t].policy.matches(&x.regs[*t].uri, &call.uri))
                .map(|t| (x.index, t))
                .collect();
            let tag = call.expect.callees.iter().find(mine).or_else(|| {
                call.expect
                    .fallback
                    .iter()
                    .chain(since.iter())
                    .find(mine)
                    .filter(|_| again)
            });
            match tag {
                Some(&(_, t)) => {
                    let r = &x.regs[t];
                    let want = (r.policy != Policy::Exact).then(|| call.uri.clone());
                    if v.procedure != want {
                        out.push(format!(
                            "client {} invocation for {} under {} {} has procedure {:?}",
                            x.index,
                            call.uri,
                            r.uri,
                            r.policy.as_str(),
                            v.procedure
                        ));
                    }
                }
                None => out.push(format!(
                    "client {} invoked under registration {} for call {} of client {} to {}; allowed were {:?}",
                    x.index,
                    v.registration,
                    v.call,
                    v.caller,
                    call.uri,
                    describe(w, &call.expect.callees)
                )),
            }
            if !v.interrupts.is_empty() {
                let caller = &w.clients[v.caller as usize];
                let canceled = call.cancel.is_some_and(|(m, _)| m != "skip")
                    || call
                        .finals
                        .iter()
                        .any(|f| *f == Final::Error("wamp.error.timeout".into()))
                    || caller.left_early
                    || caller.gone_at.is_some();
                // A kill may be followed by the timeout's killnowait before the callee
                // answers the first INTERRUPT; otherwise one INTERRUPT per invocation.
                let too_many = v.interrupts.len() > usize::from(call.timeout_ms > 0) + 1;
                if !x.call_canceling || !canceled || too_many {
                    out.push(format!(
                        "client {} got INTERRUPT {:?} for call {} of client {} (cancel {:?}, canceling announced {})",
                        x.index, v.interrupts, v.call, v.caller, call.cancel, x.call_canceling
                    ));
                }
            }
        }
    }
    for (k, xs) in &invoked {
        if xs.len() > 1 {
            out.push(format!(
                "call {} of client {} invoked {} times",
                k.1,
                k.0,
                xs.len()
            ));
        }
    }
    for c in &w.clients {
        for (i, call) in c.calls.iter().enumerate() {
            let who = format!("client {} call {i} to {}", c.index, call.uri);
            if call.finals.len() > 1 {
                out.push(format!(
                    "{who} got {} final answers: {:?}",
                    call.finals.len(),
                    call.finals
                ));
            }
            if call.finals.is_empty() && !c.left_early && c.gone_at.is_none() {
                out.push(format!("{who} never got an answer"));
            }
            let callees = invoked.get(&(c.index as u64, i as u64));
            let callee = callees.and_then(|v| v.first()).copied();
            // A callee that left (or whose REGISTER raced its leaving) fails calls with
            // canceled, and so does a dead shard.
            let callee_lost = callee.is_some_and(|x| w.clients[x].left_early)
                || w.deaths > 0
                || w.clients.iter().any(|x| {
                    x.left_early
                        && x.regs.iter().any(|r| {
                            !matches!(r.state, ReqState::Failed(_))
                                && r.policy.matches(&r.uri, &call.uri)
                        })
                });
            match call.finals.first() {
                Some(Final::Result(x)) if callee != Some(*x as usize) => {
                    out.push(format!(
                        "{who} got a RESULT from client {x}, invoked at {callee:?}"
                    ));
                }
                Some(Final::Error(e)) => {
                    let allowed = match e.as_str() {
                        // A callee that unregisters while the invocation travels toward
                        // its shard hands the call back and it is routed again: only
                        // when every registration in reach went is there no procedure.
                        "wamp.error.no_such_procedure" => {
                            call.expect.no_such_procedure
                                || (all_went(w, &call.expect.callees, call.sent_at)
                                    && all_went(w, &call.expect.fallback, call.sent_at))
                        }
                        "wamp.error.timeout" => call.timeout_ms > 0,
                        "wamp.error.canceled" => {
                            call.cancel.is_some() || callee_lost || c.left_early
                        }
                        _ => false,
                    };
                    if !allowed {
                        out.push(format!(
                            "{who} got {e} (timeout {}, cancel {:?}, invoked at {callee:?}, allowed callees {:?})",
                            call.timeout_ms,
                            call.cancel,
                            describe(w, &call.expect.callees)
                        ));
                    }
                    if e != "wamp.error.no_such_procedure"
                        && e != "wamp.error.canceled"
                        && callee.is_none()
                        && !callee_lost
                    {
                        out.push(format!("{who} got {e} but no callee was invoked"));
                    }
                }
                Some(Final::Result(_)) | None => {}
            }
            if callee.is_some() && call.expect.callees.is_empty() {
                out.push(format!("{who} was invoked with no registration in reach"));
            }
            if let (Some(Final::Error(e)), Some(_)) = (call.finals.first(), callee) {
                if e == "wamp.error.no_such_procedure" {
                    out.push(format!("{who} was invoked and answered no_such_procedure"));
                }
            }
        }
    }
    policies(w, out);
}

/// Shared registrations: one invocation policy per key, `single` alone, and `first`,
/// `last` and `roundrobin` picking callees in registration order where that order is known.
fn policies(w: &World, out: &mut Vec<String>) {
    // key → [(client, tag)] that succeeded.
    let mut keys: BTreeMap<(String, Policy), Vec<(usize, usize)>> = BTreeMap::new();
    for c in &w.clients {
        for (t, r) in c.regs.iter().enumerate() {
            match &r.state {
                ReqState::Failed(e) => {
                    if e != "wamp.error.procedure_already_exists"
                        && e != "wamp.error.procedure_exists_with_different_invocation_policy"
                    {
                        out.push(format!(
                            "client {} REGISTER {} failed with {e}",
                            c.index, r.uri
                        ));
                    }
                }
                ReqState::Pending => {}
                _ => keys
                    .entry((r.uri.clone(), r.policy))
                    .or_default()
                    .push((c.index, t)),
            }
        }
    }
    for ((uri, policy), tags) in &keys {
        let regs: Vec<_> = tags.iter().map(|(c, t)| &w.clients[*c].regs[*t]).collect();
        for (i, a) in regs.iter().enumerate() {
            for b in &regs[i + 1..] {
                let overlap = a.active.0 <= b.active.1 && b.active.0 <= a.active.1;
                if overlap && (a.invoke != b.invoke || a.invoke == "single") {
                    out.push(format!(
                        "{uri} {} registered {} and {} at once",
                        policy.as_str(),
                        a.invoke,
                        b.invoke
                    ));
                }
            }
        }
    }
    // Calls whose registration set was settled: the chosen callee by policy.
    // (caller shard, key, callee set) → [(sent_at, callee)].
    type Group = BTreeMap<(u16, String, Vec<(usize, usize)>), Vec<(u64, usize)>>;
    let mut rr: Group = BTreeMap::new();
    for x in &w.clients {
        for v in &x.invocations {
            let caller = &w.clients[v.caller as usize];
            let Some(call) = caller.calls.get(v.call as usize) else {
                continue;
            };
            if !call.expect.stable {
                continue;
            }
            let Some(&(c0, t0)) = call.expect.callees.first() else {
                continue;
            };
            let r0 = &w.clients[c0].regs[t0];
            let set: Vec<(usize, usize)> = call
                .expect
                .callees
                .iter()
                .copied()
                .filter(|(c, t)| {
                    let r = &w.clients[*c].regs[*t];
                    r.uri == r0.uri && r.policy == r0.policy
                })
                .collect();
            // Registration order is known when each REGISTER left after the previous
            // REGISTERED arrived.
            let mut order = set.clone();
            order.sort_by_key(|(c, t)| w.clients[*c].regs[*t].active.0);
            let known = order.windows(2).all(|p| {
                w.clients[p[1].0].regs[p[1].1].sent_at > w.clients[p[0].0].regs[p[0].1].active.0
            });
            if !known {
                continue;
            }
            let pos = order.iter().position(|(c, _)| *c == x.index);
            let Some(pos) = pos else {
                continue;
            };
            match r0.invoke {
                "first" | "single" if pos != 0 => out.push(format!(
                    "call {} of client {} to {} went to callee #{pos} under {}",
                    v.call, v.caller, call.uri, r0.invoke
                )),
                "last" if pos != order.len() - 1 => out.push(format!(
                    "call {} of client {} to {} went to callee #{pos} of {} under last",
                    v.call,
                    v.caller,
                    call.uri,
                    order.len()
                )),
                "roundrobin" => rr
                    .entry((caller.shard, r0.uri.clone(), order.clone()))
                    .or_default()
                    .push((call.sent_at, pos)),
                _ => {}
            }
        }
    }
    for ((shard, uri, order), mut seq) in rr {
        seq.sort();
        let n = order.len();
        for p in seq.windows(2) {
            if p[1].1 != (p[0].1 + 1) % n {
                out.push(format!(
                    "roundrobin on {uri} from shard {shard}: callee #{} after #{} of {n}",
                    p[1].1, p[0].1
                ));
            }
        }
    }
}

fn describe(w: &World, tags: &[(usize, usize)]) -> Vec<String> {
    tags.iter()
        .map(|(c, t)| {
            let r = &w.clients[*c].regs[*t];
            format!(
                "client {c}: {} {} id {:?} {:?}",
                r.uri,
                r.policy.as_str(),
                r.id,
                r.state
            )
        })
        .collect()
}

fn metas(w: &World, out: &mut Vec<String>) {
    for m in &w.metas {
        let client: &Client = &w.clients[m.client];
        let who = format!("client {} meta {}", m.client, m.what);
        let Some(got) = &m.got else {
            if !client.left_early && client.gone_at.is_none() {
                out.push(format!("{who}: no answer"));
            }
            continue;
        };
        let got = match got {
            Ok(v) => v,
            Err(e) => {
                out.push(format!("{who}: ERROR {e}"));
                continue;
            }
        };
        let first = got.get(0).cloned().unwrap_or(serde_json::Value::Null);
        let ok = match &m.expect {
            Expect::Any => true,
            Expect::Count(lo, hi) => first.as_u64().is_some_and(|n| *lo <= n && n <= *hi),
            Expect::Ids { must, may } => ids_ok(&first, must, may),
            Expect::ByPolicy(parts) => {
                ["exact", "prefix", "wildcard"]
                    .iter()
                    .zip(parts)
                    .all(|(k, (must, may))| {
                        ids_ok(first.get(k).unwrap_or(&serde_json::Value::Null), must, may)
                    })
            }
            Expect::One(id) => match id {
                Some(id) => first.as_u64() == Some(*id),
                None => first.is_null(),
            },
            Expect::Session(id) => first.get("session").and_then(|v| v.as_u64()) == Some(*id),
        };
        if !ok {
            out.push(format!("{who}: expected {:?}, got {got}", m.expect));
        }
    }
}

fn ids_ok(v: &serde_json::Value, must: &[u64], may: &[u64]) -> bool {
    let got: Vec<u64> = match v {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => {
            match a.iter().map(|x| x.as_u64()).collect::<Option<Vec<_>>>() {
                Some(v) => v,
                None => return false,
            }
        }
        _ => return false,
    };
    let mut seen = got.clone();
    seen.sort_unstable();
    seen.dedup();
    seen.len() == got.len()
        && must.iter().all(|m| got.contains(m))
        && got
            .iter()
            .all(|g| must.contains(g) || may.contains(g) || may.contains(&0))
}
