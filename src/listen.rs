//! The listening sockets: one per executor, all bound to the same address with
//! SO_REUSEPORT, so the kernel spreads new connections across executors.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

use crate::server::ServerError;

/// Resolve `host:port` to the one address to listen on.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, ServerError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ServerError::Resolve { host: host.to_string(), source: e })?
        .next()
        .ok_or_else(|| ServerError::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        })
}

/// Resolve a `--bind` value: `HOST:PORT`, `[V6]:PORT`.
pub fn resolve_bind(bind: &str) -> Result<SocketAddr, ServerError> {
    let bad = |msg: &str| ServerError::Resolve {
        host: bind.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()),
    };
    let (host, port) = bind.rsplit_once(':').ok_or_else(|| bad("expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
    resolve(host, port)
}

/// Bind `count` SO_REUSEPORT listeners on `addr`. With port 0 the first socket picks the
/// port and the others join it. Returns the listeners and the address they share.
///
/// `v6_only` keeps an IPv6 wildcard from also taking IPv4 (so `[::]:8000` and
/// `0.0.0.0:8000` can both be bound).
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
    v6_only: bool,
) -> Result<(Vec<TcpListener>, SocketAddr), ServerError> {
    let bind_err = |source: io::Error| ServerError::Bind { addr, source };
    if addr.port() != 0 {
        // Joining a reuseport group succeeds silently when another process of the same user
        // already listens there with SO_REUSEPORT; a plain bind shows that the port is taken.
        probe_free(addr, v6_only).map_err(bind_err)?;
    }
    let mut shared = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = reuseport_listener(shared, backlog, v6_only).map_err(bind_err)?;
        shared = socket.local_addr().map_err(bind_err)?;
        listeners.push(socket);
    }
    Ok((listeners, shared))
}

/// One listening socket with SO_REUSEADDR and SO_REUSEPORT, non-blocking.
pub fn reuseport_listener(addr: SocketAddr, backlog: u32, v6_only: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && v6_only {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

fn probe_free(addr: SocketAddr, v6_only: bool) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && v6_only {
        socket.set_only_v6(true)?;
    }
    // SO_REUSEADDR so that connections in TIME_WAIT from a previous run do not count.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Make a listening socket ignore new connection attempts (SYNs) while handshakes already
/// under way still complete. Used at shutdown before the last accepts: a client whose SYN
/// is ignored retries, finds the port closed, and sees a refused connection (never
/// accepted) instead of a connection that completes and is then reset.
///
/// A classic BPF socket filter sees TCP segments from the TCP header on; byte 13 holds the
/// flags, and SYN is bit 0x02.
pub fn ignore_new_connections(listener: &TcpListener) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let code = [
        // ldb [13]
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 13 },
        // jset #0x02: SYN goes to "drop", anything else skips it
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: 0x02,
        },
        // ret #0: drop
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 },
        // ret #-1: keep the whole segment
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: u32::MAX },
    ];
    let prog = libc::sock_fprog { len: code.len() as u16, filter: code.as_ptr() as *mut libc::sock_filter };
    // SAFETY: setsockopt with a valid program that outlives the call (the kernel copies it).
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The environment variable through which a percore hands its listening sockets to the new
/// executable on `SIGUSR2` (they are descriptors 3, 4, ...).
pub const UPGRADE_FDS_ENV: &str = "PERCORE_UPGRADE_FDS";
/// `1` when the sockets handed over on upgrade are percore's own (it bound them), `0` when
/// they belong to the service manager (socket activation).
pub const UPGRADE_OWNED_ENV: &str = "PERCORE_UPGRADE_OWNED";

/// Sockets passed to this process.
pub struct Inherited {
    pub listeners: Vec<TcpListener>,
    /// Unix domain sockets (`ListenStream=/run/percore.sock`, or `--bind unix:` upgraded).
    pub unix: Vec<std::os::unix::net::UnixListener>,
    /// `LISTEN_FDNAMES`, if given.
    pub names: Vec<String>,
    /// Whether the sockets are percore's to close at shutdown. Sockets from systemd socket
    /// activation are not: systemd keeps listening on them for the next start, so percore
    /// must neither filter nor shut them down, only let go of its descriptors.
    pub owned: bool,
}

/// Listening sockets this process was given instead of binding its own: by systemd socket
/// activation (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`; descriptors from 3 on), or by
/// the previous percore during a binary upgrade. `None` when there are none.
pub fn inherited() -> io::Result<Option<Inherited>> {
    use std::os::fd::FromRawFd;
    let mut owned = false;
    let count = if let Ok(n) = std::env::var(UPGRADE_FDS_ENV) {
        std::env::remove_var(UPGRADE_FDS_ENV);
        owned = std::env::var(UPGRADE_OWNED_ENV).map_or(true, |v| v.trim() != "0");
        std::env::remove_var(UPGRADE_OWNED_ENV);
        n
    } else {
        let for_us = std::env::var("LISTEN_PID").is_ok_and(|p| p.trim() == std::process::id().to_string());
        if !for_us {
            return Ok(None);
        }
        let n = std::env::var("LISTEN_FDS").unwrap_or_default();
        // As sd_listen_fds(3) does: the variables are for this process only.
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        n
    };
    let count: i32 =
        count.trim().parse().ok().filter(|n| (1..=1024).contains(n)).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("bad socket count {count:?}"))
        })?;
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    std::env::remove_var("LISTEN_FDNAMES");
    let (mut listeners, mut unix) = (Vec::new(), Vec::new());
    for fd in 3..3 + count {
        let domain = check_listening(fd)?;
        // Not for our own children (an upgrade passes them on explicitly).
        // SAFETY: fcntl on a descriptor handed to this process.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        if domain == libc::AF_UNIX {
            // SAFETY: checked to be a listening Unix stream socket; the listener owns it now.
            let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
            listener.set_nonblocking(true)?;
            unix.push(listener);
        } else {
            // SAFETY: checked to be a listening TCP socket; the listener owns it now.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            listener.set_nonblocking(true)?;
            listeners.push(listener);
        }
    }
    Ok(Some(Inherited { listeners, unix, names, owned }))
}

/// Check that `fd` is a listening stream socket percore can serve on; returns its domain
/// (`AF_INET`, `AF_INET6` or `AF_UNIX`).
fn check_listening(fd: i32) -> io::Result<libc::c_int> {
    let get = |opt: libc::c_int| -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a local int.
        let rc = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut value as *mut libc::c_int).cast(), &mut len)
        };
        if rc == 0 {
            Ok(value)
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("inherited fd {fd} {what}"));
    let domain = get(libc::SO_DOMAIN).map_err(|e| bad(&format!("is not a socket ({e})")))?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 && domain != libc::AF_UNIX {
        return Err(bad("is not an IPv4, IPv6 or Unix socket"));
    }
    if get(libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(bad("is not a stream socket"));
    }
    if get(libc::SO_ACCEPTCONN)? != 1 {
        return Err(bad("is not listening"));
    }
    Ok(domain)
}

/// Whether a socket has SO_REUSEPORT (so it may be one of a group percore can steer).
pub fn is_reuseport(listener: &TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a local int.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value == 1
}

/// Whether two descriptors are the same socket (dup(2)s of each other).
pub fn same_socket(a: &TcpListener, b: &TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let inode = |l: &TcpListener| {
        // SAFETY: fstat into a zeroed local struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(l.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    };
    matches!((inode(a), inode(b)), (Some(x), Some(y)) if x == y)
}
