//! The `percore` binary: load the configuration (flags > environment > file > defaults),
//! set up logging, serve the demo app, and turn signals into supervisor commands.
//!
//! `percore check-config [FLAGS]` validates the configuration and prints the effective one.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use percore::app::demo::{demo_app, with_debug_routes};
use percore::config::file::{self, LoadError, Loaded};
use percore::config::{LogFormat, LogLevel, APPLIED_ON_RELOAD};
use percore::observe::{init_logging, LogControl};
use percore::supervisor::signals::{self, Signal};
use percore::{Command, ExecutorInfo, Server, Shutdown};

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the mask and signals are taken
    // only by the loop below.
    signals::block();
    let mut args: Vec<OsString> = std::env::args_os().collect();
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
    serve(loaded, &args)
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

fn serve(loaded: Loaded, args: &[OsString]) -> ExitCode {
    let log_control = init_logging(loaded.cli.log_level, loaded.cli.log_format);
    let cli = &loaded.cli;
    raise_fd_limit();
    let debug_routes = cli.debug_routes;
    if debug_routes {
        tracing::warn!("--debug-routes: /stall and /crash are enabled; never use this in production");
    }
    let handle = match Server::new(cli.server_config()).start(move |executor: &ExecutorInfo| {
        let app = demo_app(executor.state.clone());
        if debug_routes {
            with_debug_routes(app)
        } else {
            app
        }
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
    fn reload(&mut self, args: &[OsString], handle: &percore::ServerHandle) {
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
