//! The WebSocket opening handshake (RFC 6455 §4): the server side ([`parse_request`]) and
//! the client side ([`ClientHandshake`], used by the load generator).
//!
//! The server reads the HTTP/1.1 upgrade request from the bytes received so far, checks
//! every rule of RFC 6455 §4.2.1, negotiates the subprotocol (in the server's order of
//! preference) and permessage-deflate, and returns the complete `101` response to send. A
//! request that breaks a rule gets a [`HandshakeError`], whose
//! [`response`](HandshakeError::response) is the HTTP error to send before closing.
//!
//! What it does not do: no socket, no clock (the driver enforces
//! [`DEFAULT_OPENING_TIMEOUT`]), no HTTP beyond the upgrade (no bodies, no keep-alive), no
//! authentication (the `Cookie` and `Origin` headers are only handed on).

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::ws::deflate::{self, DeflateConfig, DeflateError, DeflateParams};

/// How long a client has to complete the opening handshake before the driver drops the
/// connection: 10 s, long enough for a slow mobile link, short enough that idle half-open
/// sockets do not pile up (Crossbar's `open_handshake_timeout` plays the same role).
pub const DEFAULT_OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// The default bound on a request head: 8 KiB, as most HTTP servers; browsers' upgrade
/// requests with cookies fit comfortably.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The most header lines a request may have; past it the request gets a 431.
const MAX_HEADERS: usize = 64;

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Server-side handshake options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Subprotocols in the server's order of preference, e.g. `["wamp.2.json",
    /// "wamp.2.msgpack"]`.
    pub subprotocols: Vec<String>,
    /// Refuse (400) a client that offers none of `subprotocols`; `false` for endpoints that
    /// work without a subprotocol (the echo endpoint).
    pub require_subprotocol: bool,
    /// Bound on the request head in bytes; past it the request gets a 431.
    pub max_request_bytes: usize,
    /// `None`: permessage-deflate is not offered.
    pub deflate: Option<DeflateConfig>,
}

impl Default for HandshakeConfig {
    /// WAMP over WebSocket: JSON preferred over MessagePack (the order Crossbar uses), a
    /// subprotocol required, 8 KiB heads, no compression.
    fn default() -> Self {
        Self {
            subprotocols: vec!["wamp.2.json".into(), "wamp.2.msgpack".into()],
            require_subprotocol: true,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            deflate: None,
        }
    }
}

/// A request that passed every check, with the response that accepts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The request target, e.g. `/ws?x=1`.
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// The `Origin` header, if any (for later authorization).
    pub origin: Option<String>,
    /// The `Cookie` header(s) joined with `"; "`, if any (for later authentication).
    pub cookie: Option<String>,
    /// The subprotocol chosen, if any.
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters agreed, if any.
    pub deflate: Option<DeflateParams>,
    /// The complete `HTTP/1.1 101 Switching Protocols` response head.
    pub response: Vec<u8>,
    /// Bytes of the input the request head used; any bytes after it are WebSocket frames.
    pub consumed: usize,
}

