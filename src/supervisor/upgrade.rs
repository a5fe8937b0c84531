//! Zero-downtime binary upgrade (`SIGUSR2`, as nginx and pingora do it): start the
//! executable again, hand it the listening sockets (descriptors 3, 4, ... and
//! `PERCORE_UPGRADE_FDS`), wait until it says it serves (one byte on a pipe named by
//! `PERCORE_UPGRADE_READY_FD`), then drain this process. The sockets never close, so no
//! connection is refused across the swap: until the old process stops accepting, both
//! accept from the same queues.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::listen::{UPGRADE_FDS_ENV, UPGRADE_OWNED_ENV};

const READY_FD_ENV: &str = "PERCORE_UPGRADE_READY_FD";

/// Start the new executable with the listening sockets `listeners` (TCP and Unix; it tells
/// them apart) and wait up to `wait` for it to serve.
/// `owned`: whether the sockets are percore's own (see `listen::Inherited::owned`).
pub fn start_successor(listeners: &[RawFd], owned: bool, wait: Duration) -> io::Result<Child> {
    let exe = executable()?;
    let (ready_r, ready_w) = pipe()?;
    let n = listeners.len() as RawFd;
    // Everything the child needs after fork is prepared here: no allocation in pre_exec.
    let sources: Vec<RawFd> = listeners.iter().copied().chain([ready_w]).collect();
    let mut parked: Vec<RawFd> = vec![-1; sources.len()];
    let mut cmd = Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(UPGRADE_FDS_ENV, n.to_string())
        .env(READY_FD_ENV, (3 + n).to_string())
        .env(UPGRADE_OWNED_ENV, if owned { "1" } else { "0" })
        // The new process becomes the main one: the watchdog is its to feed (systemd
        // accepts its pings once told MAINPID=, with NotifyAccess=all).
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls (fcntl, dup2) on prepared data. Each descriptor
    // is first parked above the target range so moving one into place cannot clobber
    // another still to be moved; dup2 leaves the targets without FD_CLOEXEC.
    unsafe {
        cmd.pre_exec(move || {
            let floor = 3 + sources.len() as RawFd;
            for (i, &fd) in sources.iter().enumerate() {
                parked[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor);
                if parked[i] < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, &fd) in parked.iter().enumerate() {
                if libc::dup2(fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // SAFETY: our copy of the write end; the child has its own.
    unsafe { libc::close(ready_w) };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            unsafe { libc::close(ready_r) };
            return Err(e);
        }
    };
    let ready = wait_ready(ready_r, wait);
    unsafe { libc::close(ready_r) };
    match ready {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// In the new process: tell the old one that this one serves.
pub fn report_ready() {
    let Ok(fd) = std::env::var(READY_FD_ENV) else { return };
    std::env::remove_var(READY_FD_ENV);
    let Ok(fd) = fd.trim().parse::<RawFd>() else { return };
    // SAFETY: the descriptor was passed to us for exactly this byte; closed right after.
    unsafe {
        libc::write(fd, b"1".as_ptr().cast(), 1);
        libc::close(fd);
    }
}

fn wait_ready(fd: RawFd, wait: Duration) -> io::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the new process did not report ready in time",
            ));
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as libc::c_int) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            continue;
        }
        let mut byte = 0u8;
        // SAFETY: read one byte into a local.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        return match n {
            1 => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the new process exited before it was ready",
            )),
        };
    }
}

fn pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// The executable to start: this one's path, even if the file was replaced on disk since
/// (which is the point of an upgrade).
fn executable() -> io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(path) => path.into(),
        None => exe,
    })
}
