//! The model of every WAMP v2 message of the basic and advanced profiles.
//!
//! One [`Message`] enum with a struct per message. Each struct holds exactly what is on the
//! wire: ids as [`Id`], URIs as `String` (not validated here: the router validates them, so
//! that a bad URI gets the spec's `wamp.error.invalid_uri` answer instead of a decode
//! error), Options/Details dictionaries as typed structs, and application payloads as a raw
//! [`Payload`]. Options and Details have a typed field for each key the router reads and an
//! `extra` [`Dict`] for every other key, kept in order so that forwarding loses nothing.
//! Flags are `Option<bool>` so that "absent" and "false" survive a round trip.
//!
//! This module does no IO and no serialization: [`crate::codec`] reads and writes these
//! types. It does not check which messages a role may send or in which session state.

mod payload;
mod value;

pub use payload::Payload;
pub use value::{Dict, Value};

use crate::id::Id;

/// The `match` option of SUBSCRIBE and REGISTER: the very type the matcher, the router and
/// the configuration use, named here so that message users need one import.
///
/// An alias rather than a `pub use` only so that code which still names both paths in one
/// scope (the router's old conversion helper) does not trip `unused_qualifications`; it
/// can become a `pub use` once that helper is gone.
pub type MatchPolicy = crate::uri::MatchPolicy;

/// A WAMP message type code, as the first element of every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum MessageType {
    /// HELLO (1).
    Hello = 0x01,
    /// WELCOME (2).
    Welcome = 0x02,
    /// ABORT (3).
    Abort = 0x03,
    /// CHALLENGE (4).
    Challenge = 0x04,
    /// AUTHENTICATE (5).
    Authenticate = 0x05,
    /// GOODBYE (6).
    Goodbye = 0x06,
    /// ERROR (8).
    Error = 0x08,
    /// PUBLISH (16).
    Publish = 0x10,
    /// PUBLISHED (17).
    Published = 0x11,
    /// SUBSCRIBE (32).
    Subscribe = 0x20,
    /// SUBSCRIBED (33).
    Subscribed = 0x21,
    /// UNSUBSCRIBE (34).
    Unsubscribe = 0x22,
    /// UNSUBSCRIBED (35).
    Unsubscribed = 0x23,
    /// EVENT (36).
    Event = 0x24,
    /// CALL (48).
    Call = 0x30,
    /// CANCEL (49).
    Cancel = 0x31,
    /// RESULT (50).
    Result = 0x32,
    /// REGISTER (64).
    Register = 0x40,
    /// REGISTERED (65).
    Registered = 0x41,
    /// UNREGISTER (66).
    Unregister = 0x42,
    /// UNREGISTERED (67).
    Unregistered = 0x43,
    /// INVOCATION (68).
    Invocation = 0x44,
    /// INTERRUPT (69).
    Interrupt = 0x45,
    /// YIELD (70).
    Yield = 0x46,
}

impl MessageType {
    /// The type with wire code `code`, if it is one of the messages this crate models.
    pub const fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0x01 => Self::Hello,
            0x02 => Self::Welcome,
            0x03 => Self::Abort,
            0x04 => Self::Challenge,
            0x05 => Self::Authenticate,
            0x06 => Self::Goodbye,
            0x08 => Self::Error,
            0x10 => Self::Publish,
            0x11 => Self::Published,
            0x20 => Self::Subscribe,
            0x21 => Self::Subscribed,
            0x22 => Self::Unsubscribe,
            0x23 => Self::Unsubscribed,
            0x24 => Self::Event,
            0x30 => Self::Call,
            0x31 => Self::Cancel,
            0x32 => Self::Result,
            0x40 => Self::Register,
            0x41 => Self::Registered,
            0x42 => Self::Unregister,
            0x43 => Self::Unregistered,
            0x44 => Self::Invocation,
            0x45 => Self::Interrupt,
            0x46 => Self::Yield,
            _ => return None,
        })
    }

    /// The wire code.
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// Whether the message's second element is a request id the peer chose, which an
    /// ERROR answering it must echo (the router uses this to answer a bad field).
    pub const fn has_request_id(self) -> bool {
        matches!(
            self,
            Self::Publish
                | Self::Subscribe
                | Self::Unsubscribe
                | Self::Call
                | Self::Cancel
                | Self::Register
                | Self::Unregister
                | Self::Yield
        )
    }
}

