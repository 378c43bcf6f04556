//! `switchyard-loadgen`: the library behind the `switchyard-load` binary, the bundled WAMP
//! load generator.
//!
//! # What it does
//!
//! - [`target`]: which router, transport, serializer and realm (loopback only).
//! - [`wire`]: the client end of WebSocket (masked frames) and RawSocket, JSON and
//!   MessagePack, sans-IO, built from `switchyard-io`'s client roles and `switchyard-core`'s
//!   codec.
//! - [`session`]: one WAMP session on glommio (HELLO, SUBSCRIBE, PUBLISH, REGISTER,
//!   CALL/YIELD, GOODBYE), connecting from many source addresses in 127.0.0.0/8.
//! - [`payload`]: the `[origin, seq, sent_ns, padding]` payload scenarios send.
//! - [`sys`]: the monotonic clock shared across processes, bind-before-connect sockets.
//!
//! # What it deliberately does not do
//!
//! No routing, no TLS, no authentication beyond anonymous, and no target outside
//! 127.0.0.0/8. It shares no runtime with the router (glommio here, monoio there), so that
//! a runtime's bug or limit cannot hide on both sides of a measurement.

pub mod limits;
pub mod payload;
pub mod report;
pub mod scenario;
pub mod session;
pub mod stats;
pub mod sys;
pub mod target;
pub mod wire;
