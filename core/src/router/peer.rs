//! The versioned byte encoding of everything that crosses shards.
//!
//! Shards share no memory (they may be threads of one process or separate processes), so
//! each cross-shard message is a [`PeerMsg`] encoded to bytes and carried over a FIFO link.
//! The format: one version byte ([`VERSION`]), one tag byte naming the message, then the
//! fields in a fixed order: integers as little-endian `u64`/`u16`/`u8`, strings and byte
//! strings as a `u32` length then the bytes, options as a `0`/`1` byte then the value, lists
//! as a `u32` count then the items, dictionaries as a small tagged value tree (depth-limited).
//! Decoding checks every length against the input and reports a typed [`PeerError`]: an
//! unknown version, an unknown tag, truncation, a bad field, trailing bytes.
//!
//! What it does not do: it does not frame messages (the link carries one message per
//! unit), authenticate the sending shard, or compress. Links are trusted but decoding is
//! still total, so a corrupted link is an error and never a panic.

use std::fmt;

use bytes::Bytes;

use crate::codec::Serializer;
use crate::id::Id;
use crate::message::{CancelMode, Dict, InvokePolicy, Payload, Ppt, Value};
use crate::uri::MatchPolicy;

/// The encoding's version, the first byte of every message.
pub const VERSION: u8 = 0x06;

/// The deepest nesting of a dictionary value in a peer message.
const MAX_DEPTH: usize = 64;

/// A message between shards.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PeerMsg {
    /// To the owner of a subscription key: the sender wants interest in it.
    SubscribeRequest {
        /// Correlates the acknowledgements at the requester.
        token: u64,
        /// Realm index.
        realm: u16,
        /// Topic or pattern.
        uri: String,
        /// Match policy.
        policy: MatchPolicy,
    },
    /// From the owner to every shard: `shard` now has subscribers for the key, under
    /// `subscription`. Every receiver except the requester answers [`PeerMsg::InterestAck`].
    InterestAdd {
        /// Realm index.
        realm: u16,
        /// Topic or pattern.
        uri: String,
        /// Match policy.
        policy: MatchPolicy,
        /// The router-wide subscription id of the key.
        subscription: Id,
        /// The shard gaining interest.
        shard: u16,
        /// The life of `shard` the change is about (see [`PeerMsg::Join`]): a receiver
        /// that knows another life of it drops the change.
        life: u64,
        /// The shard that asked (and waits for acknowledgements).
        requester: u16,
        /// The requester's token.
        token: u64,
        /// The shards (and their lives) the owner sent the change to, itself included:
        /// the requester also waits for those it counts live in that life (a joiner the
        /// owner had served gets the change only this way).
        to: Vec<(u16, u64)>,
    },
    /// To a requester: the sender applied the change with this token.
    Ack {
        /// The requester's token.
        token: u64,
    },
    /// To every other live shard: answer with an [`PeerMsg::Ack`] of this token. Because
    /// links are FIFO, the answer arrives after every publication the answering shard sent
    /// before it, which lets a session's subscribe to a key its shard already holds wait
    /// for the publications accepted before it (causality, see the `broker` module).
    Fence {
        /// The requester's token.
        token: u64,
    },
    /// To the owner of a subscription key: the sender has no subscribers left for it.
    UnsubscribeRequest {
        /// Realm index.
        realm: u16,
        /// Topic or pattern.
        uri: String,
        /// Match policy.
        policy: MatchPolicy,
    },
    /// From the owner to every shard: `shard` lost interest in the key.
    InterestRemove {
        /// Realm index.
        realm: u16,
        /// Topic or pattern.
        uri: String,
        /// Match policy.
        policy: MatchPolicy,
        /// The shard losing interest.
        shard: u16,
    },
    /// A publication forwarded once to each interested shard.
    Publish(Box<Publication>),
    /// From a shard to every other: which serializers its local subscribers of a key use
    /// (bit 0 JSON, bit 1 MessagePack), so that publishers' shards transcode a payload
    /// once for the whole router. A hint: a shard that lacks it transcodes for itself.
    InterestNeeds {
        /// Realm index.
        realm: u16,
        /// Topic or pattern.
        uri: String,
        /// Match policy.
        policy: MatchPolicy,
        /// The shard whose subscribers these are.
        shard: u16,
        /// The serializers, as bits.
        needs: u8,
    },
    /// To the owner of a registration key: a session of the sender registers.
    RegisterRequest {
        /// Correlates the acknowledgements at the requester.
        token: u64,
        /// Realm index.
        realm: u16,
        /// Procedure or pattern.
        uri: String,
        /// Match policy.
        policy: MatchPolicy,
        /// Shared-registration policy.
        invoke: InvokePolicy,
        /// The callee session.
        session: Id,
    },
    /// From the owner to every shard: a callee was added to a registration.
    RegisterAdd {
        /// Realm index.
        realm: u16,
        /// Procedure or pattern.
        uri: String,
        /// Match policy.
        policy: MatchPolicy,
        /// Shared-registration policy.
        invoke: InvokePolicy,
        /// The router-wide registration id.
        registration: Id,
        /// The callee's shard.
        shard: u16,
        /// The life of `shard` the change is about (see [`PeerMsg::Join`]).
        life: u64,
        /// The callee session.
        session: Id,
        /// The shard that asked.
        requester: u16,
        /// The requester's token.
        token: u64,
        /// As for [`PeerMsg::InterestAdd`].
        to: Vec<(u16, u64)>,
    },
    /// From the owner to the requester: the registration is refused with this error URI.
    RegisterReject {
        /// The requester's token.
        token: u64,
        /// The error URI.
        error: String,
    },
    /// To the owner of a registration: a callee leaves it.
    UnregisterRequest {
        /// Realm index.
        realm: u16,
        /// The registration.
        registration: Id,
        /// The callee session.
        session: Id,
    },
    /// From the owner to every shard: a callee left a registration.
    RegisterRemove {
        /// Realm index.
        realm: u16,
        /// The registration.
        registration: Id,
        /// The callee's shard.
        shard: u16,
        /// The callee session.
        session: Id,
    },
    /// A call (or one chunk of a progressive call) for a callee on the receiving shard.
    Invoke(Box<Invoke>),
    /// A result (or a progressive chunk) for a caller on the receiving shard.
    Yield(Box<YieldMsg>),
    /// An error answering a call, for a caller on the receiving shard.
    CallError(Box<CallError>),
    /// The caller cancels (or gave up on) a call pending at the receiving shard.
    Cancel {
        /// The caller session.
        caller: Id,
        /// The CALL's request id.
        call: Id,
        /// How to cancel.
        mode: CancelMode,
        /// The reason URI given to the callee in INTERRUPT.
        reason: String,
    },
    /// A meta API question for the receiving shard's local sessions.
    MetaQuery {
        /// Correlates the reply.
        token: u64,
        /// Realm index.
        realm: u16,
        /// What is asked.
        query: MetaQuery,
    },
    /// The answer to a [`PeerMsg::MetaQuery`].
    MetaReply {
        /// The query's token.
        token: u64,
        /// The answer, as a list of values to merge.
        values: Vec<Value>,
    },
    /// A session on the sender authenticated on a connection carrying a tracking cookie:
    /// the cookie now stands for that principal (cookie authentication), until `ttl_ms`
    /// from now.
    CookieBind {
        /// The cookie's id (`cbtid`).
        cbtid: String,
        /// Realm index.
        realm: u16,
        /// The principal's authid.
        authid: String,
        /// The principal's authrole.
        authrole: String,
        /// How long the binding holds, in ms from its arrival.
        ttl_ms: u64,
    },
    /// From a callee's shard back to the caller's: the callee no longer holds the
    /// registration (it unregistered while the invocation travelled). The caller's shard
    /// routes the call again without that callee, or answers `no_such_procedure`.
    Unrouted(Box<Invoke>),
    /// A restarted shard asks to rejoin (attempt `round`): a receiver serving no other
    /// joiner drops what the sender's previous life held, marks it live and answers with a
    /// [`PeerMsg::Snapshot`]; one busy with another joiner answers [`PeerMsg::Busy`].
    Join {
        /// The joiner's attempt number (it answers only snapshots of its current attempt).
        round: u32,
        /// The joiner's life: 0 for a shard of the router's first start, a number drawn
        /// at random for each restart. Changes naming a shard carry the life they are
        /// about, so that one about a previous life is recognised wherever it arrives.
        life: u64,
    },
    /// The entries the sender owned (under the membership without the joining shard).
    Snapshot(Box<Snapshot>),
    /// To a joiner: the sender serves (or is) the joining shard `joiner` first; the joiner
    /// with the higher index gives up its attempt ([`PeerMsg::Withdraw`]) and retries once
    /// `joiner` is ready.
    Busy {
        /// The joiner served first.
        joiner: u16,
        /// The attempt of the receiver this answers.
        round: u32,
    },
    /// A joiner gives up its attempt: receivers drop it as if it had died (it holds
    /// nothing) and stop waiting for it.
    Withdraw,
    /// A joiner has its replica and accepts sessions: its servers may serve the next.
    Ready,
    /// From a joiner that learnt of `dead`'s death while syncing: snapshots taken while
    /// the sender still counted `dead` as live left out the keys `dead` owned; answer with
    /// a snapshot again once the death is known here.
    Resync {
        /// The joiner's attempt.
        round: u32,
        /// The dead shard.
        dead: u16,
    },
    /// A request handed on by a shard that is not (or no longer) the key's owner, to be
    /// decided as if `origin` had sent it.
    Forward {
        /// The shard that made the request.
        origin: u16,
        /// The life of `origin` that made it (a request of a previous life is not
        /// decided for the current one).
        life: u64,
        /// How many times it was handed on (bounded by the shard count).
        hops: u8,
        /// The request (never a `Forward`).
        msg: Box<Self>,
    },
}

