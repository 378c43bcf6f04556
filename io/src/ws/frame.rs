//! RFC 6455 frame headers: an incremental parser, a writer, and encode-once server frames.
//!
//! [`parse_header`] looks only at the header bytes (2 to 14 of them) and answers "need
//! more" (`Ok(None)`) on short input, so a caller can feed it whatever the socket gave.
//! Every rule that can be judged from the header alone is judged here, before the caller
//! reserves any memory for the payload: opcode, RSV bits, control-frame rules, minimal
//! length encoding, masking by role and the frame size limit.
//!
//! What it does not do: it never touches the payload (unmasking, UTF-8 and reassembly
//! belong to [`crate::ws::conn`]), and it keeps no state between calls.

use bytes::Bytes;

/// The longest possible header: 2 fixed bytes, 8 bytes of 64-bit length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;
const RSV3: u8 = 0x10;
const MASKED: u8 = 0x80;
const LEN_16: u8 = 0x7e;
const LEN_64: u8 = 0x7f;

/// A frame's opcode (RFC 6455 §5.2); the reserved values 0x3-0x7 and 0xB-0xF are refused
/// by the parser and have no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: a later fragment of the message in progress.
    Continuation,
    /// 0x1: the first frame of a text (UTF-8) message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: the close handshake.
    Close,
    /// 0x9: a ping, answered by a pong with the same payload.
    Ping,
    /// 0xA: a pong, the answer to a ping (or an unsolicited heartbeat).
    Pong,
}

impl OpCode {
    /// The opcode for a wire value, or `None` for a reserved one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            _ => return None,
        })
    }

    /// The opcode's wire value (the low nibble of the first header byte).
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
        }
    }

    /// Control frames (close, ping, pong) may interleave with a fragmented message.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the last frame of its message.
    pub fin: bool,
    /// The RSV1 bit: with permessage-deflate, "this message is compressed".
    pub rsv1: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, present exactly when the frame came from a client.
    pub mask: Option<[u8; 4]>,
    /// The payload length the header announces (already checked against the limit).
    pub payload_len: u64,
    /// How many bytes the header itself took (2 to [`MAX_HEADER_LEN`]).
    pub header_len: usize,
}

/// What [`parse_header`] checks a header against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Frames announcing a longer payload are refused before any memory is reserved.
    pub max_frame_size: u64,
    /// permessage-deflate was negotiated, so RSV1 may be set on the first frame of a
    /// data message.
    pub rsv1_allowed: bool,
    /// `true` on the server side (every client frame must be masked), `false` on the
    /// client side (no server frame may be masked).
    pub expect_masked: bool,
}

/// One variant per RFC 6455 (or RFC 7692, or local limit) rule a peer can break.
///
/// Frame-level rules are found by [`parse_header`]; message-level rules (fragmentation,
/// UTF-8, close payloads, message size) by [`crate::ws::conn::Connection`].
/// [`close_code`](Self::close_code) names the close code that answers each one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The close payload was a single byte: a code needs two (RFC 6455 §5.5.1).
    CloseCodeTruncated,
    /// The close reason was not valid UTF-8 (RFC 6455 §5.5.1).
    CloseReasonNotUtf8,
    /// A continuation frame arrived with no fragmented message in progress (§5.4).
    ContinuationWithoutMessage,
    /// A control frame had FIN clear: control frames are never fragmented (§5.5).
    ControlFrameFragmented,
    /// A control frame announced more than 125 payload bytes (§5.5).
    ControlFrameTooLong(u64),
    /// A compressed message failed to inflate (RFC 7692 §7.2.2 "corrupted").
    DeflateCorrupt,
    /// The frame announced a payload longer than the configured frame limit.
    FrameTooLarge {
        /// What the header announced.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A close frame carried a code that may not appear on the wire (§7.4).
    InvalidCloseCode(u16),
    /// A server frame was masked; servers must not mask (§5.1).
    MaskedFrameFromServer,
    /// The message (inflated, for a compressed one) grew past the configured limit.
    MessageTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// A data frame (text/binary) began while a fragmented message was in progress (§5.4).
    NewMessageDuringFragmented,
    /// The payload length used more bytes than needed; the minimal encoding MUST be used
    /// (§5.2).
    NonMinimalLength,
    /// The 64-bit payload length had its most significant bit set (§5.2).
    PayloadLengthTopBit,
    /// The opcode is one of the reserved values 0x3-0x7, 0xB-0xF (§5.2).
    ReservedOpCode(u8),
    /// RSV1 was set without permessage-deflate negotiated (§5.2, RFC 7692 §6).
    Rsv1NotNegotiated,
    /// RSV1 was set on a continuation or control frame (RFC 7692 §6.1).
    Rsv1NotOnFirstFrame,
    /// RSV2 was set; no extension we speak defines it (§5.2).
    Rsv2Set,
    /// RSV3 was set; no extension we speak defines it (§5.2).
    Rsv3Set,
    /// A text message was not valid UTF-8 (§8.1).
    TextNotUtf8,
    /// A client frame was not masked; clients must mask (§5.1).
    UnmaskedFrameFromClient,
}

