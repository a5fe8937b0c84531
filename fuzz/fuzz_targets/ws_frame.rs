//! Fuzz target: the WebSocket frame decoder, fed in one read, byte by byte and in random
//! pieces. The checks are in `fuzz/src/checks.rs` (shared with `tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_fuzz::checks;

#[global_allocator]
static ALLOC: checks::CountingAlloc = checks::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    checks::check_ws_frame(data);
});
