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
        .map_err(|e| ServerError::Resolve {
            host: host.to_string(),
            source: e,
        })?
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
