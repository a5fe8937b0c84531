//! Steering new connections away from stalled executors.
//!
//! All slot sockets form one SO_REUSEPORT group; the kernel picks one per incoming
//! connection. A classic BPF program attached to the group (SO_ATTACH_REUSEPORT_CBPF)
//! returns the index of the socket to use, in the order the sockets joined the group (the
//! slot order: they are bound and listen in turn, and none closes while the server runs).
//! While some executor is stalled, the program picks at random among the healthy slots;
//! when all are healthy it is detached and the kernel's own hashing applies again.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

/// `SKF_AD_OFF + SKF_AD_RANDOM`: the ancillary load that yields a random u32.
const LOAD_RANDOM: u32 = (-0x1000i32) as u32 + 56;

/// Steer the group that `any` belongs to onto the socket indices in `healthy`; with every
/// one of `total` healthy (or none), go back to the kernel's default.
pub fn steer(any: &TcpListener, healthy: &[usize], total: usize) -> io::Result<()> {
    if healthy.len() == total || healthy.is_empty() {
        return detach(any);
    }
    let prog = program(healthy);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    setsockopt(
        any,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        (&fprog as *const libc::sock_fprog).cast(),
        std::mem::size_of::<libc::sock_fprog>(),
    )
}

fn detach(any: &TcpListener) -> io::Result<()> {
    let zero: libc::c_int = 0;
    match setsockopt(
        any,
        libc::SO_DETACH_REUSEPORT_BPF,
        (&zero as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>(),
    ) {
        // Nothing attached: already the default.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// `A = random % n; return healthy[A]` as a jump table.
fn program(healthy: &[usize]) -> Vec<libc::sock_filter> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let mut prog = vec![
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, LOAD_RANDOM),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, 0, 0, healthy.len() as u32),
    ];
    for (i, &slot) in healthy.iter().enumerate() {
        // if A == i: return slot (the next instruction), else skip it.
        prog.push(op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, i as u32));
        prog.push(op(libc::BPF_RET | libc::BPF_K, 0, 0, slot as u32));
    }
    prog.push(op(libc::BPF_RET | libc::BPF_K, 0, 0, healthy[0] as u32));
    prog
}

fn setsockopt(
    sock: &TcpListener,
    opt: libc::c_int,
    value: *const libc::c_void,
    len: usize,
) -> io::Result<()> {
    // SAFETY: `value` points to `len` readable bytes for the duration of the call.
    let rc =
        unsafe { libc::setsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, opt, value, len as libc::socklen_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    /// Steering to one socket of a group sends every new connection there.
    #[test]
    fn steers_the_group() {
        let addr = "127.0.0.1:0".parse().unwrap();
        let (listeners, addr) = crate::listen::bind_group(addr, 3, 128, false).unwrap();
        steer(&listeners[0], &[2], 3).unwrap();
        let clients: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let accepted = |l: &TcpListener| std::iter::from_fn(|| l.accept().ok()).count();
        assert_eq!(accepted(&listeners[0]), 0);
        assert_eq!(accepted(&listeners[1]), 0);
        assert_eq!(accepted(&listeners[2]), 20);
        steer(&listeners[0], &[0, 1, 2], 3).unwrap();
        let more: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let spread = [accepted(&listeners[0]), accepted(&listeners[1]), accepted(&listeners[2])];
        assert_eq!(spread.iter().sum::<usize>(), 30);
        drop((clients, more));
    }
}
