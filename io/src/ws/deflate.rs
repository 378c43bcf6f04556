//! permessage-deflate (RFC 7692): negotiation of the extension and the per-connection
//! compression contexts.
//!
//! [`negotiate`] reads the client's `Sec-WebSocket-Extensions` offers and picks the first one
//! we can honour; [`DeflateParams::response_header_value`] writes our answer. The client side
//! ([`client_offer`], [`parse_response`]) is here too, for the load generator.
//! [`PerMessageDeflate`] holds one raw-deflate compressor and one decompressor for a
//! connection and applies the agreed context-takeover and window rules.
//!
//! What it does not do: it never sees frames or RSV bits (the connection state machine decides
//! which messages are compressed and sets RSV1), and it holds no socket or clock.
//!
//! # Window bits and zlib
//!
//! zlib (and zlib-rs) cannot compress raw deflate with an 8-bit window: asked for 8, it
//! refuses (or, in older zlib, silently uses 9, which breaks a peer inflating with 256
//! bytes). So an offer that limits *our* compressor to 8 bits (`server_max_window_bits=8`) is
//! declined and the next offer is tried, as RFC 7692 §7.1.2.1 allows ("the server doesn't
//! support the offered configuration"). A peer's compressor limited to 8 bits is no problem:
//! any larger inflate window decodes its output, so we inflate with at least 9 bits — which
//! also copes with zlib-based peers that agreed on 8 and really used 9.
//!
//! # Memory
//!
//! Contexts are created on first use, and with no context takeover in a direction they are
//! dropped after each message, so an idle connection holds compression memory only where
//! context takeover obliges it to keep a window. Sizes measured with zlib-rs 0.6.8:
//! a compressor takes `134_272 + 4 << window_bits + 7 << (mem_level + 6)` bytes (the fixed
//! part is zlib-rs's 64 Ki-entry hash head plus its state: memLevel does not shrink the hash
//! in zlib-rs), a decompressor takes 47_552 bytes whatever the window (zlib-rs always
//! allocates a 32 KiB window). See [`DeflateConfig::memory_per_connection`].

use std::fmt;

use flate2::{Decompress, FlushDecompress, Status};

/// The trailer a sync flush ends with; RFC 7692 §7.2.1 strips it from every message and
/// §7.2.2 appends it again before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Bytes zlib-rs 0.6.8 allocates for a raw-deflate compressor besides the window and the
/// literal buffers (the 64 Ki-entry hash head and the state), measured.
const DEFLATE_FIXED_BYTES: usize = 134_272;

/// Bytes zlib-rs 0.6.8 allocates for a raw-deflate decompressor, measured; it does not depend
/// on the window bits because zlib-rs always allocates a 32 KiB window.
const INFLATE_BYTES: usize = 47_552;

/// The largest output step while inflating: output space is handed out in slices no larger
/// than this (and no larger than what the limit still allows).
const INFLATE_STEP: usize = 16 * 1024;

/// The extension's registered name.
const NAME: &str = "permessage-deflate";

/// Server-side permessage-deflate options (Crossbar's `compression.deflate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The largest window (9..=15) our compressor uses; a client may ask for less.
    pub server_max_window_bits: u8,
    /// The largest window (9..=15) we ask the client's compressor to use, when the client's
    /// offer lets us ask (it carries `client_max_window_bits`).
    pub client_max_window_bits: u8,
    /// Ask the client to drop its compressor context after each message
    /// (`client_no_context_takeover` in our response).
    pub request_no_context_takeover: bool,
    /// Drop our compressor context after each message (`server_no_context_takeover`).
    pub server_no_context_takeover: bool,
    /// zlib memLevel 1..=9 for our compressor: bounds its literal buffers.
    pub mem_level: u8,
    /// Messages shorter than this are sent uncompressed (see
    /// [`PerMessageDeflate::should_compress`]).
    pub compress_threshold: usize,
}

impl Default for DeflateConfig {
    /// A 13-bit compressor window and memLevel 6: WAMP messages are small, so a larger window
    /// gains little while it costs 96 KiB more per connection; with these values a connection
    /// using both directions holds about 238 KiB (see
    /// [`DeflateConfig::memory_per_connection`]). Context takeover stays on in both directions
    /// (it is what makes small similar messages compress well), and messages under 64 bytes
    /// are not worth compressing.
    fn default() -> Self {
        Self {
            server_max_window_bits: 13,
            client_max_window_bits: 15,
            request_no_context_takeover: false,
            server_no_context_takeover: false,
            mem_level: 6,
            compress_threshold: 64,
        }
    }
}

