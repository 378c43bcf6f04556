//! WAMP ids: session, request, publication, subscription and registration ids.
//!
//! The WAMP spec draws every id from `[1, 2^53]` so that it survives a round trip through
//! an IEEE-754 double (JavaScript peers). [`Id`] makes that range a type invariant: a value
//! outside it cannot be constructed, so code that holds an `Id` never re-checks it. This
//! module does not generate ids (the router does, from a caller-seeded source) and does not
//! know which scope an id belongs to.

use std::fmt;
use std::num::NonZeroU64;

/// A WAMP id, always in `[1, 2^53]`.
///
/// Stored as a `NonZeroU64` so that `Option<Id>` costs no more than an `Id`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(NonZeroU64);

impl Id {
    /// The smallest id, 1.
    pub const MIN: Self = match Self::new(1) {
        Some(id) => id,
        None => panic!("1 is a valid id"),
    };

    /// The largest id, 2^53 (the largest integer a double represents exactly).
    pub const MAX: Self = match Self::new(1 << 53) {
        Some(id) => id,
        None => panic!("2^53 is a valid id"),
    };

    /// The id with value `value`, or `None` if `value` is outside `[1, 2^53]`.
    pub const fn new(value: u64) -> Option<Self> {
        if value > 1 << 53 {
            return None;
        }
        match NonZeroU64::new(value) {
            Some(nz) => Some(Self(nz)),
            None => None,
        }
    }

    /// The id's value, in `[1, 2^53]`.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

impl From<Id> for u64 {
    fn from(id: Id) -> Self {
        id.get()
    }
}

impl TryFrom<u64> for Id {
    type Error = OutOfRange;

    fn try_from(value: u64) -> Result<Self, OutOfRange> {
        Self::new(value).ok_or(OutOfRange(value))
    }
}

/// The error of `Id::try_from`: the value is outside `[1, 2^53]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange(pub u64);

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "id {} is outside [1, 2^53]", self.0)
    }
}

impl std::error::Error for OutOfRange {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: u64, expect: Option<u64>) {
        assert_eq!(Id::new(value).map(Id::get), expect, "Id::new({value})");
    }

    #[test]
    fn range() {
        check(0, None);
        check(1, Some(1));
        check(42, Some(42));
        check(1 << 53, Some(1 << 53));
        check((1 << 53) + 1, None);
        check(u64::MAX, None);
        assert_eq!(Id::MIN.get(), 1);
        assert_eq!(Id::MAX.get(), 9_007_199_254_740_992);
    }

    #[test]
    fn formatting_and_order() {
        let (a, b) = (Id::new(7).unwrap(), Id::new(300).unwrap());
        assert_eq!(a.to_string(), "7");
        assert_eq!(format!("{b:?}"), "Id(300)");
        assert!(a < b);
        assert_eq!(Id::try_from(0), Err(OutOfRange(0)));
        assert_eq!(u64::from(b), 300);
        assert_eq!(size_of::<Option<Id>>(), size_of::<u64>());
    }
}
