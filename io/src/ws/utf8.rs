//! UTF-8 validation of WebSocket text messages (RFC 6455 section 8.1).
//!
//! [`is_valid`] checks a whole message with `simdutf8`'s fastest validator. [`Utf8Validator`]
//! checks a message fragment by fragment and fails on the first fragment that makes the
//! message impossible to complete as UTF-8 (RFC 6455 section 8.1 wants the connection failed
//! then, not at the end), carrying at most 3 bytes of a sequence split between fragments.
//!
//! This module does not decode, copy or buffer messages, and knows nothing about frames:
//! the caller feeds it payload bytes after unmasking (and inflating).

use std::fmt;

/// Whole-message validation (the `simdutf8` fast path).
#[inline]
pub fn is_valid(bytes: &[u8]) -> bool {
    // Short ASCII messages (most small WAMP frames) are settled by a few word tests; the
    // vector validator's dispatch and setup cost more than that below 64 bytes.
    if bytes.len() < 64 && bytes.is_ascii() {
        return true;
    }
    simdutf8::basic::from_utf8(bytes).is_ok()
}

/// Streaming validation across fragments: carries at most 3 bytes of an incomplete
/// sequence, fails as soon as an invalid sequence is seen (not only at the end).
///
/// Feed each fragment's payload with [`feed`](Self::feed), then call
/// [`finish`](Self::finish) on the final one. After an error the validator must be
/// [`reset`](Self::reset) before the next message.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// The start of a sequence cut off at the end of the previous fragment.
    pending: [u8; 4],
    /// How many bytes of `pending` are in use: 0..=3.
    pending_len: u8,
    /// Bytes of the message accepted so far, for error offsets.
    consumed: usize,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next fragment of the message.
    ///
    /// Fails as soon as the bytes seen so far cannot start any valid UTF-8 text, including
    /// a truncated sequence at the end of `chunk` that no continuation could make valid
    /// (such as `F4 90`, which would encode a code point above U+10FFFF).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let mut rest = chunk;
        if self.pending_len > 0 {
            rest = self.complete_pending(rest)?;
            if self.pending_len > 0 {
                // `chunk` ended inside the same sequence again: nothing more to check.
                return Ok(());
            }
        }
        // Split off a sequence the end of the fragment cuts short, so that the body is one
        // pass of the fastest validator even when characters straddle fragments; only an
        // error pays for a second pass that finds where it is.
        let (body, tail) = rest.split_at(incomplete_tail_start(rest));
        if simdutf8::basic::from_utf8(body).is_err() {
            let valid = match simdutf8::compat::from_utf8(body) {
                Err(e) => e.valid_up_to(),
                // Both validators accept the same language; this arm is unreachable.
                Ok(_) => 0,
            };
            return Err(Utf8Error::InvalidSequence {
                valid_up_to: self.consumed + valid,
            });
        }
        self.consumed += body.len();
        if tail.is_empty() {
            return Ok(());
        }
        // The tail (at most 3 bytes) is never a whole character; `error_len() == None`
        // says it is the start of one that a later fragment may complete, while `Some`
        // flags a prefix that no continuation can fix (like `F4 90`, above U+10FFFF).
        match std::str::from_utf8(tail) {
            Err(e) if e.error_len().is_none() => {
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            _ => Err(Utf8Error::InvalidSequence {
                valid_up_to: self.consumed,
            }),
        }
    }

    /// [`feed`](Self::feed) for a fragment the caller has found to be all ASCII (for
    /// example while unmasking it): with no sequence carried over from the previous
    /// fragment, ASCII is valid as it stands and is only counted; otherwise it is checked
    /// as usual (ASCII cannot continue a carried sequence, so that fails).
    pub fn feed_ascii(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        debug_assert!(chunk.is_ascii(), "feed_ascii given non-ASCII bytes");
        if self.pending_len > 0 {
            return self.feed(chunk);
        }
        self.consumed += chunk.len();
        Ok(())
    }

    /// Ends the message: fails if it stopped inside a sequence. Resets the validator either
    /// way, so it is ready for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let result = if self.pending_len > 0 {
            Err(Utf8Error::Truncated {
                valid_up_to: self.consumed,
            })
        } else {
            Ok(())
        };
        self.reset();
        result
    }

    /// Forgets the current message.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Whether the message so far ends inside a multi-byte sequence.
    pub fn is_incomplete(&self) -> bool {
        self.pending_len > 0
    }

    /// Continues the carried sequence with the first bytes of `chunk`; returns what is left
    /// of `chunk` once the sequence is complete (or everything was used up).
    fn complete_pending<'a>(&mut self, chunk: &'a [u8]) -> Result<&'a [u8], Utf8Error> {
        let have = usize::from(self.pending_len);
        let need = sequence_len(self.pending[0]).saturating_sub(have);
        let take = need.min(chunk.len());
        let mut seq = [0u8; 4];
        seq[..have].copy_from_slice(&self.pending[..have]);
        seq[have..have + take].copy_from_slice(&chunk[..take]);
        // At most 4 bytes: std's validator is the simplest exact check here.
        match std::str::from_utf8(&seq[..have + take]) {
            Ok(_) => {
                self.consumed += have + take;
                self.pending_len = 0;
                Ok(&chunk[take..])
            }
            Err(e) if e.error_len().is_none() => {
                // Still a valid prefix, and `chunk` is exhausted (`take < need`).
                self.pending = seq;
                self.pending_len = (have + take) as u8;
                Ok(&chunk[take..])
            }
            Err(_) => Err(Utf8Error::InvalidSequence {
                valid_up_to: self.consumed,
            }),
        }
    }
}

