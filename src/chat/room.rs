//! One executor's side of the chat room: its subscribers, its inbox, and the pump that hands
//! posts from the other executors to its subscribers. Everything here lives on the
//! executor's thread (`Rc`, `RefCell`); only the inboxes cross threads.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;

use super::hub::{Hub, Inbox};
use super::post::Post;

/// Posts the pump hands out per turn before it lets the executor's other tasks run.
const PUMP_BATCH: usize = 64;

/// The calling executor's side of a [`Hub`]. Clones share it; make one per executor (in the
/// app factory) and clone it into the handlers.
#[derive(Clone)]
pub struct Room {
    state: Rc<State>,
}

struct State {
    hub: Hub,
    inbox: Arc<Inbox>,
    /// Whether `inbox` is in the hub's member list (from the first subscriber on).
    joined: Cell<bool>,
    /// The other members' inboxes, as of `peers_generation`.
    peers: RefCell<Vec<Arc<Inbox>>>,
    peers_generation: Cell<u64>,
    subscribers: RefCell<HashMap<u64, Slot>>,
    next_id: Cell<u64>,
}

/// One subscriber's queue.
#[derive(Default)]
struct Slot {
    posts: VecDeque<Arc<Post>>,
    waker: Option<Waker>,
    /// It fell behind (or its executor did) and gets nothing more.
    dropped: bool,
}

impl Room {
    pub(crate) fn new(hub: Hub) -> Room {
        let inbox = Arc::new(Inbox::new(hub.limits().inbox));
        Room {
            state: Rc::new(State {
                hub,
                inbox,
                joined: Cell::new(false),
                peers: RefCell::new(Vec::new()),
                // The hub starts at 0: `u64::MAX` makes the first post read the list.
                peers_generation: Cell::new(u64::MAX),
                subscribers: RefCell::new(HashMap::new()),
                next_id: Cell::new(0),
            }),
        }
    }

    /// Start receiving every post from now on, from every executor.
    pub fn subscribe(&self) -> Subscription {
        self.join();
        let id = self.state.next_id.get();
        self.state.next_id.set(id + 1);
        self.state.subscribers.borrow_mut().insert(id, Slot::default());
        Subscription { room: self.clone(), id }
    }

    /// Post `text` to every subscriber on every executor, this one included. Never waits:
    /// subscribers and executors that cannot take it are dropped instead.
    pub fn publish(&self, text: &str) -> Arc<Post> {
        let post = Arc::new(Post::new(text));
        self.fan_out(&post);
        let generation = self.state.hub.generation();
        if generation != self.state.peers_generation.get() {
            let (generation, peers) = self.state.hub.others(&self.state.inbox);
            *self.state.peers.borrow_mut() = peers;
            self.state.peers_generation.set(generation);
        }
        for peer in self.state.peers.borrow().iter() {
            peer.deliver(&post);
        }
        post
    }

    /// Subscribers on this executor.
    pub fn subscribers(&self) -> usize {
        self.state.subscribers.borrow().len()
    }

    /// Join the hub and start the pump, once.
    fn join(&self) {
        if self.state.joined.replace(true) {
            return;
        }
        self.state.hub.join(&self.state.inbox);
        if let Err(e) = crate::task::spawn_local(pump(Rc::downgrade(&self.state))) {
            tracing::warn!(error = %e, "chat room: no pump; posts from other executors will not arrive here");
        }
    }

    /// Hand `post` to every local subscriber; one whose queue is full is dropped.
    fn fan_out(&self, post: &Arc<Post>) {
        let limit = self.state.hub.limits().subscriber;
        for slot in self.state.subscribers.borrow_mut().values_mut() {
            if slot.dropped {
                continue;
            }
            if slot.posts.len() >= limit {
                slot.dropped = true;
                slot.posts.clear();
            } else {
                slot.posts.push_back(post.clone());
            }
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// Drop every local subscriber: this executor fell behind and they missed a post.
    fn drop_all(&self) {
        for slot in self.state.subscribers.borrow_mut().values_mut() {
            slot.dropped = true;
            slot.posts.clear();
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// One turn of the pump: take what the inbox holds (up to a batch); `Ready` when a full
    /// batch was taken and more may wait.
    pub(crate) fn take_inbox(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.state.inbox.register(cx.waker());
        for _ in 0..PUMP_BATCH {
            let Some(post) = self.state.inbox.take() else {
                if self.state.inbox.take_lagged() {
                    self.drop_all();
                }
                return Poll::Pending;
            };
            self.fan_out(&post);
        }
        Poll::Ready(())
    }
}

/// The room's task on its executor: hands posts from other executors to the subscribers.
/// Holds the room weakly, so the room goes away with the app and the pump with it (the
/// executor also ends it when it stops).
fn pump(room: Weak<State>) -> impl Future<Output = ()> {
    poll_fn(move |cx| {
        let Some(state) = room.upgrade() else { return Poll::Ready(()) };
        let room = Room { state };
        if room.take_inbox(cx).is_ready() {
            // A full batch: let the executor's other tasks run, then go on.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
}

/// The pump future of `room`, for the unit tests to poll by hand.
#[cfg(test)]
pub(crate) fn pump_for_tests(room: &Room) -> impl Future<Output = ()> {
    pump(Rc::downgrade(&room.state))
}

impl Drop for State {
    fn drop(&mut self) {
        if self.joined.get() {
            self.hub.leave(&self.inbox);
            self.inbox.ring();
        }
    }
}

/// One subscriber: the posts made since it subscribed, in order, until it is dropped for
/// falling behind. Unsubscribes when dropped.
pub struct Subscription {
    room: Room,
    id: u64,
}

impl Subscription {
    /// The next post; `None` once this subscriber has been dropped for falling behind.
    pub async fn next(&self) -> Option<Arc<Post>> {
        poll_fn(|cx| self.poll_post(cx)).await
    }

    /// Poll for the next post (see [`next`](Self::next)).
    pub fn poll_post(&self, cx: &mut Context<'_>) -> Poll<Option<Arc<Post>>> {
        let mut subscribers = self.room.state.subscribers.borrow_mut();
        let Some(slot) = subscribers.get_mut(&self.id) else { return Poll::Ready(None) };
        if let Some(post) = slot.posts.pop_front() {
            return Poll::Ready(Some(post));
        }
        if slot.dropped {
            return Poll::Ready(None);
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The posts as encoded Server-Sent Events, for [`crate::Response::sse_encoded`].
    pub fn into_events(self) -> Events {
        Events(self)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.room.state.subscribers.borrow_mut().remove(&self.id);
    }
}

/// A subscription's posts as encoded `message` events; ends when the subscriber is dropped
/// for falling behind.
pub struct Events(Subscription);

impl Stream for Events {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.0.poll_post(cx).map(|post| post.map(|p| p.event()))
    }
}