impl DeflateConfig {
    /// The most memory one connection's contexts take with this configuration, in bytes: a
    /// compressor with the configured window and memLevel plus a decompressor (sizes measured
    /// with zlib-rs 0.6.8; see the module documentation). Out-of-range values are clamped to
    /// what [`PerMessageDeflate`] would use.
    pub fn memory_per_connection(&self) -> usize {
        deflate_bytes(
            self.server_max_window_bits.clamp(9, 15),
            self.mem_level.clamp(1, 9),
        ) + INFLATE_BYTES
    }
}

/// The bytes zlib-rs allocates for one raw-deflate compressor.
fn deflate_bytes(window_bits: u8, mem_level: u8) -> usize {
    DEFLATE_FIXED_BYTES + (4 << window_bits) + (7 << (mem_level + 6))
}

/// The parameters agreed with one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server drops its compressor context after each message.
    pub server_no_context_takeover: bool,
    /// The client drops its compressor context after each message.
    pub client_no_context_takeover: bool,
    /// The server compresses with a window of at most this many bits (8..=15).
    pub server_max_window_bits: u8,
    /// The client compresses with a window of at most this many bits (8..=15).
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value that accepts these parameters. Window sizes of 15
    /// are left out (15 is the default, and RFC 7692 forbids `client_max_window_bits` in a
    /// response to an offer without it, which [`negotiate`] only allows at 15).
    pub fn response_header_value(&self) -> String {
        let mut value = String::from(NAME);
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_max_window_bits < 15 {
            value.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        value
    }
}

/// Why permessage-deflate negotiation or a compression context failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateError {
    /// The compressor reported an error (a bug or an allocation failure, never peer input).
    CompressFailed,
    /// The peer's compressed data is not a valid deflate stream.
    Corrupt,
    /// The server's response carried a parameter twice.
    DuplicateParam(String),
    /// A `Sec-WebSocket-Extensions` element has no extension name.
    EmptyExtensionName,
    /// A parameter name or value in `Sec-WebSocket-Extensions` is not an HTTP token.
    InvalidToken(String),
    /// The server's response carried a parameter value that RFC 7692 forbids.
    InvalidValue(String),
    /// The server's response used a window of bits our compressor cannot use.
    UnsupportedWindowBits(u8),
    /// The server's response carried `client_max_window_bits`, which our offer did not have.
    ClientWindowNotOffered,
    /// The inflated message would be larger than the allowed maximum.
    TooLarge {
        /// The limit that was passed.
        max: usize,
    },
    /// A quoted-string in `Sec-WebSocket-Extensions` is not terminated.
    UnterminatedQuote,
    /// The server's response carried a parameter RFC 7692 does not define for responses.
    UnknownParam(String),
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CompressFailed => write!(f, "the deflate compressor failed"),
            Self::Corrupt => write!(f, "invalid deflate data"),
            Self::DuplicateParam(p) => write!(f, "permessage-deflate parameter {p} repeated"),
            Self::EmptyExtensionName => write!(f, "extension without a name"),
            Self::InvalidToken(t) => write!(f, "invalid token {t:?} in extension header"),
            Self::InvalidValue(p) => write!(f, "invalid value for permessage-deflate {p}"),
            Self::UnsupportedWindowBits(b) => write!(f, "compressor window of {b} bits"),
            Self::ClientWindowNotOffered => {
                write!(
                    f,
                    "client_max_window_bits in a response to an offer without it"
                )
            }
            Self::TooLarge { max } => write!(f, "inflated message larger than {max} bytes"),
            Self::UnterminatedQuote => write!(f, "unterminated quoted-string in extension header"),
            Self::UnknownParam(p) => write!(f, "unknown permessage-deflate parameter {p}"),
        }
    }
}

impl std::error::Error for DeflateError {}

/// Picks the first acceptable permessage-deflate offer from the `Sec-WebSocket-Extensions`
/// header value(s) (RFC 7692 §5, §7.1), or `Ok(None)` when none is acceptable (the
/// connection then goes on without compression).
///
/// An offer with an unknown, duplicated or ill-valued parameter is declined, as is one that
/// limits our compressor to 8 bits (see the module documentation); other extensions are
/// ignored. Only a header that does not follow the extension grammar is an error.
pub fn negotiate(
    offers: &[&str],
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, DeflateError> {
    let mut extensions = Vec::new();
    for value in offers {
        extensions.extend(parse_extensions(value)?);
    }
    Ok(extensions
        .iter()
        .filter(|ext| ext.name.eq_ignore_ascii_case(NAME))
        .find_map(|ext| {
            let offer = Offer::parse(&ext.params).ok()?;
            offer.accept(config)
        }))
}

/// The offer a client sends: plain `permessage-deflate`. Without `client_max_window_bits`
/// the server cannot ask our compressor for an 8-bit window, which zlib cannot honour.
pub fn client_offer() -> &'static str {
    NAME
}

