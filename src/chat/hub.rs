//! The part of the chat room every executor shares: the list of executors' inboxes.
//!
//! The list changes only when an executor's room gets its first subscriber or goes away;
//! a room keeps its own copy and takes the lock only when the list's generation has moved,
//! so posting is lock-free.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use super::post::Post;
use super::room::Room;

/// How much the room holds for those who have not taken it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Posts an executor's inbox holds from the other executors before that executor counts
    /// as stalled (its subscribers are then dropped: they missed a post).
    pub inbox: usize,
    /// Posts one subscriber may have waiting before it counts as too slow and is dropped.
    pub subscriber: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { inbox: 4096, subscriber: 256 }
    }
}

/// One chat room, shared by every executor: create it once, before the server starts, and
/// give each executor its [`Room`] with [`Hub::room`] in the app factory.
#[derive(Clone, Default)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    limits: Limits,
    /// The inboxes of the executors whose rooms have subscribers (or had).
    members: Mutex<Vec<Arc<Inbox>>>,
    /// Bumped on every change of `members`.
    generation: AtomicU64,
}

impl Hub {
    /// A room with the default [`Limits`].
    pub fn new() -> Hub {
        Hub::default()
    }

    /// A room with `limits`.
    ///
    /// # Panics
    /// If a limit is zero.
    pub fn with_limits(limits: Limits) -> Hub {
        assert!(limits.inbox > 0 && limits.subscriber > 0, "chat limits must be at least 1: {limits:?}");
        Hub { shared: Arc::new(Shared { limits, ..Shared::default() }) }
    }

    /// The calling executor's side of the room.
    pub fn room(&self) -> Room {
        Room::new(self.clone())
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    pub(crate) fn join(&self, inbox: &Arc<Inbox>) {
        self.members().push(inbox.clone());
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn leave(&self, inbox: &Arc<Inbox>) {
        self.members().retain(|m| !Arc::ptr_eq(m, inbox));
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// The current generation of the member list, to compare with a room's copy.
    pub(crate) fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// The other members' inboxes and the generation they are of.
    pub(crate) fn others(&self, me: &Arc<Inbox>) -> (u64, Vec<Arc<Inbox>>) {
        let members = self.members();
        // Read under the lock: a join or leave bumps it while holding the lock.
        let generation = self.generation();
        (generation, members.iter().filter(|m| !Arc::ptr_eq(m, me)).cloned().collect())
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Inbox>>> {
        // A panic elsewhere while holding the lock leaves the list whole (push/retain).
        self.shared.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One executor's inbox: posts from the other executors, and the waker of the task that
/// takes them (the room's pump, on the receiving executor).
pub(crate) struct Inbox {
    posts: ArrayQueue<Arc<Post>>,
    bell: AtomicWaker,
    /// A post did not fit: the receiving executor's subscribers missed it.
    lagged: AtomicBool,
}

impl Inbox {
    pub(crate) fn new(capacity: usize) -> Inbox {
        Inbox { posts: ArrayQueue::new(capacity), bell: AtomicWaker::new(), lagged: AtomicBool::new(false) }
    }

    /// Called by another executor: queue `post` and wake the receiver (a full inbox marks
    /// it lagged; the sender never waits).
    pub(crate) fn deliver(&self, post: &Arc<Post>) {
        if self.posts.push(post.clone()).is_err() {
            self.lagged.store(true, Ordering::Release);
        }
        self.bell.wake();
    }

    /// Called by the receiver's pump: be woken by the next `deliver`. Register before
    /// taking, so a post that lands in between still wakes the pump.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.bell.register(waker);
    }

    pub(crate) fn take(&self) -> Option<Arc<Post>> {
        self.posts.pop()
    }

    /// Whether a post was lost since the last call.
    pub(crate) fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::AcqRel)
    }

    /// Wake the pump without a post (the room went away: the pump ends).
    pub(crate) fn ring(&self) {
        self.bell.wake();
    }
}
