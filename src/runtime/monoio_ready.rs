//! Readiness of quiet sockets on monoio through one epoll instance per executor thread.
//!
//! monoio waits for readiness with an io_uring `POLL_ADD` per socket: a 104-byte future and a
//! 48-byte slot in the driver's table of operations, held by every parked WebSocket for as
//! long as it is quiet. Here a waiting socket is registered (one-shot) with its executor's
//! epoll instance, whose registrations live in the kernel, and holds a slot index; the
//! executor watches the epoll descriptor itself with one `POLL_ADD`, in a task of its own,
//! and wakes the sockets it reports. A socket goes quiet after 250 ms without bytes, so the
//! two `epoll_ctl` calls of a wait are rare beside its reads.
//!
//! The poller lives as long as some socket waits on it: its waits hold it, its task only a
//! weak reference, and the last wait to go ends the task (closing both descriptors). A task
//! left waiting on the epoll descriptor would outlive its executor (a pending task is never
//! dropped when its runtime goes away): two descriptors and the waiter lists lost per
//! replaced executor, and a stale poller for the next runtime on the same thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

/// Events read from the epoll instance at once.
const BATCH: usize = 64;

thread_local! {
    /// This thread's poller, while its task runs (the task holds it).
    static POLLER: RefCell<Weak<Poller>> = const { RefCell::new(Weak::new()) };
}

/// One executor's epoll instance and its waiters.
struct Poller {
    epoll: OwnedFd,
    /// Each waiter's waker, by slot. `None` means only "free": the slot list shrinks by
    /// dropping the `None`s at its end, so a waiter keeps its waker after it is woken.
    waiters: RefCell<Vec<Option<Waker>>>,
    /// One bit per slot: its socket was reported readable (or hung up, or failed).
    fired: RefCell<Vec<u64>>,
    free: RefCell<Vec<u32>>,
    /// Whether its task still waits on the epoll descriptor (if that wait fails, every
    /// waiter is told "maybe readable" from then on).
    alive: Cell<bool>,
    /// The task's waker, to end it when the poller goes.
    task: RefCell<Option<Waker>>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        // The task finds its weak reference dead and ends, closing the watched copy.
        if let Some(task) = self.task.get_mut().take() {
            task.wake();
        }
    }
}

/// Wait until the socket `fd` is readable, or has hung up or failed: as monoio's `readable`,
/// from this executor's epoll instance. It completes at once (the caller's read then finds
/// out) when no epoll instance can be made or the socket cannot be registered.
pub fn readable(fd: RawFd) -> Ready {
    Ready { poller: Poller::get(), fd, slot: UNREGISTERED }
}

/// Future returned by [`readable`] (16 bytes).
pub struct Ready {
    poller: Option<Rc<Poller>>,
    fd: RawFd,
    /// Its slot among the poller's waiters once registered; `UNREGISTERED` before.
    slot: u32,
}

const UNREGISTERED: u32 = u32::MAX;

impl Future for Ready {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(poller) = this.poller.as_ref().filter(|p| p.alive.get()) else {
            return Poll::Ready(Ok(()));
        };
        match this.slot {
            UNREGISTERED => {
                let i = poller.take_slot(cx.waker());
                let flags = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT;
                let mut event = libc::epoll_event { events: flags as u32, u64: u64::from(i) };
                // SAFETY: epoll_ctl with a live epoll descriptor and an event struct on the stack.
                let added = unsafe {
                    libc::epoll_ctl(poller.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, this.fd, &mut event)
                };
                if added < 0 {
                    poller.give_back(i);
                    return Poll::Ready(Ok(()));
                }
                this.slot = i;
                Poll::Pending
            }
            i => {
                if poller.has_fired(i) {
                    return Poll::Ready(Ok(()));
                }
                let mut waiters = poller.waiters.borrow_mut();
                let waker = &mut waiters[i as usize];
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        match (&self.poller, self.slot) {
            (Some(_), UNREGISTERED) | (None, _) => {}
            (Some(poller), i) => {
                // SAFETY: as in `poll`; the socket is still open (its read half is borrowed
                // by this wait's owner). A one-shot registration that fired stays until
                // removed.
                unsafe {
                    libc::epoll_ctl(
                        poller.epoll.as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        self.fd,
                        std::ptr::null_mut(),
                    );
                }
                poller.give_back(i);
            }
        }
    }
}

impl Poller {
    /// This thread's poller, made (with its task) when none is alive; `None` if epoll fails.
    fn get() -> Option<Rc<Poller>> {
        if let Some(poller) = POLLER.with(|p| p.borrow().upgrade()) {
            return Some(poller);
        }
        let poller = Poller::start()
            .map_err(
                |e| tracing::debug!(error = %e, "no epoll instance for quiet sockets; they read at once"),
            )
            .ok()?;
        POLLER.with(|p| *p.borrow_mut() = Rc::downgrade(&poller));
        Some(poller)
    }