/// Any WAMP message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// HELLO: a client asks to join a realm.
    Hello(Hello),
    /// WELCOME: the router accepts a session.
    Welcome(Welcome),
    /// ABORT: a session is refused or torn down.
    Abort(Abort),
    /// CHALLENGE: the router asks the client to authenticate.
    Challenge(Challenge),
    /// AUTHENTICATE: the client answers a challenge.
    Authenticate(Authenticate),
    /// GOODBYE: an orderly session close.
    Goodbye(Goodbye),
    /// ERROR: a request failed.
    Error(ErrorMessage),
    /// PUBLISH: a client publishes an event.
    Publish(Publish),
    /// PUBLISHED: acknowledges a PUBLISH.
    Published(Published),
    /// SUBSCRIBE: a client subscribes to a topic.
    Subscribe(Subscribe),
    /// SUBSCRIBED: acknowledges a SUBSCRIBE.
    Subscribed(Subscribed),
    /// UNSUBSCRIBE: a client ends a subscription.
    Unsubscribe(Unsubscribe),
    /// UNSUBSCRIBED: acknowledges an UNSUBSCRIBE, or revokes a subscription.
    Unsubscribed(Unsubscribed),
    /// EVENT: the router delivers a publication.
    Event(Event),
    /// CALL: a client calls a procedure.
    Call(Call),
    /// CANCEL: a caller cancels a call.
    Cancel(Cancel),
    /// RESULT: the router delivers a call's result.
    Result(CallResult),
    /// REGISTER: a client registers a procedure.
    Register(Register),
    /// REGISTERED: acknowledges a REGISTER.
    Registered(Registered),
    /// UNREGISTER: a client ends a registration.
    Unregister(Unregister),
    /// UNREGISTERED: acknowledges an UNREGISTER, or revokes a registration.
    Unregistered(Unregistered),
    /// INVOCATION: the router asks a callee to run a procedure.
    Invocation(Invocation),
    /// INTERRUPT: the router asks a callee to stop an invocation.
    Interrupt(Interrupt),
    /// YIELD: a callee answers an invocation.
    Yield(Yield),
}

impl Message {
    /// The message's type.
    pub const fn message_type(&self) -> MessageType {
        match self {
            Self::Hello(_) => MessageType::Hello,
            Self::Welcome(_) => MessageType::Welcome,
            Self::Abort(_) => MessageType::Abort,
            Self::Challenge(_) => MessageType::Challenge,
            Self::Authenticate(_) => MessageType::Authenticate,
            Self::Goodbye(_) => MessageType::Goodbye,
            Self::Error(_) => MessageType::Error,
            Self::Publish(_) => MessageType::Publish,
            Self::Published(_) => MessageType::Published,
            Self::Subscribe(_) => MessageType::Subscribe,
            Self::Subscribed(_) => MessageType::Subscribed,
            Self::Unsubscribe(_) => MessageType::Unsubscribe,
            Self::Unsubscribed(_) => MessageType::Unsubscribed,
            Self::Event(_) => MessageType::Event,
            Self::Call(_) => MessageType::Call,
            Self::Cancel(_) => MessageType::Cancel,
            Self::Result(_) => MessageType::Result,
            Self::Register(_) => MessageType::Register,
            Self::Registered(_) => MessageType::Registered,
            Self::Unregister(_) => MessageType::Unregister,
            Self::Unregistered(_) => MessageType::Unregistered,
            Self::Invocation(_) => MessageType::Invocation,
            Self::Interrupt(_) => MessageType::Interrupt,
            Self::Yield(_) => MessageType::Yield,
        }
    }