impl ProtocolError {
    /// The close code sent when failing the connection for this error (RFC 6455 §7.4.1):
    /// 1007 for invalid data in a message, 1009 for a message or frame too big, 1002 for
    /// everything else.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::CloseReasonNotUtf8 | Self::TextNotUtf8 => 1007,
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => 1009,
            _ => 1002,
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CloseCodeTruncated => f.write_str("close payload of one byte"),
            Self::CloseReasonNotUtf8 => f.write_str("close reason is not UTF-8"),
            Self::ContinuationWithoutMessage => f.write_str("continuation without a message"),
            Self::ControlFrameFragmented => f.write_str("fragmented control frame"),
            Self::ControlFrameTooLong(n) => write!(f, "control frame of {n} bytes"),
            Self::DeflateCorrupt => f.write_str("compressed message does not inflate"),
            Self::FrameTooLarge { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the limit of {limit}")
            }
            Self::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            Self::MaskedFrameFromServer => f.write_str("masked frame from the server"),
            Self::MessageTooLarge { limit } => write!(f, "message exceeds the limit of {limit}"),
            Self::NewMessageDuringFragmented => f.write_str("new message during a fragmented one"),
            Self::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            Self::PayloadLengthTopBit => f.write_str("64-bit payload length with the top bit set"),
            Self::ReservedOpCode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::Rsv1NotNegotiated => f.write_str("RSV1 set without permessage-deflate"),
            Self::Rsv1NotOnFirstFrame => f.write_str("RSV1 set on a continuation or control frame"),
            Self::Rsv2Set => f.write_str("RSV2 set"),
            Self::Rsv3Set => f.write_str("RSV3 set"),
            Self::TextNotUtf8 => f.write_str("text message is not UTF-8"),
            Self::UnmaskedFrameFromClient => f.write_str("unmasked frame from the client"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Parses the frame header at the start of `buf`.
///
/// `Ok(None)` means `buf` holds only part of a header: call again with more bytes. Checks
/// the opcode, the RSV bits against `limits.rsv1_allowed`, the control-frame rules, the
/// minimal length encoding, the masking the role requires and the frame size limit — all
/// before any payload memory is reserved. Rules are checked in wire order, so the first
/// byte's faults are reported even when the rest has not arrived.
#[inline]
pub fn parse_header(
    buf: &[u8],
    limits: &FrameLimits,
) -> Result<Option<FrameHeader>, ProtocolError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    if b0 & RSV2 != 0 {
        return Err(ProtocolError::Rsv2Set);
    }
    if b0 & RSV3 != 0 {
        return Err(ProtocolError::Rsv3Set);
    }
    let fin = b0 & FIN != 0;
    let rsv1 = b0 & RSV1 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpCode(b0 & 0x0f))?;
    if rsv1 {
        if !limits.rsv1_allowed {
            return Err(ProtocolError::Rsv1NotNegotiated);
        }
        if opcode == OpCode::Continuation || opcode.is_control() {
            return Err(ProtocolError::Rsv1NotOnFirstFrame);
        }
    }
    if opcode.is_control() && !fin {
        return Err(ProtocolError::ControlFrameFragmented);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & MASKED != 0;
    if masked != limits.expect_masked {
        return Err(if masked {
            ProtocolError::MaskedFrameFromServer
        } else {
            ProtocolError::UnmaskedFrameFromClient
        });
    }
    let (payload_len, len_bytes) = match b1 & 0x7f {
        LEN_16 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([b[0], b[1]]));
            if len < u64::from(LEN_16) {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, 2)
        }
        LEN_64 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(b);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(ProtocolError::PayloadLengthTopBit);
            }
            if len <= u64::from(u16::MAX) {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, 8)
        }
        short => (u64::from(short), 0),
    };
    if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD as u64 {
        return Err(ProtocolError::ControlFrameTooLong(payload_len));
    }
    if payload_len > limits.max_frame_size {
        return Err(ProtocolError::FrameTooLarge {
            len: payload_len,
            limit: limits.max_frame_size,
        });
    }
    let mut header_len = 2 + len_bytes;
    let mask = if masked {
        let Some(b) = buf.get(header_len..header_len + 4) else {
            return Ok(None);
        };
        header_len += 4;
        Some([b[0], b[1], b[2], b[3]])
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        rsv1,
        opcode,
        mask,
        payload_len,
        header_len,
    }))
}

