//! Unix domain socket listeners (`--bind unix:PATH`): binding the one socket that every
//! executor accepts from (AF_UNIX has no SO_REUSEPORT), replacing a stale socket file left
//! by a process that died, and removing the file when the server ends.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// The `--bind` prefix of a Unix socket path.
pub const PREFIX: &str = "unix:";

/// The path of a `--bind unix:PATH` entry, if it is one.
pub fn bind_path(bind: &str) -> Option<&Path> {
    bind.strip_prefix(PREFIX).map(Path::new)
}

/// The Unix sockets a server listens on: one listener each, which every executor accepts
/// from, and the socket files to remove when the server ends (the ones percore bound, or
/// took over from the percore it upgraded; never a service manager's).
#[derive(Default)]
pub struct UnixSockets {
    pub listeners: Vec<UnixListener>,
    pub paths: Vec<PathBuf>,
    pub files: Vec<SocketFile>,
}

impl UnixSockets {
    /// Bind a socket at each of `paths`.
    pub fn bind(
        paths: &[PathBuf],
        backlog: u32,
        mode: Option<u32>,
    ) -> Result<UnixSockets, (PathBuf, UdsError)> {
        let mut sockets = UnixSockets::default();
        for path in paths {
            let (listener, file) = bind(path, backlog, mode).map_err(|e| (path.clone(), e))?;
            sockets.listeners.push(listener);
            sockets.paths.push(path.clone());
            sockets.files.push(file);
        }
        Ok(sockets)
    }

    /// Sockets passed to this process; `owned`: percore's own (an upgrade), whose files it
    /// removes at the end, rather than the service manager's.
    pub fn inherited(listeners: Vec<UnixListener>, owned: bool) -> UnixSockets {
        let paths: Vec<PathBuf> = listeners.iter().filter_map(path_of).collect();
        let files =
            if owned { paths.iter().filter_map(|p| SocketFile::at(p).ok()).collect() } else { Vec::new() };
        UnixSockets { listeners, paths, files }
    }

    /// Remove the socket files (see [`SocketFile::remove`]); the sockets themselves close
    /// with their last descriptor.
    pub fn remove_files(&mut self) {
        for file in self.files.drain(..) {
            file.remove();
        }
    }

    /// Keep the files: another process serves on these sockets now (an upgrade).
    pub fn keep_files(&mut self) {
        self.files.clear();
    }
}

impl Drop for UnixSockets {
    fn drop(&mut self) {
        self.remove_files();
    }
}

/// Why a Unix socket could not be bound.
#[derive(Debug)]
pub enum UdsError {
    /// Another process listens on the socket.
    InUse,
    /// Something that is not a socket is in the way; it is never removed.
    NotASocket,
    /// The socket file could not be created, checked, removed or given its mode.
    Io(io::Error),
}

impl std::fmt::Display for UdsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UdsError::InUse => f.write_str("another process listens on it"),
            UdsError::NotASocket => f.write_str("a file that is not a socket is in the way"),
            UdsError::Io(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for UdsError {
    fn from(e: io::Error) -> UdsError {
        UdsError::Io(e)
    }
}

/// The socket file percore created, to remove when the server ends: only if the path still
/// names that very file (a newer server may have replaced it since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device, inode and change time: an inode number alone is soon reused for a new file.
    id: (u64, u64, i64, i64),
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

impl SocketFile {
    /// Remember the file now at `path` (the socket just bound there).
    pub fn at(path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile { path: path.to_path_buf(), id: identity(&meta) })
    }

    /// Remove the file, if it is still ours.
    pub fn remove(&self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| identity(&m) == self.id);
        if ours {
            match std::fs::remove_file(&self.path) {
                Ok(()) => tracing::debug!(path = %self.path.display(), "removed the Unix socket file"),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the Unix socket file")
                }
            }
        }
    }
}

/// Bind and listen on a Unix socket at `path` with `backlog`, non-blocking. A socket file
/// already there is replaced only when nothing listens on it (a server that died without
/// removing it); a live socket or any other file is an error. `mode` (`--uds-permissions`)
/// is applied before listening, so no process can connect while the file still has the
/// umask's mode.
pub fn bind(path: &Path, backlog: u32, mode: Option<u32>) -> Result<(UnixListener, SocketFile), UdsError> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let addr = SockAddr::unix(path)?;
    match socket.bind(&addr) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            remove_stale(path)?;
            socket.bind(&addr)?;
            tracing::info!(path = %path.display(), "replaced a stale Unix socket file (nothing listened on it)");
        }
        Err(e) => return Err(e.into()),
    }
    let listening = (|| {
        if let Some(mode) = mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        // Taken after the mode change, which changes the file's change time.
        let file = SocketFile::at(path)?;
        socket.listen(backlog.min(i32::MAX as u32) as i32)?;
        socket.set_nonblocking(true)?;
        io::Result::Ok(file)
    })();
    match listening {
        Ok(file) => Ok((socket.into(), file)),
        Err(e) => {
            // Ours: bound a moment ago, never listening.
            let _ = std::fs::remove_file(path);
            Err(e.into())
        }
    }
}

/// Remove the socket file at `path` if nothing listens on it.
fn remove_stale(path: &Path) -> Result<(), UdsError> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(UdsError::NotASocket);
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(UdsError::InUse),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(std::fs::remove_file(path)?),
        Err(e) => Err(e.into()),
    }
}

/// Parse `--uds-permissions`: an octal mode such as `660` or `0o660`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid mode {s:?} (octal, such as 660)"))
}

/// The path a listening Unix socket is bound to (for inherited sockets and logs).
pub fn path_of(listener: &UnixListener) -> Option<PathBuf> {
    listener.local_addr().ok()?.as_pathname().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("percore-uds-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    #[test]
    fn replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let path = temp("stale");
        // A socket file nobody listens on (its listener closed without removing it).
        drop(UnixListener::bind(&path).unwrap());
        let (live, file) = bind(&path, 16, Some(0o600)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        assert!(matches!(bind(&path, 16, None), Err(UdsError::InUse)));
        drop(live);
        file.remove();
        assert!(!path.exists());

        std::fs::write(&path, "not a socket").unwrap();
        assert!(matches!(bind(&path, 16, None), Err(UdsError::NotASocket)));
        assert!(path.exists(), "a regular file is never removed");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn leaves_a_file_that_is_no_longer_its_own() {
        let path = temp("replaced");
        let (listener, file) = bind(&path, 16, None).unwrap();
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        // Change times tick with the kernel's coarse clock (a few ms).
        std::thread::sleep(std::time::Duration::from_millis(30));
        let (_newer, _) = bind(&path, 16, None).unwrap();
        file.remove();
        assert!(path.exists(), "the newer server's socket stays");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn modes_and_paths() {
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("999").is_err() && parse_mode("rw").is_err() && parse_mode("17777").is_err());
        assert_eq!(bind_path("unix:/run/p.sock"), Some(Path::new("/run/p.sock")));
        assert_eq!(bind_path("127.0.0.1:80"), None);
    }
}
