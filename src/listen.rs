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

/// Bind `count` SO_REUSEPORT listeners on `addr`. With port 0 the first socket picks the
/// port and the others join it. Returns the listeners and the address they share.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> Result<(Vec<TcpListener>, SocketAddr), ServerError> {
    let bind_err = |source: io::Error| ServerError::Bind { addr, source };
    if addr.port() != 0 {
        // Joining a reuseport group succeeds silently when another process of the same user
        // already listens there with SO_REUSEPORT; a plain bind shows that the port is taken.
        probe_free(addr).map_err(bind_err)?;
    }
    let mut shared = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = reuseport_listener(shared, backlog).map_err(bind_err)?;
        shared = socket.local_addr().map_err(bind_err)?;
        listeners.push(socket);
    }
    Ok((listeners, shared))
}

fn reuseport_listener(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

fn probe_free(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
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