    /// The payload, for the messages that carry one.
    pub fn payload(&self) -> Option<&Payload> {
        match self {
            Self::Error(m) => Some(&m.payload),
            Self::Publish(m) => Some(&m.payload),
            Self::Event(m) => Some(&m.payload),
            Self::Call(m) => Some(&m.payload),
            Self::Result(m) => Some(&m.payload),
            Self::Invocation(m) => Some(&m.payload),
            Self::Yield(m) => Some(&m.payload),
            _ => None,
        }
    }
}

/// `[HELLO, Realm|uri, Details|dict]`
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hello {
    /// The realm to join.
    pub realm: String,
    /// The client's roles and authentication wishes.
    pub details: HelloDetails,
}

/// `[WELCOME, Session|id, Details|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    /// The new session's id.
    pub session: Id,
    /// The router's roles and the session's authentication facts.
    pub details: WelcomeDetails,
}

/// `[ABORT, Details|dict, Reason|uri]`
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Abort {
    /// Details, usually `message`.
    pub details: Dict,
    /// The reason, e.g. `wamp.error.no_such_realm`.
    pub reason: String,
}

/// `[CHALLENGE, AuthMethod|string, Extra|dict]`
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Challenge {
    /// The authentication method, e.g. `wampcra`.
    pub authmethod: String,
    /// Method-specific data.
    pub extra: Dict,
}

/// `[AUTHENTICATE, Signature|string, Extra|dict]`
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Authenticate {
    /// The signature or ticket.
    pub signature: String,
    /// Method-specific data.
    pub extra: Dict,
}

/// `[GOODBYE, Details|dict, Reason|uri]`
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Goodbye {
    /// Details, usually `message`.
    pub details: Dict,
    /// The reason, e.g. `wamp.close.normal`.
    pub reason: String,
}

/// `[ERROR, REQUEST.Type|int, REQUEST.Request|id, Details|dict, Error|uri, Arguments|list,
/// ArgumentsKw|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorMessage {
    /// The type of the request that failed.
    pub request_type: MessageType,
    /// The id of the request that failed.
    pub request: Id,
    /// Details, forwarded as they are.
    pub details: Dict,
    /// The error URI.
    pub error: String,
    /// The error's payload.
    pub payload: Payload,
}

/// `[PUBLISH, Request|id, Options|dict, Topic|uri, Arguments|list, ArgumentsKw|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    /// The request id.
    pub request: Id,
    /// Publication options.
    pub options: PublishOptions,
    /// The topic.
    pub topic: String,
    /// The event's payload.
    pub payload: Payload,
}

/// `[PUBLISHED, PUBLISH.Request|id, Publication|id]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The PUBLISH's request id.
    pub request: Id,
    /// The publication id.
    pub publication: Id,
}

/// `[SUBSCRIBE, Request|id, Options|dict, Topic|uri]`
#[derive(Clone, Debug, PartialEq)]
pub struct Subscribe {
    /// The request id.
    pub request: Id,
    /// Subscription options.
    pub options: SubscribeOptions,
    /// The topic or topic pattern.
    pub topic: String,
}

/// `[SUBSCRIBED, SUBSCRIBE.Request|id, Subscription|id]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// The SUBSCRIBE's request id.
    pub request: Id,
    /// The subscription id.
    pub subscription: Id,
}

/// `[UNSUBSCRIBE, Request|id, SUBSCRIBED.Subscription|id]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The request id.
    pub request: Id,
    /// The subscription to end.
    pub subscription: Id,
}

/// `[UNSUBSCRIBED, UNSUBSCRIBE.Request|id]`, or the router-initiated form
/// `[UNSUBSCRIBED, 0, Details|dict]` (subscription revocation) with `request: None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsubscribed {
    /// The UNSUBSCRIBE's request id; `None` encodes as `0` (router-initiated).
    pub request: Option<Id>,
    /// Details of the advanced form (`subscription`, `reason`), if present.
    pub details: Option<Dict>,
}

/// `[EVENT, SUBSCRIBED.Subscription|id, PUBLISHED.Publication|id, Details|dict,
/// PUBLISH.Arguments|list, PUBLISH.ArgumentsKw|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The subscription the event is delivered for.
    pub subscription: Id,
    /// The publication id.
    pub publication: Id,
    /// Event details.
    pub details: EventDetails,
    /// The publication's payload, as the publisher sent it (or transcoded).
    pub payload: Payload,
}