/// One interest entry of a [`Snapshot`]: realm, pattern, policy, subscription id, shards.
pub type InterestEntry = (u16, String, MatchPolicy, Id, Vec<u16>);

/// One registration of a [`Snapshot`]: realm, pattern, policy, invocation policy,
/// registration id, callees as (shard, session).
pub type RegistrationEntry = (u16, String, MatchPolicy, InvokePolicy, Id, Vec<(u16, Id)>);

/// The replicated state one shard hands a rejoining shard: the keys it owned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The joiner's attempt this answers.
    pub round: u32,
    /// Set when this answers a [`PeerMsg::Resync`] about that dead shard: a complete
    /// snapshot again, taken after the sender learnt the death.
    pub resync: Option<u16>,
    /// Interest entries: realm, pattern, policy, subscription id, shards.
    pub interest: Vec<InterestEntry>,
    /// Registrations: realm, pattern, policy, invoke, registration id, callees.
    pub registrations: Vec<RegistrationEntry>,
    /// Retained events of the topics it owned.
    pub retained: Vec<Publication>,
    /// The shards the sender counted as dead when it took the snapshot.
    pub dead: Vec<u16>,
    /// The life of every shard (by index) as the sender knew it: the entries naming a
    /// shard are about that life.
    pub lives: Vec<u64>,
}

/// What a meta query asks of a shard's local sessions.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum MetaQuery {
    /// The ids of the sessions in the realm (optionally only these authroles).
    Sessions {
        /// Only sessions with one of these roles, if given.
        authroles: Option<Vec<String>>,
    },
    /// The details of one session.
    Session {
        /// The session.
        session: Id,
    },
    /// Kill sessions: one id, or every one with an authid or authrole.
    Kill {
        /// Which sessions.
        target: KillTarget,
        /// GOODBYE reason.
        reason: String,
        /// GOODBYE message, if any.
        message: Option<String>,
        /// A session to spare (the caller of `kill_by_*`).
        except: Option<Id>,
    },
    /// The sessions subscribed under a subscription id.
    Subscribers {
        /// The subscription.
        subscription: Id,
    },
    /// Take one session out of a subscription (`wamp.subscription.remove_subscriber`).
    RemoveSubscriber {
        /// The subscription.
        subscription: Id,
        /// The subscriber.
        session: Id,
        /// The reason URI told to the session in UNSUBSCRIBED, if any.
        reason: Option<String>,
    },
    /// Take one callee out of a registration (`wamp.registration.remove_callee`).
    RemoveCallee {
        /// The registration.
        registration: Id,
        /// The callee.
        session: Id,
        /// The reason URI told to the session in UNREGISTERED, if any.
        reason: Option<String>,
    },
}

/// Which sessions a kill targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillTarget {
    /// Sessions with this authid.
    Authid(String),
    /// Sessions with this authrole.
    Authrole(String),
    /// One session.
    Session(Id),
}

/// A publication as it travels to interested shards.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// Realm index.
    pub realm: u16,
    /// The concrete topic.
    pub topic: String,
    /// The publication id.
    pub publication: Id,
    /// The publisher session (`None` for the router's own meta events).
    pub publisher: Option<Id>,
    /// The publisher's authid.
    pub authid: String,
    /// The publisher's authrole.
    pub authrole: String,
    /// Whether the publisher is disclosed to subscribers.
    pub disclose: bool,
    /// Whether the publisher itself is excluded.
    pub exclude_me: bool,
    /// Excluded sessions.
    pub exclude: Vec<Id>,
    /// Eligible sessions, if restricted.
    pub eligible: Option<Vec<Id>>,
    /// Excluded authids.
    pub exclude_authid: Vec<String>,
    /// Eligible authids, if restricted.
    pub eligible_authid: Option<Vec<String>>,
    /// Excluded authroles.
    pub exclude_authrole: Vec<String>,
    /// Eligible authroles, if restricted.
    pub eligible_authrole: Option<Vec<String>>,
    /// Whether subscribers asking for retained events get this one.
    pub retain: bool,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// The payload, in the publisher's serializer.
    pub payload: Payload,
    /// The payload transcoded to the other serializer by the publisher's shard, because
    /// some interested shard has subscribers using it; empty otherwise.
    pub transcoded: Payload,
}

impl Publication {
    /// The encoding of [`PeerMsg::Publish`] carrying this publication, written straight
    /// from a reference (the publisher's shard need not clone or box it to forward it),
    /// with `transcoded` in place of the field of that name when given.
    pub fn to_peer_bytes(&self, transcoded: Option<&Payload>) -> Bytes {
        let transcoded = transcoded.unwrap_or(&self.transcoded);
        let mut out = Vec::with_capacity(
            96 + self.topic.len() + self.authid.len() + self.payload.len() + transcoded.len(),
        );
        let mut w = W(&mut out);
        w.u8(VERSION);
        w.u8(tag::PUBLISH);
        w.publication(self, transcoded);
        Bytes::from(out)
    }