/// Checks the server's `Sec-WebSocket-Extensions` answer to [`client_offer`] and returns the
/// agreed parameters; `Ok(None)` when the server accepted no permessage-deflate.
pub fn parse_response(values: &[&str]) -> Result<Option<DeflateParams>, DeflateError> {
    let mut extensions = Vec::new();
    for value in values {
        extensions.extend(parse_extensions(value)?);
    }
    let Some(ext) = extensions
        .iter()
        .find(|ext| ext.name.eq_ignore_ascii_case(NAME))
    else {
        return Ok(None);
    };
    let offer = Offer::parse(&ext.params).map_err(|rejection| match rejection {
        Rejection::Duplicate(p) => DeflateError::DuplicateParam(p),
        Rejection::BadValue(p) => DeflateError::InvalidValue(p),
        Rejection::Unknown(p) => DeflateError::UnknownParam(p),
    })?;
    if offer.client_max_window_bits.is_some() {
        return Err(DeflateError::ClientWindowNotOffered);
    }
    let Some(server_bits) = offer.server_max_window_bits.or(Some(15)) else {
        return Err(DeflateError::InvalidValue("server_max_window_bits".into()));
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: 15,
    }))
}

/// One element of a `Sec-WebSocket-Extensions` list.
#[derive(Debug, PartialEq, Eq)]
struct Extension {
    name: String,
    /// Parameters in order; the value is unquoted already.
    params: Vec<(String, Option<String>)>,
}

/// Splits a header value into extensions per RFC 6455 §9.1 (`1#extension`, parameters after
/// `;`, values as token or quoted-string).
fn parse_extensions(value: &str) -> Result<Vec<Extension>, DeflateError> {
    let mut out = Vec::new();
    for element in split_outside_quotes(value, ',')? {
        let element = element.trim();
        if element.is_empty() {
            // The `#` list rule allows empty elements ("a, , b").
            continue;
        }
        let mut parts = split_outside_quotes(element, ';')?.into_iter();
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(DeflateError::EmptyExtensionName);
        }
        check_token(name)?;
        let mut params = Vec::new();
        for part in parts {
            let part = part.trim();
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
                None => (part, None),
            };
            check_token(key)?;
            if let Some(v) = &value {
                check_token(v)?;
            }
            params.push((key.to_ascii_lowercase(), value));
        }
        out.push(Extension {
            name: name.to_owned(),
            params,
        });
    }
    Ok(out)
}

/// Splits `s` at `sep` where it is not inside a quoted-string.
fn split_outside_quotes(s: &str, sep: char) -> Result<Vec<&str>, DeflateError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if in_quotes {
        return Err(DeflateError::UnterminatedQuote);
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// Removes the quotes and backslash escapes of a quoted-string; a token passes unchanged.
fn unquote(v: &str) -> Result<String, DeflateError> {
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_owned());
    };
    let Some(inner) = inner.strip_suffix('"') else {
        return Err(DeflateError::UnterminatedQuote);
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    Ok(out)
}

/// RFC 7230 `token`: one or more visible ASCII characters other than separators.
fn check_token(s: &str) -> Result<(), DeflateError> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DeflateError::InvalidToken(s.to_owned()))
    }
}

/// A syntactically valid permessage-deflate offer (or response: same parameters).
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value (the client supports it).
    client_max_window_bits: Option<Option<u8>>,
}

/// Why one offer is declined (RFC 7692 §5: the server MUST decline such an offer).
#[derive(Debug, PartialEq, Eq)]
enum Rejection {
    /// A parameter appears twice.
    Duplicate(String),
    /// A parameter has a missing, extra or out-of-range value.
    BadValue(String),
    /// A parameter not defined by RFC 7692.
    Unknown(String),
}

impl Offer {
    fn parse(params: &[(String, Option<String>)]) -> Result<Self, Rejection> {
        let mut offer = Self::default();
        let mut seen = [false; 4];
        for (key, value) in params {
            let (slot, name) = match key.as_str() {
                "server_no_context_takeover" => (0, key),
                "client_no_context_takeover" => (1, key),
                "server_max_window_bits" => (2, key),
                "client_max_window_bits" => (3, key),
                _ => return Err(Rejection::Unknown(key.clone())),
            };
            if seen[slot] {
                return Err(Rejection::Duplicate(name.clone()));
            }
            seen[slot] = true;
            let bad = || Rejection::BadValue(name.clone());
            match (slot, value) {
                (0, None) => offer.server_no_context_takeover = true,
                (1, None) => offer.client_no_context_takeover = true,
                (2, Some(v)) => {
                    offer.server_max_window_bits = Some(window_bits(v).ok_or_else(bad)?)
                }
                (3, None) => offer.client_max_window_bits = Some(None),
                (3, Some(v)) => {
                    offer.client_max_window_bits = Some(Some(window_bits(v).ok_or_else(bad)?));
                }
                _ => return Err(bad()),
            }
        }
        Ok(offer)
    }

