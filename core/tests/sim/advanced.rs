//! Scenarios of the advanced profile and their own checkers: progressive call results and
//! progressive call invocations, meta events, testaments, event retention and history,
//! several realms and authorization denials, over 1, 2 or 4 shards.
//!
//! The ordinary checks (`check.rs`) still run on every world built here; each scenario adds
//! a checker (`World::extra`) that reads what its clients recorded (`Client::raw` for the
//! frames of `Step::Raw` requests and of subscriptions outside the `com.` topics) and
//! asserts the rule of its feature. This file does not decide the ordinary pub/sub and RPC
//! rules, and does not kill shards (the `shard_death` and `rejoin` scenarios do).

use std::collections::BTreeMap;

use serde_json::Value as Json;
use switchyard_core::codec::Serializer;
use switchyard_core::router::{HistoryConfig, Permission, RealmConfig, RouterConfig};
use switchyard_core::uri::MatchPolicy;

use crate::client::{Client, Final, Phase, Policy, RawRec, ReqState, Step};
use crate::rng::Rng;
use crate::world::World;

fn serializer(rng: &mut Rng) -> Serializer {
    if rng.chance(1, 2) {
        Serializer::Json
    } else {
        Serializer::MsgPack
    }
}

/// A world of 1, 2 or 4 shards running `config`, and the rng that places its clients.
fn placed(seed: u64, salt: u64, config: RouterConfig) -> (World, Rng) {
    let mut rng = Rng::new(seed ^ salt);
    let count = *rng.pick(&[1u16, 2, 4]);
    (World::with_config(seed, count, config), rng)
}

fn shard(w: &World, rng: &mut Rng) -> u16 {
    rng.below(usize::from(w.count)) as u16
}

fn session(c: &Client) -> Option<u64> {
    c.session.map(|s| s.get())
}

/// The answer to client `c`'s raw request `i` (its final one), if any.
fn answer(c: &Client, i: usize) -> Option<&RawRec> {
    c.raw
        .iter()
        .rev()
        .find(|r| r.sent == Some(i) && !(r.kind == "RESULT" && r.flag))
}

/// The indexes of client `c`'s raw requests whose text contains `what`.
fn sent_with(c: &Client, what: &str) -> Vec<usize> {
    (0..c.raw_sent.len())
        .filter(|i| c.raw_sent[*i].2.contains(what))
        .collect()
}

/// The EVENTs client `c` recorded for subscriptions to `topic`.
fn events_on<'a>(c: &'a Client, topic: &'a str) -> impl Iterator<Item = &'a RawRec> + 'a {
    c.raw
        .iter()
        .filter(move |r| r.kind == "EVENT" && r.topic.as_deref() == Some(topic))
}

/// `[a, b]` of an event's args.
fn pair(args: &Json) -> Option<(u64, u64)> {
    Some((args.get(0)?.as_u64()?, args.get(1)?.as_u64()?))
}

// ---------------------------------------------------------------------------------------
// Progressive call results and progressive call invocations.

/// Callees registered before a barrier send 0–3 progressive results before the final one
/// when asked; callers ask for them or not, and send their calls as 0–2 progressive
/// chunks and a final CALL.
pub(crate) fn progressive(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, 0x9A06, RouterConfig::default());
    let procs = [("com.p.a.b", Policy::Exact), ("com.p", Policy::Prefix)];
    for k in 0..rng.range(1, 3) {
        let mut script = vec![Step::Hello];
        for (uri, policy) in procs {
            // The first callee serves every procedure, so that chunked calls always
            // reach someone (chunks after an error answer are out of this scenario).
            if k == 0 || rng.chance(1, 2) {
                script.push(Step::Register {
                    uri: uri.to_owned(),
                    policy,
                    invoke: "roundrobin",
                });
            }
        }
        script.extend([Step::AwaitAcks, Step::Barrier(1)]);
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        let c = w.add_client(s, ser, script);
        w.clients[c].progressive_yields = rng.range(0, 3);
    }
    for _ in 0..rng.range(1, 3) {
        let chunks = if rng.chance(1, 2) { 0 } else { rng.range(1, 2) };
        let mut script = vec![Step::Barrier(1), Step::Hello];
        let targets: &[&str] = if chunks == 0 {
            &["com.p.a.b", "com.p.x", "com.q"]
        } else {
            &["com.p.a.b", "com.p.x"]
        };
        for _ in 0..rng.range(1, 4) {
            script.push(Step::Call {
                uri: (*rng.pick(targets)).to_owned(),
                timeout_ms: 0,
            });
        }
        script.push(Step::AwaitCalls);
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        let c = w.add_client(s, ser, script);
        w.clients[c].receive_progress = rng.chance(2, 3);
        w.clients[c].call_chunks = chunks;
    }
    w.extra = Some(check_progressive);
    w
}

