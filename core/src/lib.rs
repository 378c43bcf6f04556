//! `switchyard-core`: the WAMP router as a sans-IO, deterministic state machine.
//!
//! # What it does
//!
//! - [`message`]: the model of every WAMP v2 message (basic and advanced profile).
//! - [`codec`]: JSON and MessagePack codecs that decode only the envelope and keep
//!   application payloads (`args`, `kwargs`, passthru payloads) as raw [`bytes::Bytes`]
//!   slices of the input, plus explicit payload transcoding between serializers.
//! - [`uri`]: strict and loose URI validation for URIs and patterns.
//! - [`matcher`]: one matcher for exact, prefix and wildcard patterns, serving
//!   subscriptions, registrations and permissions alike.
//! - [`id`]: WAMP ids, always in `[1, 2^53]`.
//! - [`router`]: the sans-IO router: one `Shard` per core with sessions, broker, dealer,
//!   meta API and the cross-shard peer protocol.
//!
//! # What it deliberately does not do
//!
//! No sockets, no threads, no clock reads, no randomness it did not get from its caller,
//! no WebSocket or RawSocket framing: the `switchyard-io` crate moves bytes in and out.
//! `clippy.toml` in this crate bans the clock, threads, sockets and OS-seeded hashers, and
//! `unsafe` is forbidden.
#![forbid(unsafe_code)]

pub mod codec;
pub mod hash;
pub mod id;
pub mod matcher;
pub mod message;
pub mod router;
pub mod uri;
