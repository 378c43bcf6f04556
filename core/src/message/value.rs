//! A small generic value tree for the dictionaries of a WAMP envelope.
//!
//! Options and Details dictionaries are small, so the codecs decode them into [`Value`]s:
//! the router reads the keys it knows through typed fields and forwards the others in an
//! ordered [`Dict`]. Application payloads (`args`, `kwargs`) never become a `Value`: they
//! stay raw bytes in a [`crate::message::Payload`].
//!
//! Integers keep their sign in the variant: the decoders produce [`Value::UInt`] for every
//! non-negative integer and [`Value::Int`] only for negative ones, so that a decoded tree
//! compares equal however the peer encoded the width.

/// A value of an Options or Details dictionary.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null`, MessagePack nil.
    Null,
    /// A boolean.
    Bool(bool),
    /// A negative integer (decoders put non-negative integers in [`Value::UInt`]).
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Binary data (MessagePack bin; in JSON a string starting with `\u0000` then base64).
    Bin(Vec<u8>),
    /// A list.
    List(Vec<Self>),
    /// A dictionary with string keys, in the order the peer sent them.
    Dict(Dict),
}

impl Value {
    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::UInt(n) => Some(n),
            Self::Int(n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The dictionary, if this is a [`Value::Dict`].
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Self::Dict(d) => Some(d),
            _ => None,
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Self::UInt(n)
    }
}

impl From<i64> for Value {
    /// Non-negative integers become [`Value::UInt`], as the decoders produce them.
    fn from(n: i64) -> Self {
        match u64::try_from(n) {
            Ok(u) => Self::UInt(u),
            Err(_) => Self::Int(n),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}

impl From<crate::id::Id> for Value {
    fn from(id: crate::id::Id) -> Self {
        Self::UInt(id.get())
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Self::Dict(d)
    }
}

/// An ordered dictionary with string keys.
///
/// A `Vec` of pairs rather than a hash map: envelope dictionaries hold a handful of keys,
/// their order is kept for faithful forwarding, and a linear scan beats hashing at that
/// size. Keys are unique: [`Dict::insert`] replaces an existing entry in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dict(Vec<(String, Value)>);

impl Dict {
    /// An empty dictionary (allocates nothing).
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// This dictionary with `key` set to `value` (a builder for literals).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.insert(key, value.into());
        self
    }

    /// Sets `key` to `value`, replacing and returning an earlier value in place.
    pub fn insert(&mut self, key: &str, value: Value) -> Option<Value> {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.0.push((key.to_owned(), value));
                None
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the dictionary has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Appends without checking for an existing key; the decoders call it after they
    /// checked uniqueness themselves.
    pub(crate) fn push_unchecked(&mut self, key: String, value: Value) {
        self.0.push((key, value));
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl FromIterator<(String, Value)> for Dict {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut d = Self::new();
        for (k, v) in iter {
            d.insert(&k, v);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_keeps_order_and_replaces_in_place() {
        let mut d = Dict::new().with("b", 1u64).with("a", "x").with("c", true);
        assert_eq!(d.insert("a", Value::Null), Some(Value::from("x")));
        let keys: Vec<&str> = d.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert_eq!(d.remove("b"), Some(Value::UInt(1)));
        assert_eq!(d.len(), 2);
        assert!(!d.contains_key("b"));
    }

    #[test]
    fn integers_are_canonical() {
        assert_eq!(Value::from(5i64), Value::UInt(5));
        assert_eq!(Value::from(-5i64), Value::Int(-5));
        assert_eq!(Value::Int(-1).as_u64(), None);
    }
}
