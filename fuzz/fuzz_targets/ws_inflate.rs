//! Fuzz target: the permessage-deflate inflater (bounded while inflating, the same however
//! its input is split) and a round trip through the deflater. The checks are in
//! `fuzz/src/checks.rs` (shared with `tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_fuzz::checks;

#[global_allocator]
static ALLOC: checks::CountingAlloc = checks::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    checks::check_ws_inflate(data);
});
