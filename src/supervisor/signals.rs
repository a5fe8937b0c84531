//! Process signals, turned into supervisor commands by the binary's main thread.
//!
//! The signals are blocked in every thread (the mask is set before any thread starts and
//! inherited), and the main thread takes them synchronously with sigtimedwait(2): no
//! handler runs in signal context, and no executor is ever interrupted by one.

use std::time::Duration;

/// The signals percore acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
    Quit,
    Hup,
    Usr1,
    Usr2,
}

const HANDLED: [(libc::c_int, Signal); 6] = [
    (libc::SIGTERM, Signal::Term),
    (libc::SIGINT, Signal::Int),
    (libc::SIGQUIT, Signal::Quit),
    (libc::SIGHUP, Signal::Hup),
    (libc::SIGUSR1, Signal::Usr1),
    (libc::SIGUSR2, Signal::Usr2),
];

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (sig, _) in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Block the handled signals in the calling thread and in every thread it starts later.
/// Call first thing in `main`.
pub fn block() {
    let set = set();
    // SAFETY: pthread_sigmask with a valid set; the old mask is not needed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait up to `timeout` for one of the handled signals.
pub fn wait(timeout: Duration) -> Option<Signal> {
    let set = set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait with a valid set and timeout; the siginfo is not needed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    HANDLED.iter().find(|(s, _)| *s == sig).map(|(_, name)| *name)
}
