//! The scenarios: from a seed, a world of 1, 2 or 4 shards and the scripts of its clients.
//!
//! Each scenario keeps its sizes small (a handful of clients, tens of messages) so that
//! thousands of seeds run in the ordinary debug test run; the seed decides the shard
//! count, which client lives on which shard, serializers, patterns and interleavings.
//! Running a world and checking it is `run` below; what is checked is `check.rs`.

use switchyard_core::codec::Serializer;

use crate::check::check;
use crate::client::{MetaQuery, Phase, Policy, Step};
use crate::rng::Rng;
use crate::world::World;

/// A scenario: its name and the world it builds from a seed.
pub(crate) type Scenario = (&'static str, fn(u64) -> World);

/// Every scenario, by name.
pub(crate) const ALL: &[Scenario] = &[
    ("pubsub", pubsub),
    ("rpc", rpc),
    ("cancel", cancel),
    ("churn", churn),
    ("shard_death", shard_death),
    ("rejoin", rejoin),
    ("meta", meta),
    ("progressive", crate::advanced::progressive),
    ("meta_events", crate::advanced::meta_events),
    ("testament", crate::advanced::testament),
    ("retention", crate::advanced::retention),
    ("realms", crate::advanced::realms),
];

/// Topics publications go to.
const TOPICS: &[&str] = &["com.a.b", "com.a.c", "com.x.b", "com.a.b.d", "com.ab.b"];

/// Subscription patterns: exact, prefix and wildcard.
const PATTERNS: &[(&str, Policy)] = &[
    ("com.a.b", Policy::Exact),
    ("com.a.c", Policy::Exact),
    ("com.a.b.d", Policy::Exact),
    ("com.a", Policy::Prefix),
    ("com.a.b", Policy::Prefix),
    ("com.", Policy::Prefix),
    ("com..b", Policy::Wildcard),
    ("com.a.", Policy::Wildcard),
    ("com...d", Policy::Wildcard),
];

/// Builds the world of `scenario` for `seed`, drives it, tears it down, and returns every
/// broken invariant.
pub(crate) fn run(build: fn(u64) -> World, seed: u64, trace: bool) -> Vec<String> {
    let mut w = build(seed);
    w.trace = trace;
    if trace {
        for c in &w.clients {
            println!(
                "client {} on shard {} ({:?}): {:?}",
                c.index, c.shard, c.serializer, c.script
            );
        }
    }
    if let Err(e) = w.drive() {
        w.problems.push(e);
    }
    let mut problems = check(&w);
    if let Some(extra) = w.extra {
        extra(&w, &mut problems);
    }
    if !problems.is_empty() {
        return problems;
    }
    teardown(&mut w);
    problems.extend(check(&w));
    problems
}

/// Every client leaves, then one probe session per live shard asks the meta API whether
/// anything is left: sessions, subscriptions, registrations; and every shard must hold no
/// connection and no call timer.
fn teardown(w: &mut World) {
    for c in 0..w.clients.len() {
        let goodbye = w.rng.chance(1, 2);
        w.leave(c, goodbye);
    }
    if let Err(e) = w.drive() {
        w.problems.push(format!("teardown: {e}"));
    }
    // One probe per live shard and realm: nothing may be left in any realm.
    let probes: Vec<(u16, String)> = (0..w.count)
        .flat_map(|s| w.realm_names().into_iter().map(move |r| (s, r)))
        .collect();
    for (s, realm) in probes {
        if w.shards[usize::from(s)].is_none() {
            continue;
        }
        let probe = w.add_client(
            s,
            Serializer::Json,
            vec![
                Step::Hello,
                Step::Meta(MetaQuery::SessionCount),
                Step::Meta(MetaQuery::SessionList),
                Step::Meta(MetaQuery::SubscriptionList),
                Step::Meta(MetaQuery::RegistrationList),
                Step::AwaitCalls,
            ],
        );
        w.clients[probe].realm = realm.clone();
        if let Err(e) = w.drive() {
            w.problems.push(format!("probe: {e}"));
        }
        if w.clients[probe].phase != Phase::Joined {
            w.problems
                .push(format!("probe on shard {s} could not join {realm}"));
        }
        w.leave(probe, true);
        if let Err(e) = w.drive() {
            w.problems.push(format!("probe leaving: {e}"));
        }
    }
    for (i, s) in w.shards.iter().enumerate() {
        let Some(s) = s else { continue };
        if s.connection_count() != 0 {
            w.problems.push(format!(
                "shard {i} still holds {} connections after every client left",
                s.connection_count()
            ));
        }
        if let Some(t) = s.poll_timeout() {
            w.problems.push(format!(
                "shard {i} still has a timer at {t:?} after every client left"
            ));
        }
    }
}

/// 1, 2 or 4 shards.
fn shard_count(rng: &mut Rng) -> u16 {
    *rng.pick(&[1, 2, 4])
}

fn serializer(rng: &mut Rng) -> Serializer {
    if rng.chance(1, 2) {
        Serializer::Json
    } else {
        Serializer::MsgPack
    }
}

/// A world with `count` shards: the seed decides the count, then the clients.
fn world(seed: u64) -> World {
    let mut rng = Rng::new(seed ^ 0xC0FFEE);
    let count = shard_count(&mut rng);
    World::new(seed, count)
}

/// A random publication among `n` clients.
fn publish(rng: &mut Rng, n: usize) -> Step {
    let topic = (*rng.pick(TOPICS)).to_owned();
    let exclude_me = *rng.pick(&[None, Some(true), Some(false), Some(false)]);
    let mut exclude = Vec::new();
    let mut eligible = None;
    match rng.below(6) {
        0 => exclude.push(rng.below(n)),
        1 => {
            let e: Vec<usize> = (0..n).filter(|_| rng.chance(1, 2)).collect();
            eligible = Some(e);
        }
        2 => {
            exclude.push(rng.below(n));
            eligible = Some((0..n).filter(|_| rng.chance(2, 3)).collect());
        }
        _ => {}
    }
    Step::Publish {
        topic,
        exclude_me,
        exclude,
        eligible,
        ack: rng.chance(1, 3),
    }
}

/// Pub/sub with exact, prefix and wildcard subscriptions, exclusions and eligibility,
/// unsubscriptions, and publications racing subscriptions; a barrier halfway makes every
/// subscription acknowledged before the second half publishes.
fn pubsub(seed: u64) -> World {
    let mut w = world(seed);
    let mut rng = Rng::new(seed ^ 0x9B5B);
    let n = rng.range(2, 6) as usize;
    for _ in 0..n {
        let shard = rng.below(usize::from(w.count)) as u16;
        let ser = serializer(&mut rng);
        let mut script = vec![Step::Hello];
        let mut patterns: Vec<(&str, Policy)> = PATTERNS.to_vec();
        let mut subs = 0;
        for half in 0..2 {
            for _ in 0..rng.range(2, 6) {
                match rng.below(10) {
                    0..=2 if !patterns.is_empty() => {
                        let (p, policy) = patterns.swap_remove(rng.below(patterns.len()));
                        script.push(Step::Subscribe {
                            topic: p.to_owned(),
                            policy,
                        });
                        subs += 1;
                    }
                    3 if subs > 0 && rng.chance(1, 3) => {
                        script.push(Step::Unsubscribe {
                            tag: rng.below(subs),
                        });
                    }
                    4 => script.push(Step::AwaitAcks),
                    _ => script.push(publish(&mut rng, n)),
                }
            }
            if half == 0 {
                script.push(Step::AwaitAcks);
                script.push(Step::Barrier(1));
            }
        }
        script.push(Step::AwaitAcks);
        w.add_client(shard, ser, script);
    }
    w
}

/// Registration keys: exact, prefix and wildcard, overlapping so that precedence matters.
const PROCS: &[(&str, Policy)] = &[
    ("com.p.a.b", Policy::Exact),
    ("com.p.a", Policy::Prefix),
    ("com.p", Policy::Prefix),
    ("com.p..b", Policy::Wildcard),
    ("com..a.b", Policy::Wildcard),
    ("com.p.a.", Policy::Wildcard),
];

/// Procedures calls go to (the last matches nothing).
const CALLS: &[&str] = &[
    "com.p.a.b",
    "com.p.a.c",
    "com.p.x.b",
    "com.q.a.b",
    "com.p.ab",
    "com.q.a.c",
    "com.z",
];

/// A world of 1, 2 or 4 shards (or only 2 and 4 when `several`), and a client placer.
fn placed(seed: u64, several: bool) -> (World, Rng) {
    let mut rng = Rng::new(seed ^ 0x51DE);
    let count = if several {
        *rng.pick(&[2, 4])
    } else {
        shard_count(&mut rng)
    };
    (World::new(seed, count), rng)
}

fn call(rng: &mut Rng) -> Step {
    Step::Call {
        uri: (*rng.pick(CALLS)).to_owned(),
        timeout_ms: 0,
    }
}

/// Shared and pattern registrations: one key is shared by 2 or 3 callees registering one
/// after another (so their order is known) under first, last, roundrobin or random; the
/// other keys are registered concurrently, sometimes twice (single) or with a clashing
/// policy. Calls race the registrations, then run once everything is acknowledged.
fn rpc(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, false);
    let callees = rng.range(2, 4) as usize;
    let callers = rng.range(1, 3) as usize;
    let shared = *rng.pick(PROCS);
    let policy = *rng.pick(&["first", "last", "roundrobin", "random"]);
    let sharers = rng.range(2, callees as u64) as usize;
    for k in 0..callees {
        let mut script = vec![Step::Hello];
        for stage in 0..sharers {
            if stage == k {
                script.push(Step::Register {
                    uri: shared.0.to_owned(),
                    policy: shared.1,
                    invoke: policy,
                });
                script.push(Step::AwaitAcks);
            }
            script.push(Step::Barrier(stage as u32 + 1));
        }
        for &(uri, p) in PROCS {
            if (uri, p) != shared && rng.chance(1, 3) {
                let invoke = if rng.chance(1, 6) {
                    "roundrobin"
                } else {
                    "single"
                };
                script.push(Step::Register {
                    uri: uri.to_owned(),
                    policy: p,
                    invoke,
                });
            }
        }
        script.push(Step::AwaitAcks);
        script.push(Step::Barrier(10));
        script.push(Step::Barrier(11));
        w.add_client(
            rng.below(usize::from(w.count)) as u16,
            serializer(&mut rng),
            script,
        );
    }
    for _ in 0..callers {
        let mut script = vec![Step::Hello];
        for _ in 0..rng.range(0, 3) {
            script.push(call(&mut rng));
        }
        script.push(Step::Barrier(10));
        for _ in 0..rng.range(3, 8) {
            script.push(call(&mut rng));
        }
        script.push(Step::AwaitCalls);
        script.push(Step::Barrier(11));
        w.add_client(
            rng.below(usize::from(w.count)) as u16,
            serializer(&mut rng),
            script,
        );
    }
    w
}

