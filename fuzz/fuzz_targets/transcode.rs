//! Fuzz target `transcode`: hands libFuzzer's input to [`switchyard_fuzz::transcode`], which holds the
//! checks (shared with the corpus replay test in `tests/tests/fuzz_corpus.rs`). It adds
//! nothing of its own.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::transcode(data));
