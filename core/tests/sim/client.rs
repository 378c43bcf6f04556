//! A scripted WAMP client of the simulation: its script, what it sent and what it got.
//!
//! A client speaks WAMP only through bytes encoded with `switchyard_core::codec` in its own
//! serializer (JSON or MessagePack), like a real peer, and records every answer, event,
//! invocation and interrupt it receives so that the checks can compare them with the
//! oracle afterwards. It answers invocations and interrupts by itself (its reactions).
//! It does not decide what the router should have done: that is `check.rs`.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::id::Id;
use switchyard_core::message::{Message, Payload};
use switchyard_core::router::ConnId;

use crate::rng::Rng;

/// A match policy, as scripts and the oracle see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Policy {
    Exact,
    Prefix,
    Wildcard,
}

impl Policy {
    /// The `match` option's value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Prefix => "prefix",
            Self::Wildcard => "wildcard",
        }
    }

    /// Whether `pattern` under this policy matches the concrete `uri` (the spec's rules,
    /// written independently of the router's matcher).
    pub(crate) fn matches(self, pattern: &str, uri: &str) -> bool {
        match self {
            Self::Exact => pattern == uri,
            Self::Prefix => uri.starts_with(pattern),
            Self::Wildcard => {
                let p: Vec<&str> = pattern.split('.').collect();
                let u: Vec<&str> = uri.split('.').collect();
                p.len() == u.len() && p.iter().zip(&u).all(|(a, b)| a.is_empty() || a == b)
            }
        }
    }
}

/// The registration precedence of the spec: exact, then the longest prefix, then the
/// wildcard pattern that is concrete in the earliest component where two differ. Returns
/// whether `(a, pa)` beats `(b, pb)`, both matching the same URI.
pub(crate) fn beats(a: (&str, Policy), b: (&str, Policy)) -> bool {
    let rank = |p: Policy| match p {
        Policy::Exact => 2,
        Policy::Prefix => 1,
        Policy::Wildcard => 0,
    };
    if rank(a.1) != rank(b.1) {
        return rank(a.1) > rank(b.1);
    }
    match a.1 {
        Policy::Exact => false,
        Policy::Prefix => a.0.len() > b.0.len(),
        Policy::Wildcard => {
            for (x, y) in a.0.split('.').zip(b.0.split('.')) {
                if x.is_empty() != y.is_empty() {
                    return !x.is_empty();
                }
            }
            false
        }
    }
}

/// One step of a client's script.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// Open the connection and send HELLO; later steps wait for WELCOME.
    Hello,
    Subscribe {
        topic: String,
        policy: Policy,
    },
    /// Unsubscribe the client's `tag`-th subscription (if it became active).
    Unsubscribe {
        tag: usize,
    },
    Publish {
        topic: String,
        /// `None` leaves the option out (the router's default is true).
        exclude_me: Option<bool>,
        /// Client indexes whose sessions are excluded.
        exclude: Vec<usize>,
        /// Client indexes whose sessions alone are eligible (`None`: no eligible option).
        eligible: Option<Vec<usize>>,
        ack: bool,
    },
    Register {
        uri: String,
        policy: Policy,
        invoke: &'static str,
    },
    Unregister {
        tag: usize,
    },
    Call {
        uri: String,
        timeout_ms: u64,
    },
    /// Cancel the client's `call`-th call with mode `mode`.
    Cancel {
        call: usize,
        mode: &'static str,
    },
    /// A meta API call whose answer the world predicts when it is sent.
    Meta(MetaQuery),
    /// Wait until every subscribe/unsubscribe/register/unregister is answered.
    AwaitAcks,
    /// Wait until every call and meta call has its final answer.
    AwaitCalls,
    /// Wait until every client still in the game reached the same barrier.
    Barrier(u32),
    /// Leave: GOODBYE (then close), or drop the connection.
    Leave {
        goodbye: bool,
    },
    /// (Director only) the shard's process dies.
    KillShard(u16),
    /// (Director only) the shard restarts empty and rejoins.
    RestartShard(u16),
    /// Send this message as it is, after replacing `{req}` with a fresh request id and
    /// `{lastsub}` with the id of the client's last subscription made by a raw SUBSCRIBE.
    /// Its answers, and the events of such subscriptions, go to [`Client::raw`] for the
    /// scenario's own checker (`advanced.rs`); AwaitAcks and AwaitCalls wait for them.
    Raw(String),
}

