//! Fuzz target (c) the whole connection driver over in-memory IO: well-formed, bounded responses, nothing after a close.
//! The checks are in `fuzz/src/checks.rs` (shared with `tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_fuzz::checks;

#[global_allocator]
static ALLOC: checks::CountingAlloc = checks::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    checks::check_driver(data);
});