/// `[CALL, Request|id, Options|dict, Procedure|uri, Arguments|list, ArgumentsKw|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The request id.
    pub request: Id,
    /// Call options.
    pub options: CallOptions,
    /// The procedure.
    pub procedure: String,
    /// The call's payload.
    pub payload: Payload,
}

/// `[CANCEL, CALL.Request|id, Options|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Cancel {
    /// The CALL's request id.
    pub request: Id,
    /// Cancel options.
    pub options: CancelOptions,
}

/// `[RESULT, CALL.Request|id, Details|dict, YIELD.Arguments|list, YIELD.ArgumentsKw|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct CallResult {
    /// The CALL's request id.
    pub request: Id,
    /// Result details.
    pub details: ResultDetails,
    /// The result's payload.
    pub payload: Payload,
}

/// `[REGISTER, Request|id, Options|dict, Procedure|uri]`
#[derive(Clone, Debug, PartialEq)]
pub struct Register {
    /// The request id.
    pub request: Id,
    /// Registration options.
    pub options: RegisterOptions,
    /// The procedure or procedure pattern.
    pub procedure: String,
}

/// `[REGISTERED, REGISTER.Request|id, Registration|id]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The REGISTER's request id.
    pub request: Id,
    /// The registration id.
    pub registration: Id,
}

/// `[UNREGISTER, Request|id, REGISTERED.Registration|id]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unregister {
    /// The request id.
    pub request: Id,
    /// The registration to end.
    pub registration: Id,
}

/// `[UNREGISTERED, UNREGISTER.Request|id]`, or the router-initiated form
/// `[UNREGISTERED, 0, Details|dict]` (registration revocation) with `request: None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Unregistered {
    /// The UNREGISTER's request id; `None` encodes as `0` (router-initiated).
    pub request: Option<Id>,
    /// Details of the advanced form (`registration`, `reason`), if present.
    pub details: Option<Dict>,
}

/// `[INVOCATION, Request|id, REGISTERED.Registration|id, Details|dict,
/// CALL.Arguments|list, CALL.ArgumentsKw|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// The invocation's request id (chosen by the router).
    pub request: Id,
    /// The registration invoked.
    pub registration: Id,
    /// Invocation details.
    pub details: InvocationDetails,
    /// The call's payload.
    pub payload: Payload,
}

/// `[INTERRUPT, INVOCATION.Request|id, Options|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Interrupt {
    /// The INVOCATION's request id.
    pub request: Id,
    /// Interrupt options.
    pub options: InterruptOptions,
}

/// `[YIELD, INVOCATION.Request|id, Options|dict, Arguments|list, ArgumentsKw|dict]`
#[derive(Clone, Debug, PartialEq)]
pub struct Yield {
    /// The INVOCATION's request id.
    pub request: Id,
    /// Yield options.
    pub options: YieldOptions,
    /// The result's payload.
    pub payload: Payload,
}

/// A WAMP role, as a key of HELLO/WELCOME `roles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `broker` (router side of PubSub).
    Broker,
    /// `callee`.
    Callee,
    /// `caller`.
    Caller,
    /// `dealer` (router side of RPC).
    Dealer,
    /// `publisher`.
    Publisher,
    /// `subscriber`.
    Subscriber,
}

impl Role {
    /// The role's key in the `roles` dictionary.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Callee => "callee",
            Self::Caller => "caller",
            Self::Dealer => "dealer",
            Self::Publisher => "publisher",
            Self::Subscriber => "subscriber",
        }
    }
}

/// The `roles` dictionary of HELLO or WELCOME: role name to `{"features": {...}}`.
///
/// Kept as the dictionary the peer sent (every value is checked to be a dictionary when
/// decoding), with typed queries for what the router needs to know.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Roles(pub Dict);

impl Roles {
    /// Whether the peer announced `role`.
    pub fn has(&self, role: Role) -> bool {
        self.0.contains_key(role.as_str())
    }