/// Which meta procedure to ask, with its arguments.
#[derive(Clone, Debug)]
pub(crate) enum MetaQuery {
    SessionCount,
    SessionList,
    /// `wamp.session.get` for the session of this client.
    SessionGet(usize),
    SubscriptionLookup(String, Policy),
    SubscriptionMatch(String),
    SubscriptionList,
    /// `count_subscribers` for the `tag`-th subscription of client `client`.
    CountSubscribers(usize, usize),
    ListSubscribers(usize, usize),
    RegistrationLookup(String, Policy),
    RegistrationMatch(String),
    RegistrationList,
    /// `list_callees` for the `tag`-th registration of client `client`.
    ListCallees(usize, usize),
}

/// The life of a client's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No connection yet.
    Idle,
    /// HELLO sent, no WELCOME yet.
    Joining,
    Joined,
    /// GOODBYE sent, waiting for the router's GOODBYE.
    Leaving,
    /// Gone: left, aborted, closed or its shard died.
    Gone,
}

/// A request's state, for subscriptions and registrations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReqState {
    Pending,
    Active,
    /// UNSUBSCRIBE/UNREGISTER sent.
    Ending,
    Ended,
    Failed(String),
}

/// One subscription of a client.
#[derive(Clone, Debug)]
pub(crate) struct SubRec {
    pub(crate) topic: String,
    pub(crate) policy: Policy,
    pub(crate) id: Option<Id>,
    pub(crate) state: ReqState,
    /// The world step at which SUBSCRIBE was sent.
    pub(crate) sent_at: u64,
    /// The world step at which SUBSCRIBED reached the client, and at which it stopped
    /// counting on the subscription (UNSUBSCRIBE sent or session gone).
    pub(crate) active: (u64, u64),
}

/// One registration of a client.
#[derive(Clone, Debug)]
pub(crate) struct RegRec {
    pub(crate) uri: String,
    pub(crate) policy: Policy,
    pub(crate) invoke: &'static str,
    pub(crate) id: Option<Id>,
    pub(crate) state: ReqState,
    /// The world step at which REGISTER was sent.
    pub(crate) sent_at: u64,
    /// The world steps at which REGISTERED reached the client and at which the client
    /// stopped counting on the registration.
    pub(crate) active: (u64, u64),
}

/// What a call's oracle allows, fixed when the CALL is sent.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallExpect {
    /// (client, registration tag) pairs whose registration may serve the call.
    pub(crate) callees: Vec<(usize, usize)>,
    /// (client, tag) pairs of the lower keys: the call reaches them only when routed
    /// again because every callee above stopped counting on its registration.
    pub(crate) fallback: Vec<(usize, usize)>,
    /// Whether `wamp.error.no_such_procedure` is a possible answer.
    pub(crate) no_such_procedure: bool,
    /// Whether nothing about the matching registrations was in flight (the answer is
    /// exactly determined, so invocation policies can be checked).
    pub(crate) stable: bool,
}

/// A final answer to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Final {
    /// RESULT, with the callee client named in its payload.
    Result(u64),
    Error(String),
}

