//! WAMP URI validation, strict and loose, for concrete URIs and for match patterns.
//!
//! The rules are those of the WAMP spec, basic profile, "URIs" (loose and strict) and the
//! advanced profile's pattern-based subscriptions and registrations. Each function here
//! accepts exactly the strings that the spec's regular expression for that case accepts:
//!
//! | case                     | loose                                  | strict                                |
//! |--------------------------|----------------------------------------|---------------------------------------|
//! | URI, exact pattern       | `^([^\s\.#]+\.)*([^\s\.#]+)$`          | `^([0-9a-z_]+\.)*([0-9a-z_]+)$`       |
//! | prefix pattern           | `^([^\s\.#]+\.)*([^\s\.#]*)$`          | `^([0-9a-z_]+\.)*([0-9a-z_]*)$`       |
//! | wildcard pattern         | `^(([^\s\.#]+\.)\|\.)*([^\s\.#]+)?$`   | `^(([0-9a-z_]+\.)\|\.)*([0-9a-z_]+)?$` |
//!
//! The spec gives no regular expression for prefix patterns. Prefix matching is a *string*
//! prefix (see [`crate::matcher`]), so a prefix pattern may end with a dot (`com.example.`
//! matches `com.example.x` but not `com.example` or `com.examplex`) and may be the empty
//! string (which matches every URI). That is what Crossbar.io accepts (its
//! `_URI_PAT_*_LAST_EMPTY` expressions, used for SUBSCRIBE, REGISTER and permissions with
//! `match: prefix`), and Crossbar's own starter configuration grants everything with
//! `"uri": "", "match": "prefix"`; only the last component may be empty.
//!
//! "Whitespace" is what Python's `\s` means for `str` patterns, since the spec writes its
//! regular expressions in Python and Crossbar.io runs them: the Unicode `White_Space`
//! characters plus U+001C..=U+001F (the information separators, which Python counts as
//! whitespace and Unicode does not).
//!
//! What this module does not do: it does not check the reserved `wamp.` namespace (that is
//! a router policy about *who* may use a URI; see [`is_wamp_reserved`]), it does not limit
//! URI length (the message size limit of the transport does), and it does not match URIs
//! against patterns (that is [`crate::matcher`]).

use std::fmt;
use std::str::FromStr;

/// How a pattern matches URIs: the `match` option of SUBSCRIBE and REGISTER, and the
/// `match` key of a permission in the node configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchPolicy {
    /// The pattern is a URI and matches only itself; the default when the option is absent.
    #[default]
    Exact,
    /// The pattern matches every URI it is a string prefix of.
    Prefix,
    /// Empty components of the pattern match any one component; the others match exactly.
    Wildcard,
}

impl MatchPolicy {
    /// The option string that names this policy on the wire and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Prefix => "prefix",
            Self::Wildcard => "wildcard",
        }
    }
}

impl fmt::Display for MatchPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MatchPolicy {
    type Err = UnknownMatchPolicy;

    /// Parses the option string exactly as the spec spells it (`exact`, `prefix`,
    /// `wildcard`); anything else, including other capitalisations, is an error, because a
    /// router that guessed would silently subscribe a peer to something it did not ask for.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(Self::Exact),
            "prefix" => Ok(Self::Prefix),
            "wildcard" => Ok(Self::Wildcard),
            _ => Err(UnknownMatchPolicy),
        }
    }
}

/// The `match` option named no policy this router knows.
///
/// It carries no copy of the offending string: the string came from a peer, and the caller
/// still has it if it wants to quote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMatchPolicy;

impl fmt::Display for UnknownMatchPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown match policy (expected \"exact\", \"prefix\" or \"wildcard\")")
    }
}

impl std::error::Error for UnknownMatchPolicy {}

/// Which of the spec's two URI rules a realm enforces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UriCheck {
    /// The rule every peer MUST follow: components are non-empty and hold no `.`, `#` or
    /// whitespace. Crossbar.io's default, so it is ours.
    #[default]
    Loose,
    /// The recommended rule: components hold only `0-9`, `a-z` and `_`.
    Strict,
}

