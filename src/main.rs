//! The `percore` binary: the demo app behind the whole command line ([`percore::cli`]):
//! configuration (flags > environment > file > defaults), `check-config`, logging, signals,
//! and the built-in `/health`, `/ready` and `/metrics` routes.

use std::process::ExitCode;

use percore::app::demo::demo_routes;
use percore::chat::Hub;
use percore::Router;

fn main() -> ExitCode {
    // One chat room for the whole process; each executor gets its own side of it.
    let chat = Hub::new();
    percore::cli::run(move |_executor| demo_routes(Router::new(), &chat))
}