    /// Whether the peer announced `role` with feature `feature` set to `true`.
    pub fn supports(&self, role: Role, feature: &str) -> bool {
        self.0
            .get(role.as_str())
            .and_then(Value::as_dict)
            .and_then(|r| r.get("features"))
            .and_then(Value::as_dict)
            .and_then(|f| f.get(feature))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Adds `role` with the given features set to `true` (a builder for the router's
    /// WELCOME and for tests).
    pub fn with(mut self, role: Role, features: &[&str]) -> Self {
        let mut f = Dict::new();
        for name in features {
            f.insert(name, Value::Bool(true));
        }
        let entry = if f.is_empty() {
            Dict::new()
        } else {
            Dict::new().with("features", f)
        };
        self.0.insert(role.as_str(), Value::Dict(entry));
        self
    }
}

/// Payload passthru mode (PPT) keys, typed and forwarded untouched by the router.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ppt {
    /// `ppt_scheme`: the passthru scheme (`wamp`, `mqtt`, `x_...`).
    pub scheme: Option<String>,
    /// `ppt_serializer`: how the opaque payload is serialized.
    pub serializer: Option<String>,
    /// `ppt_cipher`: the end-to-end cipher.
    pub cipher: Option<String>,
    /// `ppt_keyid`: the key the payload is encrypted with.
    pub keyid: Option<String>,
}

impl Ppt {
    /// Whether payload passthru mode is in use (a `ppt_scheme` is set).
    pub fn is_passthru(&self) -> bool {
        self.scheme.is_some()
    }
}

/// HELLO.Details.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HelloDetails {
    /// `roles` (required by the spec; encoded even when empty).
    pub roles: Roles,
    /// `authmethods`: the methods the client offers, in preference order.
    pub authmethods: Option<Vec<String>>,
    /// `authid`: who the client claims to be.
    pub authid: Option<String>,
    /// `authextra`: method-specific data.
    pub authextra: Option<Dict>,
    /// Every other key.
    pub extra: Dict,
}

/// WELCOME.Details.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WelcomeDetails {
    /// `roles`: the router's roles and features.
    pub roles: Roles,
    /// `authid`.
    pub authid: Option<String>,
    /// `authrole`.
    pub authrole: Option<String>,
    /// `authmethod`.
    pub authmethod: Option<String>,
    /// `authprovider`.
    pub authprovider: Option<String>,
    /// `authextra`.
    pub authextra: Option<Dict>,
    /// Every other key.
    pub extra: Dict,
}

/// PUBLISH.Options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishOptions {
    /// `acknowledge`: answer with PUBLISHED.
    pub acknowledge: Option<bool>,
    /// `exclude_me`: whether the publisher is excluded (default true).
    pub exclude_me: Option<bool>,
    /// `exclude`: session ids that must not receive the event.
    pub exclude: Option<Vec<Id>>,
    /// `eligible`: the only session ids that may receive the event.
    pub eligible: Option<Vec<Id>>,
    /// `exclude_authid`.
    pub exclude_authid: Option<Vec<String>>,
    /// `eligible_authid`.
    pub eligible_authid: Option<Vec<String>>,
    /// `exclude_authrole`.
    pub exclude_authrole: Option<Vec<String>>,
    /// `eligible_authrole`.
    pub eligible_authrole: Option<Vec<String>>,
    /// `disclose_me`: ask the router to disclose the publisher.
    pub disclose_me: Option<bool>,
    /// `retain`: keep as the topic's retained event.
    pub retain: Option<bool>,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// Every other key.
    pub extra: Dict,
}

/// SUBSCRIBE.Options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscribeOptions {
    /// `match`.
    pub match_policy: Option<MatchPolicy>,
    /// `get_retained`: deliver the topic's retained event on subscribing.
    pub get_retained: Option<bool>,
    /// Every other key.
    pub extra: Dict,
}

/// A shared-registration invocation policy (`invoke` option of REGISTER).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InvokePolicy {
    /// `first`.
    First,
    /// `last`.
    Last,
    /// `random`.
    Random,
    /// `roundrobin`.
    RoundRobin,
    /// `single` (the default).
    #[default]
    Single,
}

