//! The `percore` command line as a library: every flag, environment variable and config
//! file key, `check-config`, logging, the open-files limit, signals (SIGTERM drains, SIGHUP
//! reloads, SIGUSR2 upgrades, SIGUSR1 reopens logs) and the built-in `/health`, `/ready` and
//! `/metrics` routes, around any app. The `percore` binary is [`run`] with the demo app; a
//! user's binary is the same few lines with theirs:
//!
//! ```no_run
//! use percore::{Request, Response, Router};
//!
//! fn main() -> std::process::ExitCode {
//!     percore::cli::run(|_exec| Router::new().get("/hello", |_req: Request| async { Response::text("hi\n") }))
//! }
//! ```

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::app::builtin::{builtin_routes, WithBuiltins};
use crate::app::demo::with_debug_routes;
use crate::app::Handler;
use crate::config::file::{self, LoadError, Loaded};
use crate::config::{LogFormat, LogLevel, APPLIED_ON_RELOAD};
use crate::observe::{init_logging, LogControl};
use crate::supervisor::signals::{self, Signal};
use crate::{Command, ExecutorInfo, Server, Shutdown};

/// Serve the app that `make_app` builds (once per executor) with the whole `percore` command
/// line, until a signal ends it; the exit code to return from `main`. Call it first thing in
/// `main`, before any thread is started: it blocks the signals it handles, and threads
/// inherit that.
pub fn run<H, F>(make_app: F) -> ExitCode
where
    H: Handler,
    F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
{
    run_with_args(std::env::args_os().collect(), make_app)
}

/// [`run`] with the command line given (program name first) instead of the process's.
pub fn run_with_args<H, F>(args: Vec<OsString>, make_app: F) -> ExitCode
where
    H: Handler,
    F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
{
    main_with(args, make_app)
}

/// [`run`] for a `tower::Service` (an axum `Router`, a tower-http stack): `make_service`
/// runs once per executor.
#[cfg(feature = "tower")]
pub fn run_service<S, F>(make_service: F) -> ExitCode
where
    F: Fn(&ExecutorInfo) -> S + Send + Sync + 'static,
    crate::tower::TowerHandler<S>: Handler,
{
    run(crate::tower::per_executor(make_service))
}

/// [`run_service`] with the command line given (program name first).
#[cfg(feature = "tower")]
pub fn run_service_with_args<S, F>(args: Vec<OsString>, make_service: F) -> ExitCode
where
    F: Fn(&ExecutorInfo) -> S + Send + Sync + 'static,
    crate::tower::TowerHandler<S>: Handler,
{
    run_with_args(args, crate::tower::per_executor(make_service))
}

fn main_with<H, F>(mut args: Vec<OsString>, make_app: F) -> ExitCode
where
    H: Handler,
    F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
{
    // Before any thread exists, so every thread inherits the mask and signals are taken
    // only by the loop below.
    signals::block();
    let check_only = args.get(1).is_some_and(|a| a == "check-config");
    if check_only {
        args.remove(1);
    }
    let load = if check_only { file::load_for_check } else { file::load };
    let loaded = match load(&args) {
        Ok(l) => l,
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => {
            say(&format!("percore: {e}"));
            return ExitCode::from(2);
        }
    };
    if check_only {
        return check_config(&loaded);
    }
    serve(loaded, &args, make_app)
}

/// `percore check-config`: refuse what the server would refuse at start (exit 2), say the
/// warnings, print the effective configuration.
fn check_config(loaded: &Loaded) -> ExitCode {
    // The checks log what they would log at start (e.g. a fallback from io_uring to epoll).
    let _ = init_logging(LogLevel::Warn, LogFormat::Text);
    match Server::new(loaded.cli.server_config()).check() {
        Ok(warnings) => {
            for w in warnings {
                say(&format!("percore: warning: {w}"));
            }
            // A reader that went away (`| head`) is not a reason to panic.
            let _ = std::io::stdout().lock().write_all(file::render(loaded).as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("percore: the server would not start: {e}"));
            ExitCode::from(2)
        }
    }
}