    /// Our answer to this offer, or `None` if we cannot support it.
    fn accept(&self, config: &DeflateConfig) -> Option<DeflateParams> {
        let ours = config.server_max_window_bits.clamp(9, 15);
        let server_max_window_bits = match self.server_max_window_bits {
            // zlib cannot compress with an 8-bit window: decline rather than break the peer.
            Some(8) => return None,
            Some(bits) => bits.min(ours),
            None => ours,
        };
        let client_max_window_bits = match self.client_max_window_bits {
            // Without the parameter we may not limit the client: it uses 15.
            None => 15,
            Some(None) => config.client_max_window_bits.clamp(9, 15),
            Some(Some(bits)) => bits.min(config.client_max_window_bits.clamp(9, 15)),
        };
        Some(DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover
                || config.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover
                || config.request_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }
}

/// RFC 7692 §7.1.2: a decimal integer 8..=15 without leading zeroes.
fn window_bits(v: &str) -> Option<u8> {
    if v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// One connection's permessage-deflate contexts: a raw-deflate compressor for the messages we
/// send and a decompressor for the messages we receive, each following the agreed window and
/// context-takeover parameters of its direction.
pub struct PerMessageDeflate {
    /// Created on first use; `None` again after each message without context takeover.
    compressor: Option<zlib_rs::Deflate>,
    compress_window_bits: u8,
    compress_takeover: bool,
    mem_level: u8,
    /// Created on first use; `None` again after each message without context takeover.
    decompressor: Option<Decompress>,
    decompress_window_bits: u8,
    decompress_takeover: bool,
    /// The peer ended its deflate stream (a block with BFINAL) inside the current message.
    inflate_ended: bool,
    compress_threshold: usize,
}

impl fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("compress_window_bits", &self.compress_window_bits)
            .field("compress_takeover", &self.compress_takeover)
            .field("decompress_window_bits", &self.decompress_window_bits)
            .field("decompress_takeover", &self.decompress_takeover)
            .finish_non_exhaustive()
    }
}

impl PerMessageDeflate {
    /// The server side's contexts: we compress under the `server_*` parameters and inflate
    /// the client's messages under the `client_*` ones.
    pub fn new(params: &DeflateParams, config: &DeflateConfig) -> Self {
        Self::with_sides(
            params.server_max_window_bits,
            !params.server_no_context_takeover,
            params.client_max_window_bits,
            !params.client_no_context_takeover,
            config,
        )
    }

    /// The client side's contexts (the mirror image of [`PerMessageDeflate::new`]). Fails if
    /// the agreed client window is one zlib cannot compress with (8 bits).
    pub fn new_client(
        params: &DeflateParams,
        config: &DeflateConfig,
    ) -> Result<Self, DeflateError> {
        if params.client_max_window_bits < 9 {
            return Err(DeflateError::UnsupportedWindowBits(
                params.client_max_window_bits,
            ));
        }
        Ok(Self::with_sides(
            params.client_max_window_bits,
            !params.client_no_context_takeover,
            params.server_max_window_bits,
            !params.server_no_context_takeover,
            config,
        ))
    }

    fn with_sides(
        compress_bits: u8,
        compress_takeover: bool,
        decompress_bits: u8,
        decompress_takeover: bool,
        config: &DeflateConfig,
    ) -> Self {
        Self {
            compressor: None,
            // Out-of-range values are clamped so that the zlib constructors, which assert on
            // them, can never panic.
            compress_window_bits: compress_bits.clamp(9, 15),
            compress_takeover,
            mem_level: config.mem_level.clamp(1, 9),
            decompressor: None,
            // Larger windows inflate smaller ones' output; 9 also covers zlib's "8 means 9".
            decompress_window_bits: decompress_bits.clamp(9, 15),
            decompress_takeover,
            inflate_ended: false,
            compress_threshold: config.compress_threshold,
        }
    }

    /// Whether a message of `len` bytes is worth compressing (the configured threshold).
    pub fn should_compress(&self, len: usize) -> bool {
        len >= self.compress_threshold
    }

    /// The bytes the contexts hold right now (estimate from measured zlib-rs sizes).
    pub fn memory_in_use(&self) -> usize {
        let c = self.compressor.as_ref().map_or(0, |_| {
            deflate_bytes(self.compress_window_bits, self.mem_level)
        });
        let d = self.decompressor.as_ref().map_or(0, |_| INFLATE_BYTES);
        c + d
    }

