//! Options and Details dictionaries: from decoded entries to typed fields and back.
//!
//! Both codecs decode a dictionary into `(key, Value)` entries and hand them to
//! [`DictModel::set`], which fills the typed field for a known key (checking its type) and
//! keeps any other key in `extra`; encoding walks [`DictModel::visit`]. Writing this once
//! keeps the two codecs in agreement on every key. Nothing here knows a wire format.

use crate::codec::error::{Field, MessageError};
use crate::id::Id;
use crate::message::{
    CallOptions, CancelMode, CancelOptions, Dict, EventDetails, HelloDetails, InterruptOptions,
    InvocationDetails, InvokePolicy, MatchPolicy, Ppt, PublishOptions, RegisterOptions,
    ResultDetails, Roles, SubscribeOptions, Value, WelcomeDetails, YieldOptions,
};

/// A dictionary with typed fields for the keys the router reads.
pub(crate) trait DictModel: Default {
    /// Takes one decoded entry of the dictionary named `dict`.
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError>;

    /// Calls `f` with every entry to encode, typed fields first, then `extra` in order.
    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>));
}

/// A borrowed dictionary entry value, so that encoding needs no `Value` tree.
#[derive(Clone, Copy)]
pub(crate) enum FieldRef<'a> {
    Bool(bool),
    UInt(u64),
    Str(&'a str),
    Ids(&'a [Id]),
    Strs(&'a [String]),
    Dict(&'a Dict),
    Value(&'a Value),
}

/// The number of entries [`DictModel::visit`] yields (MessagePack writes it first).
pub(crate) fn count<M: DictModel>(m: &M) -> usize {
    let mut n = 0;
    m.visit(&mut |_, _| n += 1);
    n
}

impl DictModel for Dict {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        put_extra(self, dict, key, value)
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        visit_extra(self, f);
    }
}

impl DictModel for HelloDetails {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "roles" => put_roles(&mut self.roles, dict, value),
            "authmethods" => put(&mut self.authmethods, dict, strs(value, "authmethods")?),
            "authid" => put(&mut self.authid, dict, string(value, "authid")?),
            "authextra" => put(&mut self.authextra, dict, dict_of(value, "authextra")?),
            _ => put_extra(&mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        f("roles", FieldRef::Dict(&self.roles.0));
        if let Some(v) = &self.authmethods {
            f("authmethods", FieldRef::Strs(v));
        }
        opt_str(f, "authid", &self.authid);
        if let Some(v) = &self.authextra {
            f("authextra", FieldRef::Dict(v));
        }
        visit_extra(&self.extra, f);
    }
}

impl DictModel for WelcomeDetails {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "roles" => put_roles(&mut self.roles, dict, value),
            "authid" => put(&mut self.authid, dict, string(value, "authid")?),
            "authrole" => put(&mut self.authrole, dict, string(value, "authrole")?),
            "authmethod" => put(&mut self.authmethod, dict, string(value, "authmethod")?),
            "authprovider" => put(&mut self.authprovider, dict, string(value, "authprovider")?),
            "authextra" => put(&mut self.authextra, dict, dict_of(value, "authextra")?),
            _ => put_extra(&mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        f("roles", FieldRef::Dict(&self.roles.0));
        opt_str(f, "authid", &self.authid);
        opt_str(f, "authrole", &self.authrole);
        opt_str(f, "authmethod", &self.authmethod);
        opt_str(f, "authprovider", &self.authprovider);
        if let Some(v) = &self.authextra {
            f("authextra", FieldRef::Dict(v));
        }
        visit_extra(&self.extra, f);
    }
}

impl DictModel for PublishOptions {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "acknowledge" => put(&mut self.acknowledge, dict, flag(value, "acknowledge")?),
            "exclude_me" => put(&mut self.exclude_me, dict, flag(value, "exclude_me")?),
            "exclude" => put(&mut self.exclude, dict, ids(value, "exclude")?),
            "eligible" => put(&mut self.eligible, dict, ids(value, "eligible")?),
            "exclude_authid" => put(
                &mut self.exclude_authid,
                dict,
                strs(value, "exclude_authid")?,
            ),
            "eligible_authid" => put(
                &mut self.eligible_authid,
                dict,
                strs(value, "eligible_authid")?,
            ),
            "exclude_authrole" => put(
                &mut self.exclude_authrole,
                dict,
                strs(value, "exclude_authrole")?,
            ),
            "eligible_authrole" => put(
                &mut self.eligible_authrole,
                dict,
                strs(value, "eligible_authrole")?,
            ),
            "disclose_me" => put(&mut self.disclose_me, dict, flag(value, "disclose_me")?),
            "retain" => put(&mut self.retain, dict, flag(value, "retain")?),
            _ => set_ppt_or_extra(&mut self.ppt, &mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        opt_bool(f, "acknowledge", self.acknowledge);
        opt_bool(f, "exclude_me", self.exclude_me);
        if let Some(v) = &self.exclude {
            f("exclude", FieldRef::Ids(v));
        }
        if let Some(v) = &self.eligible {
            f("eligible", FieldRef::Ids(v));
        }
        opt_strs(f, "exclude_authid", &self.exclude_authid);
        opt_strs(f, "eligible_authid", &self.eligible_authid);
        opt_strs(f, "exclude_authrole", &self.exclude_authrole);
        opt_strs(f, "eligible_authrole", &self.eligible_authrole);
        opt_bool(f, "disclose_me", self.disclose_me);
        opt_bool(f, "retain", self.retain);
        visit_ppt(&self.ppt, f);
        visit_extra(&self.extra, f);
    }
}

impl DictModel for SubscribeOptions {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "match" => put(&mut self.match_policy, dict, match_policy(value)?),
            "get_retained" => put(&mut self.get_retained, dict, flag(value, "get_retained")?),
            _ => put_extra(&mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        if let Some(m) = self.match_policy {
            f("match", FieldRef::Str(m.as_str()));
        }
        opt_bool(f, "get_retained", self.get_retained);
        visit_extra(&self.extra, f);
    }
}

impl DictModel for RegisterOptions {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "match" => put(&mut self.match_policy, dict, match_policy(value)?),
            "invoke" => {
                let p = enumerated(value, "invoke", InvokePolicy::parse)?;
                put(&mut self.invoke, dict, p)
            }
            _ => put_extra(&mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        if let Some(m) = self.match_policy {
            f("match", FieldRef::Str(m.as_str()));
        }
        if let Some(p) = self.invoke {
            f("invoke", FieldRef::Str(p.as_str()));
        }
        visit_extra(&self.extra, f);
    }
}

impl DictModel for CallOptions {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "timeout" => put(&mut self.timeout, dict, uint(value, "timeout")?),
            "receive_progress" => put(
                &mut self.receive_progress,
                dict,
                flag(value, "receive_progress")?,
            ),
            "progress" => put(&mut self.progress, dict, flag(value, "progress")?),
            "disclose_me" => put(&mut self.disclose_me, dict, flag(value, "disclose_me")?),
            _ => set_ppt_or_extra(&mut self.ppt, &mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        if let Some(t) = self.timeout {
            f("timeout", FieldRef::UInt(t));
        }
        opt_bool(f, "receive_progress", self.receive_progress);
        opt_bool(f, "progress", self.progress);
        opt_bool(f, "disclose_me", self.disclose_me);
        visit_ppt(&self.ppt, f);
        visit_extra(&self.extra, f);
    }
}

impl DictModel for CancelOptions {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "mode" => put(
                &mut self.mode,
                dict,
                enumerated(value, "mode", CancelMode::parse)?,
            ),
            _ => put_extra(&mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        if let Some(m) = self.mode {
            f("mode", FieldRef::Str(m.as_str()));
        }
        visit_extra(&self.extra, f);
    }
}

impl DictModel for InterruptOptions {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "mode" => put(
                &mut self.mode,
                dict,
                enumerated(value, "mode", CancelMode::parse)?,
            ),
            "reason" => put(&mut self.reason, dict, string(value, "reason")?),
            _ => put_extra(&mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        if let Some(m) = self.mode {
            f("mode", FieldRef::Str(m.as_str()));
        }
        opt_str(f, "reason", &self.reason);
        visit_extra(&self.extra, f);
    }
}

impl DictModel for YieldOptions {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "progress" => put(&mut self.progress, dict, flag(value, "progress")?),
            _ => set_ppt_or_extra(&mut self.ppt, &mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        opt_bool(f, "progress", self.progress);
        visit_ppt(&self.ppt, f);
        visit_extra(&self.extra, f);
    }
}

impl DictModel for ResultDetails {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "progress" => put(&mut self.progress, dict, flag(value, "progress")?),
            _ => set_ppt_or_extra(&mut self.ppt, &mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        opt_bool(f, "progress", self.progress);
        visit_ppt(&self.ppt, f);
        visit_extra(&self.extra, f);
    }
}

impl DictModel for EventDetails {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "publisher" => put(&mut self.publisher, dict, id(value, "publisher")?),
            "publisher_authid" => put(
                &mut self.publisher_authid,
                dict,
                string(value, "publisher_authid")?,
            ),
            "publisher_authrole" => put(
                &mut self.publisher_authrole,
                dict,
                string(value, "publisher_authrole")?,
            ),
            "topic" => put(&mut self.topic, dict, string(value, "topic")?),
            "retained" => put(&mut self.retained, dict, flag(value, "retained")?),
            _ => set_ppt_or_extra(&mut self.ppt, &mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        if let Some(p) = self.publisher {
            f("publisher", FieldRef::UInt(p.get()));
        }
        opt_str(f, "publisher_authid", &self.publisher_authid);
        opt_str(f, "publisher_authrole", &self.publisher_authrole);
        opt_str(f, "topic", &self.topic);
        opt_bool(f, "retained", self.retained);
        visit_ppt(&self.ppt, f);
        visit_extra(&self.extra, f);
    }
}

impl DictModel for InvocationDetails {
    fn set(&mut self, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
        match key {
            "caller" => put(&mut self.caller, dict, id(value, "caller")?),
            "caller_authid" => put(
                &mut self.caller_authid,
                dict,
                string(value, "caller_authid")?,
            ),
            "caller_authrole" => put(
                &mut self.caller_authrole,
                dict,
                string(value, "caller_authrole")?,
            ),
            "procedure" => put(&mut self.procedure, dict, string(value, "procedure")?),
            "receive_progress" => put(
                &mut self.receive_progress,
                dict,
                flag(value, "receive_progress")?,
            ),
            "progress" => put(&mut self.progress, dict, flag(value, "progress")?),
            "timeout" => put(&mut self.timeout, dict, uint(value, "timeout")?),
            _ => set_ppt_or_extra(&mut self.ppt, &mut self.extra, dict, key, value),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
        if let Some(c) = self.caller {
            f("caller", FieldRef::UInt(c.get()));
        }
        opt_str(f, "caller_authid", &self.caller_authid);
        opt_str(f, "caller_authrole", &self.caller_authrole);
        opt_str(f, "procedure", &self.procedure);
        opt_bool(f, "receive_progress", self.receive_progress);
        opt_bool(f, "progress", self.progress);
        if let Some(t) = self.timeout {
            f("timeout", FieldRef::UInt(t));
        }
        visit_ppt(&self.ppt, f);
        visit_extra(&self.extra, f);
    }
}

/// Stores `value` in an empty slot; a filled slot means the key came twice.
fn put<T>(slot: &mut Option<T>, dict: Field, value: T) -> Result<(), MessageError> {
    if slot.is_some() {
        return Err(MessageError::DuplicateKey { field: dict });
    }
    *slot = Some(value);
    Ok(())
}

/// Stores `roles`, which has no `Option` (the spec requires it): a non-empty value means
/// the key came before (an empty one sent twice is harmless).
fn put_roles(slot: &mut Roles, dict: Field, value: Value) -> Result<(), MessageError> {
    if !slot.0.is_empty() {
        return Err(MessageError::DuplicateKey { field: dict });
    }
    *slot = roles(value, "roles")?;
    Ok(())
}

/// Keeps an unknown key, refusing a second occurrence so that `extra` stays a map.
fn put_extra(extra: &mut Dict, dict: Field, key: &str, value: Value) -> Result<(), MessageError> {
    // A linear scan: envelope dictionaries are small, and MAX_ENVELOPE_ITEMS bounds the
    // quadratic worst case a peer can force.
    if extra.contains_key(key) {
        return Err(MessageError::DuplicateKey { field: dict });
    }
    extra.push_unchecked(key.to_owned(), value);
    Ok(())
}

fn set_ppt_or_extra(
    ppt: &mut Ppt,
    extra: &mut Dict,
    dict: Field,
    key: &str,
    value: Value,
) -> Result<(), MessageError> {
    match key {
        "ppt_scheme" => put(&mut ppt.scheme, dict, string(value, "ppt_scheme")?),
        "ppt_serializer" => put(&mut ppt.serializer, dict, string(value, "ppt_serializer")?),
        "ppt_cipher" => put(&mut ppt.cipher, dict, string(value, "ppt_cipher")?),
        "ppt_keyid" => put(&mut ppt.keyid, dict, string(value, "ppt_keyid")?),
        _ => put_extra(extra, dict, key, value),
    }
}

fn visit_ppt(ppt: &Ppt, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
    opt_str(f, "ppt_scheme", &ppt.scheme);
    opt_str(f, "ppt_serializer", &ppt.serializer);
    opt_str(f, "ppt_cipher", &ppt.cipher);
    opt_str(f, "ppt_keyid", &ppt.keyid);
}

fn visit_extra(extra: &Dict, f: &mut dyn FnMut(&str, FieldRef<'_>)) {
    for (k, v) in extra.iter() {
        f(k, FieldRef::Value(v));
    }
}

fn opt_bool(f: &mut dyn FnMut(&str, FieldRef<'_>), key: &str, v: Option<bool>) {
    if let Some(b) = v {
        f(key, FieldRef::Bool(b));
    }
}

fn opt_str(f: &mut dyn FnMut(&str, FieldRef<'_>), key: &str, v: &Option<String>) {
    if let Some(s) = v {
        f(key, FieldRef::Str(s));
    }
}

fn opt_strs(f: &mut dyn FnMut(&str, FieldRef<'_>), key: &str, v: &Option<Vec<String>>) {
    if let Some(s) = v {
        f(key, FieldRef::Strs(s));
    }
}

fn flag(v: Value, field: Field) -> Result<bool, MessageError> {
    v.as_bool().ok_or(MessageError::WrongType { field })
}

fn uint(v: Value, field: Field) -> Result<u64, MessageError> {
    match v {
        Value::UInt(n) => Ok(n),
        Value::Int(_) => Err(MessageError::IntegerOutOfRange { field }),
        _ => Err(MessageError::WrongType { field }),
    }
}

fn id(v: Value, field: Field) -> Result<Id, MessageError> {
    match v {
        Value::UInt(n) => Id::new(n).ok_or(MessageError::IdOutOfRange { field, value: n }),
        Value::Int(_) => Err(MessageError::IdOutOfRange { field, value: 0 }),
        _ => Err(MessageError::WrongType { field }),
    }
}

fn string(v: Value, field: Field) -> Result<String, MessageError> {
    match v {
        Value::Str(s) => Ok(s),
        _ => Err(MessageError::WrongType { field }),
    }
}

fn dict_of(v: Value, field: Field) -> Result<Dict, MessageError> {
    match v {
        Value::Dict(d) => Ok(d),
        _ => Err(MessageError::WrongType { field }),
    }
}

fn roles(v: Value, field: Field) -> Result<Roles, MessageError> {
    let d = dict_of(v, field)?;
    if d.iter().any(|(_, r)| r.as_dict().is_none()) {
        return Err(MessageError::WrongType { field });
    }
    Ok(Roles(d))
}

fn ids(v: Value, field: Field) -> Result<Vec<Id>, MessageError> {
    let Value::List(items) = v else {
        return Err(MessageError::WrongType { field });
    };
    items.into_iter().map(|i| id(i, field)).collect()
}

fn strs(v: Value, field: Field) -> Result<Vec<String>, MessageError> {
    let Value::List(items) = v else {
        return Err(MessageError::WrongType { field });
    };
    items.into_iter().map(|i| string(i, field)).collect()
}

fn match_policy(v: Value) -> Result<MatchPolicy, MessageError> {
    enumerated(v, "match", |s| s.parse().ok())
}

fn enumerated<T>(v: Value, field: Field, parse: fn(&str) -> Option<T>) -> Result<T, MessageError> {
    let s = v.as_str().ok_or(MessageError::WrongType { field })?;
    parse(s).ok_or(MessageError::UnknownValue { field })
}
