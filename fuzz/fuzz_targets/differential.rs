//! Fuzz target (d) one read vs many: parse_head on every prefix, and the driver with split reads, give the one-read result.
//! The checks are in `fuzz/src/checks.rs` (shared with `tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_fuzz::checks;

#[global_allocator]
static ALLOC: checks::CountingAlloc = checks::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    checks::check_differential(data);
});