/// Writes a frame header into `out` with the minimal length encoding.
///
/// Server frames pass `mask: None`; client frames pass their masking key, and the caller
/// masks the payload it appends after the header.
pub fn write_header(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
) {
    let mut b0 = opcode.as_u8();
    if fin {
        b0 |= FIN;
    }
    if rsv1 {
        b0 |= RSV1;
    }
    let mask_bit = if mask.is_some() { MASKED } else { 0 };
    out.push(b0);
    if len < usize::from(LEN_16) {
        // The guard keeps `len` below 126, so the cast is lossless.
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | LEN_16);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | LEN_64);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// The header length [`write_header`] produces for a payload of `len` bytes.
pub fn header_len(len: usize, masked: bool) -> usize {
    let base = if len < usize::from(LEN_16) {
        2
    } else if len <= usize::from(u16::MAX) {
        4
    } else {
        10
    };
    base + if masked { 4 } else { 0 }
}

/// One complete, final, unmasked server frame (header and payload) as `Bytes`, for
/// fan-out: encoded once, then the same bytes are shared by every connection that sends it.
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(header_len(payload.len(), false) + payload.len());
    write_header(&mut out, true, false, opcode, None, payload.len());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: FrameLimits = FrameLimits {
        max_frame_size: 1 << 20,
        rsv1_allowed: false,
        expect_masked: true,
    };
    const CLIENT: FrameLimits = FrameLimits {
        max_frame_size: 1 << 20,
        rsv1_allowed: false,
        expect_masked: false,
    };
    const DEFLATE: FrameLimits = FrameLimits {
        max_frame_size: 1 << 20,
        rsv1_allowed: true,
        expect_masked: true,
    };

    /// Parses `input` with `limits` and compares the outcome, rendered as a short string.
    fn check(limits: &FrameLimits, input: &[u8], expect: &str) {
        let got = match parse_header(input, limits) {
            Ok(None) => "more".to_owned(),
            Ok(Some(h)) => format!(
                "fin={} rsv1={} {:?} mask={} len={} hlen={}",
                h.fin as u8,
                h.rsv1 as u8,
                h.opcode,
                h.mask.is_some() as u8,
                h.payload_len,
                h.header_len
            ),
            Err(e) => format!("err {e:?}"),
        };
        assert_eq!(got, expect, "input {input:02x?}");
    }

    const K: [u8; 4] = [1, 2, 3, 4];

    #[test]
    fn short_input_needs_more() {
        check(&SERVER, &[], "more");
        check(&SERVER, &[0x81], "more");
        check(&SERVER, &[0x81, 0x85, 1, 2, 3], "more");
        check(&SERVER, &[0x82, 0xfe, 0x01], "more");
        check(&SERVER, &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0], "more");
        check(&SERVER, &[0x82, 0xfe, 0x01, 0x00, 1, 2, 3], "more");
    }

    #[test]
    fn every_opcode() {
        for (op, name) in [
            (0x0, "Continuation"),
            (0x1, "Text"),
            (0x2, "Binary"),
            (0x8, "Close"),
            (0x9, "Ping"),
            (0xa, "Pong"),
        ] {
            check(
                &SERVER,
                &[0x80 | op, 0x80, 1, 2, 3, 4],
                &format!("fin=1 rsv1=0 {name} mask=1 len=0 hlen=6"),
            );
        }
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            check(&SERVER, &[0x80 | op], &format!("err ReservedOpCode({op})"));
        }
    }

    #[test]
    fn rsv_bits() {
        check(&SERVER, &[0xc1], "err Rsv1NotNegotiated");
        check(&SERVER, &[0xa1], "err Rsv2Set");
        check(&SERVER, &[0x91], "err Rsv3Set");
        check(&DEFLATE, &[0xa1], "err Rsv2Set");
        check(
            &DEFLATE,
            &[0xc1, 0x80, 1, 2, 3, 4],
            "fin=1 rsv1=1 Text mask=1 len=0 hlen=6",
        );
        check(
            &DEFLATE,
            &[0x42, 0x80, 1, 2, 3, 4],
            "fin=0 rsv1=1 Binary mask=1 len=0 hlen=6",
        );
        check(&DEFLATE, &[0xc0], "err Rsv1NotOnFirstFrame");
        check(&DEFLATE, &[0xc9], "err Rsv1NotOnFirstFrame");
    }

    #[test]
    fn control_frame_rules() {
        check(&SERVER, &[0x09], "err ControlFrameFragmented");
        check(&SERVER, &[0x08], "err ControlFrameFragmented");
        check(
            &SERVER,
            &[0x89, 0xfd, 1, 2, 3, 4],
            "fin=1 rsv1=0 Ping mask=1 len=125 hlen=6",
        );
        check(
            &SERVER,
            &[0x89, 0xfe, 0, 126],
            "err ControlFrameTooLong(126)",
        );
        check(
            &SERVER,
            &[0x8a, 0xfe, 0xff, 0xff],
            "err ControlFrameTooLong(65535)",
        );
    }

    #[test]
    fn length_encodings() {
        check(
            &SERVER,
            &[0x82, 0xfd, 1, 2, 3, 4],
            "fin=1 rsv1=0 Binary mask=1 len=125 hlen=6",
        );
        check(
            &SERVER,
            &[0x82, 0xfe, 0, 126, 1, 2, 3, 4],
            "fin=1 rsv1=0 Binary mask=1 len=126 hlen=8",
        );
        check(&SERVER, &[0x82, 0xfe, 0, 125], "err NonMinimalLength");
        check(
            &SERVER,
            &[0x82, 0xfe, 0xff, 0xff, 1, 2, 3, 4],
            "fin=1 rsv1=0 Binary mask=1 len=65535 hlen=8",
        );
        check(
            &SERVER,
            &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4],
            "fin=1 rsv1=0 Binary mask=1 len=65536 hlen=14",
        );
        check(
            &SERVER,
            &[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            "err NonMinimalLength",
        );
        check(
            &SERVER,
            &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
            "err PayloadLengthTopBit",
        );
        check(
            &CLIENT,
            &[0x82, 0x7e, 0x01, 0x00],
            "fin=1 rsv1=0 Binary mask=0 len=256 hlen=4",
        );
    }

    #[test]
    fn size_limit_is_checked_from_the_header_alone() {
        // The header of a frame claiming 2^62 bytes is complete without its mask key:
        // the limit refuses it before anything else is read or reserved.
        check(
            &SERVER,
            &[0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0],
            "err FrameTooLarge { len: 4611686018427387904, limit: 1048576 }",
        );
        check(
            &SERVER,
            &[0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 1],
            "err FrameTooLarge { len: 1048577, limit: 1048576 }",
        );
    }

    #[test]
    fn masking_by_role() {
        check(&SERVER, &[0x81, 0x00], "err UnmaskedFrameFromClient");
        check(&CLIENT, &[0x81, 0x80], "err MaskedFrameFromServer");
        check(
            &CLIENT,
            &[0x01, 0x03],
            "fin=0 rsv1=0 Text mask=0 len=3 hlen=2",
        );
    }

    #[test]
    fn writer_round_trips_through_the_parser() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            for (mask, limits) in [(None, CLIENT), (Some(K), SERVER)] {
                let mut out = Vec::new();
                write_header(&mut out, true, false, OpCode::Binary, mask, len);
                assert_eq!(out.len(), header_len(len, mask.is_some()));
                let h = parse_header(&out, &limits).unwrap().unwrap();
                assert_eq!(
                    h,
                    FrameHeader {
                        fin: true,
                        rsv1: false,
                        opcode: OpCode::Binary,
                        mask,
                        payload_len: len as u64,
                        header_len: out.len(),
                    }
                );
            }
        }
    }

    #[test]
    fn server_frame_is_header_plus_payload() {
        assert_eq!(&server_frame(OpCode::Text, b"Hello")[..], b"\x81\x05Hello");
        let big = vec![7u8; 300];
        let f = server_frame(OpCode::Binary, &big);
        assert_eq!(&f[..4], &[0x82, 0x7e, 0x01, 0x2c]);
        assert_eq!(&f[4..], &big[..]);
    }
}