/// Cancel (skip, kill, killnowait) and call timeouts against callees that answer only
/// some invocations, some of which do not announce `call_canceling`.
fn cancel(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, false);
    let callees = rng.range(1, 2) as usize;
    let invoke = *rng.pick(&["roundrobin", "first", "last"]);
    for _ in 0..callees {
        let script = vec![
            Step::Hello,
            Step::Register {
                uri: "com.c.f".to_owned(),
                policy: Policy::Exact,
                invoke,
            },
            Step::AwaitAcks,
            Step::Barrier(1),
            Step::Barrier(2),
        ];
        let c = w.add_client(
            rng.below(usize::from(w.count)) as u16,
            serializer(&mut rng),
            script,
        );
        w.clients[c].call_canceling = rng.chance(2, 3);
        w.clients[c].yield_permille = rng.range(0, 1000);
    }
    for _ in 0..rng.range(1, 2) {
        let mut script = vec![Step::Hello, Step::Barrier(1)];
        let mut uncanceled = Vec::new();
        for calls in 0..rng.range(2, 6) as usize {
            // Every call ends: either it has a timeout or it is canceled below.
            let timeout_ms = if rng.chance(1, 2) {
                rng.range(1, 30)
            } else {
                0
            };
            script.push(Step::Call {
                uri: "com.c.f".to_owned(),
                timeout_ms,
            });
            if timeout_ms == 0 || rng.chance(1, 3) {
                uncanceled.push(calls);
            }
            if rng.chance(1, 2) && !uncanceled.is_empty() {
                let call = uncanceled.swap_remove(rng.below(uncanceled.len()));
                let mode = *rng.pick(&["skip", "kill", "killnowait"]);
                script.push(Step::Cancel { call, mode });
            }
        }
        for call in uncanceled {
            let mode = *rng.pick(&["skip", "kill", "killnowait"]);
            script.push(Step::Cancel { call, mode });
        }
        script.push(Step::AwaitCalls);
        script.push(Step::Barrier(2));
        let c = w.add_client(
            rng.below(usize::from(w.count)) as u16,
            serializer(&mut rng),
            script,
        );
        w.clients[c].call_canceling = rng.chance(1, 2);
    }
    w
}

