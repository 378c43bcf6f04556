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
pub(crate) const ALL: &[Scenario] = &[("pubsub", pubsub)];

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
    for s in 0..w.count {
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
        if let Err(e) = w.drive() {
            w.problems.push(format!("probe: {e}"));
        }
        if w.clients[probe].phase != Phase::Joined {
            w.problems
                .push(format!("probe on shard {s} could not join"));
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