/// Why a text message is not UTF-8. Offsets count bytes from the start of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Utf8Error {
    /// The bytes from `valid_up_to` on are not the start of any valid sequence: a stray
    /// continuation byte, a bad lead byte, an overlong encoding, a surrogate or a code point
    /// above U+10FFFF.
    InvalidSequence {
        /// Length of the valid prefix of the message.
        valid_up_to: usize,
    },
    /// The message ended inside a multi-byte sequence starting at `valid_up_to`.
    Truncated {
        /// Length of the valid prefix of the message.
        valid_up_to: usize,
    },
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSequence { valid_up_to } => {
                write!(f, "invalid UTF-8 sequence after {valid_up_to} valid bytes")
            }
            Self::Truncated { valid_up_to } => {
                write!(
                    f,
                    "text ends inside a UTF-8 sequence after {valid_up_to} valid bytes"
                )
            }
        }
    }
}

impl std::error::Error for Utf8Error {}

/// Where a sequence that runs past the end of `bytes` starts (its lead byte is among the
/// last 3 bytes), or `bytes.len()` if the end cuts no sequence short. Judges only lead
/// bytes: whether the bytes are valid is the validator's business.
fn incomplete_tail_start(bytes: &[u8]) -> usize {
    let end = bytes.len();
    for i in (end.saturating_sub(3)..end).rev() {
        let byte = bytes[i];
        if byte & 0xc0 != 0x80 {
            // The last byte that is not a continuation byte: does its sequence fit?
            return if i + sequence_len(byte) > end { i } else { end };
        }
    }
    end
}