    /// Inflates one fragment of a compressed message, appending to `out`; `fin` marks the
    /// last fragment (then the `00 00 ff ff` tail is fed and, without context takeover, the
    /// context dropped). Fails with [`DeflateError::TooLarge`] as soon as `out` would exceed
    /// `max_out` total bytes: output space is handed to zlib only up to one byte past the
    /// limit, so a compression bomb is refused, not inflated.
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), DeflateError> {
        let result = self.inflate(input, out, max_out).and_then(|()| {
            if fin {
                self.inflate(&TAIL, out, max_out)
            } else {
                Ok(())
            }
        });
        if fin || result.is_err() {
            self.inflate_ended = false;
            if !self.decompress_takeover || result.is_err() {
                self.decompressor = None;
            }
        }
        result
    }

    fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), DeflateError> {
        if self.inflate_ended {
            // After a final block the rest of the message (the appended tail, padding) carries
            // no data; RFC 7692 §7.2.3.4 lets a sender end its stream this way.
            return Ok(());
        }
        let bits = self.decompress_window_bits;
        let inflater = self
            .decompressor
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        let mut pos = 0;
        loop {
            let start = out.len();
            let room = max_out
                .saturating_sub(start)
                .saturating_add(1)
                .min(INFLATE_STEP);
            out.resize(start + room, 0);
            let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
            let status =
                inflater.decompress(&input[pos..], &mut out[start..], FlushDecompress::None);
            // The counters advance by at most the slice lengths, which fit in usize.
            let consumed = (inflater.total_in() - in_before) as usize;
            let produced = (inflater.total_out() - out_before) as usize;
            out.truncate(start + produced);
            pos += consumed;
            // The limit is checked before zlib's verdict: even when the step that wrote past
            // the limit also hit corrupt data, `out` must never hold more than `max_out` bytes.
            if out.len() > max_out {
                out.truncate(max_out);
                return Err(DeflateError::TooLarge { max: max_out });
            }
            let status = status.map_err(|_| DeflateError::Corrupt)?;
            match status {
                Status::StreamEnd => {
                    self.inflate_ended = true;
                    // A finished stream cannot continue: the next message starts afresh.
                    self.decompressor = None;
                    return Ok(());
                }
                _ if pos == input.len() && produced < room => return Ok(()),
                _ if consumed == 0 && produced == 0 => return Ok(()),
                _ => {}
            }
        }
    }

    /// Deflates one whole message, appending the compressed bytes to `out` (the `00 00 ff ff`
    /// tail stripped, RFC 7692 §7.2.1). Without context takeover the compressor is dropped
    /// afterwards.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let bits = self.compress_window_bits;
        let mem_level = self.mem_level;
        let deflater = self.compressor.get_or_insert_with(|| {
            zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
                // Negative: raw deflate, no zlib header. Bits and memLevel are within zlib's
                // ranges (clamped in `with_sides`), so the constructor's assertion holds.
                window_bits: -i32::from(bits),
                mem_level: i32::from(mem_level),
                ..zlib_rs::DeflateConfig::default()
            })
        });
        let result = deflate_all(deflater, input, out);
        if !self.compress_takeover || result.is_err() {
            self.compressor = None;
        }
        result
    }
}