/// One call of a client.
#[derive(Clone, Debug)]
pub(crate) struct CallRec {
    pub(crate) uri: String,
    pub(crate) request: Id,
    pub(crate) timeout_ms: u64,
    pub(crate) expect: CallExpect,
    /// The world step at which CALL was handed to the shard.
    pub(crate) sent_at: u64,
    pub(crate) finals: Vec<Final>,
    /// The progress numbers of the progressive RESULTs received before the final one.
    pub(crate) progress: Vec<u64>,
    /// The cancel mode sent, and whether the call was still open when it was.
    pub(crate) cancel: Option<(&'static str, bool)>,
}

/// One EVENT received.
#[derive(Clone, Debug)]
pub(crate) struct EventRec {
    pub(crate) subscription: Id,
    pub(crate) publisher: u64,
    pub(crate) seq: u64,
    pub(crate) topic: Option<String>,
}

/// One INVOCATION received.
#[derive(Clone, Debug)]
pub(crate) struct InvRec {
    pub(crate) request: Id,
    pub(crate) registration: Id,
    pub(crate) caller: u64,
    pub(crate) call: u64,
    pub(crate) procedure: Option<String>,
    pub(crate) answered: bool,
    pub(crate) interrupts: Vec<String>,
    /// The chunk numbers of a progressive invocation's INVOCATIONs (`None` for the final one).
    pub(crate) chunks: Vec<Option<u64>>,
    /// Whether the first INVOCATION said the caller accepts progressive results (the
    /// router does not repeat it in later chunks).
    pub(crate) receive_progress: Option<bool>,
}

/// A frame recorded for the scenario's own checker: an answer to a [`Step::Raw`] request
/// or an EVENT for a subscription outside the `com.` topics the ordinary checks own.
#[derive(Clone, Debug)]
pub(crate) struct RawRec {
    /// `EVENT`, `SUBSCRIBED`, `RESULT`, `ERROR`, `PUBLISHED`, `REGISTERED`, ...
    pub(crate) kind: &'static str,
    /// The index in [`Client::raw_sent`] it answers (`None` for events).
    pub(crate) sent: Option<usize>,
    /// For EVENTs, the subscription's topic (as subscribed); for ERRORs, the error URI.
    pub(crate) topic: Option<String>,
    /// For EVENTs the subscription id, for SUBSCRIBED/REGISTERED the new id.
    pub(crate) id: Option<u64>,
    /// Whether the EVENT was marked `retained` (or the RESULT `progress`).
    pub(crate) flag: bool,
    pub(crate) args: serde_json::Value,
}

/// What a request id of the client was for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Req {
    Subscribe(usize),
    Unsubscribe(usize),
    Register(usize),
    Unregister(usize),
    Publish,
    Call(usize),
    Meta(usize),
    /// A [`Step::Raw`] message: its index in [`Client::raw_sent`].
    Raw(usize),
}

/// A scripted client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) index: usize,
    pub(crate) shard: u16,
    pub(crate) serializer: Serializer,
    pub(crate) phase: Phase,
    pub(crate) session: Option<Id>,
    pub(crate) script: VecDeque<Step>,
    /// Messages the client will send by itself (answers to invocations and interrupts).
    pub(crate) reactions: VecDeque<String>,
    /// Frames the router sent, not yet read by the client; `None` is the router's close.
    pub(crate) downlink: VecDeque<Option<Bytes>>,
    pub(crate) barrier: u32,
    pub(crate) next_request: u64,
    pub(crate) pending: BTreeMap<u64, Req>,
    pub(crate) subs: Vec<SubRec>,
    pub(crate) regs: Vec<RegRec>,
    pub(crate) calls: Vec<CallRec>,
    pub(crate) events: Vec<EventRec>,
    pub(crate) invocations: Vec<InvRec>,
    /// Whether the client announces `call_canceling` as callee.
    pub(crate) call_canceling: bool,
    /// Probability (per mille) that the client answers an invocation at all.
    pub(crate) yield_permille: u64,
    /// Whether the client left before the script's end (so nothing in flight is owed to it).
    pub(crate) left_early: bool,
    /// The step at which the session ended, if it did.
    pub(crate) gone_at: Option<u64>,
    /// Things that should not have happened, found while reading the router's frames.
    pub(crate) problems: Vec<String>,
    /// Set when the handshake of GOODBYE is complete: the world closes the connection.
    pub(crate) close_now: bool,
    /// The realm HELLO names.
    pub(crate) realm: String,
    /// Whether the client's calls ask for progressive results (`receive_progress`).
    pub(crate) receive_progress: bool,
    /// How many progressive YIELDs the client sends before the final one when a caller
    /// asked for progressive results.
    pub(crate) progressive_yields: u64,
    /// How many progressive CALL chunks precede the final one in each of its calls.
    pub(crate) call_chunks: u64,
    /// The [`Step::Raw`] messages sent: (world step, request id, message).
    pub(crate) raw_sent: Vec<(u64, u64, String)>,
    /// Frames recorded for the scenario's own checker.
    pub(crate) raw: Vec<RawRec>,
    /// Subscription ids made by raw SUBSCRIBEs, with their topics and the index of the
    /// raw request (answers to pipelined SUBSCRIBEs may come in any order).
    pub(crate) raw_subs: Vec<(u64, String, usize)>,
}

