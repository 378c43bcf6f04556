//! The WebSocket echo endpoint on one core, for Autobahn|Testsuite runs.
//!
//! `cargo run --release -p switchyard-io --example ws_echo -- 127.0.0.1:9001` serves
//! [`switchyard_io::echo`] with its default settings (any path, no subprotocol,
//! permessage-deflate offered, 16 MiB messages). It logs which monoio driver (io_uring or
//! epoll) it got. It is not the router: no WAMP, one core, no configuration file.

use std::net::TcpListener;

use mimalloc::MiMalloc;
use switchyard_io::echo::{self, EchoConfig};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr)?;
    echo::run(listener, EchoConfig::default())?;
    Ok(())
}