/// Sessions joining and leaving mid-flight (GOODBYE or a dropped connection) while others
/// subscribe, publish, register and call.
fn churn(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, false);
    let n = rng.range(3, 6) as usize;
    for _ in 0..n {
        let mut script = Vec::new();
        if rng.chance(1, 3) {
            // A late joiner.
            script.push(Step::Barrier(1));
        }
        script.push(Step::Hello);
        let mut patterns: Vec<(&str, Policy)> = PATTERNS.to_vec();
        let mut procs: Vec<(&str, Policy)> = PROCS.to_vec();
        let leave_at = rng.chance(1, 2).then(|| rng.range(1, 8));
        let mut regs = 0;
        for i in 0..rng.range(3, 9) {
            if leave_at == Some(i) {
                script.push(Step::Leave {
                    goodbye: rng.chance(1, 2),
                });
                break;
            }
            match rng.below(8) {
                0 | 1 if !patterns.is_empty() => {
                    let (p, policy) = patterns.swap_remove(rng.below(patterns.len()));
                    script.push(Step::Subscribe {
                        topic: p.to_owned(),
                        policy,
                    });
                }
                2 if !procs.is_empty() => {
                    let (uri, policy) = procs.swap_remove(rng.below(procs.len()));
                    script.push(Step::Register {
                        uri: uri.to_owned(),
                        policy,
                        invoke: "roundrobin",
                    });
                    regs += 1;
                }
                6 if regs > 0 && rng.chance(1, 2) => script.push(Step::Unregister {
                    tag: rng.below(regs),
                }),
                3 => script.push(call(&mut rng)),
                4 => script.push(Step::AwaitAcks),
                5 => script.push(Step::Barrier(1)),
                _ => script.push(publish(&mut rng, n)),
            }
        }
        if !matches!(script.last(), Some(Step::Leave { .. })) {
            script.push(Step::AwaitAcks);
            script.push(Step::AwaitCalls);
        }
        w.add_client(
            rng.below(usize::from(w.count)) as u16,
            serializer(&mut rng),
            script,
        );
    }
    w
}