    /// The payload in `serializer` if this publication carries it already.
    pub fn payload_in(&self, serializer: Serializer) -> Option<&Payload> {
        if self.payload.serializer() == serializer || self.payload.is_empty() {
            Some(&self.payload)
        } else if !self.transcoded.is_empty() && self.transcoded.serializer() == serializer {
            Some(&self.transcoded)
        } else {
            None
        }
    }

    /// Whether subscribers are filtered by anything but `exclude_me` (black/white lists).
    pub fn filters_subscribers(&self) -> bool {
        !self.exclude.is_empty()
            || self.eligible.is_some()
            || !self.exclude_authid.is_empty()
            || self.eligible_authid.is_some()
            || !self.exclude_authrole.is_empty()
            || self.eligible_authrole.is_some()
    }
}

/// A call as it travels to the callee's shard.
#[derive(Clone, Debug, PartialEq)]
pub struct Invoke {
    /// The caller session.
    pub caller: Id,
    /// The CALL's request id.
    pub call: Id,
    /// The registration chosen.
    pub registration: Id,
    /// The callee session chosen.
    pub callee: Id,
    /// The concrete procedure called (in the first chunk of a call; `None` in later
    /// chunks of a progressive call).
    pub procedure: Option<String>,
    /// Whether the registration is a pattern one: only then is the callee told
    /// `procedure` (in INVOCATION details).
    pub pattern: bool,
    /// The caller's authid and authrole, when disclosed.
    pub disclosed: Option<(String, String)>,
    /// Whether the caller accepts progressive results.
    pub receive_progress: bool,
    /// Whether more chunks of this call follow.
    pub progress: bool,
    /// The call's timeout in ms (0: none), passed on to the callee.
    pub timeout: u64,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// The payload, in the caller's serializer.
    pub payload: Payload,
}

/// A result as it travels back to the caller's shard.
#[derive(Clone, Debug, PartialEq)]
pub struct YieldMsg {
    /// The caller session.
    pub caller: Id,
    /// The CALL's request id.
    pub call: Id,
    /// Whether more results follow.
    pub progress: bool,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// Other YIELD options, forwarded as RESULT details.
    pub extra: Dict,
    /// The payload, in the callee's serializer.
    pub payload: Payload,
}

/// An error answering a call, as it travels back to the caller's shard.
#[derive(Clone, Debug, PartialEq)]
pub struct CallError {
    /// The caller session.
    pub caller: Id,
    /// The CALL's request id.
    pub call: Id,
    /// The error URI.
    pub error: String,
    /// ERROR details.
    pub details: Dict,
    /// The payload.
    pub payload: Payload,
}

/// A peer message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// The input is empty or ends inside a field.
    Truncated,
    /// The version byte is not [`VERSION`].
    UnknownVersion(u8),
    /// The tag byte names no message.
    UnknownTag(u8),
    /// A field holds a value outside its range (named by the field).
    BadField(&'static str),
    /// Bytes follow the message.
    TrailingBytes,
    /// A value nests deeper than the limit.
    TooDeep,
    /// The sending shard index is not a shard of this router.
    UnknownShard(u16),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("peer message truncated"),
            Self::UnknownVersion(v) => write!(f, "unknown peer encoding version {v}"),
            Self::UnknownTag(t) => write!(f, "unknown peer message tag {t}"),
            Self::BadField(n) => write!(f, "bad peer message field {n}"),
            Self::TrailingBytes => f.write_str("bytes after the peer message"),
            Self::TooDeep => f.write_str("peer message value nests too deep"),
            Self::UnknownShard(s) => write!(f, "message from unknown shard {s}"),
        }
    }
}

impl std::error::Error for PeerError {}

mod tag {
    pub(super) const SUBSCRIBE_REQUEST: u8 = 0x01;
    pub(super) const INTEREST_ADD: u8 = 0x02;
    pub(super) const ACK: u8 = 0x03;
    pub(super) const UNSUBSCRIBE_REQUEST: u8 = 0x04;
    pub(super) const INTEREST_REMOVE: u8 = 0x05;
    pub(super) const PUBLISH: u8 = 0x06;
    pub(super) const INTEREST_NEEDS: u8 = 0x07;
    pub(super) const FENCE: u8 = 0x08;
    pub(super) const REGISTER_REQUEST: u8 = 0x10;
    pub(super) const REGISTER_ADD: u8 = 0x11;
    pub(super) const REGISTER_REJECT: u8 = 0x12;
    pub(super) const UNREGISTER_REQUEST: u8 = 0x13;
    pub(super) const REGISTER_REMOVE: u8 = 0x14;
    pub(super) const INVOKE: u8 = 0x15;
    pub(super) const YIELD: u8 = 0x16;
    pub(super) const CALL_ERROR: u8 = 0x17;
    pub(super) const CANCEL: u8 = 0x18;
    pub(super) const META_QUERY: u8 = 0x20;
    pub(super) const META_REPLY: u8 = 0x21;
    pub(super) const COOKIE_BIND: u8 = 0x22;
    pub(super) const JOIN: u8 = 0x30;
    pub(super) const SNAPSHOT: u8 = 0x31;
    pub(super) const BUSY: u8 = 0x32;
    pub(super) const WITHDRAW: u8 = 0x33;
    pub(super) const READY: u8 = 0x34;
    pub(super) const FORWARD: u8 = 0x35;
    pub(super) const RESYNC: u8 = 0x36;
    pub(super) const UNROUTED: u8 = 0x38;
}

