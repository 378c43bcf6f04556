//! `switchyard-bench`: criterion and gungraun benchmarks for Switchyard.
//!
//! The benchmarks live in `benches/`; this library only holds shared input builders. It
//! asserts nothing about speed: figures go to `BENCHMARKS.md` with the command that made
//! them.
