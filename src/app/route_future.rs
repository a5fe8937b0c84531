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
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use super::handler::Handler;
use super::request::Request;
use super::response::Response;

/// A handler as a router keeps it: type-erased, with the spare memory for its future.
pub(crate) trait RouteHandler: 'static {
    fn start(&self, req: Request) -> RouteFuture<'_>;
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
    fn start(&self, req: Request) -> RouteFuture<'_> {
        self.place(move || self.handler.call(req))
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
    use std::rc::Rc;

    fn noop_cx<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let waker = std::task::Waker::noop();
        f(&mut Context::from_waker(waker))
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
        let first = route.start(request());
        let first_at = first.fut.cast::<u8>();
        drop(first);
        assert_eq!(drops.get(), 1);
        let mut second = route.start(request());
        assert_eq!(second.fut.cast::<u8>(), first_at, "the spare memory is used again");
        let third = route.start(request());
        assert_ne!(third.fut.cast::<u8>(), first_at, "a future alive at the same time has its own");
        let response = noop_cx(|cx| Pin::new(&mut second).poll(cx));
        assert!(matches!(response, Poll::Ready(ref r) if r.status() == 204));
        drop(second);
        drop(third);
        assert_eq!(drops.get(), 3);
        drop(route);
    }

    /// A handler that panics before its future is made leaves the route usable, its memory
    /// given back.
    #[test]
    fn a_panic_while_making_the_future_gives_the_memory_back() {
        let route = Pooled::new(|req: Request| {
            assert!(req.path() != "/panic", "no future for this one");
            async { Response::new(204) }
        });
        drop(route.start(request()));
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
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(route.start(req))));
        assert!(panicked.is_err());
        assert_eq!(route.spare.get(), kept, "the memory is the route's spare again");
        drop(route.start(request()));
    }
}
