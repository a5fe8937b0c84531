//! The `percore` binary: the demo app behind the whole command line ([`percore::cli`]):
//! configuration (flags > environment > file > defaults), `check-config`, logging, signals,
//! and the built-in `/health`, `/ready` and `/metrics` routes.

use std::process::ExitCode;

use percore::app::demo::demo_routes;
use percore::Router;

fn main() -> ExitCode {
    percore::cli::run(|_executor| demo_routes(Router::new()))
}