impl InvokePolicy {
    /// The policy's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Last => "last",
            Self::Random => "random",
            Self::RoundRobin => "roundrobin",
            Self::Single => "single",
        }
    }

    /// The policy named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "first" => Self::First,
            "last" => Self::Last,
            "random" => Self::Random,
            "roundrobin" => Self::RoundRobin,
            "single" => Self::Single,
            _ => return None,
        })
    }
}

/// REGISTER.Options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegisterOptions {
    /// `match`.
    pub match_policy: Option<MatchPolicy>,
    /// `invoke`.
    pub invoke: Option<InvokePolicy>,
    /// Every other key.
    pub extra: Dict,
}

/// CALL.Options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallOptions {
    /// `timeout` in milliseconds (0 means none).
    pub timeout: Option<u64>,
    /// `receive_progress`: the caller accepts progressive results.
    pub receive_progress: Option<bool>,
    /// `progress`: this CALL is one chunk of a progressive invocation.
    pub progress: Option<bool>,
    /// `disclose_me`: ask the router to disclose the caller.
    pub disclose_me: Option<bool>,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// Every other key.
    pub extra: Dict,
}

/// A cancellation mode (`mode` option of CANCEL and INTERRUPT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelMode {
    /// `kill`: interrupt the callee and wait for its answer.
    Kill,
    /// `killnowait`: interrupt the callee and answer the caller at once.
    KillNoWait,
    /// `skip`: answer the caller at once, leave the callee alone.
    Skip,
}

impl CancelMode {
    /// The mode's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::KillNoWait => "killnowait",
            Self::Skip => "skip",
        }
    }

    /// The mode named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "kill" => Self::Kill,
            "killnowait" => Self::KillNoWait,
            "skip" => Self::Skip,
            _ => return None,
        })
    }
}

/// CANCEL.Options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CancelOptions {
    /// `mode`.
    pub mode: Option<CancelMode>,
    /// Every other key.
    pub extra: Dict,
}

/// INTERRUPT.Options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InterruptOptions {
    /// `mode`.
    pub mode: Option<CancelMode>,
    /// `reason`: why the invocation is interrupted (a URI).
    pub reason: Option<String>,
    /// Every other key.
    pub extra: Dict,
}

/// YIELD.Options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct YieldOptions {
    /// `progress`: this is a progressive result; more follow.
    pub progress: Option<bool>,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// Every other key.
    pub extra: Dict,
}

/// RESULT.Details.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultDetails {
    /// `progress`: this is a progressive result; more follow.
    pub progress: Option<bool>,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// Every other key.
    pub extra: Dict,
}

/// EVENT.Details.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventDetails {
    /// `publisher`: the publisher's session id, when disclosed.
    pub publisher: Option<Id>,
    /// `publisher_authid`, when disclosed.
    pub publisher_authid: Option<String>,
    /// `publisher_authrole`, when disclosed.
    pub publisher_authrole: Option<String>,
    /// `topic`: the concrete topic, for pattern-based subscriptions.
    pub topic: Option<String>,
    /// `retained`: this is a retained event delivered on subscribing.
    pub retained: Option<bool>,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// Every other key.
    pub extra: Dict,
}

/// INVOCATION.Details.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvocationDetails {
    /// `caller`: the caller's session id, when disclosed.
    pub caller: Option<Id>,
    /// `caller_authid`, when disclosed.
    pub caller_authid: Option<String>,
    /// `caller_authrole`, when disclosed.
    pub caller_authrole: Option<String>,
    /// `procedure`: the concrete procedure, for pattern-based registrations.
    pub procedure: Option<String>,
    /// `receive_progress`: the caller accepts progressive results.
    pub receive_progress: Option<bool>,
    /// `progress`: this is one chunk of a progressive invocation.
    pub progress: Option<bool>,
    /// `timeout` in milliseconds, forwarded from the call.
    pub timeout: Option<u64>,
    /// Payload passthru keys.
    pub ppt: Ppt,
    /// Every other key.
    pub extra: Dict,
}