    fn start() -> io::Result<Rc<Poller>> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just made, owned here alone.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // monoio waits on the epoll descriptor as on a socket's: a copy of it, which its
        // stream type closes when dropped.
        let watched = std::os::unix::net::UnixStream::from(epoll.try_clone()?);
        let watched = monoio::net::UnixStream::from_std(watched)?;
        let poller = Rc::new(Poller {
            epoll,
            waiters: RefCell::default(),
            fired: RefCell::default(),
            free: RefCell::default(),
            alive: Cell::new(true),
            task: RefCell::default(),
        });
        monoio::spawn(run(Rc::downgrade(&poller), watched));
        Ok(poller)
    }

    fn take_slot(&self, waker: &Waker) -> u32 {
        let mut waiters = self.waiters.borrow_mut();
        let i = crate::idle_clock::take_slot(&mut waiters, &mut self.free.borrow_mut(), waker.clone());
        debug_assert!(i < UNREGISTERED);
        let mut fired = self.fired.borrow_mut();
        if fired.len() * 64 < waiters.len() {
            fired.push(0);
        }
        drop(fired);
        self.set_fired(i, false);
        i
    }

    fn give_back(&self, i: u32) {
        self.set_fired(i, false);
        let mut waiters = self.waiters.borrow_mut();
        crate::idle_clock::free_slot(&mut waiters, &mut self.free.borrow_mut(), i);
        // The bits of slots let go at the end go with them.
        self.fired.borrow_mut().truncate(waiters.len().div_ceil(64));
    }

    fn has_fired(&self, i: u32) -> bool {
        self.fired.borrow()[i as usize / 64] & (1 << (i % 64)) != 0
    }

    fn set_fired(&self, i: u32, fired: bool) {
        let word = &mut self.fired.borrow_mut()[i as usize / 64];
        match fired {
            true => *word |= 1 << (i % 64),
            false => *word &= !(1 << (i % 64)),
        }
    }

    /// Mark the waiter in slot `i` readable and wake it.
    fn fire(&self, i: u64) {
        let Ok(i) = u32::try_from(i) else { return };
        let waker = match self.waiters.borrow().get(i as usize) {
            Some(Some(waker)) => {
                self.set_fired(i, true);
                waker.clone()
            }
            _ => return,
        };
        // Woken outside the borrow: a waker may run code that waits again.
        waker.wake();
    }