/// Progressive results arrive in order, exactly once, before the final RESULT (the client
/// reports anything after it), only to callers that asked; a chunked call reaches one
/// callee as its chunks in order, then the final one, exactly once.
fn check_progressive(w: &World, out: &mut Vec<String>) {
    for c in &w.clients {
        for (i, call) in c.calls.iter().enumerate() {
            let Some(Final::Result(callee)) = call.finals.first() else {
                if !call.progress.is_empty() {
                    out.push(format!(
                        "client {} call {i}: progressive results {:?} but no RESULT",
                        c.index, call.progress
                    ));
                }
                continue;
            };
            let Some(callee) = w.clients.get(*callee as usize) else {
                continue;
            };
            let want: Vec<u64> = if c.receive_progress {
                (0..callee.progressive_yields).collect()
            } else {
                Vec::new()
            };
            if call.progress != want {
                out.push(format!(
                    "client {} call {i}: progressive results {:?}, expected {want:?} (receive_progress {})",
                    c.index, call.progress, c.receive_progress
                ));
            }
            let invs: Vec<_> = callee
                .invocations
                .iter()
                .filter(|v| v.caller == c.index as u64 && v.call == i as u64)
                .collect();
            let chunks: Vec<Option<u64>> = (0..c.call_chunks).map(Some).chain([None]).collect();
            match invs.as_slice() {
                [v] if v.chunks == chunks => {}
                [v] => out.push(format!(
                    "client {} call {i}: callee {} got chunks {:?}, expected {chunks:?}",
                    c.index, callee.index, v.chunks
                )),
                _ => out.push(format!(
                    "client {} call {i}: {} invocations at its callee {}",
                    c.index,
                    invs.len(),
                    callee.index
                )),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Meta events.

/// The meta topics the watcher subscribes to.
const META_TOPICS: &[&str] = &[
    "wamp.session.on_join",
    "wamp.session.on_leave",
    "wamp.subscription.on_create",
    "wamp.subscription.on_subscribe",
    "wamp.subscription.on_unsubscribe",
    "wamp.subscription.on_delete",
    "wamp.registration.on_create",
    "wamp.registration.on_register",
    "wamp.registration.on_unregister",
    "wamp.registration.on_delete",
];

const META_SUBS: &[(&str, Policy)] = &[
    ("com.a.b", Policy::Exact),
    ("com.a.c", Policy::Exact),
    ("com.a", Policy::Prefix),
    ("com..b", Policy::Wildcard),
];

const META_REGS: &[(&str, Policy)] = &[
    ("com.p.a", Policy::Exact),
    ("com.p.b", Policy::Exact),
    ("com.p", Policy::Prefix),
];

/// A watcher (client 0) subscribes to every meta topic; after a barrier, other clients
/// join, subscribe, unsubscribe, register and unregister overlapping keys, and some leave
/// (GOODBYE or a dropped connection) while their requests may still be in flight.
pub(crate) fn meta_events(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, 0x3E7A, RouterConfig::default());
    let mut watcher = vec![Step::Hello];
    for t in META_TOPICS {
        watcher.push(Step::Raw(format!(r#"[32,{{req}},{{}},"{t}"]"#)));
    }
    watcher.extend([Step::AwaitAcks, Step::Barrier(1)]);
    let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
    w.add_client(s, ser, watcher);
    for _ in 0..rng.range(2, 5) {
        let mut script = vec![Step::Barrier(1), Step::Hello];
        let mut subs: Vec<(&str, Policy)> = META_SUBS.to_vec();
        let mut regs: Vec<(&str, Policy)> = META_REGS.to_vec();
        let (mut ns, mut nr) = (0, 0);
        for _ in 0..rng.range(2, 7) {
            match rng.below(6) {
                0 | 1 if !subs.is_empty() => {
                    let (topic, policy) = subs.swap_remove(rng.below(subs.len()));
                    script.push(Step::Subscribe {
                        topic: topic.to_owned(),
                        policy,
                    });
                    ns += 1;
                }
                2 if ns > 0 => script.push(Step::Unsubscribe { tag: rng.below(ns) }),
                3 if !regs.is_empty() => {
                    let (uri, policy) = regs.swap_remove(rng.below(regs.len()));
                    script.push(Step::Register {
                        uri: uri.to_owned(),
                        policy,
                        invoke: "roundrobin",
                    });
                    nr += 1;
                }
                4 if nr > 0 => script.push(Step::Unregister { tag: rng.below(nr) }),
                _ => script.push(Step::AwaitAcks),
            }
        }
        if rng.chance(1, 2) {
            script.push(Step::Leave {
                goodbye: rng.chance(1, 2),
            });
        } else {
            script.push(Step::AwaitAcks);
        }
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        w.add_client(s, ser, script);
    }
    w.extra = Some(check_meta_events);
    w
}

/// One meta event as the watcher saw it: its position, topic, and the session and id it
/// names (`None` for a null session).
#[derive(Debug)]
struct MetaEv {
    at: usize,
    topic: String,
    session: Option<u64>,
    id: u64,
    uri: Option<String>,
}

fn meta_evs(watcher: &Client) -> Vec<MetaEv> {
    let mut out = Vec::new();
    for (at, r) in watcher.raw.iter().filter(|r| r.kind == "EVENT").enumerate() {
        let Some(topic) = r.topic.clone() else {
            continue;
        };
        let a = &r.args;
        let ev = match topic.as_str() {
            "wamp.session.on_join" => MetaEv {
                at,
                session: a
                    .get(0)
                    .and_then(|d| d.get("session"))
                    .and_then(Json::as_u64),
                id: 0,
                uri: None,
                topic,
            },
            "wamp.session.on_leave" => MetaEv {
                at,
                session: a.get(0).and_then(Json::as_u64),
                id: 0,
                uri: None,
                topic,
            },
            t if t.ends_with("on_create") => MetaEv {
                at,
                session: a.get(0).and_then(Json::as_u64),
                id: a
                    .get(1)
                    .and_then(|d| d.get("id"))
                    .and_then(Json::as_u64)
                    .unwrap_or(0),
                uri: a
                    .get(1)
                    .and_then(|d| d.get("uri"))
                    .and_then(Json::as_str)
                    .map(str::to_owned),
                topic,
            },
            _ => MetaEv {
                at,
                session: a.get(0).and_then(Json::as_u64),
                id: a.get(1).and_then(Json::as_u64).unwrap_or(0),
                uri: None,
                topic,
            },
        };
        out.push(ev);
    }
    out
}

/// Every join, leave, subscribe, unsubscribe, register and unregister of the other clients
/// seen exactly once by the watcher, in causal order; `on_create` before the first
/// subscribe (register) of an id and naming a session that asked for the key, `on_delete`
/// after the last unsubscribe (unregister), once, naming a session that held it, and only
/// when nobody holds the id any more.
fn check_meta_events(w: &World, out: &mut Vec<String>) {
    let Some(watcher) = w.clients.first() else {
        return;
    };
    if watcher.phase != Phase::Joined {
        out.push("the meta watcher is not joined at the end".to_owned());
        return;
    }
    let evs = meta_evs(watcher);
    // The shard of each session: meta events naming a session go out from its shard.
    let shard_of: BTreeMap<u64, u16> = w
        .clients
        .iter()
        .filter_map(|c| session(c).map(|s| (s, c.shard)))
        .collect();
    // `SIM_META_STRICT=1` asks for the order across shards too (a known gap, SIM.md).
    let strict = std::env::var("SIM_META_STRICT").is_ok_and(|v| v == "1");
    let same_shard = |a: Option<u64>, b: Option<u64>| {
        if strict {
            return true;
        }
        let (Some(a), Some(b)) = (a, b) else {
            return false;
        };
        shard_of.contains_key(&a) && shard_of.get(&a) == shard_of.get(&b)
    };
    let find = |topic: &str, session: Option<u64>, id: u64| -> Vec<usize> {
        evs.iter()
            .filter(|e| e.topic == topic && e.session == session && (id == 0 || e.id == id))
            .map(|e| e.at)
            .collect()
    };
    // Sessions and ids of the other clients, and who asked for which key.
    let mut holders: BTreeMap<(bool, u64), Vec<(usize, bool)>> = BTreeMap::new();
    let mut askers: BTreeMap<(bool, String), Vec<u64>> = BTreeMap::new();
    for c in &w.clients[1..] {
        let Some(s) = session(c) else { continue };
        let gone = c.phase == Phase::Gone;
        let joins = find("wamp.session.on_join", Some(s), 0);
        let leaves = find("wamp.session.on_leave", Some(s), 0);
        if joins.len() != 1 {
            out.push(format!(
                "client {}: on_join seen {} times",
                c.index,
                joins.len()
            ));
        }
        if leaves.len() != usize::from(gone) {
            out.push(format!(
                "client {} ({:?}): on_leave seen {} times",
                c.index,
                c.phase,
                leaves.len()
            ));
        }
        let first = joins.first().copied().unwrap_or(0);
        let last = leaves.first().copied().unwrap_or(usize::MAX);
        for e in evs.iter().filter(|e| e.session == Some(s)) {
            // A create or delete naming the session may come after it left: the owner's
            // decision on a request it sent (or gave back) is still travelling.
            if ["on_join", "on_leave", "on_create", "on_delete"]
                .iter()
                .any(|t| e.topic.ends_with(t))
            {
                continue;
            }
            if e.at < first || e.at > last {
                out.push(format!(
                    "client {}: {} ({}) outside its on_join..on_leave",
                    c.index, e.topic, e.id
                ));
            }
        }
        let recs = c
            .subs
            .iter()
            .map(|r| (true, r.topic.as_str(), r.policy, r.id, &r.state))
            .chain(
                c.regs
                    .iter()
                    .map(|r| (false, r.uri.as_str(), r.policy, r.id, &r.state)),
            );
        for (is_sub, uri, policy, id, state) in recs {
            askers
                .entry((is_sub, format!("{uri}/{}", policy.as_str())))
                .or_default()
                .push(s);
            let Some(id) = id.map(|i| i.get()) else {
                continue;
            };
            let (on, off) = if is_sub {
                (
                    "wamp.subscription.on_subscribe",
                    "wamp.subscription.on_unsubscribe",
                )
            } else {
                (
                    "wamp.registration.on_register",
                    "wamp.registration.on_unregister",
                )
            };
            let ons = find(on, Some(s), id);
            let offs = find(off, Some(s), id);
            let held = !gone && *state == ReqState::Active;
            holders
                .entry((is_sub, id))
                .or_default()
                .push((c.index, held));
            if ons.len() != 1 {
                out.push(format!(
                    "client {}: {on} for {uri} ({id}) seen {} times",
                    c.index,
                    ons.len()
                ));
            }
            if offs.len() != usize::from(!held) {
                out.push(format!(
                    "client {} ({:?}, {state:?}): {off} for {uri} ({id}) seen {} times",
                    c.index,
                    c.phase,
                    offs.len()
                ));
            }
            if let (Some(a), Some(b)) = (ons.first(), offs.first()) {
                if b < a {
                    out.push(format!("client {}: {off} before {on} for {id}", c.index));
                }
            }
        }
    }
    // Per id of a `com.` key: create, then subscribes/unsubscribes, then delete.
    for is_sub in [true, false] {
        let family = if is_sub {
            "subscription"
        } else {
            "registration"
        };
        let (on, off) = if is_sub {
            ("on_subscribe", "on_unsubscribe")
        } else {
            ("on_register", "on_unregister")
        };
        let creates: Vec<&MetaEv> = evs
            .iter()
            .filter(|e| e.topic == format!("wamp.{family}.on_create"))
            .filter(|e| e.uri.as_deref().is_some_and(|u| u.starts_with("com.")))
            .collect();
        let mut ids: Vec<u64> = creates.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let of = |t: &str| -> Vec<&MetaEv> {
                evs.iter()
                    .filter(|e| e.topic == format!("wamp.{family}.{t}") && e.id == id)
                    .collect()
            };
            let created = of("on_create");
            let deleted = of("on_delete");
            let ons = of(on);
            let offs = of(off);
            if created.len() != 1 {
                out.push(format!(
                    "{family} {id}: on_create seen {} times",
                    created.len()
                ));
                continue;
            }
            let c0 = created[0];
            let key = format!(
                "{}/{}",
                c0.uri.as_deref().unwrap_or(""),
                // The key's policy is in the details; the asker map is keyed the same way.
                meta_policy(watcher, c0.at)
            );
            let asked = askers
                .get(&(is_sub, key.clone()))
                .cloned()
                .unwrap_or_default();
            if !c0.session.is_some_and(|s| asked.contains(&s)) {
                out.push(format!(
                    "{family} {id} ({key}): on_create names session {:?}, not one that asked ({asked:?})",
                    c0.session
                ));
            }
            // Events from one shard reach the watcher in order; events of two shards are
            // ordered only per publishing shard (see SIM.md, "Findings": a watcher may see
            // another shard's subscribe before the create).
            if let Some(e) = ons
                .iter()
                .find(|e| e.at < c0.at && same_shard(e.session, c0.session))
            {
                out.push(format!(
                    "{family} {id}: {on} of {:?} before on_create",
                    e.session
                ));
            }
            let held = holders
                .get(&(is_sub, id))
                .is_some_and(|h| h.iter().any(|x| x.1));
            if deleted.len() != usize::from(!held) {
                out.push(format!(
                    "{family} {id} ({key}): on_delete seen {} times, still held: {held}",
                    deleted.len()
                ));
            }
            if let Some(d) = deleted.first() {
                if let Some(e) = offs
                    .iter()
                    .chain(&ons)
                    .find(|e| e.at > d.at && same_shard(e.session, d.session))
                {
                    out.push(format!(
                        "{family} {id} ({key}): {} of {:?} after on_delete",
                        e.topic, e.session
                    ));
                }
                let held_by: Vec<u64> = ons.iter().filter_map(|e| e.session).collect();
                if !d
                    .session
                    .is_some_and(|s| held_by.contains(&s) || asked.contains(&s))
                {
                    out.push(format!(
                        "{family} {id} ({key}): on_delete names session {:?}, not one that held it ({held_by:?})",
                        d.session
                    ));
                }
            }
        }
    }
}

/// The `match` of the on_create event at position `at`.
fn meta_policy(watcher: &Client, at: usize) -> String {
    watcher
        .raw
        .iter()
        .filter(|r| r.kind == "EVENT")
        .nth(at)
        .and_then(|r| r.args.get(1))
        .and_then(|d| d.get("match"))
        .and_then(Json::as_str)
        .unwrap_or("exact")
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Testaments.

/// Subscribers of `tst.a` (exact) and `tst.` (prefix) join first; after a barrier, other
/// sessions add testaments, sometimes flush them and add more, then most leave (GOODBYE
/// or a dropped connection) and some stay.
pub(crate) fn testament(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, 0x7E57, RouterConfig::default());
    for _ in 0..rng.range(1, 2) {
        let topic = if rng.chance(1, 2) { "tst.a" } else { "tst." };
        let opts = if topic == "tst." {
            r#"{"match":"prefix"}"#
        } else {
            "{}"
        };
        let script = vec![
            Step::Hello,
            Step::Raw(format!(r#"[32,{{req}},{opts},"{topic}"]"#)),
            Step::AwaitAcks,
            Step::Barrier(1),
        ];
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        w.add_client(s, ser, script);
    }
    let first = w.clients.len();
    for t in 0..rng.range(1, 3) {
        let c = first + t as usize;
        let mut script = vec![Step::Barrier(1), Step::Hello];
        for k in 0..rng.range(1, 4) {
            if rng.chance(1, 4) {
                script.push(Step::Raw(
                    r#"[48,{req},{},"wamp.session.flush_testaments",[]]"#.to_owned(),
                ));
            }
            script.push(Step::Raw(format!(
                r#"[48,{{req}},{{}},"wamp.session.add_testament",["tst.a",[{c},{k}],{{}}]]"#
            )));
        }
        if rng.chance(1, 4) {
            script.push(Step::Raw(
                r#"[48,{req},{},"wamp.session.flush_testaments",[]]"#.to_owned(),
            ));
        }
        script.push(Step::AwaitCalls);
        if rng.chance(3, 4) {
            script.push(Step::Leave {
                goodbye: rng.chance(1, 2),
            });
        }
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        w.add_client(s, ser, script);
    }
    w.extra = Some(check_testament);
    w
}

/// A testament added after the session's last flush is published exactly once when the
/// session leaves, in the order added; one flushed, or of a session still there, never.
fn check_testament(w: &World, out: &mut Vec<String>) {
    let subscribers: Vec<&Client> = w
        .clients
        .iter()
        .filter(|c| !c.raw_subs.is_empty())
        .collect();
    for t in w.clients.iter().filter(|c| c.raw_subs.is_empty()) {
        let mut want: Vec<u64> = Vec::new();
        for (i, (_, _, json)) in t.raw_sent.iter().enumerate() {
            let ok = answer(t, i).is_some_and(|a| a.kind == "RESULT");
            if json.contains("flush_testaments") {
                want.clear();
                if !ok {
                    out.push(format!("client {}: flush_testaments failed", t.index));
                }
            } else if ok {
                let k = serde_json::from_str::<Json>(json)
                    .ok()
                    .and_then(|v| v.get(4)?.get(1)?.get(1)?.as_u64())
                    .unwrap_or(u64::MAX);
                want.push(k);
            } else {
                out.push(format!(
                    "client {}: add_testament failed: {:?}",
                    t.index,
                    answer(t, i)
                ));
            }
        }
        if t.phase != Phase::Gone {
            want.clear();
        }
        for s in &subscribers {
            let topic = s.raw_subs[0].1.clone();
            let got: Vec<u64> = events_on(s, &topic)
                .filter_map(|e| pair(&e.args))
                .filter(|(c, _)| *c == t.index as u64)
                .map(|(_, k)| k)
                .collect();
            if got != want {
                out.push(format!(
                    "subscriber {} got testaments {got:?} of client {} ({:?}), expected {want:?}",
                    s.index, t.index, t.phase
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Event retention and history.

/// The topic whose history the realm keeps, and how many events.
const HISTORY_TOPIC: &str = "hist.t";

/// Publishers publish retained events to their own topic `ret.<client>` and history
/// events to `hist.t`, acknowledged, before a barrier; a racing publisher keeps
/// publishing retained events to `ret.r` after it. After the barrier, late subscribers
/// ask `get_retained` for every `ret.` topic (exact, and sometimes by prefix), and one
/// reads `wamp.subscription.get_events` of `hist.t`.
pub(crate) fn retention(seed: u64) -> World {
    let mut rng0 = Rng::new(seed ^ 0x4E7E);
    let limit = rng0.range(2, 5) as usize;
    let mut config = RouterConfig::default();
    config.realms[0].history.push(HistoryConfig {
        topic: HISTORY_TOPIC.to_owned(),
        limit,
    });
    let (mut w, mut rng) = placed(seed, 0x4E7E, config);
    let publishers = rng.range(1, 3) as usize;
    for p in 0..publishers {
        let mut script = vec![Step::Hello];
        for k in 0..rng.range(1, 4) {
            let (topic, opts) = if rng.chance(1, 2) {
                (format!("ret.{p}"), r#""retain":true,"#)
            } else {
                (HISTORY_TOPIC.to_owned(), "")
            };
            script.push(Step::Raw(format!(
                r#"[16,{{req}},{{{opts}"acknowledge":true}},"{topic}",[{p},{k}]]"#
            )));
        }
        script.extend([Step::AwaitCalls, Step::Barrier(1)]);
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        w.add_client(s, ser, script);
    }
    // The racer: retained publications to `ret.r` before and after the barrier.
    let racer = w.clients.len();
    let mut script = vec![Step::Hello];
    let n = rng.range(1, 4);
    for k in 0..n {
        if k == 1 {
            script.extend([Step::AwaitCalls, Step::Barrier(1)]);
        }
        let ack = if rng.chance(1, 2) {
            r#","acknowledge":true"#
        } else {
            ""
        };
        script.push(Step::Raw(format!(
            r#"[16,{{req}},{{"retain":true{ack}}},"ret.r",[{racer},{k}]]"#
        )));
    }
    if n == 1 {
        script.extend([Step::AwaitCalls, Step::Barrier(1)]);
    }
    let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
    w.add_client(s, ser, script);
    for l in 0..rng.range(1, 2) {
        let mut script = vec![Step::Barrier(1), Step::Hello];
        if rng.chance(1, 3) {
            script.push(Step::Raw(
                r#"[32,{req},{"get_retained":true,"match":"prefix"},"ret."]"#.to_owned(),
            ));
        } else {
            for p in 0..publishers {
                script.push(Step::Raw(format!(
                    r#"[32,{{req}},{{"get_retained":true}},"ret.{p}"]"#
                )));
            }
            script.push(Step::Raw(
                r#"[32,{req},{"get_retained":true},"ret.r"]"#.to_owned(),
            ));
        }
        if l == 0 {
            script.push(Step::Raw(format!(r#"[32,{{req}},{{}},"{HISTORY_TOPIC}"]"#)));
            script.push(Step::AwaitAcks);
            let want = rng.range(1, 6);
            script.push(Step::Raw(format!(
                r#"[48,{{req}},{{}},"wamp.subscription.get_events",[{{lastsub}},{want}]]"#
            )));
        }
        script.push(Step::AwaitCalls);
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        w.add_client(s, ser, script);
    }
    w.extra = Some(check_retention);
    w
}

/// A late subscriber gets, once, the latest retained event of each topic published before
/// it subscribed (nothing for a topic with none); with a racing publisher it gets that
/// topic's events in order, without duplicates, ending with the last one. History returns
/// the last N events, oldest first, each publisher's part a suffix of what it published.
fn check_retention(w: &World, out: &mut Vec<String>) {
    // (topic) → publications in order: (publisher, k).
    let mut published: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for c in &w.clients {
        for (_, _, json) in &c.raw_sent {
            let Ok(v) = serde_json::from_str::<Json>(json) else {
                continue;
            };
            if v.get(0).and_then(Json::as_u64) != Some(16) {
                continue;
            }
            let topic = v.get(3).and_then(Json::as_str).unwrap_or("").to_owned();
            if let Some(p) = v.get(4).and_then(pair) {
                published.entry(topic).or_default().push(p);
            }
        }
    }
    // The limit `retention` drew first from this stream.
    let history_limit = Rng::new(w.seed ^ 0x4E7E).range(2, 5) as usize;
    for c in &w.clients {
        if !c.raw_sent.iter().any(|s| s.2.contains("get_retained")) {
            continue;
        }
        for (id, topic, _) in c.raw_subs.clone() {
            if topic == HISTORY_TOPIC {
                continue;
            }
            let got: Vec<(u64, u64, bool, String)> = c
                .raw
                .iter()
                .filter(|r| r.kind == "EVENT" && r.id == Some(id))
                .filter_map(|r| {
                    pair(&r.args).map(|(p, k)| (p, k, r.flag, r.topic.clone().unwrap_or_default()))
                })
                .collect();
            // Per concrete topic: the publications to it, in order.
            let topics: Vec<&String> = published
                .keys()
                .filter(|t| {
                    if topic == "ret." {
                        t.starts_with("ret.")
                    } else {
                        **t == topic
                    }
                })
                .collect();
            for t in topics {
                let pubs = &published[t];
                let mine: Vec<(u64, u64, bool)> = got
                    .iter()
                    .filter(|g| pubs.contains(&(g.0, g.1)))
                    .map(|g| (g.0, g.1, g.2))
                    .collect();
                let last = pubs.last().copied();
                if t == "ret.r" {
                    let ks: Vec<u64> = mine.iter().map(|m| m.1).collect();
                    let ordered = ks.windows(2).all(|x| x[0] < x[1]);
                    if !ordered || mine.last().map(|m| (m.0, m.1)) != last {
                        out.push(format!(
                            "client {} subscription {id} ({topic}): racing retained topic {t} gave {mine:?}, published {pubs:?}",
                            c.index
                        ));
                    }
                    if mine.iter().skip(1).any(|m| m.2) {
                        out.push(format!(
                            "client {} ({topic}): a retained event of {t} after a live one: {mine:?}",
                            c.index
                        ));
                    }
                } else {
                    let want = last.map(|(p, k)| vec![(p, k, true)]).unwrap_or_default();
                    if mine != want {
                        out.push(format!(
                            "client {} subscription {id} ({topic}): retained {t} gave {mine:?}, expected {want:?} (published {pubs:?})",
                            c.index
                        ));
                    }
                }
            }
        }
        // History: the answer of get_events.
        for i in sent_with(c, "get_events") {
            let Some(a) = answer(c, i) else {
                out.push(format!("client {}: no answer to get_events", c.index));
                continue;
            };
            let asked = serde_json::from_str::<Json>(&c.raw_sent[i].2)
                .ok()
                .and_then(|v| v.get(4)?.get(1)?.as_u64())
                .unwrap_or(0) as usize;
            let pubs = published.get(HISTORY_TOPIC).cloned().unwrap_or_default();
            let list: Vec<(u64, u64)> = a
                .args
                .get(0)
                .and_then(Json::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(|e| e.get("args").and_then(pair))
                        .collect()
                })
                .unwrap_or_default();
            let n = asked.min(history_limit).min(pubs.len());
            let mut bad = a.kind != "RESULT" || list.len() != n;
            let publishers: Vec<u64> = {
                let mut p: Vec<u64> = pubs.iter().map(|x| x.0).collect();
                p.sort_unstable();
                p.dedup();
                p
            };
            for p in publishers {
                let theirs: Vec<u64> = pubs.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                let seen: Vec<u64> = list.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                bad |= !theirs.ends_with(&seen);
            }
            if bad {
                out.push(format!(
                    "client {}: get_events(hist.t, {asked}) with history {history_limit} gave {:?} {list:?}, published {pubs:?}",
                    c.index, a.kind
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Several realms, and authorization denials.

/// `realm1` lets `anonymous` do everything except publish, call and register under `den.`
/// and anything under `den.x.`; `realm2` is open. Clients of both realms subscribe to
/// the same topics, register the same procedure, publish and call; a quiet barrier later
/// each asks its realm's session count and lookups.
pub(crate) fn realms(seed: u64) -> World {
    let mut config = RouterConfig::default();
    config.realms[0].roles[0].permissions.extend([
        Permission {
            call: false,
            register: false,
            publish: false,
            ..Permission::all("den.", MatchPolicy::Prefix)
        },
        Permission {
            call: false,
            register: false,
            publish: false,
            subscribe: false,
            ..Permission::all("den.x.", MatchPolicy::Prefix)
        },
    ]);
    config.realms.push(RealmConfig::open("realm2"));
    let (mut w, mut rng) = placed(seed, 0x2EA1, config);
    for c in 0..rng.range(2, 5) as usize {
        let realm2 = rng.chance(1, 2);
        let mut script = vec![
            Step::Hello,
            Step::Raw(r#"[32,{req},{},"com.a.b"]"#.to_owned()),
            Step::Raw(r#"[32,{req},{},"den.t"]"#.to_owned()),
            Step::Raw(r#"[32,{req},{},"den.x.t"]"#.to_owned()),
            Step::Raw(r#"[64,{req},{"invoke":"roundrobin"},"den.p"]"#.to_owned()),
            Step::AwaitAcks,
            Step::Barrier(1),
        ];
        for k in 0..rng.range(1, 3) {
            let topic = *rng.pick(&["com.a.b", "den.t", "den.x.t"]);
            script.push(Step::Raw(format!(
                r#"[16,{{req}},{{"acknowledge":true,"exclude_me":false}},"{topic}",[{c},{k}]]"#
            )));
        }
        // Only where it is denied: an invocation reaching a callee would be a call the
        // ordinary checks do not know.
        if !realm2 && rng.chance(1, 2) {
            script.push(Step::Raw(r#"[48,{req},{},"den.p",[0,0]]"#.to_owned()));
        }
        script.extend([
            Step::AwaitCalls,
            Step::Barrier(2),
            Step::Raw(r#"[48,{req},{},"wamp.session.count",[]]"#.to_owned()),
            Step::Raw(r#"[48,{req},{},"wamp.subscription.lookup",["den.x.t"]]"#.to_owned()),
            Step::AwaitCalls,
        ]);
        let (s, ser) = (shard(&w, &mut rng), serializer(&mut rng));
        let i = w.add_client(s, ser, script);
        if realm2 {
            w.clients[i].realm = "realm2".to_owned();
        }
    }
    w.extra = Some(check_realms);
    w
}

/// Nothing crosses realms: events only from the same realm, exactly once per matching
/// publication (all subscriptions were acknowledged before any was sent), session counts
/// per realm; in `realm1` every denied action gets `wamp.error.not_authorized` and has no
/// effect (no event, no subscription, no registration), in `realm2` the same actions work.
fn check_realms(w: &World, out: &mut Vec<String>) {
    let denied = |c: &Client, what: &str| {
        c.realm == "realm1" && what.contains("den.") && {
            // Subscribing under `den.` is allowed, except under `den.x.`.
            !what.starts_with("[32,") || what.contains("den.x.")
        }
    };
    for c in &w.clients {
        for (i, (_, _, json)) in c.raw_sent.iter().enumerate() {
            let a = answer(c, i);
            let publish_plain = json.starts_with("[16,") && !json.contains("acknowledge");
            if publish_plain || json.contains("wamp.") {
                continue;
            }
            let got_denied = a.is_some_and(|a| {
                a.kind == "ERROR" && a.topic.as_deref() == Some("wamp.error.not_authorized")
            });
            let ok = a.is_some_and(|a| a.kind != "ERROR");
            let want_denied = denied(c, json);
            if want_denied != got_denied || (!want_denied && !ok) {
                out.push(format!(
                    "client {} ({}): {json} answered {:?} (denied expected: {want_denied})",
                    c.index,
                    c.realm,
                    a.map(|a| (a.kind, a.topic.clone()))
                ));
            }
        }
        // Session count and lookup of the denied key.
        let realm_size = w
            .clients
            .iter()
            .filter(|o| o.realm == c.realm && o.session.is_some())
            .count() as u64;
        for i in sent_with(c, "wamp.session.count") {
            let n = answer(c, i).and_then(|a| a.args.get(0).and_then(Json::as_u64));
            if n != Some(realm_size) {
                out.push(format!(
                    "client {} ({}): wamp.session.count = {n:?}, expected {realm_size}",
                    c.index, c.realm
                ));
            }
        }
        for i in sent_with(c, "wamp.subscription.lookup") {
            let a = answer(c, i).map(|a| a.args.get(0).cloned().unwrap_or(Json::Null));
            let is_null = matches!(a, Some(Json::Null));
            if (c.realm == "realm1") != is_null || a.is_none() {
                out.push(format!(
                    "client {} ({}): lookup of den.x.t gave {a:?}",
                    c.index, c.realm
                ));
            }
        }
        // Events: per topic, exactly the publications of the same realm that were
        // accepted (not denied).
        for topic in ["com.a.b", "den.t", "den.x.t"] {
            let mut want: Vec<(u64, u64)> = Vec::new();
            for p in w.clients.iter().filter(|p| p.realm == c.realm) {
                for (i, (_, _, json)) in p.raw_sent.iter().enumerate() {
                    if !json.starts_with("[16,") || !json.contains(&format!(r#""{topic}""#)) {
                        continue;
                    }
                    if answer(p, i).is_none_or(|a| a.kind != "PUBLISHED") {
                        continue;
                    }
                    let k = serde_json::from_str::<Json>(json)
                        .ok()
                        .and_then(|v| v.get(4).and_then(pair))
                        .map_or(u64::MAX, |x| x.1);
                    want.push((p.index as u64, k));
                }
            }
            // A subscription that was refused gets nothing.
            let subscribed = c.raw_subs.iter().any(|s| s.1 == topic);
            if !subscribed {
                want.clear();
            }
            let mut got: Vec<(u64, u64)> =
                events_on(c, topic).filter_map(|e| pair(&e.args)).collect();
            // Per-publisher order first, then compare as sets.
            for p in 0..w.clients.len() as u64 {
                let ks: Vec<u64> = got.iter().filter(|g| g.0 == p).map(|g| g.1).collect();
                if !ks.windows(2).all(|x| x[0] < x[1]) {
                    out.push(format!(
                        "client {}: events of {topic} from client {p} out of order or twice: {ks:?}",
                        c.index
                    ));
                }
            }
            got.sort_unstable();
            want.sort_unstable();
            if got != want {
                out.push(format!(
                    "client {} ({}): events on {topic} {got:?}, expected {want:?}",
                    c.index, c.realm
                ));
            }
        }
    }
}
