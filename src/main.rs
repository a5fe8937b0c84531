//! The `percore` binary: parse the command line, set up logging, serve the demo app.

use std::process::ExitCode;

use clap::Parser;
use percore::app::demo::demo_app;
use percore::config::Cli;
use percore::observe::init_logging;
use percore::{ExecutorInfo, Server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level, cli.log_format);
    raise_fd_limit();

    let server = Server::new(cli.server_config());
    match server.run(|executor: &ExecutorInfo| demo_app(executor.state.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Raise the soft open-files limit to the hard one: each connection is a descriptor, and
/// the usual soft default (1024) is far below what one executor serves.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(
                    from = lim.rlim_cur,
                    to = lim.rlim_max,
                    "raised open-files limit"
                );
            }
        }
    }
}
