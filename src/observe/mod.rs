//! Logging (tracing to stderr); access logs and metrics come later.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub mod access_log;
pub mod metrics;

use crate::config::{LogFormat, LogLevel};

/// Install the global tracing subscriber. `RUST_LOG`, when set, refines `level`.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    // A second init (e.g. a library user who set up tracing already) keeps theirs.
    let _ = result;
}