/// Runs `input` through `deflater` with a sync flush and strips the trailing empty block.
fn deflate_all(
    deflater: &mut zlib_rs::Deflate,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    let begin = out.len();
    let mut pos = 0;
    loop {
        let start = out.len();
        // Deflate rarely expands; a quarter of the input plus slack is a good first guess and
        // the loop asks for more when needed.
        let room = (input.len() - pos) / 4 + 64;
        out.resize(start + room, 0);
        let (in_before, out_before) = (deflater.total_in(), deflater.total_out());
        let status = deflater.compress(
            &input[pos..],
            &mut out[start..],
            zlib_rs::DeflateFlush::SyncFlush,
        );
        // The counters advance by at most the slice lengths, which fit in usize.
        let consumed = (deflater.total_in() - in_before) as usize;
        let produced = (deflater.total_out() - out_before) as usize;
        out.truncate(start + produced);
        pos += consumed;
        status.map_err(|_| DeflateError::CompressFailed)?;
        // A sync flush is complete when all input is taken and zlib left output space unused.
        if pos == input.len() && produced < room {
            break;
        }
    }
    if out.len() >= begin + 4 && out[out.len() - 4..] == TAIL {
        out.truncate(out.len() - 4);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    fn check_negotiate(offers: &[&str], config: &DeflateConfig, expect: Option<&str>) {
        let got = negotiate(offers, config).unwrap();
        assert_eq!(
            got.as_ref()
                .map(DeflateParams::response_header_value)
                .as_deref(),
            expect,
            "offers {offers:?}"
        );
    }

    #[test]
    fn negotiation_cases() {
        let c = DeflateConfig {
            server_max_window_bits: 15,
            ..DeflateConfig::default()
        };
        let d = &c;
        check_negotiate(&["permessage-deflate"], d, Some("permessage-deflate"));
        check_negotiate(&[], d, None);
        check_negotiate(&["x-webkit-deflate-frame"], d, None);
        // RFC 7692 §5 examples.
        check_negotiate(
            &["permessage-deflate; client_max_window_bits"],
            d,
            Some("permessage-deflate"),
        );
        check_negotiate(
            &["permessage-deflate; client_max_window_bits=10"],
            d,
            Some("permessage-deflate; client_max_window_bits=10"),
        );
        check_negotiate(
            &["permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits"],
            d,
            Some("permessage-deflate; server_max_window_bits=10"),
        );
        check_negotiate(
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            d,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        );
        // Quoted values and case-insensitive parameter names.
        check_negotiate(
            &["permessage-deflate; Server_Max_Window_Bits=\"12\""],
            d,
            Some("permessage-deflate; server_max_window_bits=12"),
        );
        // Declined offers fall through to the next one.
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "permessage-deflate; foo",
            // Our compressor cannot use 8 bits.
            "permessage-deflate; server_max_window_bits=8",
        ] {
            check_negotiate(&[bad], d, None);
            let two = format!("{bad}, permessage-deflate; server_no_context_takeover");
            check_negotiate(
                &[&two],
                d,
                Some("permessage-deflate; server_no_context_takeover"),
            );
        }
        // Offers spread over several header lines, mixed with other extensions.
        check_negotiate(
            &[
                "foo; bar=1",
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate",
            ],
            d,
            Some("permessage-deflate"),
        );
        // A client window of 8 is fine: we inflate with 9.
        check_negotiate(
            &["permessage-deflate; client_max_window_bits=8"],
            d,
            Some("permessage-deflate; client_max_window_bits=8"),
        );
    }

    #[test]
    fn negotiation_applies_config() {
        let c = DeflateConfig {
            server_max_window_bits: 11,
            client_max_window_bits: 12,
            request_no_context_takeover: true,
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        check_negotiate(
            &["permessage-deflate; client_max_window_bits"],
            &c,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=12"),
        );
        // The client asks for less than our maximum: it gets what it asked for.
        check_negotiate(
            &["permessage-deflate; server_max_window_bits=9; client_max_window_bits=10"],
            &c,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10"),
        );
        // Without client_max_window_bits in the offer we may not limit the client.
        check_negotiate(
            &["permessage-deflate"],
            &c,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11"),
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        let c = DeflateConfig::default();
        let check = |v: &str, e: DeflateError| assert_eq!(negotiate(&[v], &c), Err(e), "{v}");
        check("permessage-deflate; a=\"1", DeflateError::UnterminatedQuote);
        check(
            "; server_no_context_takeover",
            DeflateError::EmptyExtensionName,
        );
        check(
            "permessage deflate",
            DeflateError::InvalidToken("permessage deflate".into()),
        );
        check(
            "permessage-deflate; a=b c",
            DeflateError::InvalidToken("b c".into()),
        );
        // An empty list element is allowed by the `#` rule.
        assert!(negotiate(&[", permessage-deflate,"], &c).unwrap().is_some());
    }

    #[test]
    fn client_response_checks() {
        let check = |v: &str, e: Result<Option<DeflateParams>, DeflateError>| {
            assert_eq!(parse_response(&[v]), e, "{v}");
        };
        check("permessage-deflate", Ok(Some(params(false, false, 15, 15))));
        check(
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
            Ok(Some(params(true, false, 10, 15))),
        );
        check("x-other", Ok(None));
        check(
            "permessage-deflate; client_max_window_bits=10",
            Err(DeflateError::ClientWindowNotOffered),
        );
        check(
            "permessage-deflate; server_max_window_bits=99",
            Err(DeflateError::InvalidValue("server_max_window_bits".into())),
        );
        check(
            "permessage-deflate; x",
            Err(DeflateError::UnknownParam("x".into())),
        );
        check(
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            Err(DeflateError::DuplicateParam(
                "client_no_context_takeover".into(),
            )),
        );
        let ok = DeflateParams {
            client_max_window_bits: 8,
            ..params(false, false, 15, 8)
        };
        assert_eq!(
            PerMessageDeflate::new_client(&ok, &DeflateConfig::default()).err(),
            Some(DeflateError::UnsupportedWindowBits(8))
        );
    }

    /// Sample data: JSON-like text, compressible but not trivially.
    fn sample(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(
                format!("[16,{},{{}},\"com.example.topic{}\"]", x % 1000, x % 7).as_bytes(),
            );
        }
        out.truncate(n);
        out
    }

    /// Incompressible bytes (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Sends `messages` from a server context to a client context and back, each message
    /// split into `fragments` pieces on the receiving side.
    fn round_trip(p: &DeflateParams, messages: &[Vec<u8>], fragments: usize) {
        let config = DeflateConfig::default();
        let mut server = PerMessageDeflate::new(p, &config);
        let mut client = PerMessageDeflate::new_client(p, &config).unwrap();
        for msg in messages {
            send(&mut server, &mut client, msg, fragments);
            send(&mut client, &mut server, msg, fragments);
        }
    }

    fn send(tx: &mut PerMessageDeflate, rx: &mut PerMessageDeflate, msg: &[u8], fragments: usize) {
        let mut wire = Vec::new();
        tx.compress(msg, &mut wire).unwrap();
        let mut got = Vec::new();
        let step = wire.len() / fragments + 1;
        let chunks: Vec<&[u8]> = wire.chunks(step).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            rx.decompress(chunk, i + 1 == chunks.len(), &mut got, usize::MAX)
                .unwrap();
        }
        assert_eq!(got, msg);
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        let messages: Vec<Vec<u8>> = (0..20).map(|i| sample(10 + i * 97, i as u64)).collect();
        for snct in [false, true] {
            for cnct in [false, true] {
                for fragments in [1, 3] {
                    round_trip(&params(snct, cnct, 15, 15), &messages, fragments);
                }
            }
        }
        round_trip(
            &params(false, false, 15, 15),
            &[Vec::new(), b"x".to_vec()],
            1,
        );
    }

    #[test]
    fn empty_message_is_one_zero_byte() {
        // RFC 7692 §7.2.3.6.
        let mut d =
            PerMessageDeflate::new(&params(false, false, 15, 15), &DeflateConfig::default());
        let mut out = Vec::new();
        d.compress(&[], &mut out).unwrap();
        assert_eq!(out, [0x00]);
    }

    #[test]
    fn rfc_7692_examples_inflate() {
        // §7.2.3.1 "Hello" in one block, §7.2.3.2 the same again with context takeover
        // (a back-reference into the previous message), §7.2.3.3 a stored block.
        let mut d =
            PerMessageDeflate::new(&params(false, false, 15, 15), &DeflateConfig::default());
        let mut out = Vec::new();
        d.decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
        out.clear();
        d.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        out.clear();
        d.decompress(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.4: a final block (BFINAL) ends the stream; the next message starts afresh.
        out.clear();
        d.decompress(
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn every_window_size_is_honoured() {
        // Round trips at every window the negotiation can agree on.
        let block = sample(20_000, 7);
        let mut msg = block.clone();
        msg.extend_from_slice(&block);
        for bits in 9..=15u8 {
            let config = DeflateConfig {
                server_max_window_bits: bits,
                ..DeflateConfig::default()
            };
            let offer = format!(
                "permessage-deflate; client_max_window_bits={bits}; server_max_window_bits={bits}"
            );
            let p = negotiate(&[&offer], &config).unwrap().unwrap();
            assert_eq!(p, params(false, false, bits, bits.min(15)));
            round_trip(&p, &[msg.clone(), block.clone(), msg.clone()], 2);
        }
    }

    #[test]
    fn compressor_window_is_limited() {
        // zlib-rs inflates with a 32 KiB window whatever it is told, so a receiver cannot
        // catch a compressor using too large a window; the compressed size can: a block
        // repeated at a distance of 20,000 bytes is found again only by a 15-bit window.
        let block = noise(20_000);
        let mut msg = block.clone();
        msg.extend_from_slice(&block);
        let size = |bits: u8, data: &[u8]| {
            let mut tx =
                PerMessageDeflate::new(&params(true, false, bits, 15), &DeflateConfig::default());
            let mut wire = Vec::new();
            tx.compress(data, &mut wire).unwrap();
            wire.len()
        };
        assert!(size(15, &msg) < size(15, &block) * 11 / 10);
        for bits in 9..=14 {
            assert!(size(bits, &msg) > size(bits, &block) * 18 / 10, "{bits}");
        }
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let msg = sample(2000, 3);
        let sizes = |takeover: bool| {
            let mut d = PerMessageDeflate::new(
                &params(!takeover, false, 15, 15),
                &DeflateConfig::default(),
            );
            let (mut a, mut b) = (Vec::new(), Vec::new());
            d.compress(&msg, &mut a).unwrap();
            d.compress(&msg, &mut b).unwrap();
            (a.len(), b.len())
        };
        let (first, second) = sizes(true);
        assert!(second < first / 4, "{first} {second}");
        let (first, second) = sizes(false);
        assert_eq!(first, second);
    }

    #[test]
    fn contexts_without_takeover_are_released() {
        let config = DeflateConfig::default();
        let mut d = PerMessageDeflate::new(&params(true, true, 12, 12), &config);
        assert_eq!(d.memory_in_use(), 0);
        let mut wire = Vec::new();
        d.compress(&sample(500, 1), &mut wire).unwrap();
        assert_eq!(d.memory_in_use(), 0);
        let mut d = PerMessageDeflate::new(&params(false, false, 12, 12), &config);
        d.compress(&sample(500, 1), &mut wire).unwrap();
        assert_eq!(d.memory_in_use(), deflate_bytes(12, config.mem_level));
        assert!(config.memory_per_connection() >= d.memory_in_use() + INFLATE_BYTES);
    }

    #[test]
    fn compression_bomb_is_refused() {
        let zeros = vec![0u8; 10 << 20];
        let mut tx =
            PerMessageDeflate::new(&params(false, false, 15, 15), &DeflateConfig::default());
        let mut wire = Vec::new();
        tx.compress(&zeros, &mut wire).unwrap();
        assert!(wire.len() < 20_000, "{}", wire.len());
        drop(zeros);
        for max in [0, 1, 1000, 64 << 10] {
            let mut rx = PerMessageDeflate::new_client(
                &params(false, false, 15, 15),
                &DeflateConfig::default(),
            )
            .unwrap();
            let mut out = Vec::new();
            let err = rx.decompress(&wire, true, &mut out, max);
            assert_eq!(err, Err(DeflateError::TooLarge { max }));
            assert!(out.len() <= max);
            // Output space is handed out in small steps: nothing near 10 MiB is reserved.
            assert!(
                out.capacity() <= 2 * max + 2 * INFLATE_STEP,
                "{}",
                out.capacity()
            );
        }
        // The limit counts what `out` already holds (earlier fragments).
        let mut rx =
            PerMessageDeflate::new_client(&params(false, false, 15, 15), &DeflateConfig::default())
                .unwrap();
        let mut out = vec![1u8; 90];
        let mut wire = Vec::new();
        tx.compress(&[7u8; 20], &mut wire).unwrap();
        assert_eq!(
            rx.decompress(&wire, true, &mut out, 100),
            Err(DeflateError::TooLarge { max: 100 })
        );
    }

    #[test]
    fn exact_limit_is_accepted() {
        let p = params(false, false, 15, 15);
        let mut tx = PerMessageDeflate::new(&p, &DeflateConfig::default());
        let mut rx = PerMessageDeflate::new_client(&p, &DeflateConfig::default()).unwrap();
        let msg = sample(50_000, 9);
        let mut wire = Vec::new();
        tx.compress(&msg, &mut wire).unwrap();
        let mut out = Vec::new();
        rx.decompress(&wire, true, &mut out, msg.len()).unwrap();
        assert_eq!(out, msg);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut d =
            PerMessageDeflate::new(&params(false, false, 15, 15), &DeflateConfig::default());
        let mut out = Vec::new();
        // 0xff: BTYPE 11 is reserved.
        assert_eq!(
            d.decompress(&[0xff, 0xff], true, &mut out, 100),
            Err(DeflateError::Corrupt)
        );
        // The context is rebuilt for the next message.
        out.clear();
        d.decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn memory_estimate() {
        let c = DeflateConfig::default();
        assert_eq!(
            c.memory_per_connection(),
            134_272 + (4 << 13) + (7 << 12) + 47_552
        );
        assert!(c.memory_per_connection() < 240 * 1024);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any messages, any fragmentation, either takeover mode: what goes in comes out, and
        /// one byte less of room is refused.
        #[test]
        fn round_trip_any_split(
            messages in proptest::collection::vec(
                (proptest::collection::vec(0u8..4, 0..3000), proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..4)),
                1..5,
            ),
            snct in proptest::prelude::any::<bool>(),
            cnct in proptest::prelude::any::<bool>(),
            bits in 9u8..=15,
        ) {
            let p = params(snct, cnct, bits, bits);
            let config = DeflateConfig::default();
            let mut tx = PerMessageDeflate::new(&p, &config);
            let mut rx = PerMessageDeflate::new_client(&p, &config).unwrap();
            let mut shadow = PerMessageDeflate::new_client(&p, &config).unwrap();
            for (msg, cuts) in &messages {
                let mut wire = Vec::new();
                tx.compress(msg, &mut wire).unwrap();
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
                points.push(0);
                points.push(wire.len());
                points.sort_unstable();
                let mut got = Vec::new();
                let pieces = points.len() - 1;
                for (n, w) in points.windows(2).enumerate() {
                    rx.decompress(&wire[w[0]..w[1]], n + 1 == pieces, &mut got, msg.len()).unwrap();
                }
                proptest::prop_assert_eq!(&got, msg);
                if !msg.is_empty() {
                    // A fresh context per check, since a refused message breaks the context.
                    let mut tight = PerMessageDeflate::new_client(&p, &config).unwrap();
                    let mut out = Vec::new();
                    if snct {
                        proptest::prop_assert_eq!(
                            tight.decompress(&wire, true, &mut out, msg.len() - 1),
                            Err(DeflateError::TooLarge { max: msg.len() - 1 })
                        );
                    }
                }
                // Keep the shadow receiver in step for the takeover case.
                let mut out = Vec::new();
                shadow.decompress(&wire, true, &mut out, usize::MAX).unwrap();
                proptest::prop_assert_eq!(&out, msg);
            }
        }
    }
}