impl Client {
    pub(crate) fn new(index: usize, shard: u16, serializer: Serializer, script: Vec<Step>) -> Self {
        Self {
            index,
            shard,
            serializer,
            phase: Phase::Idle,
            session: None,
            script: script.into(),
            reactions: VecDeque::new(),
            downlink: VecDeque::new(),
            barrier: 0,
            next_request: 0,
            pending: BTreeMap::new(),
            subs: Vec::new(),
            regs: Vec::new(),
            calls: Vec::new(),
            events: Vec::new(),
            invocations: Vec::new(),
            call_canceling: true,
            yield_permille: 1000,
            left_early: false,
            gone_at: None,
            problems: Vec::new(),
            close_now: false,
            realm: "realm1".to_owned(),
            receive_progress: false,
            progressive_yields: 0,
            call_chunks: 0,
            raw_sent: Vec::new(),
            raw: Vec::new(),
            raw_subs: Vec::new(),
        }
    }

    pub(crate) fn conn(&self) -> ConnId {
        ConnId(self.index as u64)
    }

    /// A fresh request id (session scope, sequential as the spec recommends).
    pub(crate) fn request(&mut self, what: Req) -> u64 {
        self.next_request += 1;
        self.pending.insert(self.next_request, what);
        self.next_request
    }

    /// Whether every subscribe/register-like request is answered.
    pub(crate) fn acks_done(&self) -> bool {
        !self.pending.values().any(|r| {
            matches!(
                r,
                Req::Subscribe(_)
                    | Req::Unsubscribe(_)
                    | Req::Register(_)
                    | Req::Unregister(_)
                    | Req::Raw(_)
            )
        })
    }

    /// Whether every call and meta call has its final answer.
    pub(crate) fn calls_done(&self) -> bool {
        !self
            .pending
            .values()
            .any(|r| matches!(r, Req::Call(_) | Req::Meta(_) | Req::Raw(_)))
    }

    /// The session ended at world step `step`: subscriptions stop counting.
    pub(crate) fn end(&mut self, step: u64) {
        if self.phase == Phase::Gone {
            return;
        }
        self.phase = Phase::Gone;
        self.gone_at = Some(step);
        self.downlink.clear();
        self.reactions.clear();
        self.stop_counting(step);
    }

    /// From `step` on the client counts on none of its subscriptions and registrations
    /// (it sent GOODBYE, or its session ended).
    pub(crate) fn stop_counting(&mut self, step: u64) {
        for s in &mut self.subs {
            if s.active.1 == u64::MAX {
                s.active.1 = step;
            }
        }
        for r in &mut self.regs {
            if r.active.1 == u64::MAX {
                r.active.1 = step;
            }
        }
    }

