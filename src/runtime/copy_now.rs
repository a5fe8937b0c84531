//! Large reads and writes done at once with a plain non-blocking syscall, before falling back
//! to the ring: for the completion-based runtimes.
//!
//! A ring batches its operations: the reads and writes every task queued during one turn of
//! the executor run together when it next enters the kernel. That saves system calls for small
//! messages, but a large one pays twice in cache misses: a write copies out of a buffer that
//! was filled (and left the CPU's caches) while the other tasks ran, and a read fills buffers
//! that are cold again by the time their tasks decode them. With 16 KiB WebSocket messages this
//! made monoio spend about 3× tokio's kernel time per message copying out of the write buffer,
//! and 2.6× its time unmasking. A readiness-based runtime copies while the data is hot; so do
//! these: a large write is first tried with `send(MSG_DONTWAIT)` right away, and a large read
//! with `recv(MSG_DONTWAIT)` into the room the caller just made; for what the socket cannot
//! take or has not got yet, the task waits on the ring for readiness (a `POLL_ADD`) and then
//! copies at once again, as a readiness-based runtime does. (A read or write left to the ring
//! instead was copied by the kernel while the other tasks' completions were gathered, into
//! or out of a buffer that was cold again when its task ran.) Small ones stay on the ring.

use std::io;
use std::os::fd::RawFd;

use bytes::{Bytes, BytesMut};

/// Writes at least this large are tried at once.
pub const SEND_NOW_MIN: usize = 16 * 1024;
/// Reads with at least this much room are tried at once. Larger than the HTTP driver's
/// largest head read (16 KiB), so waiting for a request's head never costs an extra syscall;
/// a WebSocket streaming large messages grows its reads past it.
pub const RECV_NOW_MIN: usize = 32 * 1024;

/// Large operations in a row that one socket side may do at once; the next goes through the
/// ring. monoio runs its timers (the executor's heartbeat among them) only when no task is
/// ready; a task whose every read and write completes at once never waits, so a fast peer
/// could keep it ready for ever. Going through the ring now and then makes it wait.
const IN_A_ROW: u8 = 16;

/// Counts one socket side's large operations done at once since it last used the ring.
#[derive(Debug, Default)]
pub struct Streak(u8);

impl Streak {
    /// Whether the next operation may be tried at once (counted if so).
    pub fn allow(&mut self) -> bool {
        if self.0 >= IN_A_ROW {
            self.0 = 0;
            return false;
        }
        self.0 += 1;
        true
    }

    /// The operation went (partly) through the ring after all.
    pub fn used_ring(&mut self) {
        self.0 = 0;
    }
}

/// Send what the socket takes of `buf` now (for buffers of at least [`SEND_NOW_MIN`]).
/// `Ok(0)` when it takes nothing (it is full): the caller waits until it has room.
pub fn send_now(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: send(2) reads `buf.len()` initialised bytes of a live slice.
    sent(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
}

/// A non-blocking send's return: the bytes taken, 0 when the socket is full.
fn sent(n: isize) -> io::Result<usize> {
    if n >= 0 {
        return Ok(n as usize);
    }
    match io::Error::last_os_error() {
        e if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(0),
        e => Err(e),
    }
}

/// The most parts one `send_parts_now` passes to the kernel; the rest go in the next call.
const MAX_PARTS: usize = 64;

/// Send what the socket takes now of `parts` (in order, the first `skip` bytes already
/// sent), where they are: one `sendmsg` with a vector of them. `Ok(0)` when it takes
/// nothing (it is full): the caller waits until it has room.
pub fn send_parts_now(fd: RawFd, parts: &[Bytes], skip: usize) -> io::Result<usize> {
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_PARTS];
    let mut count = 0;
    for (slot, rest) in iov.iter_mut().zip(crate::io::unsent(parts, skip)) {
        *slot = libc::iovec { iov_base: rest.as_ptr() as *mut libc::c_void, iov_len: rest.len() };
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: a zeroed msghdr is valid (no address, no control data); its vector points into
    // `parts`, which outlive the call, and sendmsg(2) only reads them.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = count as _;
    sent(unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
}

/// Read what the socket has into the spare room of `buf` (for rooms of at least
/// [`RECV_NOW_MIN`]). `None` when nothing is there yet: the caller waits until there is.
/// `Some(Ok(0))` is the end of the stream.
pub fn recv_now(fd: RawFd, buf: &mut BytesMut) -> Option<io::Result<usize>> {
    let room = buf.capacity() - buf.len();
    let spare = buf.spare_capacity_mut();
    // SAFETY: recv(2) writes at most `room` bytes into the spare capacity, which is allocated
    // and owned by `buf`.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) };
    if n >= 0 {
        let n = n as usize;
        // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        return Some(Ok(n));
    }
    match io::Error::last_os_error() {
        e if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => None,
        e => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_streak_of_operations_at_once_is_broken_by_one_through_the_ring() {
        let mut streak = Streak::default();
        let n = IN_A_ROW as usize;
        let allowed: Vec<bool> = (0..2 * (n + 1)).map(|_| streak.allow()).collect();
        let once: Vec<bool> = (0..=n).map(|i| i < n).collect();
        assert_eq!(allowed, [once.clone(), once].concat(), "{n} at once, then one through the ring");
        streak.allow();
        streak.used_ring();
        assert!((0..IN_A_ROW).all(|_| streak.allow()));
        assert!(!streak.allow());
    }

    #[test]
    fn large_writes_go_out_at_once_and_large_reads_take_what_is_there() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let data: Vec<u8> = (0..SEND_NOW_MIN + 5).map(|i| i as u8).collect();
        let sent = send_now(a.as_raw_fd(), &data).unwrap();
        assert!(sent > 0, "an empty socket buffer takes part of a large write");
        let mut got = vec![0; sent];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, data[..sent]);

        // Nothing there yet: the caller waits for readiness.
        let mut buf = BytesMut::with_capacity(RECV_NOW_MIN);
        buf.extend_from_slice(b"kept");
        assert!(recv_now(b.as_raw_fd(), &mut buf).is_none());
        a.try_clone().unwrap().write_all(b"hello").unwrap();
        buf.reserve(RECV_NOW_MIN);
        assert_eq!(recv_now(b.as_raw_fd(), &mut buf).unwrap().unwrap(), 5);
        assert_eq!(&buf[..], b"kepthello");
        drop(a);
        assert_eq!(recv_now(b.as_raw_fd(), &mut buf).unwrap().unwrap(), 0, "end of stream");
    }

    #[test]
    fn parts_go_out_in_order_from_where_they_are_and_resume_after_what_was_sent() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let parts: Vec<Bytes> = (0..MAX_PARTS as u8 + 3).map(|i| Bytes::from(vec![i; 3])).collect();
        let all: Vec<u8> = parts.concat();
        let mut sent = 0;
        while sent < all.len() {
            // A skip in the middle of a part, and more parts than one call passes.
            let n = send_parts_now(a.as_raw_fd(), &parts, sent).unwrap();
            assert!(n > 0);
            sent += n;
        }
        assert_eq!(send_parts_now(a.as_raw_fd(), &parts, sent).unwrap(), 0, "nothing left");
        let mut got = vec![0; all.len()];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, all);
        // Resuming in the middle of a part.
        assert_eq!(send_parts_now(a.as_raw_fd(), &parts[..2], 4).unwrap(), 2);
        let mut rest = [0; 2];
        b.read_exact(&mut rest).unwrap();
        assert_eq!(rest, [1, 1]);
    }
}