/// Why a string is not a valid URI or pattern. Offsets are byte offsets into the string,
/// component indexes count from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriError {
    /// A URI (or an exact pattern) must not be the empty string.
    Empty,
    /// A component is empty where the rule requires a non-empty one: anywhere in a URI,
    /// before the last component of a prefix pattern.
    EmptyComponent {
        /// Which component is empty.
        index: usize,
    },
    /// `#` is reserved for routers' internal use and may appear in no URI.
    Hash {
        /// Where the `#` is.
        offset: usize,
    },
    /// Components must not contain whitespace.
    Whitespace {
        /// The whitespace character found.
        ch: char,
        /// Where it starts.
        offset: usize,
    },
    /// Under the strict rule components hold only `0-9`, `a-z` and `_`.
    NotStrict {
        /// The character outside the strict alphabet.
        ch: char,
        /// Where it starts.
        offset: usize,
    },
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("URI is empty"),
            Self::EmptyComponent { index } => write!(f, "URI component {index} is empty"),
            Self::Hash { offset } => write!(f, "URI contains '#' at byte {offset}"),
            Self::Whitespace { ch, offset } => {
                write!(f, "URI contains whitespace {ch:?} at byte {offset}")
            }
            Self::NotStrict { ch, offset } => write!(
                f,
                "URI contains {ch:?} at byte {offset}, outside the strict alphabet [0-9a-z_]"
            ),
        }
    }
}

impl std::error::Error for UriError {}

/// Checks a concrete URI (a topic published to, a procedure called, an error, a realm).
pub fn validate_uri(uri: &str, check: UriCheck) -> Result<(), UriError> {
    validate(uri, Empties::None, check)
}

/// Checks a pattern given with a match policy (SUBSCRIBE, REGISTER, a permission).
///
/// An exact pattern is a URI. A prefix pattern may have an empty last component (so it may
/// end with `.` or be empty). A wildcard pattern may have any component empty, each empty
/// component standing for any one component.
pub fn validate_pattern(
    pattern: &str,
    policy: MatchPolicy,
    check: UriCheck,
) -> Result<(), UriError> {
    let empties = match policy {
        MatchPolicy::Exact => Empties::None,
        MatchPolicy::Prefix => Empties::Last,
        MatchPolicy::Wildcard => Empties::Any,
    };
    validate(pattern, empties, check)
}

/// Whether a URI lies in the namespace the spec reserves for WAMP itself (first component
/// `wamp`), which application URIs MUST NOT use.
pub fn is_wamp_reserved(uri: &str) -> bool {
    uri.split('.').next() == Some("wamp")
}

/// Which components may be empty.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Empties {
    None,
    Last,
    Any,
}

/// One pass over the bytes: ASCII through a table, anything else decoded as a `char`, since
/// only the loose rule admits non-ASCII characters and then only non-whitespace ones.
fn validate(s: &str, empties: Empties, check: UriCheck) -> Result<(), UriError> {
    if s.is_empty() {
        return match empties {
            Empties::None => Err(UriError::Empty),
            Empties::Last | Empties::Any => Ok(()),
        };
    }
    let bytes = s.as_bytes();
    let table = match check {
        UriCheck::Loose => &LOOSE,
        UriCheck::Strict => &STRICT,
    };
    let mut component = 0;
    let mut component_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'.' {
            // A dot closes a component, which therefore is not the last one.
            if i == component_start && empties != Empties::Any {
                return Err(UriError::EmptyComponent { index: component });
            }
            component += 1;
            component_start = i + 1;
            i += 1;
        } else if b < 0x80 {
            if table[usize::from(b)] == 0 {
                return Err(ascii_error(b, i, check));
            }
            i += 1;
        } else {
            // `i` is at a char boundary: we only ever step over whole ASCII bytes or whole
            // chars, so the slice is valid and non-empty; the `None` arm cannot be taken.
            let Some(ch) = s[i..].chars().next() else {
                break;
            };
            match check {
                UriCheck::Strict => return Err(UriError::NotStrict { ch, offset: i }),
                UriCheck::Loose if is_python_space(ch) => {
                    return Err(UriError::Whitespace { ch, offset: i })
                }
                UriCheck::Loose => {}
            }
            i += ch.len_utf8();
        }
    }
    if component_start == bytes.len() && empties == Empties::None {
        return Err(UriError::EmptyComponent { index: component });
    }
    Ok(())
}

