//! The `percore` binary: the demo app behind the whole command line ([`percore::cli`]):
//! configuration (flags > environment > file > defaults), `check-config`, logging, signals,
//! and the built-in `/health`, `/ready` and `/metrics` routes.

use std::process::ExitCode;

use percore::app::demo::demo_routes;
use percore::chat::Hub;
use percore::Router;

/// jemalloc rather than glibc's malloc: after a burst of new connections, the memory their
/// working states and buffers used lies between the small allocations of the connections
/// that stay (parked), and glibc keeps those pages; jemalloc keeps allocations of one size
/// together and gives pages that fall empty back (10,000 idle connections: 0.8 KiB each
/// instead of 1.9; docs/benchmarks.md, "Memory per idle connection").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation (`_RJEM_MALLOC_CONF` in the
/// environment overrides them). Emptied pages go back within a quarter of a second
/// (`dirty_decay_ms`), in one step rather than two lazy ones (`muzzy_decay_ms`), and by one
/// background thread: without it, pages are only given back when the thread that freed
/// them allocates again, and an executor whose connections have all gone idle does not.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
// A C `const char *`: `Option<&c_char>` has its layout, where a `&[u8]` would be a pointer
// and a length.
// SAFETY: the first byte of a static byte string, valid for the whole program.
pub static malloc_conf: Option<&std::ffi::c_char> = Some(unsafe {
    &*c"background_thread:true,max_background_threads:1,dirty_decay_ms:250,muzzy_decay_ms:0".as_ptr()
});

fn main() -> ExitCode {
    // One chat room for the whole process; each executor gets its own side of it.
    let chat = Hub::new();
    percore::cli::run(move |_executor| demo_routes(Router::new(), &chat))
}
