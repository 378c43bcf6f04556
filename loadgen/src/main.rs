//! `switchyard-load`: the bundled WAMP load generator.
//!
//! Not built yet: it will open many WAMP sessions (WebSocket and RawSocket, JSON and
//! MessagePack) against any router and run the `connect`, `pubsub`, `rpc` and `capacity`
//! scenarios. It does no routing itself and shares no runtime with the router.

fn main() {
    eprintln!("switchyard-load {}: not built yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