/// A shard dies while publications and calls are in flight, and (mostly) restarts and
/// rejoins; clients on the restarted shard then subscribe and register, and everyone
/// publishes and calls again.
fn shard_death(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, true);
    let victim = rng.below(usize::from(w.count)) as u16;
    let restart = rng.chance(3, 4);
    let n = rng.range(3, 5) as usize;
    let mut procs: Vec<(&str, Policy)> = PROCS.to_vec();
    for _ in 0..n {
        let shard = rng.below(usize::from(w.count)) as u16;
        let mut script = vec![Step::Hello];
        for _ in 0..rng.range(1, 2) {
            let (p, policy) = *rng.pick(PATTERNS);
            if !script.iter().any(
                |s| matches!(s, Step::Subscribe { topic, policy: q } if topic == p && *q == policy),
            ) {
                script.push(Step::Subscribe {
                    topic: p.to_owned(),
                    policy,
                });
            }
        }
        if !procs.is_empty() && rng.chance(1, 2) {
            let (uri, policy) = procs.swap_remove(rng.below(procs.len()));
            script.push(Step::Register {
                uri: uri.to_owned(),
                policy,
                invoke: "single",
            });
        }
        script.push(Step::AwaitAcks);
        script.push(Step::Barrier(1));
        for _ in 0..rng.range(1, 4) {
            script.push(if rng.chance(1, 2) {
                call(&mut rng)
            } else {
                publish(&mut rng, n)
            });
        }
        script.push(Step::AwaitCalls);
        script.push(Step::Barrier(2));
        script.push(Step::Barrier(3));
        for _ in 0..rng.range(1, 3) {
            script.push(if rng.chance(1, 2) {
                call(&mut rng)
            } else {
                publish(&mut rng, n)
            });
        }
        script.push(Step::AwaitAcks);
        script.push(Step::AwaitCalls);
        w.add_client(shard, serializer(&mut rng), script);
    }
    // The director kills the victim once the first phase is under way.
    let mut director = vec![Step::Barrier(1), Step::KillShard(victim)];
    if restart {
        director.push(Step::RestartShard(victim));
    }
    director.push(Step::Barrier(3));
    w.add_client(victim, Serializer::Json, director);
    if restart {
        // Newcomers on the restarted shard: they join after the restart (parked until the
        // shard has its replica) and must then see and be seen by everyone.
        for _ in 0..rng.range(1, 2) {
            let (p, policy) = *rng.pick(PATTERNS);
            let mut script = vec![
                Step::Barrier(2),
                Step::Hello,
                Step::Subscribe {
                    topic: p.to_owned(),
                    policy,
                },
            ];
            if !procs.is_empty() {
                let (uri, policy) = procs.swap_remove(rng.below(procs.len()));
                script.push(Step::Register {
                    uri: uri.to_owned(),
                    policy,
                    invoke: "single",
                });
            }
            script.push(Step::AwaitAcks);
            script.push(Step::Barrier(3));
            for _ in 0..rng.range(1, 3) {
                script.push(if rng.chance(1, 2) {
                    call(&mut rng)
                } else {
                    publish(&mut rng, n)
                });
            }
            script.push(Step::AwaitCalls);
            w.add_client(victim, serializer(&mut rng), script);
        }
    }
    w
}

