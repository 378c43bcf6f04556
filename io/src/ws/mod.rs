//! WebSocket (RFC 6455) as sans-IO modules.
//!
//! Bytes go in, complete messages and the replies the protocol obliges (pong, close echo)
//! come out as data for the caller to send. Nothing here touches a socket or a clock.

pub mod conn;
pub mod cookie;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;
