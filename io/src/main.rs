//! `switchyard`: the router binary.
//!
//! The server (thread-per-core on io_uring, Crossbar-compatible configuration) is not
//! built yet; for now the binary only reports its version and says so. The WebSocket echo
//! endpoint runs as the `ws_echo` example of this crate.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("version") | Some("--version") | Some("-V") => {
            println!("switchyard {}", env!("CARGO_PKG_VERSION"));
        }
        _ => {
            eprintln!(
                "switchyard {}: the router server is not built yet; \
                 `cargo run --release -p switchyard-io --example ws_echo -- 127.0.0.1:9001` \
                 serves the WebSocket echo endpoint",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