fn serve<H, F>(loaded: Loaded, args: &[OsString], make_app: F) -> ExitCode
where
    H: Handler,
    F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
{
    let log_control = init_logging(loaded.cli.log_level, loaded.cli.log_format);
    let cli = &loaded.cli;
    raise_fd_limit();
    let debug_routes = cli.debug_routes;
    if debug_routes {
        tracing::warn!("--debug-routes: /stall and /crash are enabled; never use this in production");
    }
    let handle = match Server::new(cli.server_config()).start(move |executor: &ExecutorInfo| {
        let builtins = builtin_routes(executor.state.clone());
        let builtins = if debug_routes { with_debug_routes(builtins, executor.index) } else { builtins };
        WithBuiltins::new(builtins, make_app(executor))
    }) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };

    let mut reloader = Reloader { started: loaded, current: None, log_control };
    let mut stopping = false;
    while !handle.is_finished() {
        let Some(signal) = signals::wait(Duration::from_millis(100)) else { continue };
        match signal {
            Signal::Term | Signal::Int if !stopping => {
                tracing::info!(
                    ?signal,
                    "graceful shutdown requested (send it again, or SIGQUIT, to stop at once)"
                );
                stopping = true;
                handle.send(Command::Drain);
            }
            Signal::Term | Signal::Int | Signal::Quit => {
                tracing::warn!(?signal, "stopping now");
                handle.send(Command::StopNow);
            }
            Signal::Hup => reloader.reload(args, &handle),
            Signal::Usr2 if !stopping => handle.send(Command::Upgrade),
            Signal::Usr1 => handle.reopen_logs(),
            Signal::Usr2 => tracing::info!(?signal, "signal ignored while stopping"),
        }
    }
    match handle.join() {
        Ok(Shutdown::Drained | Shutdown::Stopped | Shutdown::Upgraded) => ExitCode::SUCCESS,
        Ok(Shutdown::DrainTimedOut { .. }) => ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP on the binary's side: read the configuration again, say what changed, apply the
/// log level, and hand the rest to the supervisor.
struct Reloader {
    /// The configuration the process started with: settings that need a restart are
    /// compared with it, so every reload repeats what is still not in force.
    started: Loaded,
    /// The configuration of the last reload (`None`: none yet).
    current: Option<Loaded>,
    log_control: LogControl,
}

impl Reloader {
    fn reload(&mut self, args: &[OsString], handle: &crate::ServerHandle) {
        match file::load(args) {
            Ok(new) => {
                self.report(&new);
                handle.send(Command::Reload(Some(Box::new(new.cli.server_config()))));
                self.current = Some(new);
            }
            // The configuration in force stays, and so do the executors.
            Err(e) => {
                tracing::error!(error = %e, "reload refused: the configuration does not load; nothing changed")
            }
        }
    }

    /// Apply the log level of `new`; name in one warning the changed settings that wait for
    /// a restart, and in one line those applied.
    fn report(&self, new: &Loaded) {
        let previous = self.current.as_ref().unwrap_or(&self.started);
        let mut applied: Vec<&str> =
            file::changed(previous, new).into_iter().filter(|k| APPLIED_ON_RELOAD.contains(k)).collect();
        let not_applied: Vec<&str> = file::changed(&self.started, new)
            .into_iter()
            .filter(|k| !APPLIED_ON_RELOAD.contains(k))
            .collect();
        if applied.contains(&"log-level") {
            if let Err(e) = self.log_control.set_level(new.cli.log_level) {
                tracing::warn!(reason = %e, "reload: log-level changed in the configuration but is not applied");
                applied.retain(|k| *k != "log-level");
            }
        }
        if !not_applied.is_empty() {
            tracing::warn!(
                settings = not_applied.join(", "),
                "reload: these settings changed in the configuration but take effect only after a restart"
            );
        }
        if !applied.is_empty() {
            tracing::info!(settings = applied.join(", "), "reload: applying the changed settings");
        }
    }
}

/// A message to stderr for the operator, before logging is set up; a stderr that is gone
/// (a closed pipe) loses it instead of panicking as `eprintln!` would.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Raise the soft open-files limit to the hard one: each connection is a descriptor, and
/// the usual soft default (1024) is far below what one executor serves.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(from = lim.rlim_cur, to = lim.rlim_max, "raised open-files limit");
            }
        }
    }
}