/// Why an upgrade request is refused; one variant per rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// `Connection` lacks the `upgrade` token.
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Extensions` does not follow the extension grammar.
    BadExtensions(DeflateError),
    /// A header value the handshake reads is not visible ASCII/UTF-8 text.
    BadHeaderValue(&'static str),
    /// `Sec-WebSocket-Key` is not the base64 encoding of 16 bytes.
    BadKey,
    /// The bytes are not an HTTP/1.x request head.
    BadRequest,
    /// A header that must appear once appears several times.
    DuplicateHeader(&'static str),
    /// The request is not HTTP/1.1.
    HttpVersion,
    /// The method is not GET.
    MethodNotAllowed,
    /// There is no `Host` header.
    MissingHost,
    /// There is no `Sec-WebSocket-Key` header.
    MissingKey,
    /// The client offered no subprotocol and one is required.
    MissingSubprotocol,
    /// The client offered only subprotocols we do not speak, and one is required.
    NoCommonSubprotocol,
    /// The request head is larger than `max_request_bytes` or has too many headers.
    TooLarge,
    /// `Upgrade` lacks the `websocket` token.
    UpgradeNotWebSocket,
    /// `Sec-WebSocket-Version` is missing or not 13.
    UnsupportedVersion,
}

impl HandshakeError {
    /// The HTTP status code for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed => 405,
            Self::UnsupportedVersion => 426,
            Self::TooLarge => 431,
            _ => 400,
        }
    }

    /// The complete HTTP error response to send before closing the connection: status,
    /// `Connection: close`, `Allow: GET` for 405, `Sec-WebSocket-Version: 13` for 426, and
    /// the reason as a short text body.
    pub fn response(&self) -> Vec<u8> {
        let status = self.status();
        let reason = match status {
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Bad Request",
        };
        let body = format!("{self}\n");
        let mut out = format!("HTTP/1.1 {status} {reason}\r\nServer: Switchyard\r\n");
        match status {
            405 => out.push_str("Allow: GET\r\n"),
            426 => out.push_str("Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"),
            _ => {}
        }
        out.push_str(&format!(
            "Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        out.into_bytes()
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectionNotUpgrade => write!(f, "Connection header lacks \"upgrade\""),
            Self::BadExtensions(e) => write!(f, "bad Sec-WebSocket-Extensions: {e}"),
            Self::BadHeaderValue(h) => write!(f, "bad {h} header value"),
            Self::BadKey => write!(f, "Sec-WebSocket-Key is not 16 bytes in base64"),
            Self::BadRequest => write!(f, "malformed HTTP request"),
            Self::DuplicateHeader(h) => write!(f, "{h} header repeated"),
            Self::HttpVersion => write!(f, "HTTP/1.1 required"),
            Self::MethodNotAllowed => write!(f, "only GET upgrades to WebSocket"),
            Self::MissingHost => write!(f, "Host header missing"),
            Self::MissingKey => write!(f, "Sec-WebSocket-Key header missing"),
            Self::MissingSubprotocol => write!(f, "a WebSocket subprotocol is required"),
            Self::NoCommonSubprotocol => write!(f, "no supported WebSocket subprotocol offered"),
            Self::TooLarge => write!(f, "request head too large"),
            Self::UpgradeNotWebSocket => write!(f, "Upgrade header lacks \"websocket\""),
            Self::UnsupportedVersion => write!(f, "Sec-WebSocket-Version 13 required"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Parses and checks an upgrade request from the bytes received so far. `Ok(None)`: the
/// head is not complete yet and still within `max_request_bytes` (read more and call again
/// with all bytes). Only the first `max_request_bytes` bytes are ever looked at.
pub fn parse_request(
    buf: &[u8],
    config: &HandshakeConfig,
) -> Result<Option<Accepted>, HandshakeError> {
    let window = &buf[..buf.len().min(config.max_request_bytes)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= config.max_request_bytes => {
            return Err(HandshakeError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::BadRequest),
    };
    // `Complete` guarantees method, path and version are set.
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    let path = req.path.unwrap_or("/").to_owned();
    let h = Headers(req.headers);

    let host = h.single("Host")?.ok_or(HandshakeError::MissingHost)?;
    if !h.has_token("Upgrade", "websocket")? {
        return Err(HandshakeError::UpgradeNotWebSocket);
    }
    if !h.has_token("Connection", "upgrade")? {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    match h.single("Sec-WebSocket-Version") {
        Ok(Some(v)) if v.trim() == "13" => {}
        Ok(_) | Err(HandshakeError::DuplicateHeader(_)) => {
            return Err(HandshakeError::UnsupportedVersion);
        }
        Err(e) => return Err(e),
    }
    let key = h
        .single("Sec-WebSocket-Key")?
        .ok_or(HandshakeError::MissingKey)?;
    let key = key.trim();
    match BASE64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }

    let offered = h.list("Sec-WebSocket-Protocol")?;
    let subprotocol = config
        .subprotocols
        .iter()
        .find(|ours| offered.iter().any(|theirs| theirs == ours))
        .cloned();
    if subprotocol.is_none() && config.require_subprotocol {
        return Err(if offered.is_empty() {
            HandshakeError::MissingSubprotocol
        } else {
            HandshakeError::NoCommonSubprotocol
        });
    }

    let deflate = match &config.deflate {
        Some(dc) => {
            let values = h.values("Sec-WebSocket-Extensions")?;
            deflate::negotiate(&values, dc).map_err(HandshakeError::BadExtensions)?
        }
        None => None,
    };

    let origin = h.single("Origin")?.map(str::to_owned);
    let cookies = h.values("Cookie")?;
    let cookie = (!cookies.is_empty()).then(|| cookies.join("; "));

    let mut response = String::with_capacity(256);
    response.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    response.push_str(&accept_key(key));
    response.push_str("\r\n");
    if let Some(p) = &subprotocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(p);
        response.push_str("\r\n");
    }
    if let Some(d) = &deflate {
        response.push_str("Sec-WebSocket-Extensions: ");
        response.push_str(&d.response_header_value());
        response.push_str("\r\n");
    }
    response.push_str("Server: Switchyard\r\n\r\n");

    Ok(Some(Accepted {
        path,
        host: host.to_owned(),
        origin,
        cookie,
        subprotocol,
        deflate,
        response: response.into_bytes(),
        consumed,
    }))
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2): base64 of SHA-1 of key + GUID.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// The parsed headers of one request or response, with the lookups the handshake needs.
struct Headers<'h, 'b>(&'h [httparse::Header<'b>]);

impl<'b> Headers<'_, 'b> {
    /// Every value of header `name` (case-insensitive), as text.
    fn values(&self, name: &'static str) -> Result<Vec<&'b str>, HandshakeError> {
        self.0
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).map_err(|_| HandshakeError::BadHeaderValue(name)))
            .collect()
    }

    /// The value of a header that may appear at most once.
    fn single(&self, name: &'static str) -> Result<Option<&'b str>, HandshakeError> {
        match self.values(name)?.as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(HandshakeError::DuplicateHeader(name)),
        }
    }

    /// The comma-separated elements of every line of header `name`, trimmed, empty ones
    /// dropped.
    fn list(&self, name: &'static str) -> Result<Vec<&'b str>, HandshakeError> {
        Ok(self
            .values(name)?
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect())
    }

    /// Whether the token list in header `name` contains `token` (case-insensitive).
    fn has_token(&self, name: &'static str, token: &str) -> Result<bool, HandshakeError> {
        Ok(self
            .list(name)?
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token)))
    }
}

/// The client side of the opening handshake: builds the request and checks the server's
/// `101` response against what was offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHandshake {
    /// The `Sec-WebSocket-Key` sent (base64 of 16 bytes).
    pub key: String,
    /// Subprotocols offered, in our order of preference.
    pub subprotocols: Vec<String>,
    /// Offer permessage-deflate ([`deflate::client_offer`]).
    pub deflate: bool,
    /// Bound on the response head in bytes.
    pub max_response_bytes: usize,
}

/// The server's acceptance, as seen by the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAccepted {
    /// The subprotocol the server chose, if any (one we offered).
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters the server accepted, if any.
    pub deflate: Option<DeflateParams>,
    /// Bytes of the input the response head used; any bytes after it are WebSocket frames.
    pub consumed: usize,
}

/// Why a client refuses the server's handshake response; one variant per rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// `Sec-WebSocket-Accept` is missing or does not match our key.
    BadAccept,
    /// `Sec-WebSocket-Extensions` is malformed or not a valid answer to our offer.
    BadExtensions(DeflateError),
    /// The bytes are not an HTTP/1.1 response head.
    BadResponse,
    /// `Connection` lacks the `upgrade` token.
    ConnectionNotUpgrade,
    /// The response head is larger than `max_response_bytes`.
    TooLarge,
    /// The server accepted an extension we did not offer.
    UnofferedExtension(String),
    /// The server chose a subprotocol we did not offer.
    UnofferedSubprotocol(String),
    /// The status is not 101.
    Status(u16),
    /// `Upgrade` lacks the `websocket` token.
    UpgradeNotWebSocket,
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAccept => write!(f, "wrong or missing Sec-WebSocket-Accept"),
            Self::BadExtensions(e) => write!(f, "bad Sec-WebSocket-Extensions: {e}"),
            Self::BadResponse => write!(f, "malformed HTTP response"),
            Self::ConnectionNotUpgrade => write!(f, "Connection header lacks \"upgrade\""),
            Self::TooLarge => write!(f, "response head too large"),
            Self::UnofferedExtension(e) => write!(f, "server accepted unoffered extension {e}"),
            Self::UnofferedSubprotocol(p) => write!(f, "server chose unoffered subprotocol {p}"),
            Self::Status(s) => write!(f, "server answered {s} instead of 101"),
            Self::UpgradeNotWebSocket => write!(f, "Upgrade header lacks \"websocket\""),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

impl ClientHandshake {
    /// A handshake whose key is the base64 of `key_bytes` (the caller draws them from its own
    /// seeded generator: nothing here is random).
    pub fn new(key_bytes: [u8; 16], subprotocols: Vec<String>, deflate: bool) -> Self {
        Self {
            key: BASE64.encode(key_bytes),
            subprotocols,
            deflate,
            max_response_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    /// Appends the upgrade request for `host` and `path` to `out`.
    pub fn write_request(&self, host: &str, path: &str, out: &mut Vec<u8>) {
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.key
        );
        if !self.subprotocols.is_empty() {
            req.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                self.subprotocols.join(", ")
            ));
        }
        if self.deflate {
            req.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                deflate::client_offer()
            ));
        }
        req.push_str("\r\n");
        out.extend_from_slice(req.as_bytes());
    }

    /// Checks the server's response from the bytes received so far. `Ok(None)`: the head is
    /// not complete yet (and within `max_response_bytes`).
    pub fn parse_response(
        &self,
        buf: &[u8],
    ) -> Result<Option<ClientAccepted>, ClientHandshakeError> {
        let window = &buf[..buf.len().min(self.max_response_bytes)];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let consumed = match resp.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= self.max_response_bytes => {
                return Err(ClientHandshakeError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ClientHandshakeError::TooLarge),
            Err(_) => return Err(ClientHandshakeError::BadResponse),
        };
        if resp.version != Some(1) {
            return Err(ClientHandshakeError::BadResponse);
        }
        match resp.code {
            Some(101) => {}
            Some(code) => return Err(ClientHandshakeError::Status(code)),
            None => return Err(ClientHandshakeError::BadResponse),
        }
        let h = Headers(resp.headers);
        let bad = |_| ClientHandshakeError::BadResponse;
        if !h.has_token("Upgrade", "websocket").map_err(bad)? {
            return Err(ClientHandshakeError::UpgradeNotWebSocket);
        }
        if !h.has_token("Connection", "upgrade").map_err(bad)? {
            return Err(ClientHandshakeError::ConnectionNotUpgrade);
        }
        match h.single("Sec-WebSocket-Accept") {
            Ok(Some(v)) if v.trim() == accept_key(&self.key) => {}
            _ => return Err(ClientHandshakeError::BadAccept),
        }
        let subprotocol = match h.list("Sec-WebSocket-Protocol").map_err(bad)?.as_slice() {
            [] => None,
            [p] if self.subprotocols.iter().any(|ours| ours == p) => Some((*p).to_owned()),
            [p, ..] => return Err(ClientHandshakeError::UnofferedSubprotocol((*p).to_owned())),
        };
        let values = h.values("Sec-WebSocket-Extensions").map_err(bad)?;
        let deflate = if values.is_empty() {
            None
        } else {
            if !self.deflate {
                return Err(ClientHandshakeError::UnofferedExtension(values.join(", ")));
            }
            let params =
                deflate::parse_response(&values).map_err(ClientHandshakeError::BadExtensions)?;
            // We offered only permessage-deflate, once: anything else was not offered.
            let names: Vec<&str> = values
                .iter()
                .flat_map(|v| v.split(','))
                .map(|e| e.split(';').next().unwrap_or_default().trim())
                .filter(|n| !n.is_empty())
                .collect();
            if names.len() != 1 || params.is_none() {
                return Err(ClientHandshakeError::UnofferedExtension(values.join(", ")));
            }
            params
        };
        Ok(Some(ClientAccepted {
            subprotocol,
            deflate,
            consumed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn config() -> HandshakeConfig {
        HandshakeConfig::default()
    }

    fn check_err(req: &str, config: &HandshakeConfig, expect: HandshakeError) {
        assert_eq!(parse_request(req.as_bytes(), config), Err(expect), "{req}");
    }

    fn check_ok(req: &str, config: &HandshakeConfig) -> Accepted {
        match parse_request(req.as_bytes(), config) {
            Ok(Some(a)) => a,
            other => panic!("{req}: {other:?}"),
        }
    }

    #[test]
    fn rfc_6455_sample_accept_key() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_and_answers() {
        let req = request("Sec-WebSocket-Protocol: wamp.2.msgpack, wamp.2.json\r\nOrigin: http://example.com\r\nCookie: a=1\r\nCookie: b=2\r\n");
        let mut bytes = req.clone().into_bytes();
        bytes.extend_from_slice(b"\x81\x80rest");
        let a = match parse_request(&bytes, &config()) {
            Ok(Some(a)) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(a.consumed, req.len());
        assert_eq!(a.path, "/ws");
        assert_eq!(a.host, "example.com");
        assert_eq!(a.origin.as_deref(), Some("http://example.com"));
        assert_eq!(a.cookie.as_deref(), Some("a=1; b=2"));
        // The server's preference wins over the client's order.
        assert_eq!(a.subprotocol.as_deref(), Some("wamp.2.json"));
        assert_eq!(a.deflate, None);
        assert_eq!(
            String::from_utf8(a.response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: wamp.2.json\r\nServer: Switchyard\r\n\r\n"
        );
    }

    #[test]
    fn header_tokens_are_lists_over_several_lines() {
        let c = config();
        let req = "GET / HTTP/1.1\r\nhost: h\r\nupgrade: foo\r\nUPGRADE: WebSocket\r\nconnection: keep-alive\r\nConnection: foo, Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nSec-WebSocket-Protocol: x\r\nSec-WebSocket-Protocol: y,wamp.2.msgpack\r\n\r\n";
        let a = check_ok(req, &c);
        assert_eq!(a.subprotocol.as_deref(), Some("wamp.2.msgpack"));
    }

    #[test]
    fn incomplete_and_oversized_heads() {
        let c = config();
        let req = request("Sec-WebSocket-Protocol: wamp.2.json\r\n");
        for cut in 0..req.len() {
            assert_eq!(parse_request(&req.as_bytes()[..cut], &c), Ok(None), "{cut}");
        }
        let small = HandshakeConfig {
            max_request_bytes: 100,
            ..config()
        };
        // Incomplete at the limit: refused without waiting for more.
        assert_eq!(
            parse_request(&req.as_bytes()[..100], &small),
            Err(HandshakeError::TooLarge)
        );
        assert_eq!(parse_request(&req.as_bytes()[..99], &small), Ok(None));
        // Complete but longer than the limit.
        check_err(&req, &small, HandshakeError::TooLarge);
        let many: String = (0..70).map(|i| format!("X-{i}: 1\r\n")).collect();
        check_err(&request(&many), &c, HandshakeError::TooLarge);
    }

    #[test]
    fn every_refusal() {
        let c = config();
        let p = "Sec-WebSocket-Protocol: wamp.2.json\r\n";
        let good = request(p);
        let cases: Vec<(String, HandshakeError)> = vec![
            (
                good.replace("GET", "POST"),
                HandshakeError::MethodNotAllowed,
            ),
            (
                good.replace("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::HttpVersion,
            ),
            (
                good.replace("Host: example.com\r\n", ""),
                HandshakeError::MissingHost,
            ),
            (
                request(&format!("{p}Host: b\r\n")),
                HandshakeError::DuplicateHeader("Host"),
            ),
            (
                good.replace("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::UpgradeNotWebSocket,
            ),
            (
                good.replace("Upgrade: websocket\r\n", ""),
                HandshakeError::UpgradeNotWebSocket,
            ),
            (
                good.replace("Connection: Upgrade", "Connection: close"),
                HandshakeError::ConnectionNotUpgrade,
            ),
            (
                good.replace("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
            ),
            (
                good.replace("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::UnsupportedVersion,
            ),
            (
                request(&format!("{p}Sec-WebSocket-Version: 13\r\n")),
                HandshakeError::UnsupportedVersion,
            ),
            (
                good.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                HandshakeError::MissingKey,
            ),
            (good.replace(KEY, "AAAA"), HandshakeError::BadKey),
            (
                good.replace(KEY, "dGhlIHNhbXBsZSBub25jZQ"),
                HandshakeError::BadKey,
            ),
            (
                good.replace(KEY, "!!!!!!!!!!!!!!!!!!!!!!=="),
                HandshakeError::BadKey,
            ),
            (
                request(&format!("{p}Sec-WebSocket-Key: {KEY}\r\n")),
                HandshakeError::DuplicateHeader("Sec-WebSocket-Key"),
            ),
            (request(""), HandshakeError::MissingSubprotocol),
            (
                request("Sec-WebSocket-Protocol: mqtt, wamp.2.cbor\r\n"),
                HandshakeError::NoCommonSubprotocol,
            ),
            (
                request("Sec-WebSocket-Protocol: WAMP.2.JSON\r\n"),
                HandshakeError::NoCommonSubprotocol,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n".into(),
                HandshakeError::BadRequest,
            ),
        ];
        for (req, err) in cases {
            check_err(&req, &c, err);
        }
        let non_utf8 = [request(p).as_bytes(), b""].concat();
        let mut bytes = non_utf8.clone();
        let at = bytes.len() - 2;
        bytes.splice(at..at, b"Origin: \xff\xfe\r\n".iter().copied());
        assert_eq!(
            parse_request(&bytes, &c),
            Err(HandshakeError::BadHeaderValue("Origin"))
        );
    }

    #[test]
    fn optional_subprotocol() {
        let c = HandshakeConfig {
            require_subprotocol: false,
            ..config()
        };
        let a = check_ok(&request("Sec-WebSocket-Protocol: chat\r\n"), &c);
        assert_eq!(a.subprotocol, None);
        assert!(!String::from_utf8(a.response)
            .unwrap()
            .contains("Sec-WebSocket-Protocol"));
        assert_eq!(check_ok(&request(""), &c).subprotocol, None);
    }

    #[test]
    fn deflate_negotiation() {
        let p = "Sec-WebSocket-Protocol: wamp.2.json\r\n";
        let offer = format!("{p}Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        // Not configured: the offer is ignored.
        assert_eq!(check_ok(&request(&offer), &config()).deflate, None);
        let c = HandshakeConfig {
            deflate: Some(DeflateConfig::default()),
            ..config()
        };
        let a = check_ok(&request(&offer), &c);
        assert_eq!(
            a.deflate,
            Some(DeflateParams {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 13,
                client_max_window_bits: 15,
            })
        );
        assert!(String::from_utf8(a.response).unwrap().contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=13\r\n"
        ));
        check_err(
            &request(&format!(
                "{p}Sec-WebSocket-Extensions: permessage-deflate; a=\"\r\n"
            )),
            &c,
            HandshakeError::BadExtensions(DeflateError::UnterminatedQuote),
        );
    }

    #[test]
    fn error_responses() {
        let text = |e: HandshakeError| String::from_utf8(e.response()).unwrap();
        let r = text(HandshakeError::MethodNotAllowed);
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET\r\n"));
        let r = text(HandshakeError::UnsupportedVersion);
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{r}");
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let r = text(HandshakeError::TooLarge);
        assert!(
            r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{r}"
        );
        for e in [
            HandshakeError::MissingHost,
            HandshakeError::BadKey,
            HandshakeError::TooLarge,
        ] {
            let r = text(e.clone());
            assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            assert_eq!(body, format!("{e}\n"));
        }
        assert!(text(HandshakeError::MissingHost).starts_with("HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn client_and_server_agree() {
        for deflate in [false, true] {
            let client = ClientHandshake::new(
                [7; 16],
                vec!["wamp.2.msgpack".into(), "wamp.2.json".into()],
                deflate,
            );
            let mut req = Vec::new();
            client.write_request("localhost:8080", "/ws", &mut req);
            let c = HandshakeConfig {
                deflate: Some(DeflateConfig::default()),
                ..config()
            };
            let a = match parse_request(&req, &c) {
                Ok(Some(a)) => a,
                other => panic!("{other:?}"),
            };
            assert_eq!(a.consumed, req.len());
            assert_eq!(a.path, "/ws");
            let mut resp = a.response.clone();
            resp.extend_from_slice(b"\x81\x00");
            for cut in 0..a.response.len() {
                assert_eq!(client.parse_response(&resp[..cut]), Ok(None));
            }
            let got = client.parse_response(&resp).unwrap().unwrap();
            assert_eq!(got.consumed, a.response.len());
            assert_eq!(got.subprotocol, a.subprotocol);
            assert_eq!(got.deflate, a.deflate);
            assert_eq!(got.deflate.is_some(), deflate);
        }
    }

    #[test]
    fn client_refusals() {
        let client = ClientHandshake::new([1; 16], vec!["wamp.2.json".into()], false);
        let accept = accept_key(&client.key);
        let resp = |extra: &str| {
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n")
        };
        let check = |r: String, e: ClientHandshakeError| {
            assert_eq!(client.parse_response(r.as_bytes()), Err(e), "{r}");
        };
        assert!(client
            .parse_response(resp("").as_bytes())
            .unwrap()
            .is_some());
        check(
            resp("").replace("101 Switching Protocols", "400 Bad Request"),
            ClientHandshakeError::Status(400),
        );
        check(
            resp("").replace(&accept, "x"),
            ClientHandshakeError::BadAccept,
        );
        check(
            resp("").replace("Upgrade: websocket\r\n", ""),
            ClientHandshakeError::UpgradeNotWebSocket,
        );
        check(
            resp("").replace("Connection: Upgrade", "Connection: x"),
            ClientHandshakeError::ConnectionNotUpgrade,
        );
        check(
            resp("Sec-WebSocket-Protocol: mqtt\r\n"),
            ClientHandshakeError::UnofferedSubprotocol("mqtt".into()),
        );
        check(
            resp("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            ClientHandshakeError::UnofferedExtension("permessage-deflate".into()),
        );
        let with_deflate = ClientHandshake::new([1; 16], vec![], true);
        let r = resp("Sec-WebSocket-Extensions: permessage-deflate, x-foo\r\n");
        assert_eq!(
            with_deflate.parse_response(r.as_bytes()),
            Err(ClientHandshakeError::UnofferedExtension(
                "permessage-deflate, x-foo".into()
            ))
        );
        let r = resp("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9\r\n");
        assert_eq!(
            with_deflate.parse_response(r.as_bytes()),
            Err(ClientHandshakeError::BadExtensions(
                DeflateError::ClientWindowNotOffered
            ))
        );
        let long = ClientHandshake {
            max_response_bytes: 50,
            ..client.clone()
        };
        assert_eq!(
            long.parse_response(resp("").as_bytes()),
            Err(ClientHandshakeError::TooLarge)
        );
    }
}
