//! `switchyard-io`: Switchyard's transports and, later, its thread-per-core server.
//!
//! # What it does
//!
//! - [`ws`]: WebSocket (RFC 6455) as sans-IO modules: the HTTP upgrade handshake, an
//!   incremental frame parser, SIMD unmasking, streaming UTF-8 validation,
//!   permessage-deflate (RFC 7692) and the connection state machine (bytes in, messages
//!   and obliged replies out).
//! - [`rawsocket`]: the WAMP RawSocket transport (handshake, frame prefix, PING/PONG).
//! - [`cli`]: the `switchyard` command line (start, check, init, version, stop, status).
//! - [`config`]: the Crossbar-compatible node configuration, checked key by key.
//! - [`echo`]: a WebSocket echo endpoint (Crossbar's `websocket.testee`) driven by monoio
//!   over exactly the production code path, for conformance runs.
//! - [`server`]: the thread-per-core server that runs a checked configuration.
//! - [`controller`]: the controller of several router worker processes (`--workers N`).
//!
//! # What it deliberately does not do
//!
//! No WAMP semantics: routing decisions belong to `switchyard-core`. The sans-IO modules
//! never touch a socket or a clock; only the drivers (`echo`, later the server) do.

pub mod cli;
pub mod config;
pub mod controller;
pub mod echo;
pub mod rawsocket;
pub mod server;
pub mod ws;
