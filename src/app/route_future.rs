//! A router's handler futures without an allocation per request: each route keeps the
//! memory of its last finished future and builds the next one in it.
//!
//! A router holds handlers of many types, so their futures are type-erased and live on the
//! heap. A handler whose future is ready at once (most are) used to cost a `malloc` and a
//! `free` per request for that; with the memory kept, a request on a warm route allocates
//! nothing. Concurrent requests on one route (futures that wait) take fresh memory, and all
//! but one allocation go back to the allocator as they finish.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use super::handler::Handler;
use super::request::Request;
use super::response::Response;

/// A handler as a router keeps it: type-erased, with the spare memory for its future.
pub(crate) trait RouteHandler: 'static {
    /// The handler's future on the request in `req`.
    fn start(&self, req: RequestSlot<'_>) -> RouteFuture<'_>;
}

/// A request where the router has it, lent to the handler that takes it. A `Request` is
/// large (a few hundred bytes): passed by value across the router's type-erased call it is
/// copied once for the call and once more into the handler's argument; taken from here, it
/// moves once, straight into the handler's argument (and a handler that is inlined and only
/// drops it is never given a copy at all).
pub(crate) struct RequestSlot<'a> {
    request: &'a mut ManuallyDrop<Request>,
}

impl<'a> RequestSlot<'a> {
    /// Lend `request`, which the slot then owns: it is dropped by whoever takes it, or by
    /// the slot if no one does. The caller must neither use nor drop it afterwards.
    ///
    /// # Safety
    /// `request` holds a live request, and the caller treats it as moved out.
    #[inline]
    pub(crate) unsafe fn new(request: &'a mut ManuallyDrop<Request>) -> RequestSlot<'a> {
        RequestSlot { request }
    }

    /// Take the request out (once: the slot is used up).
    #[inline]
    pub(crate) fn take(self) -> Request {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the slot owns a live request (`new`'s contract) and is used up here
        // without its own drop, so the request is read out exactly once.
        unsafe { ManuallyDrop::take(this.request) }
    }
}

impl std::ops::Deref for RequestSlot<'_> {
    type Target = Request;

    /// The request where it is (a router reads its path and method before choosing).
    #[inline]
    fn deref(&self) -> &Request {
        self.request
    }
}

impl Drop for RequestSlot<'_> {
    fn drop(&mut self) {
        // SAFETY: not taken (`take` skips this drop): the slot still owns the request.
        unsafe { ManuallyDrop::drop(self.request) };
    }
}

/// A handler and the memory of its last finished future.
pub(crate) struct Pooled<H> {
    handler: H,
    /// Memory for one future of `H` (its layout is the same every time), free to use.
    spare: Cell<Option<NonNull<u8>>>,
    /// The layout of `H`'s future, once one was made (`None` before).
    layout: Cell<Option<Layout>>,
}

impl<H: Handler> Pooled<H> {
    pub(crate) fn new(handler: H) -> Pooled<H> {
        Pooled { handler, spare: Cell::new(None), layout: Cell::new(None) }
    }

    /// Make the future with `make` right in the spare memory, or in new memory (made in
    /// place, the request it holds is not copied once more on the way).
    #[inline]
    fn place<'a, M, F>(&'a self, make: M) -> RouteFuture<'a>
    where
        M: FnOnce() -> F,
        F: Future<Output = Response> + 'a,
    {
        let layout = Layout::new::<F>();
        self.layout.set(Some(layout));
        let memory = if layout.size() == 0 {
            NonNull::<F>::dangling().cast::<u8>()
        } else {
            match self.spare.take() {
                Some(memory) => memory,
                // SAFETY: the layout's size is not zero.
                None => NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout)),
            }
        };
        // A handler that panics while making its future gives the memory back.
        let unwritten = Unwritten { memory, spare: &self.spare, layout };
        let typed = memory.cast::<F>();
        // SAFETY: `memory` is valid for `F`'s layout (dangling is, for a zero size) and holds
        // nothing that needs dropping.
        unsafe { typed.as_ptr().write(make()) };
        std::mem::forget(unwritten);
        let erased: NonNull<dyn Future<Output = Response> + 'a> = typed;
        RouteFuture { fut: erased, spare: &self.spare, layout }
    }
}

impl<H: Handler> RouteHandler for Pooled<H> {
    #[inline]
    fn start(&self, req: RequestSlot<'_>) -> RouteFuture<'_> {
        self.place(move || self.handler.call(req.take()))
    }
}

/// Memory taken for a future that is not written yet.
struct Unwritten<'a> {
    memory: NonNull<u8>,
    spare: &'a Cell<Option<NonNull<u8>>>,
    layout: Layout,
}

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        give_back(self.memory, self.spare, self.layout);
    }
}

/// Keep `memory` as the route's spare, or free it when the route has one already.
fn give_back(memory: NonNull<u8>, spare: &Cell<Option<NonNull<u8>>>, layout: Layout) {
    if layout.size() == 0 {
        return;
    }
    match spare.take() {
        None => spare.set(Some(memory)),
        Some(kept) => {
            spare.set(Some(kept));
            // SAFETY: allocated in `Pooled::place` with this layout.
            unsafe { dealloc(memory.as_ptr(), layout) };
        }
    }
}