/// Two shards of three or four die at once and both restart and rejoin together
/// (sometimes one of them dies again while rejoining and restarts once more); clients on
/// the live shards subscribe and register while the joiners sync, newcomers join each
/// restarted shard, and everyone publishes and calls again.
fn rejoin(seed: u64) -> World {
    let mut rng = Rng::new(seed ^ 0x4E10);
    let count: u16 = *rng.pick(&[3, 4]);
    let mut w = World::new(seed, count);
    let a = rng.below(usize::from(count)) as u16;
    let b = (a + 1 + rng.below(usize::from(count) - 1) as u16) % count;
    let twice = rng.chance(1, 3);
    let n = rng.range(3, 6) as usize;
    let mut procs: Vec<(&str, Policy)> = PROCS.to_vec();
    for _ in 0..n {
        let shard = rng.below(usize::from(count)) as u16;
        let mut script = vec![Step::Hello];
        let (p, policy) = *rng.pick(PATTERNS);
        script.push(Step::Subscribe {
            topic: p.to_owned(),
            policy,
        });
        script.push(Step::AwaitAcks);
        script.push(Step::Barrier(1));
        // While the joiners sync: more subscriptions and registrations, and traffic.
        if rng.chance(1, 2) {
            let (p, policy) = *rng.pick(PATTERNS);
            if !script.iter().any(
                |s| matches!(s, Step::Subscribe { topic, policy: q } if topic == p && *q == policy),
            ) {
                script.push(Step::Subscribe {
                    topic: p.to_owned(),
                    policy,
                });
            }
        }
        if !procs.is_empty() && rng.chance(1, 2) {
            let (uri, policy) = procs.swap_remove(rng.below(procs.len()));
            script.push(Step::Register {
                uri: uri.to_owned(),
                policy,
                invoke: "single",
            });
        }
        for _ in 0..rng.range(0, 2) {
            script.push(if rng.chance(1, 2) {
                call(&mut rng)
            } else {
                publish(&mut rng, n)
            });
        }
        script.push(Step::AwaitAcks);
        script.push(Step::AwaitCalls);
        script.push(Step::Barrier(2));
        script.push(Step::Barrier(3));
        for _ in 0..rng.range(1, 3) {
            script.push(if rng.chance(1, 2) {
                call(&mut rng)
            } else {
                publish(&mut rng, n)
            });
        }
        script.push(Step::AwaitAcks);
        script.push(Step::AwaitCalls);
        w.add_client(shard, serializer(&mut rng), script);
    }
    let (first, second) = if rng.chance(1, 2) { (a, b) } else { (b, a) };
    let mut director = vec![
        Step::Barrier(1),
        Step::KillShard(a),
        Step::KillShard(b),
        Step::RestartShard(first),
        Step::RestartShard(second),
    ];
    if twice {
        director.push(Step::KillShard(first));
        director.push(Step::RestartShard(first));
    }
    director.push(Step::Barrier(3));
    // The director is no session: any shard will do.
    w.add_client(a, Serializer::Json, director);
    for victim in [a, b] {
        for _ in 0..rng.range(1, 2) {
            let (p, policy) = *rng.pick(PATTERNS);
            let mut script = vec![
                Step::Barrier(2),
                Step::Hello,
                Step::Subscribe {
                    topic: p.to_owned(),
                    policy,
                },
            ];
            if !procs.is_empty() {
                let (uri, policy) = procs.swap_remove(rng.below(procs.len()));
                script.push(Step::Register {
                    uri: uri.to_owned(),
                    policy,
                    invoke: "single",
                });
            }
            script.push(Step::AwaitAcks);
            script.push(Step::Barrier(3));
            for _ in 0..rng.range(1, 3) {
                script.push(if rng.chance(1, 2) {
                    call(&mut rng)
                } else {
                    publish(&mut rng, n)
                });
            }
            script.push(Step::AwaitCalls);
            w.add_client(victim, serializer(&mut rng), script);
        }
    }
    w
}