    /// Reads one frame from the router. Returns a meta answer `(index, args)` for the world
    /// to check, if the frame was one.
    pub(crate) fn receive(
        &mut self,
        frame: Bytes,
        step: u64,
        rng: &mut Rng,
    ) -> Option<(usize, Result<serde_json::Value, String>)> {
        let msg = match codec::decode(self.serializer, frame) {
            Ok(m) => m,
            Err(e) => {
                self.problems.push(format!("undecodable frame: {e:?}"));
                return None;
            }
        };
        match msg {
            Message::Welcome(w) if self.phase == Phase::Joining => {
                self.session = Some(w.session);
                self.phase = Phase::Joined;
            }
            Message::Abort(a) => {
                self.problems.push(format!("ABORT {}", a.reason));
                self.end(step);
            }
            Message::Goodbye(_) => {
                if self.phase != Phase::Leaving {
                    // The router ended the session: answer as the spec says.
                    self.reactions
                        .push_back(r#"[6,{},"wamp.close.goodbye_and_out"]"#.to_owned());
                    self.problems.push("GOODBYE from the router".to_owned());
                }
                if self.phase == Phase::Leaving {
                    self.close_now = true;
                }
                self.phase = Phase::Leaving;
            }
            Message::Subscribed(m) => match self.pending.remove(&m.request.get()) {
                Some(Req::Subscribe(tag)) => {
                    let s = &mut self.subs[tag];
                    s.id = Some(m.subscription);
                    s.state = ReqState::Active;
                    s.active.0 = step;
                }
                Some(Req::Raw(i)) => {
                    let topic = self.raw_topic(i);
                    self.raw_subs.push((m.subscription.get(), topic, i));
                    self.record("SUBSCRIBED", Some(i), None, Some(m.subscription.get()));
                }
                other => self.unexpected("SUBSCRIBED", m.request, other),
            },
            Message::Unsubscribed(m) => match m.request {
                Some(r) => match self.pending.remove(&r.get()) {
                    Some(Req::Unsubscribe(tag)) => self.subs[tag].state = ReqState::Ended,
                    Some(Req::Raw(i)) => self.record("UNSUBSCRIBED", Some(i), None, None),
                    other => self.unexpected("UNSUBSCRIBED", r, other),
                },
                None => self.problems.push("subscription revoked".to_owned()),
            },
            Message::Published(m) => match self.pending.remove(&m.request.get()) {
                Some(Req::Publish) => {}
                Some(Req::Raw(i)) => self.record("PUBLISHED", Some(i), None, None),
                other => self.unexpected("PUBLISHED", m.request, other),
            },
            Message::Event(e)
                if !self
                    .subs
                    .iter()
                    .any(|s| s.id == Some(e.subscription) && s.topic.starts_with("com.")) =>
            {
                let topic = self
                    .raw_subs
                    .iter()
                    .find(|s| s.0 == e.subscription.get())
                    .map(|s| s.1.clone())
                    .or_else(|| {
                        self.subs
                            .iter()
                            .find(|s| s.id == Some(e.subscription))
                            .map(|s| s.topic.clone())
                    });
                self.raw.push(RawRec {
                    kind: "EVENT",
                    sent: None,
                    topic,
                    id: Some(e.subscription.get()),
                    flag: e.details.retained == Some(true),
                    args: args_json(&e.payload),
                });
            }
            Message::Event(e) => match ids_of(&e.payload) {
                Some((publisher, seq)) => self.events.push(EventRec {
                    subscription: e.subscription,
                    publisher,
                    seq,
                    topic: e.details.topic,
                }),
                None => self
                    .problems
                    .push("EVENT with a foreign payload".to_owned()),
            },
            Message::Registered(m) => match self.pending.remove(&m.request.get()) {
                Some(Req::Register(tag)) => {
                    let r = &mut self.regs[tag];
                    r.id = Some(m.registration);
                    r.state = ReqState::Active;
                    r.active.0 = step;
                }
                Some(Req::Raw(i)) => {
                    self.record("REGISTERED", Some(i), None, Some(m.registration.get()));
                }
                other => self.unexpected("REGISTERED", m.request, other),
            },
            Message::Unregistered(m) => match m.request {
                Some(r) => match self.pending.remove(&r.get()) {
                    Some(Req::Unregister(tag)) => self.regs[tag].state = ReqState::Ended,
                    Some(Req::Raw(i)) => self.record("UNREGISTERED", Some(i), None, None),
                    other => self.unexpected("UNREGISTERED", r, other),
                },
                None => self.problems.push("registration revoked".to_owned()),
            },
            Message::Error(e) => match self.pending.remove(&e.request.get()) {
                Some(Req::Subscribe(tag)) => self.subs[tag].state = ReqState::Failed(e.error),
                Some(Req::Register(tag)) => self.regs[tag].state = ReqState::Failed(e.error),
                Some(Req::Call(i)) => self.calls[i].finals.push(Final::Error(e.error)),
                Some(Req::Meta(i)) => return Some((i, Err(e.error))),
                Some(Req::Raw(i)) => self.record("ERROR", Some(i), Some(e.error), None),
                Some(Req::Unsubscribe(_) | Req::Unregister(_) | Req::Publish) => {
                    self.problems
                        .push(format!("ERROR {} to {:?}", e.error, e.request));
                }
                None => {
                    self.problems.push(format!(
                        "ERROR {} for unknown request {}",
                        e.error, e.request
                    ));
                }
            },
            Message::Result(r) => {
                let progress = r.details.progress == Some(true);
                let req = if progress {
                    self.pending.get(&r.request.get()).copied()
                } else {
                    self.pending.remove(&r.request.get())
                };
                match req {
                    Some(Req::Call(i)) => match triple_of(&r.payload) {
                        Some((caller, seq, callee))
                            if caller == self.index as u64 && seq == i as u64 =>
                        {
                            if progress {
                                // The callee numbers its progressive results in the
                                // payload's fourth element.
                                let k = args_json(&r.payload)
                                    .get(3)
                                    .and_then(serde_json::Value::as_u64)
                                    .unwrap_or(u64::MAX);
                                self.calls[i].progress.push(k);
                            } else {
                                self.calls[i].finals.push(Final::Result(callee));
                            }
                        }
                        _ => self
                            .problems
                            .push(format!("RESULT for call {i} with a wrong payload")),
                    },
                    Some(Req::Meta(i)) => return Some((i, Ok(args_json(&r.payload)))),
                    Some(Req::Raw(i)) => self.raw.push(RawRec {
                        kind: "RESULT",
                        sent: Some(i),
                        topic: None,
                        id: None,
                        flag: progress,
                        args: args_json(&r.payload),
                    }),
                    other => self.unexpected("RESULT", r.request, other),
                }
            }
            Message::Invocation(inv) => {
                let Some((caller, call)) = ids_of(&inv.payload) else {
                    self.problems
                        .push("INVOCATION with a foreign payload".to_owned());
                    return None;
                };
                // A progressive invocation's later chunks come with the first one's
                // request id: record them there, and answer after the final chunk only.
                let chunk = args_json(&inv.payload)
                    .get(2)
                    .and_then(serde_json::Value::as_u64);
                let more = inv.details.progress == Some(true);
                let known = self
                    .invocations
                    .iter()
                    .position(|v| v.request == inv.request);
                if let Some(v) = known {
                    if self.invocations[v].chunks.last() == Some(&None) {
                        self.problems
                            .push(format!("INVOCATION {} after its final chunk", inv.request));
                    }
                    self.invocations[v]
                        .chunks
                        .push(if more { chunk } else { None });
                    if more || !self.invocations[v].answered {
                        return None;
                    }
                    let rp = self.invocations[v].receive_progress;
                    self.answer(&inv.request, caller, call, rp);
                    return None;
                }
                let answer = !more && rng.chance(self.yield_permille, 1000);
                if answer {
                    self.answer(&inv.request, caller, call, inv.details.receive_progress);
                }
                self.invocations.push(InvRec {
                    request: inv.request,
                    registration: inv.registration,
                    caller,
                    call,
                    procedure: inv.details.procedure,
                    // A progressive invocation is answered after its final chunk.
                    answered: answer || more,
                    interrupts: Vec::new(),
                    chunks: vec![if more { chunk } else { None }],
                    receive_progress: inv.details.receive_progress,
                });
            }
            Message::Interrupt(i) => {
                let mode = i.options.mode.map_or("none", |m| match m {
                    switchyard_core::message::CancelMode::Skip => "skip",
                    switchyard_core::message::CancelMode::Kill => "kill",
                    switchyard_core::message::CancelMode::KillNoWait => "killnowait",
                });
                match self.invocations.iter_mut().find(|v| v.request == i.request) {
                    Some(v) => {
                        v.interrupts.push(mode.to_owned());
                        if !v.answered {
                            v.answered = true;
                            self.reactions.push_back(format!(
                                r#"[8,68,{},{{}},"wamp.error.canceled"]"#,
                                i.request
                            ));
                        }
                    }
                    None => self
                        .problems
                        .push(format!("INTERRUPT for unknown invocation {}", i.request)),
                }
            }
            other => self
                .problems
                .push(format!("unexpected {:?}", other.message_type())),
        }
        None
    }

    /// Queues the YIELD(s) answering an invocation: progressive results first when the
    /// caller asked for them and the client sends some.
    fn answer(&mut self, request: &Id, caller: u64, call: u64, receive_progress: Option<bool>) {
        if receive_progress == Some(true) {
            for k in 0..self.progressive_yields {
                self.reactions.push_back(format!(
                    r#"[70,{request},{{"progress":true}},[{caller},{call},{},{k}]]"#,
                    self.index
                ));
            }
        }
        self.reactions.push_back(format!(
            "[70,{request},{{}},[{caller},{call},{}]]",
            self.index
        ));
    }

    /// The topic (or procedure) a raw message names: its last string element.
    fn raw_topic(&self, i: usize) -> String {
        let json = &self.raw_sent[i].2;
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| {
                v.as_array()
                    .and_then(|a| a.iter().rev().find_map(|x| x.as_str().map(str::to_owned)))
            })
            .unwrap_or_default()
    }