impl PeerMsg {
    /// Appends the message's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = W(out);
        w.u8(VERSION);
        match self {
            Self::SubscribeRequest {
                token,
                realm,
                uri,
                policy,
            } => {
                w.u8(tag::SUBSCRIBE_REQUEST);
                w.u64(*token);
                w.u16(*realm);
                w.str(uri);
                w.policy(*policy);
            }
            Self::InterestAdd {
                realm,
                uri,
                policy,
                subscription,
                shard,
                life,
                requester,
                token,
                to,
            } => {
                w.u8(tag::INTEREST_ADD);
                w.u16(*realm);
                w.str(uri);
                w.policy(*policy);
                w.id(*subscription);
                w.u16(*shard);
                w.u64(*life);
                w.u16(*requester);
                w.u64(*token);
                w.lives(to);
            }
            Self::Ack { token } => {
                w.u8(tag::ACK);
                w.u64(*token);
            }
            Self::Fence { token } => {
                w.u8(tag::FENCE);
                w.u64(*token);
            }
            Self::UnsubscribeRequest { realm, uri, policy } => {
                w.u8(tag::UNSUBSCRIBE_REQUEST);
                w.u16(*realm);
                w.str(uri);
                w.policy(*policy);
            }
            Self::InterestRemove {
                realm,
                uri,
                policy,
                shard,
            } => {
                w.u8(tag::INTEREST_REMOVE);
                w.u16(*realm);
                w.str(uri);
                w.policy(*policy);
                w.u16(*shard);
            }
            Self::Publish(p) => {
                w.u8(tag::PUBLISH);
                w.publication(p, &p.transcoded);
            }
            Self::InterestNeeds {
                realm,
                uri,
                policy,
                shard,
                needs,
            } => {
                w.u8(tag::INTEREST_NEEDS);
                w.u16(*realm);
                w.str(uri);
                w.policy(*policy);
                w.u16(*shard);
                w.u8(*needs);
            }
            Self::RegisterRequest {
                token,
                realm,
                uri,
                policy,
                invoke,
                session,
            } => {
                w.u8(tag::REGISTER_REQUEST);
                w.u64(*token);
                w.u16(*realm);
                w.str(uri);
                w.policy(*policy);
                w.invoke(*invoke);
                w.id(*session);
            }
            Self::RegisterAdd {
                realm,
                uri,
                policy,
                invoke,
                registration,
                shard,
                life,
                session,
                requester,
                token,
                to,
            } => {
                w.u8(tag::REGISTER_ADD);
                w.u16(*realm);
                w.str(uri);
                w.policy(*policy);
                w.invoke(*invoke);
                w.id(*registration);
                w.u16(*shard);
                w.u64(*life);
                w.id(*session);
                w.u16(*requester);
                w.u64(*token);
                w.lives(to);
            }
            Self::RegisterReject { token, error } => {
                w.u8(tag::REGISTER_REJECT);
                w.u64(*token);
                w.str(error);
            }
            Self::UnregisterRequest {
                realm,
                registration,
                session,
            } => {
                w.u8(tag::UNREGISTER_REQUEST);
                w.u16(*realm);
                w.id(*registration);
                w.id(*session);
            }
            Self::RegisterRemove {
                realm,
                registration,
                shard,
                session,
            } => {
                w.u8(tag::REGISTER_REMOVE);
                w.u16(*realm);
                w.id(*registration);
                w.u16(*shard);
                w.id(*session);
            }
            Self::Invoke(i) => {
                w.u8(tag::INVOKE);
                w.invoke_body(i);
            }
            Self::Unrouted(i) => {
                w.u8(tag::UNROUTED);
                w.invoke_body(i);
            }
            Self::Yield(y) => {
                w.u8(tag::YIELD);
                w.id(y.caller);
                w.id(y.call);
                w.bool(y.progress);
                w.ppt(&y.ppt);
                w.dict(&y.extra);
                w.payload(&y.payload);
            }
            Self::CallError(e) => {
                w.u8(tag::CALL_ERROR);
                w.id(e.caller);
                w.id(e.call);
                w.str(&e.error);
                w.dict(&e.details);
                w.payload(&e.payload);
            }
            Self::Cancel {
                caller,
                call,
                mode,
                reason,
            } => {
                w.u8(tag::CANCEL);
                w.id(*caller);
                w.id(*call);
                w.u8(match mode {
                    CancelMode::Kill => 0,
                    CancelMode::KillNoWait => 1,
                    CancelMode::Skip => 2,
                });
                w.str(reason);
            }
            Self::MetaQuery {
                token,
                realm,
                query,
            } => {
                w.u8(tag::META_QUERY);
                w.u64(*token);
                w.u16(*realm);
                match query {
                    MetaQuery::Sessions { authroles } => {
                        w.u8(0);
                        w.opt(authroles.as_ref(), |w, v| w.strs(v));
                    }
                    MetaQuery::Session { session } => {
                        w.u8(1);
                        w.id(*session);
                    }
                    MetaQuery::Kill {
                        target,
                        reason,
                        message,
                        except,
                    } => {
                        w.u8(2);
                        match target {
                            KillTarget::Authid(s) => {
                                w.u8(0);
                                w.str(s);
                            }
                            KillTarget::Authrole(s) => {
                                w.u8(1);
                                w.str(s);
                            }
                            KillTarget::Session(id) => {
                                w.u8(2);
                                w.id(*id);
                            }
                        }
                        w.str(reason);
                        w.opt(message.as_ref(), |w, s| w.str(s));
                        w.opt_id(*except);
                    }
                    MetaQuery::Subscribers { subscription } => {
                        w.u8(3);
                        w.id(*subscription);
                    }
                    MetaQuery::RemoveSubscriber {
                        subscription: id,
                        session,
                        reason,
                    }
                    | MetaQuery::RemoveCallee {
                        registration: id,
                        session,
                        reason,
                    } => {
                        w.u8(if matches!(query, MetaQuery::RemoveSubscriber { .. }) {
                            4
                        } else {
                            5
                        });
                        w.id(*id);
                        w.id(*session);
                        w.opt(reason.as_ref(), |w, s| w.str(s));
                    }
                }
            }
            Self::MetaReply { token, values } => {
                w.u8(tag::META_REPLY);
                w.u64(*token);
                w.len(values.len());
                for v in values {
                    w.value(v, 0);
                }
            }
            Self::CookieBind {
                cbtid,
                realm,
                authid,
                authrole,
                ttl_ms,
            } => {
                w.u8(tag::COOKIE_BIND);
                w.str(cbtid);
                w.u16(*realm);
                w.str(authid);
                w.str(authrole);
                w.u64(*ttl_ms);
            }
            Self::Join { round, life } => {
                w.u8(tag::JOIN);
                w.u32(*round);
                w.u64(*life);
            }
            Self::Busy { joiner, round } => {
                w.u8(tag::BUSY);
                w.u16(*joiner);
                w.u32(*round);
            }
            Self::Withdraw => w.u8(tag::WITHDRAW),
            Self::Ready => w.u8(tag::READY),
            Self::Resync { round, dead } => {
                w.u8(tag::RESYNC);
                w.u32(*round);
                w.u16(*dead);
            }
            Self::Forward {
                origin,
                life,
                hops,
                msg,
            } => {
                w.u8(tag::FORWARD);
                w.u16(*origin);
                w.u64(*life);
                w.u8(*hops);
                let mut inner = Vec::new();
                msg.encode(&mut inner);
                w.bytes(&inner);
            }
            Self::Snapshot(s) => {
                w.u8(tag::SNAPSHOT);
                w.u32(s.round);
                match s.resync {
                    Some(d) => {
                        w.u8(1);
                        w.u16(d);
                    }
                    None => w.u8(0),
                }
                w.len(s.interest.len());
                for (realm, uri, policy, id, shards) in &s.interest {
                    w.u16(*realm);
                    w.str(uri);
                    w.policy(*policy);
                    w.id(*id);
                    w.len(shards.len());
                    for s in shards {
                        w.u16(*s);
                    }
                }
                w.len(s.registrations.len());
                for (realm, uri, policy, invoke, id, callees) in &s.registrations {
                    w.u16(*realm);
                    w.str(uri);
                    w.policy(*policy);
                    w.invoke(*invoke);
                    w.id(*id);
                    w.len(callees.len());
                    for (s, session) in callees {
                        w.u16(*s);
                        w.id(*session);
                    }
                }
                w.len(s.retained.len());
                for p in &s.retained {
                    w.publication(p, &p.transcoded);
                }
                w.len(s.dead.len());
                for d in &s.dead {
                    w.u16(*d);
                }
                w.len(s.lives.len());
                for l in &s.lives {
                    w.u64(*l);
                }
            }
        }
    }

    /// The message's encoding as `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        // Sized for the payload up front, so that a call or result is written without
        // growing the buffer.
        let payload = match self {
            Self::Publish(p) => p.payload.len() + p.transcoded.len(),
            Self::Invoke(i) | Self::Unrouted(i) => i.payload.len(),
            Self::Yield(y) => y.payload.len(),
            Self::CallError(e) => e.payload.len(),
            _ => 0,
        };
        let mut out = Vec::with_capacity(128 + payload);
        self.encode(&mut out);
        Bytes::from(out)
    }

    /// Decodes one message; `input` must hold exactly one.
    pub fn decode(input: &[u8]) -> Result<Self, PeerError> {
        let mut r = R { b: input, pos: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(PeerError::UnknownVersion(version));
        }
        let t = r.u8()?;
        let msg = match t {
            tag::SUBSCRIBE_REQUEST => Self::SubscribeRequest {
                token: r.u64()?,
                realm: r.u16()?,
                uri: r.str()?,
                policy: r.policy()?,
            },
            tag::INTEREST_ADD => Self::InterestAdd {
                realm: r.u16()?,
                uri: r.str()?,
                policy: r.policy()?,
                subscription: r.id("subscription")?,
                shard: r.u16()?,
                life: r.u64()?,
                requester: r.u16()?,
                token: r.u64()?,
                to: r.lives()?,
            },
            tag::ACK => Self::Ack { token: r.u64()? },
            tag::FENCE => Self::Fence { token: r.u64()? },
            tag::UNSUBSCRIBE_REQUEST => Self::UnsubscribeRequest {
                realm: r.u16()?,
                uri: r.str()?,
                policy: r.policy()?,
            },
            tag::INTEREST_REMOVE => Self::InterestRemove {
                realm: r.u16()?,
                uri: r.str()?,
                policy: r.policy()?,
                shard: r.u16()?,
            },
            tag::PUBLISH => Self::Publish(Box::new(r.publication()?)),
            tag::INTEREST_NEEDS => Self::InterestNeeds {
                realm: r.u16()?,
                uri: r.str()?,
                policy: r.policy()?,
                shard: r.u16()?,
                needs: r.u8()?,
            },
            tag::REGISTER_REQUEST => Self::RegisterRequest {
                token: r.u64()?,
                realm: r.u16()?,
                uri: r.str()?,
                policy: r.policy()?,
                invoke: r.invoke()?,
                session: r.id("session")?,
            },
            tag::REGISTER_ADD => Self::RegisterAdd {
                realm: r.u16()?,
                uri: r.str()?,
                policy: r.policy()?,
                invoke: r.invoke()?,
                registration: r.id("registration")?,
                shard: r.u16()?,
                life: r.u64()?,
                session: r.id("session")?,
                requester: r.u16()?,
                token: r.u64()?,
                to: r.lives()?,
            },
            tag::REGISTER_REJECT => Self::RegisterReject {
                token: r.u64()?,
                error: r.str()?,
            },
            tag::UNREGISTER_REQUEST => Self::UnregisterRequest {
                realm: r.u16()?,
                registration: r.id("registration")?,
                session: r.id("session")?,
            },
            tag::REGISTER_REMOVE => Self::RegisterRemove {
                realm: r.u16()?,
                registration: r.id("registration")?,
                shard: r.u16()?,
                session: r.id("session")?,
            },
            tag::INVOKE => Self::Invoke(Box::new(r.invoke_body()?)),
            tag::UNROUTED => Self::Unrouted(Box::new(r.invoke_body()?)),
            tag::YIELD => Self::Yield(Box::new(YieldMsg {
                caller: r.id("caller")?,
                call: r.id("call")?,
                progress: r.bool()?,
                ppt: r.ppt()?,
                extra: r.dict(0)?,
                payload: r.payload()?,
            })),
            tag::CALL_ERROR => Self::CallError(Box::new(CallError {
                caller: r.id("caller")?,
                call: r.id("call")?,
                error: r.str()?,
                details: r.dict(0)?,
                payload: r.payload()?,
            })),
            tag::CANCEL => Self::Cancel {
                caller: r.id("caller")?,
                call: r.id("call")?,
                mode: match r.u8()? {
                    0 => CancelMode::Kill,
                    1 => CancelMode::KillNoWait,
                    2 => CancelMode::Skip,
                    _ => return Err(PeerError::BadField("mode")),
                },
                reason: r.str()?,
            },
            tag::META_QUERY => {
                let token = r.u64()?;
                let realm = r.u16()?;
                let query = match r.u8()? {
                    0 => MetaQuery::Sessions {
                        authroles: r.opt(R::strs)?,
                    },
                    1 => MetaQuery::Session {
                        session: r.id("session")?,
                    },
                    2 => {
                        let target = match r.u8()? {
                            0 => KillTarget::Authid(r.str()?),
                            1 => KillTarget::Authrole(r.str()?),
                            2 => KillTarget::Session(r.id("session")?),
                            _ => return Err(PeerError::BadField("target")),
                        };
                        MetaQuery::Kill {
                            target,
                            reason: r.str()?,
                            message: r.opt(R::str)?,
                            except: r.opt_id("except")?,
                        }
                    }
                    3 => MetaQuery::Subscribers {
                        subscription: r.id("subscription")?,
                    },
                    4 => MetaQuery::RemoveSubscriber {
                        subscription: r.id("subscription")?,
                        session: r.id("session")?,
                        reason: r.opt(R::str)?,
                    },
                    5 => MetaQuery::RemoveCallee {
                        registration: r.id("registration")?,
                        session: r.id("session")?,
                        reason: r.opt(R::str)?,
                    },
                    _ => return Err(PeerError::BadField("query")),
                };
                Self::MetaQuery {
                    token,
                    realm,
                    query,
                }
            }
            tag::META_REPLY => {
                let token = r.u64()?;
                let n = r.len()?;
                let mut values = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    values.push(r.value(0)?);
                }
                Self::MetaReply { token, values }
            }
            tag::COOKIE_BIND => Self::CookieBind {
                cbtid: r.str()?,
                realm: r.u16()?,
                authid: r.str()?,
                authrole: r.str()?,
                ttl_ms: r.u64()?,
            },
            tag::JOIN => Self::Join {
                round: r.u32()?,
                life: r.u64()?,
            },
            tag::BUSY => Self::Busy {
                joiner: r.u16()?,
                round: r.u32()?,
            },
            tag::WITHDRAW => Self::Withdraw,
            tag::READY => Self::Ready,
            tag::RESYNC => Self::Resync {
                round: r.u32()?,
                dead: r.u16()?,
            },
            tag::FORWARD => {
                let (origin, life, hops) = (r.u16()?, r.u64()?, r.u8()?);
                let msg = Self::decode(r.bytes()?)?;
                if matches!(msg, Self::Forward { .. }) {
                    return Err(PeerError::BadField("forward"));
                }
                Self::Forward {
                    origin,
                    life,
                    hops,
                    msg: Box::new(msg),
                }
            }
            tag::SNAPSHOT => {
                let round = r.u32()?;
                let resync = match r.u8()? {
                    0 => None,
                    1 => Some(r.u16()?),
                    _ => return Err(PeerError::BadField("resync")),
                };
                let mut s = Snapshot {
                    round,
                    resync,
                    ..Snapshot::default()
                };
                for _ in 0..r.len()? {
                    let (realm, uri, policy, id) =
                        (r.u16()?, r.str()?, r.policy()?, r.id("subscription")?);
                    let n = r.len()?;
                    let shards = (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?;
                    s.interest.push((realm, uri, policy, id, shards));
                }
                for _ in 0..r.len()? {
                    let (realm, uri, policy, invoke) =
                        (r.u16()?, r.str()?, r.policy()?, r.invoke()?);
                    let id = r.id("registration")?;
                    let n = r.len()?;
                    let callees = (0..n)
                        .map(|_| Ok((r.u16()?, r.id("session")?)))
                        .collect::<Result<_, PeerError>>()?;
                    s.registrations
                        .push((realm, uri, policy, invoke, id, callees));
                }
                for _ in 0..r.len()? {
                    s.retained.push(r.publication()?);
                }
                for _ in 0..r.len()? {
                    s.dead.push(r.u16()?);
                }
                for _ in 0..r.len()? {
                    s.lives.push(r.u64()?);
                }
                Self::Snapshot(Box::new(s))
            }
            other => return Err(PeerError::UnknownTag(other)),
        };
        if r.pos != input.len() {
            return Err(PeerError::TrailingBytes);
        }
        Ok(msg)
    }
}

