//! The handler trait: the user's application.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::request::Request;
use super::response::Response;

/// An application. Each executor builds its own handler (through the factory given to
/// [`crate::Server::start`]) and runs it on its own thread, so neither the handler nor its
/// futures need to be `Send`: per-core state without locks is the point of thread-per-core.
///
/// A panic in `call` becomes a 500 for that request and closes its connection; the executor
/// goes on serving.
pub trait Handler: 'static {
    fn call(&self, req: Request) -> impl Future<Output = Response>;

    /// `call` on the request at `req`, where the connection driver built it. A `Request` is
    /// a few hundred bytes: passed by value through a router it would be copied at each
    /// layer (a `memcpy` per request); a router looks at it where it is and moves it once,
    /// into the handler that takes it. The driver's path, not for applications: the
    /// default (`call` on the request read out) is right for every other handler.
    ///
    /// # Safety
    /// `req` points to a live request that this call then owns: it moves it out or drops
    /// it, exactly once, unwinding too. The caller neither uses nor drops it afterwards.
    #[doc(hidden)]
    #[inline(always)]
    unsafe fn call_in_place(&self, req: *mut Request) -> impl Future<Output = Response> {
        // SAFETY: the caller's contract: a live request, now this call's.
        self.call(unsafe { req.read() })
    }
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + 'static,
    Fut: Future<Output = Response>,
{
    fn call(&self, req: Request) -> impl Future<Output = Response> {
        self(req)
    }
}

/// The future of a type-erased handler.
pub type BoxResponseFuture<'a> = Pin<Box<dyn Future<Output = Response> + 'a>>;

/// Object-safe form of [`Handler`], for routers and other containers of mixed handlers.
pub trait DynHandler: 'static {
    fn call_boxed(&self, req: Request) -> BoxResponseFuture<'_>;
}

impl<H: Handler> DynHandler for H {
    fn call_boxed(&self, req: Request) -> BoxResponseFuture<'_> {
        Box::pin(self.call(req))
    }
}

/// The future of one of two handlers, whichever was chosen (no allocation, no state of its own).
pub(crate) enum OneOf<A, B> {
    First(A),
    Second(B),
}

impl<A: Future, B: Future<Output = A::Output>> Future for OneOf<A, B> {
    type Output = A::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        // SAFETY: structural pinning: the chosen future is never moved out of the pinned enum,
        // which has no Drop impl and no Unpin impl of its own.
        unsafe {
            match self.get_unchecked_mut() {
                OneOf::First(a) => Pin::new_unchecked(a).poll(cx),
                OneOf::Second(b) => Pin::new_unchecked(b).poll(cx),
            }
        }
    }
}
