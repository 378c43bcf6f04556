//! `switchyard`: the router binary. It parses the command line and runs it; everything
//! else lives in the library ([`switchyard_io::cli`], [`switchyard_io::server`]).

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use switchyard_io::cli::{self, Cli};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    cli::run(Cli::parse())
}