/// The writer: appends fields to a `Vec<u8>`.
struct W<'a>(&'a mut Vec<u8>);

impl W<'_> {
    fn publication(&mut self, p: &Publication, transcoded: &Payload) {
        self.u16(p.realm);
        self.str(&p.topic);
        self.id(p.publication);
        self.opt_id(p.publisher);
        self.str(&p.authid);
        self.str(&p.authrole);
        self.bool(p.disclose);
        self.bool(p.exclude_me);
        self.ids(&p.exclude);
        self.opt(p.eligible.as_ref(), |w, v| w.ids(v));
        self.strs(&p.exclude_authid);
        self.opt(p.eligible_authid.as_ref(), |w, v| w.strs(v));
        self.strs(&p.exclude_authrole);
        self.opt(p.eligible_authrole.as_ref(), |w, v| w.strs(v));
        self.bool(p.retain);
        self.ppt(&p.ppt);
        self.payload(&p.payload);
        self.payload(transcoded);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        // Every length written here comes from an in-memory value far below 4 GiB (messages
        // are bounded by `Limits::message_size`); saturating keeps the writer total anyway.
        self.0
            .extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn id(&mut self, v: Id) {
        self.u64(v.get());
    }
    fn opt_id(&mut self, v: Option<Id>) {
        self.u64(v.map_or(0, Id::get));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn ids(&mut self, v: &[Id]) {
        self.len(v.len());
        for id in v {
            self.id(*id);
        }
    }
    fn strs(&mut self, v: &[String]) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }
    fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
    fn policy(&mut self, p: MatchPolicy) {
        self.u8(match p {
            MatchPolicy::Exact => 0,
            MatchPolicy::Prefix => 1,
            MatchPolicy::Wildcard => 2,
        });
    }
    fn invoke(&mut self, p: InvokePolicy) {
        self.u8(match p {
            InvokePolicy::Single => 0,
            InvokePolicy::RoundRobin => 1,
            InvokePolicy::Random => 2,
            InvokePolicy::First => 3,
            InvokePolicy::Last => 4,
        });
    }
    fn lives(&mut self, to: &[(u16, u64)]) {
        self.len(to.len());
        for (s, l) in to {
            self.u16(*s);
            self.u64(*l);
        }
    }
    fn invoke_body(&mut self, i: &Invoke) {
        self.id(i.caller);
        self.id(i.call);
        self.id(i.registration);
        self.id(i.callee);
        self.opt(i.procedure.as_ref(), |w, s| w.str(s));
        self.bool(i.pattern);
        self.opt(i.disclosed.as_ref(), |w, (a, r)| {
            w.str(a);
            w.str(r);
        });
        self.bool(i.receive_progress);
        self.bool(i.progress);
        self.u64(i.timeout);
        self.ppt(&i.ppt);
        self.payload(&i.payload);
    }
    fn ppt(&mut self, p: &Ppt) {
        for s in [&p.scheme, &p.serializer, &p.cipher, &p.keyid] {
            self.opt(s.as_ref(), |w, s| w.str(s));
        }
    }
    fn payload(&mut self, p: &Payload) {
        self.u8(match p.serializer() {
            Serializer::Json => 0,
            Serializer::MsgPack => 1,
        });
        self.opt(p.args(), |w, b| w.bytes(b));
        self.opt(p.kwargs(), |w, b| w.bytes(b));
    }
    fn dict(&mut self, d: &Dict) {
        self.len(d.len());
        for (k, v) in d.iter() {
            self.str(k);
            self.value(v, 1);
        }
    }
    fn value(&mut self, v: &Value, depth: usize) {
        // Values built by this router never nest past the limit (decoded ones were checked
        // by the codec); writing `Null` past it keeps the writer total.
        if depth > MAX_DEPTH {
            self.u8(0);
            return;
        }
        match v {
            Value::Null => self.u8(0),
            Value::Bool(b) => {
                self.u8(1);
                self.bool(*b);
            }
            Value::Int(i) => {
                self.u8(2);
                self.0.extend_from_slice(&i.to_le_bytes());
            }
            Value::UInt(u) => {
                self.u8(3);
                self.u64(*u);
            }
            Value::Float(f) => {
                self.u8(4);
                self.0.extend_from_slice(&f.to_le_bytes());
            }
            Value::Str(s) => {
                self.u8(5);
                self.str(s);
            }
            Value::Bin(b) => {
                self.u8(6);
                self.bytes(b);
            }
            Value::List(l) => {
                self.u8(7);
                self.len(l.len());
                for v in l {
                    self.value(v, depth + 1);
                }
            }
            Value::Dict(d) => {
                self.u8(8);
                self.len(d.len());
                for (k, v) in d.iter() {
                    self.str(k);
                    self.value(v, depth + 1);
                }
            }
        }
    }
}

