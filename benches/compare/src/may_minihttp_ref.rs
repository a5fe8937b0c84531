//! may-minihttp: the TechEmpower Rust entry's HTTP server (`may_minihttp`), on the `may`
//! stackful-coroutine runtime: N worker threads, each an epoll event loop that also runs
//! coroutines, one per connection, with work stealing between them, and one listener whose
//! accept loop is itself a coroutine.
//!
//! Served as the TechEmpower entry serves it (`HttpServiceFactory::start`, no
//! `TCP_NODELAY`: the library's accept loop does not set it), with the same bodies and
//! content types as the other servers of the harness; may-minihttp adds its own `Server: M`
//! and `Date` headers. The workers pin themselves to the cores the process may run on
//! (`may`'s default, `set_worker_pin(true)`), so under the harness's `taskset` each one
//! sits on one server core, as hyper-tpc's threads do.

use std::io;

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};

/// The answers to `/plaintext`, `/json` and any other path.
struct Routes;

impl HttpService for Routes {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        match req.path() {
            "/plaintext" => rsp.header("Content-Type: text/plain").body("Hello, World!"),
            "/json" => rsp.header("Content-Type: application/json").body(r#"{"message":"Hello, World!"}"#),
            _ => rsp.status_code(404, "Not Found").header("Content-Type: text/plain").body("Not Found"),
        }
        Ok(())
    }
}

/// One `Routes` per connection (the service is per connection in may-minihttp).
struct RoutesFactory;

impl HttpServiceFactory for RoutesFactory {
    type Service = Routes;

    fn new_service(&self, _id: usize) -> Routes {
        Routes
    }
}

/// Serve on `127.0.0.1:port` with `threads` may workers until killed.
pub fn serve(port: u16, threads: usize) -> io::Result<()> {
    crate::procfs::raise_nofile();
    // Before anything starts the scheduler: `may` reads its configuration once.
    may::config().set_workers(threads.max(1)).set_pool_capacity(1000).set_stack_size(0x1000);
    let server = RoutesFactory.start(("127.0.0.1", port))?;
    eprintln!("may-minihttp ready on 127.0.0.1:{port} with {threads} worker threads");
    server.join().map_err(|_| io::Error::other("the may-minihttp accept loop panicked"))
}
