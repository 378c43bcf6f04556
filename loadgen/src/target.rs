//! Where the load goes: a router's URL, realm and serializer, parsed and checked.
//!
//! `ws://HOST:PORT/PATH` selects WebSocket, `rs://HOST:PORT` (or `rawsocket://`, `tcp://`)
//! selects RawSocket. What it does not do: no DNS (the host is an IPv4 address or
//! `localhost`), no TLS, and no target outside 127.0.0.0/8: this tool generates load only
//! against routers on the machine it runs on.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use switchyard_core::codec::Serializer;

/// The transport a target speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WAMP over WebSocket, upgrading at `path`.
    WebSocket {
        /// The request path, e.g. `/ws`.
        path: String,
    },
    /// WAMP over RawSocket.
    RawSocket,
}

/// A router to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The router's address.
    pub addr: SocketAddrV4,
    /// WebSocket or RawSocket.
    pub transport: Transport,
    /// JSON or MessagePack.
    pub serializer: Serializer,
    /// The realm every session joins.
    pub realm: String,
}

/// Why a URL is refused; one variant per rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// The host is not an IPv4 address or `localhost`.
    BadHost(String),
    /// The port is missing or not a number in 1..=65535.
    BadPort(String),
    /// The host lies outside 127.0.0.0/8.
    NotLoopback(Ipv4Addr),
    /// The scheme is none of `ws`, `rs`, `rawsocket`, `tcp`.
    UnknownScheme(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadHost(h) => write!(f, "host {h:?} is not an IPv4 address or localhost"),
            Self::BadPort(p) => write!(f, "port {p:?} is not a number in 1..=65535"),
            Self::NotLoopback(a) => write!(f, "{a} is outside 127.0.0.0/8: only loopback targets"),
            Self::UnknownScheme(s) => write!(f, "scheme {s:?} is not ws, rs, rawsocket or tcp"),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `url` (see the module doc) for `realm` and `serializer`.
    pub fn parse(url: &str, realm: &str, serializer: Serializer) -> Result<Self, TargetError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| TargetError::UnknownScheme(url.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let transport = match scheme {
            "ws" => Transport::WebSocket {
                path: path.to_owned(),
            },
            "rs" | "rawsocket" | "tcp" => Transport::RawSocket,
            other => return Err(TargetError::UnknownScheme(other.to_owned())),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| TargetError::BadPort(String::new()))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| TargetError::BadPort(port.to_owned()))?;
        let ip = if host == "localhost" {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse::<Ipv4Addr>()
                .map_err(|_| TargetError::BadHost(host.to_owned()))?
        };
        if !ip.is_loopback() {
            return Err(TargetError::NotLoopback(ip));
        }
        Ok(Self {
            addr: SocketAddrV4::new(ip, port),
            transport,
            serializer,
            realm: realm.to_owned(),
        })
    }

    /// The `Host` header value for the WebSocket upgrade.
    pub fn host_header(&self) -> String {
        self.addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expect: Result<(&str, Transport), TargetError>) {
        let got = Target::parse(url, "realm1", Serializer::Json).map(|t| (t.addr, t.transport));
        let expect = expect.map(|(a, t)| (a.parse::<SocketAddrV4>().unwrap(), t));
        assert_eq!(got, expect, "{url}");
    }

    #[test]
    fn urls() {
        let ws = |p: &str| Transport::WebSocket { path: p.to_owned() };
        check("ws://127.0.0.1:8080/ws", Ok(("127.0.0.1:8080", ws("/ws"))));
        check("ws://localhost:9000", Ok(("127.0.0.1:9000", ws("/"))));
        check(
            "rs://127.0.0.2:8081",
            Ok(("127.0.0.2:8081", Transport::RawSocket)),
        );
        check(
            "tcp://127.0.0.1:1",
            Ok(("127.0.0.1:1", Transport::RawSocket)),
        );
        check(
            "ws://10.0.0.1:80/ws",
            Err(TargetError::NotLoopback(Ipv4Addr::new(10, 0, 0, 1))),
        );
        check(
            "ws://example.org:80/",
            Err(TargetError::BadHost("example.org".into())),
        );
        check("ws://127.0.0.1:0/", Err(TargetError::BadPort("0".into())));
        check(
            "wss://127.0.0.1:443/",
            Err(TargetError::UnknownScheme("wss".into())),
        );
        check(
            "127.0.0.1:80",
            Err(TargetError::UnknownScheme("127.0.0.1:80".into())),
        );
    }
}
