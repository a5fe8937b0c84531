//! Logging (tracing to stderr), the access log and metrics.

use std::fmt;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

pub mod access_log;
pub mod metrics;

use crate::config::{LogFormat, LogLevel};

/// Install the global tracing subscriber. `RUST_LOG`, when set, refines `level`.
///
/// The returned handle changes the level later (SIGHUP). Log lines go to stderr through
/// [`LossyStderr`]: a log sink that went away (a closed pipe, a restarted collector) drops
/// lines instead of ending the server.
pub fn init_logging(level: LogLevel, format: LogFormat) -> LogControl {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let ansi = io::stderr().is_terminal();
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(|| LossyStderr)
            .log_internal_errors(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(|| LossyStderr)
            .log_internal_errors(false)
            .boxed(),
    };
    // A second init (e.g. a library user who set up tracing already) keeps theirs, and
    // then this handle changes nothing.
    let installed = tracing_subscriber::registry().with(filter).with(output).try_init().is_ok();
    LogControl { handle: installed.then_some(handle) }
}

/// `RUST_LOG` when it is set and valid, else `level`.
fn filter_for(level: LogLevel) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()))
}

/// Changes the running log level (`--log-level` on SIGHUP).
#[derive(Debug, Clone)]
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

/// Why a new log level was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelError {
    /// `RUST_LOG` is set; it decides the filter, not `--log-level`.
    RustLogSet,
    /// percore did not install the subscriber (the embedding program has its own).
    NotOurs,
    /// The subscriber is gone (the process is ending).
    Gone(String),
}

impl fmt::Display for LevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelError::RustLogSet => f.write_str("RUST_LOG is set and decides the log filter"),
            LevelError::NotOurs => f.write_str("the program installed its own tracing subscriber"),
            LevelError::Gone(e) => write!(f, "the log filter cannot be changed: {e}"),
        }
    }
}

impl std::error::Error for LevelError {}

impl LogControl {
    /// Log at `level` from now on.
    pub fn set_level(&self, level: LogLevel) -> Result<(), LevelError> {
        if std::env::var_os("RUST_LOG").is_some() {
            return Err(LevelError::RustLogSet);
        }
        let handle = self.handle.as_ref().ok_or(LevelError::NotOurs)?;
        handle.reload(EnvFilter::new(level.as_str())).map_err(|e| LevelError::Gone(e.to_string()))
    }
}

/// stderr for log lines, where a failed write is a lost line and nothing more.
///
/// tracing-subscriber reports a failed write with `eprintln!`, which panics when stderr is
/// a pipe whose reader has gone (EPIPE): `percore 2>&1 | head -1` would end the server on
/// its second log line. The server must outlive its log collector, so errors stop here.
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // One whole line per call (the fmt layer formats a line, then writes it at once).
        let _ = io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}
