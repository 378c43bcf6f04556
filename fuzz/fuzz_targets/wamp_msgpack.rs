//! Fuzz target `wamp_msgpack`: hands libFuzzer's input to [`switchyard_fuzz::wamp_msgpack`], which holds the
//! checks (shared with the corpus replay test in `tests/tests/fuzz_corpus.rs`). It adds
//! nothing of its own.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::wamp_msgpack(data));
