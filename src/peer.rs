//! Who is on the other end of a connection: a TCP peer with its address, or a process on
//! this host that connected over a Unix domain socket.
//!
//! An enum rather than a made-up `SocketAddr` for Unix peers, so no code can mistake a local
//! process for a client at some address (trust, the access log, the PROXY protocol).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The peer of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A TCP peer (or the source a trusted PROXY protocol header named).
    Tcp(SocketAddr),
    /// A local process connected over a Unix domain socket. It has no address: clients of a
    /// listening Unix socket connect without binding a name of their own.
    Unix,
}

impl Peer {
    /// The TCP peer's address; `None` for a Unix-socket peer.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Tcp(addr) => Some(*addr),
            Peer::Unix => None,
        }
    }

    /// The TCP peer's IP address; `None` for a Unix-socket peer.
    pub fn ip(&self) -> Option<IpAddr> {
        self.socket_addr().map(|a| a.ip())
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Peer::Unix)
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::Tcp(addr)
    }
}

impl fmt::Display for Peer {
    /// `ADDR:PORT`, or `unix:` for a Unix-socket peer (as gunicorn logs one: the peer of a
    /// Unix socket has no name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix => f.write_str("unix:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Peer;

    #[test]
    fn shows_and_converts() {
        let tcp: Peer = "10.0.0.1:5000".parse::<std::net::SocketAddr>().unwrap().into();
        assert_eq!(tcp.to_string(), "10.0.0.1:5000");
        assert_eq!(tcp.ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(Peer::Unix.to_string(), "unix:");
        assert_eq!(Peer::Unix.socket_addr(), None);
        assert!(Peer::Unix.is_unix() && !tcp.is_unix());
    }
}