/// The error for an ASCII byte the table rejected.
fn ascii_error(b: u8, offset: usize, check: UriCheck) -> UriError {
    let ch = char::from(b);
    match check {
        UriCheck::Loose if b == b'#' => UriError::Hash { offset },
        UriCheck::Loose => UriError::Whitespace { ch, offset },
        // Under the strict rule `#` and whitespace are simply outside the alphabet; one
        // variant per rule keeps "which rule" answerable from the error alone.
        UriCheck::Strict => UriError::NotStrict { ch, offset },
    }
}

/// Python's `str.isspace()`, which is what `\s` means in the spec's regular expressions.
fn is_python_space(ch: char) -> bool {
    ch.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&ch)
}

/// ASCII bytes allowed in a loose component (1) or not (0): not `#`, not whitespace. The
/// dot is handled before the table is consulted.
static LOOSE: [u8; 128] = {
    let mut t = [1u8; 128];
    t[b'#' as usize] = 0;
    // Python's ASCII whitespace: \t \n \v \f \r, the separators 0x1c..=0x1f, and space.
    let mut c = 0x09;
    while c <= 0x0d {
        t[c] = 0;
        c += 1;
    }
    let mut c = 0x1c;
    while c <= 0x20 {
        t[c] = 0;
        c += 1;
    }
    t
};

