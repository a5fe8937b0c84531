//! systemd's notify protocol (sd_notify(3)): datagrams of `KEY=VALUE` lines to the socket
//! named by `NOTIFY_SOCKET`, and the watchdog interval from `WATCHDOG_USEC`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go; does nothing when the process is not run by a service manager.
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| match open(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, socket = ?path, "cannot open NOTIFY_SOCKET; not notifying systemd");
                None
            }
        });
        let pid_ok =
            std::env::var("WATCHDOG_PID").map(|p| p.trim() == std::process::id().to_string()).unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&us| us > 0 && pid_ok)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { socket: None, watchdog: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval systemd expects pings within, if it set one.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.socket.is_some())
    }

    /// Send one notification (several `KEY=VALUE` lines may be joined with `\n`).
    pub fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.socket {
            if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
                tracing::debug!(error = %e, "sd_notify failed");
            }
        }
    }
}

fn open(path: &std::ffi::OsStr) -> io::Result<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let addr = match bytes.first() {
        // Abstract namespace: "@name".
        Some(b'@') => std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => std::os::unix::net::SocketAddr::from_pathname(path)?,
        _ => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET must be a path or @name"))
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// `CLOCK_MONOTONIC` in microseconds, for `RELOADING=1` + `MONOTONIC_USEC=`.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