    /// Wake every waiter (they will find the poller gone and read at once).
    fn wake_all(&self) {
        let wakers: Vec<Waker> = self.waiters.borrow().iter().flatten().cloned().collect();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The poller's task: wait until the epoll descriptor is readable, read what it reports, wake
/// those waiters, again, until the poller is gone. (Reported in the order the kernel queued
/// them; one-shot, so a socket is reported once per registration.) It holds the poller only
/// while it reads and wakes, so the last wait to go drops it.
async fn run(poller: Weak<Poller>, watched: monoio::net::UnixStream) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    loop {
        // The poller, back from the wait, held while its waiters are woken; `None`: it is gone.
        let waited = {
            let mut readable = std::pin::pin!(watched.readable(false));
            std::future::poll_fn(|cx| {
                let Some(poller) = poller.upgrade() else {
                    return Poll::Ready(None);
                };
                {
                    let mut task = poller.task.borrow_mut();
                    if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *task = Some(cx.waker().clone());
                    }
                }
                readable.as_mut().poll(cx).map(|result| Some((poller, result)))
            })
            .await
        };
        let Some((poller, result)) = waited else {
            return; // no socket waits any more
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot wait on the epoll instance for quiet sockets; they read at once");
            poller.alive.set(false);
            poller.wake_all();
            return;
        }
        loop {
            // SAFETY: epoll_wait into a buffer of BATCH events, without blocking.
            let n =
                unsafe { libc::epoll_wait(poller.epoll.as_raw_fd(), events.as_mut_ptr(), BATCH as i32, 0) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let n = usize::try_from(n).unwrap_or(0);
            for event in &events[..n] {
                poller.fire(event.u64);
            }
            if n < BATCH {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::monoio::Monoio;
    use crate::runtime::Runtime;
    use std::io::Write;
    use std::time::Duration;

    /// `fut`, or an error after 5 s.
    fn within<F: Future>(fut: F) -> monoio::time::Timeout<F> {
        monoio::time::timeout(Duration::from_secs(5), fut)
    }

    /// Poll `fut` once.
    async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
    }

    #[test]
    fn a_wait_ends_when_its_socket_turns_readable_or_hangs_up_and_lets_go_of_its_slot() {
        Monoio::block_on(|_| async {
            let (mut peer, socket) = std::os::unix::net::UnixStream::pair().unwrap();
            let (_other_peer, other) = std::os::unix::net::UnixStream::pair().unwrap();
            // A wait on another socket keeps the poller (and its slot 0) for the whole test.
            let mut keeper = std::pin::pin!(readable(other.as_raw_fd()));
            assert!(poll_once(keeper.as_mut()).await.is_pending());
            let poller = POLLER.with(|p| p.borrow().upgrade()).expect("made by the first wait");
            let fd = socket.as_raw_fd();
            {
                let mut wait = std::pin::pin!(readable(fd));
                assert!(poll_once(wait.as_mut()).await.is_pending(), "nothing to read yet");
                assert_eq!(poller.waiters.borrow().len(), 2);
            }
            assert_eq!(poller.waiters.borrow().len(), 1, "a dropped wait's slot is let go");
            {
                let mut wait = std::pin::pin!(readable(fd));
                assert!(poll_once(wait.as_mut()).await.is_pending());
                peer.write_all(b"x").unwrap();
                within(wait).await.expect("woken within 5 s").unwrap();
            }
            // Readable still (the byte is unread): at once, through a new registration.
            within(readable(fd)).await.expect("at once").unwrap();
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut &socket, &mut byte).unwrap();
            {
                let mut wait = std::pin::pin!(readable(fd));
                assert!(poll_once(wait.as_mut()).await.is_pending(), "read: nothing to read again");
                drop(peer);
                within(wait).await.expect("a hang-up wakes it within 5 s").unwrap();
            }
            assert_eq!(poller.waiters.borrow().len(), 1, "only the keeper's slot is left");
            assert!(poller.free.borrow().is_empty());
        })
        .unwrap();
    }

    /// Slots freed in the middle are used again; the lists shrink when the last ones go.
    #[test]
    fn slots_are_reused_and_the_lists_shrink() {
        Monoio::block_on(|_| async {
            let pairs: Vec<_> = (0..70).map(|_| std::os::unix::net::UnixStream::pair().unwrap()).collect();
            let mut waits: Vec<_> = pairs.iter().map(|(_, s)| Box::pin(readable(s.as_raw_fd()))).collect();
            for wait in &mut waits {
                assert!(poll_once(wait.as_mut()).await.is_pending());
            }
            let poller = POLLER.with(|p| p.borrow().upgrade()).unwrap();
            assert_eq!((poller.waiters.borrow().len(), poller.fired.borrow().len()), (70, 2));
            drop(waits.remove(3));
            assert_eq!(poller.free.borrow().as_slice(), &[3]);
            let mut again = Box::pin(readable(pairs[3].1.as_raw_fd()));
            assert!(poll_once(again.as_mut()).await.is_pending());
            assert_eq!(again.slot, 3, "the free slot is taken first");
            drop(again);
            while waits.len() > 1 {
                drop(waits.pop());
            }
            assert_eq!(poller.waiters.borrow().len(), 1, "only slot 0 is left");
            assert_eq!((poller.free.borrow().len(), poller.fired.borrow().len()), (0, 1));
        })
        .unwrap();
    }

    /// A waiter that was woken but not yet polled keeps its slot when a later slot at the end
    /// of the list is let go (the list shrinks over free slots only). It used to lose it:
    /// its next poll indexed past the end and the executor panicked (found under a steady
    /// WebSocket load, where quiet and busy sockets come and go).
    #[test]
    fn a_woken_waiter_keeps_its_slot_when_the_last_slot_goes() {
        Monoio::block_on(|_| async {
            let (mut peer, socket) = std::os::unix::net::UnixStream::pair().unwrap();
            let (_other_peer, other) = std::os::unix::net::UnixStream::pair().unwrap();
            let mut woken = std::pin::pin!(readable(socket.as_raw_fd()));
            assert!(poll_once(woken.as_mut()).await.is_pending());
            let mut last = Box::pin(readable(other.as_raw_fd()));
            assert!(poll_once(last.as_mut()).await.is_pending());
            let poller = POLLER.with(|p| p.borrow().upgrade()).unwrap();
            peer.write_all(b"x").unwrap();
            // The poller's task runs and wakes slot 0; its owner is not polled yet.
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert!(poller.has_fired(0));
            drop(last);
            assert_eq!(poller.waiters.borrow().len(), 1, "slot 0 is still held");
            assert!(poll_once(woken.as_mut()).await.is_ready());
            // And a new wait gets a slot of its own, not the woken one's.
            let mut next = Box::pin(readable(other.as_raw_fd()));
            assert!(poll_once(next.as_mut()).await.is_pending());
            assert_eq!(next.slot, 1);
        })
        .unwrap();
    }

    /// Once no socket waits, the poller and its task are gone, so nothing of it outlives
    /// the runtime; the next runtime on the same thread makes its own, which works.
    #[test]
    fn the_poller_goes_with_its_last_wait_and_a_later_runtime_gets_a_new_one() {
        for round in 0..2 {
            Monoio::block_on(|_| async move {
                let (mut peer, socket) = std::os::unix::net::UnixStream::pair().unwrap();
                let mut wait = std::pin::pin!(readable(socket.as_raw_fd()));
                assert!(poll_once(wait.as_mut()).await.is_pending());
                peer.write_all(b"x").unwrap();
                within(wait).await.unwrap_or_else(|_| panic!("round {round}: woken within 5 s")).unwrap();
                // The task runs once more and ends with the poller.
                monoio::time::sleep(Duration::from_millis(20)).await;
            })
            .unwrap();
            assert_eq!(POLLER.with(|p| p.borrow().strong_count()), 0, "round {round}: the poller is gone");
        }
    }
}