/// ASCII bytes allowed in a strict component: `0-9`, `a-z`, `_`.
static STRICT: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = 1;
        c += 1;
    }
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = 1;
        c += 1;
    }
    t[b'_' as usize] = 1;
    t
};

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    use UriError as E;

    use MatchPolicy::{Exact, Prefix, Wildcard};
    use UriCheck::{Loose, Strict};

    fn check(s: &str, policy: MatchPolicy, uri_check: UriCheck, expect: Result<(), UriError>) {
        assert_eq!(
            validate_pattern(s, policy, uri_check),
            expect,
            "{s:?} {policy:?} {uri_check:?}"
        );
        if policy == Exact {
            assert_eq!(validate_uri(s, uri_check), expect, "{s:?} as URI");
        }
    }

    fn ws(ch: char, offset: usize) -> Result<(), UriError> {
        Err(E::Whitespace { ch, offset })
    }

    fn not_strict(ch: char, offset: usize) -> Result<(), UriError> {
        Err(E::NotStrict { ch, offset })
    }

    fn empty_at(index: usize) -> Result<(), UriError> {
        Err(E::EmptyComponent { index })
    }

    #[test]
    fn uris() {
        check("com.myapp.topic1", Exact, Loose, Ok(()));
        check("com.myapp.topic1", Exact, Strict, Ok(()));
        check("a", Exact, Strict, Ok(()));
        check("com.My-App.tö pic", Exact, Loose, ws(' ', 14));
        check("com.My-App.töpic", Exact, Loose, Ok(()));
        check("com.My-App", Exact, Strict, not_strict('M', 4));
        check("com.ö", Exact, Strict, not_strict('ö', 4));
        check("", Exact, Loose, Err(E::Empty));
        check("", Exact, Strict, Err(E::Empty));
        check(".a", Exact, Loose, empty_at(0));
        check("a..b", Exact, Loose, empty_at(1));
        check("a.b.", Exact, Loose, empty_at(2));
        check(".", Exact, Strict, empty_at(0));
        check("a#b", Exact, Loose, Err(E::Hash { offset: 1 }));
        check("a#b", Exact, Strict, not_strict('#', 1));
        check("a\tb", Exact, Loose, ws('\t', 1));
        check("a\u{1f}b", Exact, Loose, ws('\u{1f}', 1));
        check("a\u{a0}b", Exact, Loose, ws('\u{a0}', 1));
        check("a\u{3000}", Exact, Loose, ws('\u{3000}', 1));
        // Control characters that are not whitespace are allowed by the loose rule.
        check("a\u{0}b", Exact, Loose, Ok(()));
    }

    #[test]
    fn prefix_patterns() {
        check("", Prefix, Loose, Ok(()));
        check("", Prefix, Strict, Ok(()));
        check("com.example.", Prefix, Strict, Ok(()));
        check("com.example", Prefix, Strict, Ok(()));
        check("com..example", Prefix, Loose, empty_at(1));
        check(".com", Prefix, Loose, empty_at(0));
        check(".", Prefix, Loose, empty_at(0));
        check("com.example..", Prefix, Loose, empty_at(2));
        check("com.ex ample", Prefix, Loose, ws(' ', 6));
    }

    #[test]
    fn wildcard_patterns() {
        check("", Wildcard, Loose, Ok(()));
        check(".", Wildcard, Strict, Ok(()));
        check("com.myapp..userevent", Wildcard, Strict, Ok(()));
        check("..a..", Wildcard, Strict, Ok(()));
        check("a.b.", Wildcard, Strict, Ok(()));
        check("a..B", Wildcard, Strict, not_strict('B', 3));
        check("a..#", Wildcard, Loose, Err(E::Hash { offset: 3 }));
    }

    #[test]
    fn match_policy_strings() {
        for p in [Exact, Prefix, Wildcard] {
            assert_eq!(p.as_str().parse::<MatchPolicy>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        for bad in ["", "Exact", "PREFIX", "wild", "exact "] {
            assert_eq!(
                bad.parse::<MatchPolicy>(),
                Err(UnknownMatchPolicy),
                "{bad:?}"
            );
        }
        assert_eq!(MatchPolicy::default(), Exact);
        assert_eq!(UriCheck::default(), Loose);
    }

    #[test]
    fn reserved() {
        assert!(is_wamp_reserved("wamp.error.not_authorized"));
        assert!(is_wamp_reserved("wamp"));
        assert!(!is_wamp_reserved("wampx.a"));
        assert!(!is_wamp_reserved("com.wamp"));
    }

    /// The spec's regular expressions, compiled once for the whole property test.
    fn spec_regexes() -> &'static [(MatchPolicy, UriCheck, Regex)] {
        static REGEXES: OnceLock<Vec<(MatchPolicy, UriCheck, Regex)>> = OnceLock::new();
        REGEXES.get_or_init(|| {
            let mut v = Vec::new();
            for policy in [Exact, Prefix, Wildcard] {
                for check in [Loose, Strict] {
                    v.push((policy, check, spec_regex(policy, check)));
                }
            }
            v
        })
    }

    /// The spec's regular expressions, with Python's `\s` spelled out (see the module doc).
    fn spec_regex(policy: MatchPolicy, check: UriCheck) -> Regex {
        let c = match check {
            Loose => r"[^\s\.#\x1c-\x1f]",
            Strict => r"[0-9a-z_]",
        };
        let re = match policy {
            Exact => format!(r"^({c}+\.)*({c}+)$"),
            Prefix => format!(r"^({c}+\.)*({c}*)$"),
            Wildcard => format!(r"^(({c}+\.)|\.)*({c}+)?$"),
        };
        Regex::new(&re).unwrap()
    }

    fn uri_like() -> impl Strategy<Value = String> {
        // A small alphabet that hits every rule: dots, '#', ASCII and Unicode whitespace,
        // the Python-only separators, upper case, non-ASCII, and the strict alphabet.
        let ch = prop::sample::select(vec![
            'a', 'z', '0', '_', '.', '.', '.', '#', ' ', '\t', '\u{1d}', '\u{a0}', 'A', '-', 'ö',
            '\u{2028}', '\u{0}',
        ]);
        prop::collection::vec(ch, 0..12).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_spec_regexes(s in uri_like()) {
            for (policy, check, re) in spec_regexes() {
                prop_assert_eq!(validate_pattern(&s, *policy, *check).is_ok(), re.is_match(&s),
                    "{:?} {:?} {:?}", s, policy, check);
            }
        }
    }
}
