//! The chat hub without a runtime: rooms polled by hand, wakes counted.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::*;

/// A waker that counts its wakes.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count::default());
    (count.clone(), Waker::from(count))
}

/// Poll `sub` once.
fn poll(sub: &Subscription) -> Poll<Option<Arc<Post>>> {
    let (_, waker) = counting();
    sub.poll_post(&mut Context::from_waker(&waker))
}

fn text(p: Poll<Option<Arc<Post>>>) -> Option<String> {
    match p {
        Poll::Ready(Some(post)) => Some(post.text().to_string()),
        _ => None,
    }
}

/// Run `room`'s pump turn with `waker` (what the executor's pump task does when woken).
fn pump(room: &Room, waker: &Waker) -> Poll<()> {
    room.take_inbox(&mut Context::from_waker(waker))
}

#[test]
fn a_post_reaches_every_local_subscriber_the_sender_included_framed_once() {
    let room = Hub::new().room();
    let (a, b) = (room.subscribe(), room.subscribe());
    let post = room.publish("hi");
    let (Poll::Ready(Some(pa)), Poll::Ready(Some(pb))) = (poll(&a), poll(&b)) else { panic!("no post") };
    assert!(Arc::ptr_eq(&pa, &post) && Arc::ptr_eq(&pb, &post), "one post shared, not copies");
    assert_eq!(post.frame().frame(), b"\x81\x02hi");
    assert_eq!(&post.event()[..], b"data: hi\n\n");
    assert!(poll(&a).is_pending());
}

#[test]
fn a_waiting_subscriber_is_woken_by_a_post() {
    let room = Hub::new().room();
    let sub = room.subscribe();
    let (count, waker) = counting();
    assert!(sub.poll_post(&mut Context::from_waker(&waker)).is_pending());
    room.publish("x");
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
}

#[test]
fn a_post_crosses_to_the_other_rooms_through_their_inboxes() {
    let hub = Hub::new();
    let (here, there) = (hub.room(), hub.room());
    let (mine, theirs) = (here.subscribe(), there.subscribe());
    let (rung, bell) = counting();
    assert!(pump(&there, &bell).is_pending(), "nothing to take yet");
    let post = here.publish("across");
    assert_eq!(rung.0.load(Ordering::SeqCst), 1, "the other room's pump is woken");
    assert!(poll(&theirs).is_pending(), "not before the pump ran");
    assert!(pump(&there, &bell).is_pending());
    let Poll::Ready(Some(got)) = poll(&theirs) else { panic!("not delivered") };
    assert!(Arc::ptr_eq(&got, &post), "the same framed post on both executors");
    assert_eq!(text(poll(&mine)).as_deref(), Some("across"));
}

#[test]
fn posts_from_another_thread_arrive_in_order() {
    let hub = Hub::new();
    let room = hub.room();
    let sub = room.subscribe();
    let other = hub.clone();
    std::thread::spawn(move || {
        let room = other.room();
        for i in 0..100 {
            room.publish(&i.to_string());
        }
    })
    .join()
    .unwrap();
    let (_, waker) = counting();
    while pump(&room, &waker).is_ready() {}
    let got: Vec<String> = std::iter::from_fn(|| text(poll(&sub))).collect();
    assert_eq!(got, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn a_subscriber_that_does_not_keep_up_is_dropped_and_the_others_go_on() {
    let room = Hub::with_limits(Limits { inbox: 8, subscriber: 3 }).room();
    let (slow, fast) = (room.subscribe(), room.subscribe());
    for i in 0..10 {
        room.publish(&i.to_string());
        assert_eq!(text(poll(&fast)), Some(i.to_string()));
    }
    assert!(matches!(poll(&slow), Poll::Ready(None)), "dropped, its backlog discarded");
    assert_eq!(room.subscribers(), 2, "until it goes away itself");
    drop(slow);
    assert_eq!(room.subscribers(), 1);
}

#[test]
fn an_executor_whose_inbox_overflows_drops_its_subscribers() {
    let hub = Hub::with_limits(Limits { inbox: 4, subscriber: 100 });
    let (here, stalled) = (hub.room(), hub.room());
    let sub = stalled.subscribe();
    for i in 0..5 {
        here.publish(&i.to_string());
    }
    let (_, waker) = counting();
    assert!(pump(&stalled, &waker).is_pending());
    let got: Vec<String> = std::iter::from_fn(|| text(poll(&sub))).collect();
    assert!(got.is_empty(), "a subscriber that missed a post gets none: {got:?}");
    assert!(matches!(poll(&sub), Poll::Ready(None)));
    // New subscribers there get what comes next.
    let fresh = stalled.subscribe();
    here.publish("after");
    assert!(pump(&stalled, &waker).is_pending());
    assert_eq!(text(poll(&fresh)).as_deref(), Some("after"));
}

#[test]
fn a_room_that_goes_away_leaves_the_hub_and_ends_its_pump() {
    let hub = Hub::new();
    let here = hub.room();
    let gone = hub.room();
    let _sub = gone.subscribe();
    here.publish("one");
    let before = hub.generation();
    drop(_sub);
    drop(gone);
    assert_ne!(hub.generation(), before);
    let (_, my_inbox_peers) = hub.others(&Arc::new(super::hub::Inbox::new(1)));
    assert!(my_inbox_peers.is_empty());
    here.publish("two"); // reads the new list; nobody left to deliver to
}

#[test]
fn the_pump_ends_once_its_room_is_gone() {
    let hub = Hub::new();
    let room = hub.room();
    let fut = room::pump_for_tests(&room);
    let mut fut = pin!(fut);
    let (_, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    drop(room);
    assert!(fut.as_mut().poll(&mut cx).is_ready());
}

#[test]
fn a_full_batch_yields_to_the_executor_and_goes_on() {
    let hub = Hub::with_limits(Limits { inbox: 1000, subscriber: 1000 });
    let (here, there) = (hub.room(), hub.room());
    let sub = there.subscribe();
    for i in 0..100 {
        here.publish(&i.to_string());
    }
    let (_, waker) = counting();
    assert!(pump(&there, &waker).is_ready(), "a batch taken, more waits");
    assert!(pump(&there, &waker).is_pending());
    assert_eq!(std::iter::from_fn(|| text(poll(&sub))).count(), 100);
}

#[test]
#[should_panic(expected = "at least 1")]
fn zero_limits_are_refused() {
    let _ = Hub::with_limits(Limits { inbox: 0, subscriber: 1 });
}

#[test]
fn an_event_stream_yields_the_shared_events_and_ends_when_dropped_for_lag() {
    use futures_core::Stream;
    let room = Hub::with_limits(Limits { inbox: 8, subscriber: 2 }).room();
    let mut events = pin!(room.subscribe().into_events());
    let (_, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    let post = room.publish("a\nb");
    match events.as_mut().poll_next(&mut cx) {
        Poll::Ready(Some(bytes)) => {
            assert_eq!(&bytes[..], b"data: a\ndata: b\n\n");
            assert_eq!(bytes.as_ptr(), post.event().as_ptr(), "the post's bytes, not a copy");
        }
        other => panic!("expected an event, got {other:?}"),
    }
    assert!(events.as_mut().poll_next(&mut cx).is_pending());
    for i in 0..3 {
        room.publish(&i.to_string());
    }
    assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Ready(None), "the stream ends");
}
