//! The `percore` binary: load the configuration (flags > environment > file > defaults),
//! set up logging, serve the demo app, and turn signals into supervisor commands.
//!
//! `percore check-config [FLAGS]` validates the configuration and prints the effective one.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use percore::app::demo::{demo_app, with_debug_routes};
use percore::config::file::{self, LoadError, Loaded};
use percore::observe::init_logging;
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
    let loaded = match file::load(&args) {
        Ok(l) => l,
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("percore: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        print!("{}", file::render(&loaded));
        return ExitCode::SUCCESS;
    }
    serve(loaded, &args)
}

fn serve(loaded: Loaded, args: &[OsString]) -> ExitCode {
    let cli = loaded.cli;
    init_logging(cli.log_level, cli.log_format);
    raise_fd_limit();
    let debug_routes = cli.debug_routes;
    if debug_routes {
        tracing::warn!("--debug-routes: /stall and /crash are enabled; never use this in production");
    }
    let handle = match Server::new(cli.server_config()).start(move |executor: &ExecutorInfo| {
        let app = demo_app(executor.state.clone());
        if debug_routes {
            with_debug_routes(app, executor.index)
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
            Signal::Hup => match file::load(args) {
                Ok(reloaded) => handle.send(Command::Reload(Some(Box::new(reloaded.cli.server_config())))),
                // The configuration in force stays, and so do the executors.
                Err(e) => {
                    tracing::error!(error = %e, "reload refused: the configuration does not load; nothing changed")
                }
            },
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