impl<H> Drop for Pooled<H> {
    fn drop(&mut self) {
        if let (Some(memory), Some(layout)) = (self.spare.take(), self.layout.get()) {
            // SAFETY: the spare memory was allocated with the layout of `H`'s future.
            unsafe { dealloc(memory.as_ptr(), layout) };
        }
    }
}

/// A handler's future in memory of its route's; the memory goes back to the route (or to
/// the allocator, when the route has a spare already) when the future is dropped. The future
/// never moves while it lives, so it is pinned.
pub(crate) struct RouteFuture<'a> {
    fut: NonNull<dyn Future<Output = Response> + 'a>,
    spare: &'a Cell<Option<NonNull<u8>>>,
    layout: Layout,
}

impl Future for RouteFuture<'_> {
    type Output = Response;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        // SAFETY: the future is owned by this struct, alive until it is dropped, and never
        // moved out of its memory.
        unsafe { Pin::new_unchecked(&mut *self.fut.as_ptr()) }.poll(cx)
    }
}

impl Drop for RouteFuture<'_> {
    fn drop(&mut self) {
        // SAFETY: the future was written in `place` and is dropped only here. The memory is
        // given back after the drop, so a drop that panics loses it, never reuses it.
        unsafe { std::ptr::drop_in_place(self.fut.as_ptr()) };
        give_back(self.fut.cast::<u8>(), self.spare, self.layout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::rc::Rc;

    fn noop_cx<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let waker = std::task::Waker::noop();
        f(&mut Context::from_waker(waker))
    }

    /// `route` started on `req`, lent through a slot as the router lends it.
    fn start<H: Handler>(route: &Pooled<H>, req: Request) -> RouteFuture<'_> {
        let mut req = ManuallyDrop::new(req);
        // SAFETY: `req` is not used after this.
        route.start(unsafe { RequestSlot::new(&mut req) })
    }

    fn request() -> Request {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let parsed = crate::http::parse_head(raw, &Default::default()).unwrap().unwrap();
        let head = parsed.into_head(bytes::Bytes::from_static(raw));
        Request::new(
            head,
            "127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap(),
            super::super::body::RequestBody::empty(),
        )
    }

    /// A finished future's memory is used by the next; futures alive at the same time each
    /// have their own; every future is dropped once; the route frees what it keeps.
    #[test]
    fn reuses_memory_and_drops_every_future_once() {
        let drops = Rc::new(Cell::new(0));
        struct Counted(Rc<Cell<u32>>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let counter = drops.clone();
        let route = Pooled::new(move |_req: Request| {
            let guard = Counted(counter.clone());
            async move {
                let _guard = guard;
                Response::new(204)
            }
        });
        let first = start(&route, request());
        let first_at = first.fut.cast::<u8>();
        drop(first);
        assert_eq!(drops.get(), 1);
        let mut second = start(&route, request());
        assert_eq!(second.fut.cast::<u8>(), first_at, "the spare memory is used again");
        let third = start(&route, request());
        assert_ne!(third.fut.cast::<u8>(), first_at, "a future alive at the same time has its own");
        let response = noop_cx(|cx| Pin::new(&mut second).poll(cx));
        assert!(matches!(response, Poll::Ready(ref r) if r.status() == 204));
        drop(second);
        drop(third);
        assert_eq!(drops.get(), 3);
        drop(route);
    }

    /// A request lent through a slot is dropped once: by the handler that took it, or by the
    /// slot when no one took it.
    #[test]
    fn a_slot_drops_its_request_once() {
        let raw = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").to_vec();
        let raw = Bytes::from(raw);
        let lend = |raw: &Bytes| {
            let parsed = crate::http::parse_head(raw, &Default::default()).unwrap().unwrap();
            ManuallyDrop::new(Request::new(
                parsed.into_head(raw.clone()),
                "127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap(),
                super::super::body::RequestBody::empty(),
            ))
        };
        let mut untaken = lend(&raw);
        // SAFETY: `untaken` is not used after this.
        drop(unsafe { RequestSlot::new(&mut untaken) });
        let mut taken = lend(&raw);
        // SAFETY: as above.
        let slot = unsafe { RequestSlot::new(&mut taken) };
        assert_eq!(slot.take().path(), "/");
        assert!(raw.is_unique(), "both requests were dropped");
    }

    /// A handler that panics before its future is made leaves the route usable, its memory
    /// given back.
    #[test]
    fn a_panic_while_making_the_future_gives_the_memory_back() {
        let route = Pooled::new(|req: Request| {
            assert!(req.path() != "/panic", "no future for this one");
            async { Response::new(204) }
        });
        drop(start(&route, request()));
        let kept = route.spare.get();
        assert!(kept.is_some());
        let raw = b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n";
        let parsed = crate::http::parse_head(raw, &Default::default()).unwrap().unwrap();
        let head = parsed.into_head(bytes::Bytes::from_static(raw));
        let req = Request::new(
            head,
            "127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap(),
            super::super::body::RequestBody::empty(),
        );
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(start(&route, req))));
        assert!(panicked.is_err());
        assert_eq!(route.spare.get(), kept, "the memory is the route's spare again");
        drop(start(&route, request()));
    }
}
