//! Monotonic timestamps for a response's duration: two clock reads and a subtraction.
//!
//! `std::time::Instant` keeps seconds and nanoseconds apart, so each difference borrows
//! across them and checks the order (about 35 instructions on x86-64, once per response);
//! a [`Stamp`] is the same clock (`CLOCK_MONOTONIC`) as one count of nanoseconds, so the
//! difference is one instruction and the duration in microseconds a multiply and a shift.

use std::time::{Duration, Instant};

/// A point on `CLOCK_MONOTONIC`, in nanoseconds (good for 584 years of uptime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// Now.
    #[inline]
    pub fn now() -> Stamp {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the local struct; CLOCK_MONOTONIC always exists
        // on Linux, so it cannot fail (std's Instant::now reads the same clock and asserts
        // the same).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Stamp(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    /// The stamp `nanos` nanoseconds after the clock's start (see [`nanos`](Self::nanos)).
    #[inline]
    pub fn from_nanos(nanos: u64) -> Stamp {
        Stamp(nanos)
    }

    /// Nanoseconds since the clock's start: a stamp as one number, to keep it compactly.
    #[inline]
    pub fn nanos(self) -> u64 {
        self.0
    }

    /// Milliseconds since the clock's start (the boot, on Linux).
    #[inline]
    pub fn millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The time from `earlier` to `self` (zero if `earlier` is later).
    #[inline]
    pub fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }

    /// [`Stamp::since`] in whole microseconds.
    #[inline]
    pub fn micros_since(self, earlier: Stamp) -> u64 {
        self.nanos_since(earlier) / 1_000
    }

    /// The time since `self`.
    pub fn elapsed(self) -> Duration {
        Stamp::now().since(self)
    }

    /// `duration` after `self` (saturating, so "never" stays far in the future).
    #[inline]
    pub fn after(self, duration: Duration) -> Stamp {
        Stamp(self.0.saturating_add(duration.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// The same point as an `Instant`, for a runtime's timer (two clock reads: for the
    /// occasional reset of a timer, not for every wait).
    pub fn to_instant(self) -> Instant {
        let (instant, stamp) = (Instant::now(), Stamp::now());
        match self.0.checked_sub(stamp.0) {
            Some(ahead) => instant + Duration::from_nanos(ahead),
            None => instant.checked_sub(stamp.since(self)).unwrap_or(instant),
        }
    }

    #[inline]
    fn nanos_since(self, earlier: Stamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same clock as `Instant`: a stamp taken between two instants measures no more than
    /// they do, and differences come out in the right units, never negative.
    #[test]
    fn measures_what_instant_measures() {
        let a = Instant::now();
        let s = Stamp::now();
        std::thread::sleep(Duration::from_millis(20));
        let t = Stamp::now();
        let b = Instant::now();
        let stamped = t.since(s);
        assert!(stamped >= Duration::from_millis(20), "{stamped:?}");
        assert!(stamped <= b.duration_since(a), "{stamped:?} vs {:?}", b.duration_since(a));
        assert_eq!(t.micros_since(s), stamped.as_micros() as u64);
        assert_eq!(s.since(t), Duration::ZERO);
        assert!(s.elapsed() >= stamped);
    }

    /// `after` adds and saturates; `to_instant` lands on the same point of the clock.
    #[test]
    fn converts_to_deadlines() {
        let s = Stamp::now();
        assert_eq!(s.after(Duration::from_millis(3)).since(s), Duration::from_millis(3));
        assert_eq!(s.after(Duration::MAX), Stamp(u64::MAX));
        for offset in [Duration::ZERO, Duration::from_millis(50)] {
            let s = Stamp::now();
            let i = Instant::now(); // a moment after `s`
            let ahead = s.after(offset).to_instant();
            assert!(ahead <= i + offset, "{offset:?}");
            assert!(ahead + Duration::from_millis(1) >= i + offset, "{offset:?}");
        }
        // A point in the past comes out in the past.
        std::thread::sleep(Duration::from_millis(2));
        assert!(s.to_instant() + Duration::from_millis(1) < Instant::now());
    }
}