/// The reader: takes fields from a byte slice, checking every length.
struct R<'a> {
    b: &'a [u8],
    pos: usize,
}

impl R<'_> {
    fn publication(&mut self) -> Result<Publication, PeerError> {
        Ok(Publication {
            realm: self.u16()?,
            topic: self.str()?,
            publication: self.id("publication")?,
            publisher: self.opt_id("publisher")?,
            authid: self.str()?,
            authrole: self.str()?,
            disclose: self.bool()?,
            exclude_me: self.bool()?,
            exclude: self.ids()?,
            eligible: self.opt(R::ids)?,
            exclude_authid: self.strs()?,
            eligible_authid: self.opt(R::strs)?,
            exclude_authrole: self.strs()?,
            eligible_authrole: self.opt(R::strs)?,
            retain: self.bool()?,
            ppt: self.ppt()?,
            payload: self.payload()?,
            transcoded: self.payload()?,
        })
    }
    fn take(&mut self, n: usize) -> Result<&[u8], PeerError> {
        let end = self.pos.checked_add(n).ok_or(PeerError::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(PeerError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], PeerError> {
        let s = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, PeerError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, PeerError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, PeerError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, PeerError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize, PeerError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        // A length can never exceed what is left; checking here keeps preallocation honest.
        if n > self.b.len() - self.pos {
            return Err(PeerError::Truncated);
        }
        Ok(n)
    }
    fn bool(&mut self) -> Result<bool, PeerError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(PeerError::BadField("bool")),
        }
    }
    fn id(&mut self, field: &'static str) -> Result<Id, PeerError> {
        Id::new(self.u64()?).ok_or(PeerError::BadField(field))
    }
    fn opt_id(&mut self, field: &'static str) -> Result<Option<Id>, PeerError> {
        match self.u64()? {
            0 => Ok(None),
            v => Id::new(v).map(Some).ok_or(PeerError::BadField(field)),
        }
    }
    fn bytes(&mut self) -> Result<&[u8], PeerError> {
        let n = self.len()?;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, PeerError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| PeerError::BadField("utf8"))
    }
    fn ids(&mut self) -> Result<Vec<Id>, PeerError> {
        let n = self.len()?;
        (0..n).map(|_| self.id("id")).collect()
    }
    fn strs(&mut self) -> Result<Vec<String>, PeerError> {
        let n = self.len()?;
        (0..n).map(|_| self.str()).collect()
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, PeerError>,
    ) -> Result<Option<T>, PeerError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(PeerError::BadField("option")),
        }
    }
    fn policy(&mut self) -> Result<MatchPolicy, PeerError> {
        Ok(match self.u8()? {
            0 => MatchPolicy::Exact,
            1 => MatchPolicy::Prefix,
            2 => MatchPolicy::Wildcard,
            _ => return Err(PeerError::BadField("policy")),
        })
    }
    fn invoke(&mut self) -> Result<InvokePolicy, PeerError> {
        Ok(match self.u8()? {
            0 => InvokePolicy::Single,
            1 => InvokePolicy::RoundRobin,
            2 => InvokePolicy::Random,
            3 => InvokePolicy::First,
            4 => InvokePolicy::Last,
            _ => return Err(PeerError::BadField("invoke")),
        })
    }
    fn lives(&mut self) -> Result<Vec<(u16, u64)>, PeerError> {
        (0..self.len()?)
            .map(|_| Ok((self.u16()?, self.u64()?)))
            .collect()
    }
    fn invoke_body(&mut self) -> Result<Invoke, PeerError> {
        Ok(Invoke {
            caller: self.id("caller")?,
            call: self.id("call")?,
            registration: self.id("registration")?,
            callee: self.id("callee")?,
            procedure: self.opt(R::str)?,
            pattern: self.bool()?,
            disclosed: self.opt(|r| Ok((r.str()?, r.str()?)))?,
            receive_progress: self.bool()?,
            progress: self.bool()?,
            timeout: self.u64()?,
            ppt: self.ppt()?,
            payload: self.payload()?,
        })
    }
    fn ppt(&mut self) -> Result<Ppt, PeerError> {
        Ok(Ppt {
            scheme: self.opt(R::str)?,
            serializer: self.opt(R::str)?,
            cipher: self.opt(R::str)?,
            keyid: self.opt(R::str)?,
        })
    }
    fn payload(&mut self) -> Result<Payload, PeerError> {
        let serializer = match self.u8()? {
            0 => Serializer::Json,
            1 => Serializer::MsgPack,
            _ => return Err(PeerError::BadField("serializer")),
        };
        let args = self.opt(|r| r.bytes().map(Bytes::copy_from_slice))?;
        let kwargs = self.opt(|r| r.bytes().map(Bytes::copy_from_slice))?;
        Ok(Payload::new(serializer, args, kwargs))
    }
    fn dict(&mut self, depth: usize) -> Result<Dict, PeerError> {
        let n = self.len()?;
        let mut d = Dict::new();
        for _ in 0..n {
            let k = self.str()?;
            let v = self.value(depth + 1)?;
            d.insert(&k, v);
        }
        Ok(d)
    }
    fn value(&mut self, depth: usize) -> Result<Value, PeerError> {
        if depth > MAX_DEPTH {
            return Err(PeerError::TooDeep);
        }
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(self.bool()?),
            2 => Value::Int(i64::from_le_bytes(self.array()?)),
            3 => Value::UInt(self.u64()?),
            4 => Value::Float(f64::from_le_bytes(self.array()?)),
            5 => Value::Str(self.str()?),
            6 => Value::Bin(self.bytes()?.to_vec()),
            7 => {
                let n = self.len()?;
                let mut l = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    l.push(self.value(depth + 1)?);
                }
                Value::List(l)
            }
            8 => Value::Dict(self.dict(depth)?),
            _ => return Err(PeerError::BadField("value")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: u64) -> Id {
        Id::new(v).unwrap()
    }

    fn samples() -> Vec<PeerMsg> {
        let payload = Payload::new(
            Serializer::Json,
            Some(Bytes::from_static(b"[1,2]")),
            Some(Bytes::from_static(b"{\"a\":1}")),
        );
        vec![
            PeerMsg::SubscribeRequest {
                token: 9,
                realm: 1,
                uri: "a.b".into(),
                policy: MatchPolicy::Prefix,
            },
            PeerMsg::InterestAdd {
                realm: 0,
                uri: "a..c".into(),
                policy: MatchPolicy::Wildcard,
                subscription: id(77),
                shard: 3,
                life: 9,
                requester: 2,
                token: 5,
                to: vec![(0, 0), (3, 9)],
            },
            PeerMsg::Ack { token: u64::MAX },
            PeerMsg::Fence { token: 12 },
            PeerMsg::CookieBind {
                cbtid: "abc".into(),
                realm: 1,
                authid: "joe".into(),
                authrole: "user".into(),
                ttl_ms: 5000,
            },
            PeerMsg::UnsubscribeRequest {
                realm: 0,
                uri: "x".into(),
                policy: MatchPolicy::Exact,
            },
            PeerMsg::InterestRemove {
                realm: 0,
                uri: "x".into(),
                policy: MatchPolicy::Exact,
                shard: 1,
            },
            PeerMsg::Publish(Box::new(Publication {
                realm: 0,
                topic: "t".into(),
                publication: id(1 << 53),
                publisher: Some(id(4)),
                authid: "me".into(),
                authrole: "anonymous".into(),
                disclose: true,
                exclude_me: false,
                exclude: vec![id(5)],
                eligible: Some(vec![id(4), id(6)]),
                exclude_authid: vec!["x".into()],
                eligible_authid: None,
                exclude_authrole: vec![],
                eligible_authrole: Some(vec!["r".into()]),
                retain: true,
                ppt: Ppt {
                    scheme: Some("x_os".into()),
                    ..Ppt::default()
                },
                payload: payload.clone(),
                transcoded: Payload::new(
                    Serializer::MsgPack,
                    Some(Bytes::from_static(&[0x92, 0x01, 0x02])),
                    None,
                ),
            })),
            PeerMsg::InterestNeeds {
                realm: 2,
                uri: "a.b.".into(),
                policy: MatchPolicy::Prefix,
                shard: 1,
                needs: 3,
            },
            PeerMsg::RegisterRequest {
                token: 1,
                realm: 0,
                uri: "p".into(),
                policy: MatchPolicy::Exact,
                invoke: InvokePolicy::RoundRobin,
                session: id(3),
            },
            PeerMsg::RegisterAdd {
                realm: 0,
                uri: "p".into(),
                policy: MatchPolicy::Exact,
                invoke: InvokePolicy::Last,
                registration: id(8),
                shard: 1,
                life: u64::MAX,
                session: id(3),
                requester: 1,
                token: 1,
                to: vec![],
            },
            PeerMsg::RegisterReject {
                token: 1,
                error: "wamp.error.procedure_already_exists".into(),
            },
            PeerMsg::UnregisterRequest {
                realm: 0,
                registration: id(8),
                session: id(3),
            },
            PeerMsg::RegisterRemove {
                realm: 0,
                registration: id(8),
                shard: 1,
                session: id(3),
            },
            PeerMsg::Invoke(Box::new(Invoke {
                caller: id(1),
                call: id(2),
                registration: id(8),
                callee: id(3),
                procedure: Some("a.b".into()),
                pattern: true,
                disclosed: Some(("alice".into(), "user".into())),
                receive_progress: true,
                progress: false,
                timeout: 1500,
                ppt: Ppt::default(),
                payload: Payload::new(
                    Serializer::MsgPack,
                    Some(Bytes::from_static(&[0x91, 0x01])),
                    None,
                ),
            })),
            PeerMsg::Unrouted(Box::new(Invoke {
                caller: id(1),
                call: id(2),
                registration: id(8),
                callee: id(3),
                procedure: Some("a.b.c".into()),
                pattern: false,
                disclosed: None,
                receive_progress: false,
                progress: false,
                timeout: 0,
                ppt: Ppt::default(),
                payload: Payload::empty(),
            })),
            PeerMsg::Yield(Box::new(YieldMsg {
                caller: id(1),
                call: id(2),
                progress: true,
                ppt: Ppt::default(),
                extra: Dict::new().with("x", Value::List(vec![Value::Int(-3), Value::Float(1.5)])),
                payload: Payload::empty(),
            })),
            PeerMsg::CallError(Box::new(CallError {
                caller: id(1),
                call: id(2),
                error: "app.error".into(),
                details: Dict::new()
                    .with("n", Value::Null)
                    .with("b", Value::Bin(vec![0, 1])),
                payload: payload.clone(),
            })),
            PeerMsg::Cancel {
                caller: id(1),
                call: id(2),
                mode: CancelMode::KillNoWait,
                reason: "wamp.error.canceled".into(),
            },
            PeerMsg::MetaQuery {
                token: 4,
                realm: 0,
                query: MetaQuery::Sessions {
                    authroles: Some(vec!["a".into()]),
                },
            },
            PeerMsg::MetaQuery {
                token: 4,
                realm: 0,
                query: MetaQuery::Session { session: id(9) },
            },
            PeerMsg::MetaQuery {
                token: 4,
                realm: 0,
                query: MetaQuery::Kill {
                    target: KillTarget::Authrole("r".into()),
                    reason: "wamp.close.killed".into(),
                    message: None,
                    except: Some(id(2)),
                },
            },
            PeerMsg::MetaQuery {
                token: 4,
                realm: 0,
                query: MetaQuery::Subscribers {
                    subscription: id(9),
                },
            },
            PeerMsg::MetaQuery {
                token: 5,
                realm: 1,
                query: MetaQuery::RemoveSubscriber {
                    subscription: id(9),
                    session: id(10),
                    reason: Some("wamp.error.x".into()),
                },
            },
            PeerMsg::MetaQuery {
                token: 6,
                realm: 1,
                query: MetaQuery::RemoveCallee {
                    registration: id(9),
                    session: id(10),
                    reason: None,
                },
            },
            PeerMsg::Join {
                round: 7,
                life: 0x1234_5678_9abc,
            },
            PeerMsg::Busy {
                joiner: 3,
                round: 2,
            },
            PeerMsg::Withdraw,
            PeerMsg::Ready,
            PeerMsg::Resync { round: 4, dead: 1 },
            PeerMsg::Forward {
                origin: 2,
                life: 42,
                hops: 1,
                msg: Box::new(PeerMsg::UnsubscribeRequest {
                    realm: 0,
                    uri: "a.b".into(),
                    policy: MatchPolicy::Prefix,
                }),
            },
            PeerMsg::Snapshot(Box::new(Snapshot {
                round: 1,
                resync: Some(2),
                interest: vec![(0, "a.".into(), MatchPolicy::Prefix, id(3), vec![0, 2])],
                registrations: vec![(
                    1,
                    "p".into(),
                    MatchPolicy::Exact,
                    InvokePolicy::Random,
                    id(4),
                    vec![(1, id(9)), (2, id(10))],
                )],
                retained: vec![],
                dead: vec![1, 3],
                lives: vec![0, 77, u64::MAX, 5],
            })),
            PeerMsg::MetaReply {
                token: 4,
                values: vec![
                    Value::UInt(1),
                    Value::Dict(Dict::new().with("k", "v")),
                    Value::Bool(false),
                ],
            },
        ]
    }

    #[test]
    fn round_trip() {
        for m in samples() {
            let b = m.to_bytes();
            assert_eq!(b[0], VERSION);
            assert_eq!(PeerMsg::decode(&b), Ok(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn publication_bytes_are_the_publish_message() {
        for m in samples() {
            if let PeerMsg::Publish(p) = &m {
                assert_eq!(p.to_peer_bytes(None), m.to_bytes());
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for m in samples() {
            let b = m.to_bytes();
            for cut in 0..b.len() {
                assert!(PeerMsg::decode(&b[..cut]).is_err(), "{m:?} cut at {cut}");
            }
        }
    }

    fn check(input: &[u8], expect: PeerError) {
        assert_eq!(PeerMsg::decode(input), Err(expect), "{input:?}");
    }

    #[test]
    fn bad_input() {
        check(&[], PeerError::Truncated);
        check(&[0x01, tag::ACK], PeerError::UnknownVersion(1));
        check(&[VERSION, 0xee], PeerError::UnknownTag(0xee));
        let mut ack = PeerMsg::Ack { token: 1 }.to_bytes().to_vec();
        ack.push(0);
        check(&ack, PeerError::TrailingBytes);
        let mut unsub = PeerMsg::UnsubscribeRequest {
            realm: 0,
            uri: "x".into(),
            policy: MatchPolicy::Exact,
        }
        .to_bytes()
        .to_vec();
        *unsub.last_mut().unwrap() = 9;
        check(&unsub, PeerError::BadField("policy"));
        let mut cancel = PeerMsg::Cancel {
            caller: id(1),
            call: id(2),
            mode: CancelMode::Kill,
            reason: String::new(),
        }
        .to_bytes()
        .to_vec();
        cancel[2..10].copy_from_slice(&0u64.to_le_bytes());
        check(&cancel, PeerError::BadField("caller"));
        // A length larger than the rest of the input is truncation, not an allocation.
        let mut sub = vec![VERSION, tag::SUBSCRIBE_REQUEST];
        sub.extend_from_slice(&1u64.to_le_bytes());
        sub.extend_from_slice(&0u16.to_le_bytes());
        sub.extend_from_slice(&u32::MAX.to_le_bytes());
        check(&sub, PeerError::Truncated);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Decoding arbitrary bytes is total: an error or a message, never a panic, and a
        /// decoded message survives a second encode/decode unchanged.
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let mut input = bytes;
            if let Some(first) = input.first_mut() {
                *first = VERSION;
            }
            if let Ok(m) = PeerMsg::decode(&input) {
                // Bytes, not values: a NaN float is not equal to itself.
                let once = m.to_bytes();
                proptest::prop_assert_eq!(PeerMsg::decode(&once).map(|x| x.to_bytes()), Ok(once));
            }
        }

        /// Flipping any one byte of a valid message never panics the decoder.
        #[test]
        fn corrupted_messages(which in 0usize..21, pos in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let samples = samples();
            let mut b = samples[which % samples.len()].to_bytes().to_vec();
            let i = pos % b.len();
            b[i] = byte;
            let _ = PeerMsg::decode(&b);
        }
    }

    #[test]
    fn deep_values_are_refused() {
        let mut v = Value::Null;
        for _ in 0..MAX_DEPTH + 5 {
            v = Value::List(vec![v]);
        }
        let mut b = vec![VERSION, tag::META_REPLY];
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        for _ in 0..MAX_DEPTH + 5 {
            b.push(7);
            b.extend_from_slice(&1u32.to_le_bytes());
        }
        b.push(0);
        check(&b, PeerError::TooDeep);
    }
}
