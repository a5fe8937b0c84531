//! A percore server with your own handler, in a few lines.
//!
//! ```sh
//! cargo run --release --example hello
//! curl http://127.0.0.1:8080/hello
//! curl -d 'some text' http://127.0.0.1:8080/upper
//! ```
//!
//! Each executor gets its own `App` (built on its own thread), so the per-core hit counter
//! is a plain `Cell`: no lock, no atomic, no sharing between cores.

use std::cell::Cell;

use percore::{ExecutorInfo, Handler, Request, Response, Server, ServerConfig};

struct App {
    executor: usize,
    hits: Cell<u64>,
}

impl Handler for App {
    async fn call(&self, mut req: Request) -> Response {
        self.hits.set(self.hits.get() + 1);
        match (req.method(), req.path()) {
            ("GET", "/hello") => Response::text(format!(
                "hello from executor {} (request {} on this core)\n",
                self.executor,
                self.hits.get()
            )),
            ("POST", "/upper") => match req.body_mut().collect(64 * 1024).await {
                Ok(body) => Response::text(body.to_ascii_uppercase()),
                Err(e) => Response::status_text(e.status()),
            },
            _ => Response::status_text(404),
        }
    }
}

fn main() {
    percore::observe::init_logging(percore::config::LogLevel::Info, percore::config::LogFormat::Text);
    let config = ServerConfig { port: 8080, ..ServerConfig::default() };
    let result =
        Server::new(config).run(|exec: &ExecutorInfo| App { executor: exec.index, hits: Cell::new(0) });
    if let Err(e) = result {
        eprintln!("percore: {e}");
        std::process::exit(1);
    }
}