/// The length of the sequence a lead byte announces; 0 for bytes that cannot lead (they
/// are left to the validator to reject, and a carried prefix always starts with a valid
/// lead byte).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `chunks` one by one and returns the index of the first chunk that errs, or
    /// `chunks.len()` if only `finish` errs, or `None` if the message is valid. ASCII
    /// chunks go through `feed_ascii`, as the connection sends them (every test below thus
    /// checks it against std too); `feed_all` uses `feed` alone.
    fn first_failure(chunks: &[&[u8]]) -> Option<usize> {
        let mut v = Utf8Validator::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let fed = if chunk.is_ascii() {
                v.feed_ascii(chunk)
            } else {
                v.feed(chunk)
            };
            if fed.is_err() {
                return Some(i);
            }
        }
        v.finish().err().map(|_| chunks.len())
    }

    /// Feeds every chunk (stopping at the first error) and finishes.
    fn feed_all(chunks: &[&[u8]]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for chunk in chunks {
            v.feed(chunk)?;
        }
        v.finish()
    }

    /// The reference: the first chunk after which std says the prefix can never become
    /// valid (`error_len` is `Some`), else `finish` if the whole message is invalid.
    fn expected_failure(chunks: &[&[u8]]) -> Option<usize> {
        let mut prefix = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            prefix.extend_from_slice(chunk);
            if let Err(e) = std::str::from_utf8(&prefix) {
                if e.error_len().is_some() {
                    return Some(i);
                }
            }
        }
        std::str::from_utf8(&prefix).err().map(|_| chunks.len())
    }

    fn check(chunks: &[&[u8]], expect: Option<usize>) {
        assert_eq!(first_failure(chunks), expect, "{chunks:02x?}");
        assert_eq!(expected_failure(chunks), expect, "reference, {chunks:02x?}");
        let whole: Vec<u8> = chunks.concat();
        assert_eq!(is_valid(&whole), expect.is_none(), "is_valid {whole:02x?}");
    }

    #[test]
    fn examples() {
        let end = |n: usize| Some(n);
        check(&[], None);
        check(&[b""], None);
        check(&[b"hello"], None);
        check(&["κόσμε".as_bytes()], None);
        // A 4-byte sequence split every way.
        check(&[b"\xf0", b"\x9f\x98\x80"], None);
        check(&[b"\xf0\x9f", b"\x98\x80"], None);
        check(&[b"\xf0\x9f\x98", b"\x80"], None);
        check(&[b"\xf0", b"\x9f", b"", b"\x98", b"\x80a"], None);
        // Truncated at the end of the message: only `finish` can tell.
        check(&[b"a\xf0\x9f\x98"], end(1));
        check(&[b"\xe2\x82"], end(1));
        check(&[b"ok", b"\xc3"], end(2));
        // Invalid in the first fragment.
        check(&[b"\xff", b"ok"], Some(0));
        check(&[b"\x80"], Some(0));
        check(&[b"\xc0\xaf", b"ok"], Some(0)); // overlong '/'
        check(&[b"\xe0\x80\xaf"], Some(0)); // overlong, 3 bytes
        check(&[b"\xed\xa0\x80"], Some(0)); // surrogate U+D800
        check(&[b"\xf4\x90\x80\x80"], Some(0)); // U+110000
        check(&[b"\xf5"], Some(0));
        // Truncated prefixes that no continuation can fix fail at once.
        check(&[b"\xf4\x90", b"\x80\x80"], Some(0));
        check(&[b"\xe0\x80", b"\xaf"], Some(0));
        check(&[b"\xed\xa0", b"\x80"], Some(0));
        // A valid-looking prefix that the next fragment breaks.
        check(&[b"\xf0\x9f", b"A"], Some(1));
        check(&[b"\xf0", b"\x8f"], Some(1)); // overlong 4-byte
        check(&[b"\xe2", b"\x82", b"("], Some(2));
        // Long inputs go through simdutf8's vector path.
        let long = [b"x".repeat(100).as_slice(), b"\xf4\x90"].concat();
        check(&[&long, b"\x80\x80"], Some(0));
        let long_ok = "€".repeat(100);
        let (a, b) = long_ok.as_bytes().split_at(151);
        check(&[a, b], None);
    }

    #[test]
    fn error_offsets_count_from_the_start_of_the_message() {
        let mut v = Utf8Validator::new();
        v.feed(b"abc").unwrap();
        v.feed(b"\xe2\x82").unwrap();
        assert!(v.is_incomplete());
        v.feed(b"\xac").unwrap();
        assert_eq!(
            v.feed(b"de\xff"),
            Err(Utf8Error::InvalidSequence { valid_up_to: 8 })
        );
        v.reset();
        v.feed(b"abc\xe2").unwrap();
        assert_eq!(v.finish(), Err(Utf8Error::Truncated { valid_up_to: 3 }));
        // `finish` reset the validator: a new message starts clean.
        assert!(!v.is_incomplete());
        v.feed(b"\xac").unwrap_err();
        v.reset();
        v.feed(b"\xe2").unwrap();
        assert_eq!(
            v.feed(b"\x82("),
            Err(Utf8Error::InvalidSequence { valid_up_to: 0 })
        );
    }

    #[test]
    fn incomplete_tail_start_finds_only_sequences_cut_by_the_end() {
        let check = |bytes: &[u8], expect: usize| {
            assert_eq!(incomplete_tail_start(bytes), expect, "{bytes:02x?}");
        };
        check(b"", 0);
        check(b"abc", 3);
        check(b"ab\xc3", 2);
        check(b"a\xe2\x82", 1);
        check(b"\xf0\x9f\x98", 0);
        check(b"x\xf0\x9f\x98\x80", 5); // complete 4-byte sequence
        check(b"\xe2\x82\xac", 3); // complete 3-byte sequence
        check(b"a\x80\x80\x80", 4); // stray continuations: the validator's business
        check(b"a\xff", 2); // not a lead byte: the validator's business
        check(b"\xf4\x90", 0); // cut short, even though no continuation can fix it
    }

    /// Generates byte strings built from pieces that are valid characters of every width,
    /// and the classic invalid cases: truncated sequences, overlongs, surrogates, code
    /// points above U+10FFFF, stray continuation and invalid lead bytes.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
            2 => "[a-z]{1,8}".prop_map(String::into_bytes),
            1 => prop::sample::select(vec![
                vec![0xc0, 0x80],
                vec![0xc1, 0xbf],
                vec![0xe0, 0x9f, 0xbf],
                vec![0xf0, 0x8f, 0xbf, 0xbf],
                vec![0xed, 0xa0, 0x80],
                vec![0xed, 0xbf, 0xbf],
                vec![0xf4, 0x90, 0x80, 0x80],
                vec![0xf5, 0x80, 0x80, 0x80],
                vec![0xff],
                vec![0x80],
                vec![0xbf],
                vec![0xe2, 0x82],
                vec![0xf0, 0x9f, 0x98],
                vec![0xc3],
            ]),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn streaming_agrees_with_std_split_anywhere(
            data in text(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &data[w[0]..w[1]]).collect();
            prop_assert_eq!(first_failure(&chunks), expected_failure(&chunks));
            prop_assert_eq!(is_valid(&data), std::str::from_utf8(&data).is_ok());
            // The error points where std's does: the start of the first bad sequence.
            let ours = feed_all(&chunks).err().map(|e| match e {
                Utf8Error::InvalidSequence { valid_up_to } | Utf8Error::Truncated { valid_up_to } => valid_up_to,
            });
            prop_assert_eq!(ours, std::str::from_utf8(&data).err().map(|e| e.valid_up_to()));
        }

        #[test]
        fn byte_at_a_time_agrees_with_std(data in text()) {
            let chunks: Vec<&[u8]> = data.chunks(1).collect();
            prop_assert_eq!(first_failure(&chunks), expected_failure(&chunks));
        }

        #[test]
        fn valid_text_split_anywhere_is_accepted(
            s in any::<String>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = s.as_bytes();
            let (a, b) = bytes.split_at(cut.index(bytes.len() + 1));
            prop_assert_eq!(first_failure(&[a, b]), None);
        }
    }
}