    fn record(
        &mut self,
        kind: &'static str,
        sent: Option<usize>,
        topic: Option<String>,
        id: Option<u64>,
    ) {
        self.raw.push(RawRec {
            kind,
            sent,
            topic,
            id,
            flag: false,
            args: serde_json::Value::Null,
        });
    }

    fn unexpected(&mut self, what: &str, request: Id, had: Option<Req>) {
        self.problems
            .push(format!("{what} for request {request}, which was {had:?}"));
    }
}

/// The payload's `args` as JSON.
pub(crate) fn args_json(p: &Payload) -> serde_json::Value {
    let json = if p.serializer() == Serializer::Json {
        p.clone()
    } else {
        match codec::transcode(p, Serializer::Json) {
            Ok(j) => j,
            Err(_) => return serde_json::Value::Null,
        }
    };
    json.args()
        .and_then(|a| serde_json::from_slice(a).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// `[a, b, ...]` of a payload as two numbers.
fn ids_of(p: &Payload) -> Option<(u64, u64)> {
    let v = args_json(p);
    Some((v.get(0)?.as_u64()?, v.get(1)?.as_u64()?))
}

/// `[a, b, c]` of a payload as three numbers.
fn triple_of(p: &Payload) -> Option<(u64, u64, u64)> {
    let v = args_json(p);
    Some((
        v.get(0)?.as_u64()?,
        v.get(1)?.as_u64()?,
        v.get(2)?.as_u64()?,
    ))
}