/// The meta API at quiet points: after every subscription and registration is
/// acknowledged, one client asks every question and the oracle predicts the answers; then
/// some sessions leave and the session questions are asked again.
fn meta(seed: u64) -> World {
    let (mut w, mut rng) = placed(seed, false);
    let n = rng.range(2, 5) as usize;
    let mut subs: Vec<(usize, usize)> = Vec::new();
    let mut regs: Vec<(usize, usize)> = Vec::new();
    let mut procs: Vec<(&str, Policy)> = PROCS.to_vec();
    let leavers: Vec<bool> = (0..n).map(|i| i > 0 && rng.chance(1, 3)).collect();
    for (c, leaves) in leavers.iter().enumerate() {
        let mut script = vec![Step::Hello];
        let mut patterns: Vec<(&str, Policy)> = PATTERNS.to_vec();
        for tag in 0..rng.range(0, 3) as usize {
            let (p, policy) = patterns.swap_remove(rng.below(patterns.len()));
            script.push(Step::Subscribe {
                topic: p.to_owned(),
                policy,
            });
            subs.push((c, tag));
        }
        let mut tag = 0;
        while !procs.is_empty() && rng.chance(1, 2) {
            let (uri, policy) = procs.swap_remove(rng.below(procs.len()));
            script.push(Step::Register {
                uri: uri.to_owned(),
                policy,
                invoke: "single",
            });
            regs.push((c, tag));
            tag += 1;
        }
        script.push(Step::AwaitAcks);
        script.push(Step::Barrier(1));
        script.push(Step::Barrier(2));
        if *leaves {
            script.push(Step::Leave { goodbye: false });
        } else {
            script.push(Step::Barrier(3));
        }
        w.add_client(
            rng.below(usize::from(w.count)) as u16,
            serializer(&mut rng),
            script,
        );
    }
    // Client 0 asks; it never leaves.
    let mut ask = vec![
        MetaQuery::SessionCount,
        MetaQuery::SessionList,
        MetaQuery::SessionGet(rng.below(n)),
        MetaQuery::SubscriptionList,
        MetaQuery::RegistrationList,
    ];
    for _ in 0..3 {
        let (p, policy) = *rng.pick(PATTERNS);
        ask.push(MetaQuery::SubscriptionLookup(p.to_owned(), policy));
        ask.push(MetaQuery::SubscriptionMatch((*rng.pick(TOPICS)).to_owned()));
        let (uri, policy) = *rng.pick(PROCS);
        ask.push(MetaQuery::RegistrationLookup(uri.to_owned(), policy));
        ask.push(MetaQuery::RegistrationMatch((*rng.pick(CALLS)).to_owned()));
    }
    if !subs.is_empty() {
        let (c, t) = *rng.pick(&subs);
        ask.push(MetaQuery::CountSubscribers(c, t));
        ask.push(MetaQuery::ListSubscribers(c, t));
    }
    if !regs.is_empty() {
        let (c, t) = *rng.pick(&regs);
        ask.push(MetaQuery::ListCallees(c, t));
    }
    let script = &mut w.clients[0].script;
    // Insert the questions between barriers 1 and 2, then the session ones after 3.
    let at = script
        .iter()
        .position(|s| matches!(s, Step::Barrier(1)))
        .map_or(script.len(), |i| i + 1);
    for (i, q) in ask.into_iter().enumerate() {
        script.insert(at + i, Step::Meta(q));
    }
    let at = script
        .iter()
        .position(|s| matches!(s, Step::Barrier(2)))
        .unwrap_or(script.len());
    script.insert(at, Step::AwaitCalls);
    script.push_back(Step::Meta(MetaQuery::SessionCount));
    script.push_back(Step::Meta(MetaQuery::SessionList));
    script.push_back(Step::AwaitCalls);
    w
}
