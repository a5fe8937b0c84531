//! Fuzz target (extra): the PROXY protocol header parser (v1, v2, auto) and the forwarding
//! headers (`X-Forwarded-*`, `Forwarded`).
//! The checks are in `fuzz/src/checks.rs` (shared with `tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_fuzz::checks;

#[global_allocator]
static ALLOC: checks::CountingAlloc = checks::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    checks::check_proxy(data);
});
