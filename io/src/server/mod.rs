//! The thread-per-core server: runtimes, listeners, connection drivers, mailboxes.
//!
//! Not built yet: [`run`] refuses to start, so `switchyard start` fails loudly rather than
//! pretending to serve.

use std::fmt;

use crate::config::NodeConfig;

/// Why the server could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// This build has no runtime yet.
    NotBuilt,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBuilt => f.write_str("the server runtime is not built yet"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Serves `config` until SIGINT or SIGTERM.
pub fn run(config: NodeConfig) -> Result<(), ServerError> {
    let _ = config;
    Err(ServerError::NotBuilt)
}
