//! The connection driver, written once for every runtime: it reads requests, runs the
//! handler, writes responses, and owns keep-alive, pipelining, timeouts and closing.
//!
//! - **Pipelining**: every complete request already in the read buffer is answered before
//!   the next read, and their responses collect in one write buffer that goes out in one
//!   write when the driver next has to wait for the client (or the buffer gets large).
//! - **Timeouts**: a new connection must deliver a head within `header_timeout`; between
//!   requests it may idle for `keep_alive`; once a head has started, the rest must arrive
//!   within `header_timeout`. Body reads and writes each have their own limit.
//! - **Closing**: every close the server starts is graceful: `connection: close` on the
//!   last response, FIN, then a short lingering read, so a client never loses a response
//!   to a reset caused by bytes it sent that the server did not read.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};

use crate::app::body::{BodySource, ChunkFuture};
use crate::app::fields::Fields;
use crate::app::response::{BodyStream, FrameStream};
use crate::app::sse::PING;
use crate::app::{BodyError, Frame, Handler, Request, RequestBody, Response, ResponseBody};
use crate::http::body::decode_buffered;
use crate::http::proxy::{forwarded, parse_proxy_header, ForwardedRules, ProxyProtocol, TrustedProxies};
use crate::http::response::{
    encode_chunk, encode_chunk_size, encode_head_dated, encode_last_chunk_with_trailers, status_allows_body,
    BodyLength, ConnectionHeader, CONTINUE, LAST_CHUNK,
};
use crate::http::{
    parse_head, BodyDecoder, DateCache, Decoded, Framing, HeadProgress, Limits, ParseError, ParsedHead,
    Version,
};
use crate::idle_clock::IdleClock;
use crate::io::{catch_panic, catch_panic_or, first_of, timeout, Either, Timer, TimerSlot, Transport};
use crate::latch::Latch;
use crate::observe::access_log::{AccessLog, Entry, LocalAccessLog};
use crate::peer::Peer;
use crate::stamp::Stamp;
use crate::state::{ExecutorStats, ServerState};
use crate::ws::session::{SessionEnv, SessionReport};
use crate::ws::{Upgrade, WsConfig};

#[path = "conn_parked.rs"]
mod parked;
use parked::{Idle, Parked};

/// Bytes allocated for a new connection's reads. A read in flight owns its buffer (io_uring),
/// so a connection holds this much until it has idled for `IDLE_GRACE` (then none, see
/// `Conn::idle_wait`); a connection whose reads fill its buffer
/// doubles the size it reads with between requests, up to `MAX_READ_BUF` (see `make_read_room`).
const INITIAL_READ_BUF: usize = 2 * 1024;
const MAX_READ_BUF: usize = 16 * 1024;
/// Below this much spare room, a partly filled read buffer grows before a read (the body
/// reader grows its buffer by `READ_GROW`).
const MIN_READ_SPACE: usize = 1024;
const READ_GROW: usize = 16 * 1024;
/// Bodies up to this size are copied into the write buffer (one write with the head);
/// larger ones are written from their own buffer.
const INLINE_BODY_MAX: usize = 16 * 1024;
/// The write buffer is flushed once it holds this much.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// The lingering read after FIN discards at most this much before closing anyway.
const LINGER_MAX_BYTES: usize = 1024 * 1024;
/// When the executor drains, an idle keep-alive connection still waits this long for a
/// request (answered with `connection: close`) before it is closed. Closing at once would
/// race a client that is sending its next request at that very moment; a busy client sends
/// well within a second, so only connections that are really idle are closed.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);
/// Between requests, a read waits this long with its buffer before the connection counts as
/// idle, calls the read off and lets go of its buffers (see `Conn::idle_wait`). A busy
/// keep-alive client sends its next request well within it, so it pays nothing for the
/// idle path; an idle connection holds its read buffer for this long at most.
const IDLE_GRACE: Duration = Duration::from_millis(250);

/// Timeouts and limits for every connection of a server.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub limits: Limits,
    /// A request head must arrive within this time of its first byte (or of the connection).
    pub header_timeout: Duration,
    /// Idle time allowed between requests; zero turns keep-alive off.
    pub keep_alive: Duration,
    /// Longest gap between two reads of a request body.
    pub body_timeout: Duration,
    /// Slowest average a request body may arrive at, in bytes per second, after the first
    /// `body_timeout` (0: no minimum). A body must be complete within `body_timeout` plus one
    /// second for every `body_min_rate` bytes received, so a client that trickles a byte now
    /// and then cannot hold a request open for ever.
    pub body_min_rate: u64,
    /// Paths that `--limit-concurrency` never refuses (health checks must be answered while
    /// the server is saturated, or a load balancer takes a healthy instance out of service).
    pub limit_exempt_paths: Vec<String>,
    /// Longest time one write may take (a client that stops reading).
    pub write_timeout: Duration,
    /// How long to keep reading after FIN before closing.
    pub linger: Duration,
    /// Where access log lines go (`None`: no access log).
    pub access_log: Option<AccessLog>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Which forwarding headers are read (one family), and whether the host is believed.
    pub forwarded: ForwardedRules,
    /// The PROXY protocol header every connection must start with, if any.
    pub proxy_protocol: ProxyProtocol,
    /// The peers allowed to send a PROXY header; any other is closed unread.
    pub proxy_allow_from: TrustedProxies,
    /// WebSocket settings, for connections handed over after a `101`.
    pub ws: WsConfig,
    /// How long a Server-Sent Events stream may wait for its next event before the driver
    /// sends a `: ping` comment (`--sse-ping-interval`; zero: never).
    pub sse_ping_interval: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 500,
            limit_exempt_paths: vec!["/health".to_string(), "/ready".to_string()],
            write_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(2),
            access_log: None,
            trusted_proxies: TrustedProxies::default(),
            forwarded: ForwardedRules::default(),
            proxy_protocol: ProxyProtocol::Off,
            proxy_allow_from: TrustedProxies::loopback(),
            ws: WsConfig::default(),
            sse_ping_interval: Duration::from_secs(15),
        }
    }
}

/// What the connections of one executor share. Lives on that executor's thread only.
pub struct ConnCtx<H> {
    pub config: DriverConfig,
    pub handler: H,
    /// The `date` header value, refreshed by the executor's timer.
    pub date: RefCell<DateCache>,
    pub stats: Arc<ExecutorStats>,
    pub state: Arc<ServerState>,
    /// Fired when this executor drains: keep-alive ends, idle connections close.
    pub drain: Latch,
    /// The coarse clock idle connections wait on, advanced by the executor's tick.
    pub idle_clock: IdleClock,
    /// Fired when this executor must stop at once.
    pub stop: Latch,
    /// Fired when this executor has served its `--max-requests` share: every response from
    /// then on closes its connection, until the supervisor (woken at once) has started the
    /// replacement and told this executor to drain.
    pub spent: Latch,
    /// This executor's access log buffer, when the access log is on.
    pub access_log: Option<LocalAccessLog>,
    /// Connections whose task is alive (`--max-connections`, and the drain's wait). Here
    /// rather than in each task's own handle on a counter: every idle connection's task
    /// holds `ctx` anyway.
    pub open: Cell<usize>,
    slots: Rc<Slots>,
    max_in_flight: usize,
}

/// A WebSocket's task after the hand-over: its session, then the `101`'s access log line
/// (`owed`, when the access log is on). A struct rather than an `async fn`, which would hold
/// the session twice (what it captured, and what it awaits) and its arguments besides, in
/// every WebSocket.
struct WebSocketTask<S, T, K, H> {
    session: S,
    owed: Option<Box<Conn<T, K, H>>>,
}

impl<S, T, K, H> Future for WebSocketTask<S, T, K, H>
where
    S: Future<Output = SessionReport>,
    T: Transport,
    K: Timer,
    H: Handler,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: structural pinning of `session` alone: it is never moved out of the pinned
        // struct, which has no Drop impl nor an Unpin impl of its own.
        let this = unsafe { self.get_unchecked_mut() };
        let Poll::Ready(report) = unsafe { Pin::new_unchecked(&mut this.session) }.poll(cx) else {
            return Poll::Pending;
        };
        // The `101`'s line, now that the WebSocket's duration and bytes are known.
        if let Some(mut conn) = this.owed.take() {
            if let Some(headers) = conn.upgrade_headers.take() {
                let elapsed = conn.started.elapsed();
                conn.log(101, Some(&headers), report.bytes_out, Some(report.bytes_in), elapsed);
            }
        }
        Poll::Ready(())
    }
}

/// What a WebSocket session needs of its executor, from the connection's context.
impl<H> SessionEnv for ConnCtx<H> {
    fn ws_config(&self) -> &crate::ws::WsConfig {
        &self.config.ws
    }

    fn write_timeout(&self) -> Duration {
        self.config.write_timeout
    }

    fn drain(&self) -> &Latch {
        &self.drain
    }

    fn server_state(&self) -> &ServerState {
        &self.state
    }

    fn stats(&self) -> &Arc<ExecutorStats> {
        &self.stats
    }

    fn idle_clock(&self) -> &IdleClock {
        &self.idle_clock
    }
}

/// Requests of one executor inside a handler, for `--limit-concurrency` (the local count) and
/// `/metrics` (the shared gauge). A request waiting for its client to send more of its body
/// steps out for that wait: a slot stands for work of the server, not of a slow client.
pub(crate) struct Slots {
    taken: Cell<usize>,
    stats: Arc<ExecutorStats>,
}

impl Slots {
    /// Take a slot for a request's handler; `hold` is its streamed body's (see [`Hold`]).
    fn enter(&self, hold: Option<Rc<Cell<Hold>>>) -> InFlight<'_> {
        self.add(1);
        InFlight { slots: self, hold }
    }

    /// Give the request's slot back until the guard is dropped, if its handler still holds
    /// it (a body read after the handler returned, by a task it handed the body to, has no
    /// slot to give back).
    fn step_out<'a>(&'a self, hold: &'a Cell<Hold>) -> SteppedOut<'a> {
        if hold.get() == Hold::Held {
            self.sub(1);
            hold.set(Hold::SteppedOut);
        }
        SteppedOut { slots: self, hold }
    }

    fn add(&self, n: usize) {
        self.taken.set(self.taken.get() + n);
        ExecutorStats::add(&self.stats.in_flight, n as u64);
    }

    fn sub(&self, n: usize) {
        self.taken.set(self.taken.get() - n);
        ExecutorStats::sub(&self.stats.in_flight, n as u64);
    }
}

impl<H> ConnCtx<H> {
    /// `max_in_flight`: this executor's share of `--limit-concurrency` (`usize::MAX` for none).
    pub fn new(
        config: DriverConfig,
        handler: H,
        stats: Arc<ExecutorStats>,
        state: Arc<ServerState>,
        max_in_flight: usize,
    ) -> ConnCtx<H> {
        let access_log = config.access_log.as_ref().map(|log| log.local(stats.slot));
        ConnCtx {
            access_log,
            config,
            handler,
            date: RefCell::new(DateCache::new()),
            state,
            drain: Latch::new(),
            idle_clock: IdleClock::new(),
            stop: Latch::new(),
            spent: Latch::new(),
            open: Cell::new(0),
            slots: Rc::new(Slots { taken: Cell::new(0), stats: stats.clone() }),
            stats,
            max_in_flight,
        }
    }

    /// Start the drain: fire its latch, and wake the idle clock's waiters (parked
    /// connections and WebSockets), which look at the latch when woken rather than holding a
    /// slot among its waiters each.
    pub fn fire_drain(&self) {
        // Once: the ticker calls this on every tick while the drain is asked for, and the
        // waiters, once woken, see the latch (nothing parks after it).
        if self.drain.is_fired() {
            return;
        }
        self.drain.fire();
        self.idle_clock.wake_all();
    }

    /// Whether this executor drains or stops: its latch has fired, or the supervisor has
    /// asked and the executor's ticker has not run yet. A response stream that is always
    /// ready over a socket whose writes complete without yielding (glommio) can keep the
    /// ticker, which fires the latch, from running; asking the flags too lets such a stream
    /// still end at the drain.
    fn draining(&self) -> bool {
        self.drain.is_fired() || self.stats.drain_requested() || self.stats.stop_requested()
    }

    /// Count a request; the one that reaches `--max-requests` fires [`ConnCtx::spent`] and
    /// wakes the supervisor (once per executor: the lock is not on every request's path).
    fn count_request(&self) {
        ExecutorStats::add(&self.stats.requests, 1);
        if !self.spent.is_fired() && self.stats.recycle_due() {
            self.spent.fire();
            self.state.nudge_supervisor();
        }
    }

    /// Requests currently inside a handler on this executor (not counting those waiting for
    /// their client to send more of the body).
    pub fn in_flight(&self) -> usize {
        self.slots.taken.get()
    }
}

/// Serve one connection until it closes.
///
/// A busy connection's working state is boxed, and given back whenever the connection goes
/// idle: an idle one holds only what `Parked` keeps (see `conn_parked.rs`).
pub fn serve<T: Transport, K: Timer, H: Handler>(
    io: T,
    peer: Peer,
    ctx: Rc<ConnCtx<H>>,
) -> impl Future<Output = ()> {
    // The future holds only boxes: the working state while busy (`work`), the parked
    // connection and its wait while idle (`park`), the WebSocket after an upgrade; so what
    // it keeps for one state is not kept for the others (a WebSocket holds no parked
    // connection's slot). Built here rather than inside an async fn, which would keep its
    // arguments beside what they were moved into; and no value that a match takes apart
    // lives across an await, or the future would keep a slot for it.
    // (`next` is taken, not awaited in place: a finished future's box would stay allocated
    // until the next one replaced it.)
    let mut next = Some(work::<T, K, H>(Parked::new(io, peer, ctx, INITIAL_READ_BUF), None));
    async move {
        let (conn, upgrade) = loop {
            let waiting = match next.take() {
                Some(working) => match working.await {
                    Step::Closed => return,
                    Step::Parked(waiting) => waiting,
                    Step::Upgraded(conn, upgrade) => break (conn, upgrade),
                },
                None => return,
            };
            let (parked, woke) = waiting.await;
            next = Some(work::<T, K, H>(parked, Some(woke)));
        };
        if let Some(websocket) = conn.hand_over(upgrade) {
            websocket.await
        }
    }
}

/// A parked connection waiting (`park`): it ends with the connection and how its wait ended.
type Waiting<T, H> = Pin<Box<dyn Future<Output = (Parked<T, H>, IdleWait)>>>;

/// A parked connection waiting, boxed (one allocation each time a connection parks, none
/// per request).
fn park<T: Transport, H: 'static>(parked: Parked<T, H>) -> Waiting<T, H> {
    Box::pin(wait_parked(parked))
}

/// `park`'s future. (An async block rather than an `async fn`, which would hold `parked`
/// twice: as its argument, and in the local it is moved into.)
#[allow(clippy::manual_async_fn)]
fn wait_parked<T: Transport, H>(mut parked: Parked<T, H>) -> impl Future<Output = (Parked<T, H>, IdleWait)> {
    async move {
        let woke = parked.wait().await;
        (parked, woke)
    }
}

/// The working state of a new or parked connection, boxed, serving until it parks again,
/// closes or is upgraded. (A plain function: built inside `serve`'s future, the working
/// state would have a slot there as well, even while idle.)
fn work<T: Transport, K: Timer, H: Handler>(
    parked: Parked<T, H>,
    woke: Option<IdleWait>,
) -> Pin<Box<impl Future<Output = Step<T, K, H>>>> {
    let mut conn = Conn::<T, K, H>::unpark(parked, woke);
    Box::pin(async move {
        match conn.run().await {
            Exit::Closed => Step::Closed,
            Exit::Parked(idle) => match conn.io.take() {
                // The parked connection's box is made before this one is freed: a new
                // connection's working state then finds this one's memory whole.
                Some(io) => Step::Parked(park(conn.park(io, idle))),
                None => Step::Closed,
            },
            Exit::Upgraded(upgrade) => Step::Upgraded(Box::new(conn), upgrade),
        }
    })
}

/// Answer a connection that is refused before it is read (`--max-connections`) with 503,
/// then close it gracefully.
pub async fn refuse<T: Transport, K: Timer, H: Handler>(io: T, peer: Peer, ctx: Rc<ConnCtx<H>>) {
    let mut conn = Conn::<T, K, H>::unpark(Parked::new(io, peer, ctx, INITIAL_READ_BUF), None);
    let response = Response::status_text(503);
    let encoded = conn.encode_response_head(response, false, Version::Http11, true);
    if let Outcome::Close = conn.write_body(encoded).await {
        conn.close().await;
    }
}

/// A response whose head is in the write buffer, with what writing its body needs.
struct Encoded {
    status: u16,
    body: ResponseBody,
    /// False for HEAD and for statuses without a body.
    send_body: bool,
    length: BodyLength,
    /// This is the connection's last response.
    close: bool,
    event_stream: bool,
    /// The response's fields, for the access log (when it is on).
    log_fields: Option<Box<Fields>>,
}

/// Where a connection's working state (`Conn::run`) stopped.
enum Step<T, K, H> {
    /// The connection is closed.
    Closed,
    /// Idle between requests: what it keeps while it waits, waiting (`park`).
    Parked(Waiting<T, H>),
    /// The `101` is written: the connection is a WebSocket's now.
    Upgraded(Box<Conn<T, K, H>>, Box<Upgrade>),
}

/// Why `Conn::run` returned.
enum Exit {
    Closed,
    /// Idle between requests: park for the rest of this wait.
    Parked(Idle),
    /// The `101` is written.
    Upgraded(Box<Upgrade>),
}

/// Why waiting for a request head ended without one.
enum Wait {
    /// The peer closed or the socket failed: nothing more to say.
    Closed,
    /// No request started within the idle timeout: close quietly.
    Idle,
    /// The head is bad (or late): answer with its status, then close.
    Error(ParseError),
    /// Idle past `IDLE_GRACE`: park the connection (see `Parked`).
    Parked(Idle),
}

/// What to do after one response.
#[derive(Debug)]
enum Outcome {
    KeepAlive,
    /// The `101` is written: the connection is a WebSocket's now. (Boxed: an `Outcome` is
    /// held in every connection's future.)
    Upgrade(Box<Upgrade>),
    /// Close gracefully (FIN, then lingering read).
    Close,
    /// The connection is unusable (write failed, body stream broke): drop it.
    Abort,
}

enum ReadOutcome {
    Data,
    Eof,
    Failed,
    TimedOut,
    /// Between requests, nothing arrived within `IDLE_GRACE`: the read is called off and
    /// the connection should wait parked for the rest of its idle time.
    Parked(Idle),
}

/// How an idle wait (`Conn::idle_wait`, then `Parked::wait`) ended.
enum IdleWait {
    /// With this outcome, as `read_some` reports it.
    Done(ReadOutcome),
    /// The socket is readable: read, for at most `left`; `drained`: the drain has fired.
    Readable { left: Duration, drained: bool },
}

struct Conn<T, K, H> {
    /// `None` only while a streamed request body has the socket.
    io: Option<T>,
    rbuf: BytesMut,
    /// The buffer size this connection reads with between requests: `INITIAL_READ_BUF`,
    /// doubled each time a read fills all the room it was given.
    read_size: usize,
    wbuf: BytesMut,
    ctx: Rc<ConnCtx<H>>,
    peer: Peer,
    /// The client as far as this request is concerned (the peer, or what a trusted proxy
    /// says), and its scheme. `None`: a Unix-socket peer that no trusted header named.
    client: Option<std::net::IpAddr>,
    scheme: &'static str,
    /// Whether the peer is in `--forwarded-allow-ips` (by address, or `unix`).
    peer_trusted: bool,
    /// The verified client certificate's subject (mutual TLS), for the access log.
    client_cert: Option<Arc<str>>,
    /// When the current request's head was complete (for its duration).
    started: Stamp,
    /// When the last response was counted, unless the driver has waited on the socket since:
    /// a pipelined request that was already in the buffer starts then, which saves a clock
    /// read per request.
    recorded_at: Option<Stamp>,
    /// The current request said `TE: trailers`: chunked trailers may be sent.
    trailers_ok: bool,
    /// The current request's head, kept for its access log line when logging is on.
    log_head: Option<crate::http::RequestHead>,
    /// The headers of a `101` whose access log line waits for the WebSocket to close (boxed:
    /// rare, and this struct is part of every connection's future).
    upgrade_headers: Option<Box<Fields>>,
    /// The timer of every read and write wait (one at a time).
    timer: TimerSlot,
    /// Whether this connection's last wait between requests outlasted `IDLE_GRACE` (true
    /// before its first): then its next one reads with `read_unless`, which an idle
    /// connection needs to let go of its buffers. A busy client's waits are short and read
    /// the plain way: calling a read off must be arranged before it starts, and on monoio
    /// that bookkeeping (a canceller's hash set) would cost every request ~600
    /// instructions. A busy connection that falls idle keeps its read buffer until its
    /// next request, and lets go of it in every idle wait after.
    was_idle: bool,
    /// How the parked wait that this working state was built after ended (`None`: a new
    /// connection, not yet served); the first read between requests goes on from there.
    woke: Option<IdleWait>,
    _timer: PhantomData<fn() -> K>,
}

impl<T: Transport, K: Timer, H: Handler> Conn<T, K, H> {
    /// The working state of a connection that is new (`woke` is `None`) or was parked.
    fn unpark(parked: Parked<T, H>, woke: Option<IdleWait>) -> Self {
        let Parked { io, ctx, peer, peer_trusted, read_size, idle: _ } = parked;
        Conn {
            io: Some(io),
            // The first read makes it `read_size` (see `make_read_room`).
            rbuf: BytesMut::new(),
            read_size,
            wbuf: BytesMut::new(),
            ctx,
            peer,
            client: peer.ip(),
            scheme: "http",
            peer_trusted,
            // Asked of the transport again at the next request (not kept while idle).
            client_cert: None,
            started: Stamp::now(),
            recorded_at: None,
            trailers_ok: false,
            log_head: None,
            upgrade_headers: None,
            timer: TimerSlot::new::<K>(),
            was_idle: true,
            woke,
            _timer: PhantomData,
        }
    }

    /// What an idle connection keeps: the rest (buffers, timer) goes with `self`.
    fn park(self, io: T, idle: Idle) -> Parked<T, H> {
        Parked {
            io,
            ctx: self.ctx,
            peer: self.peer,
            peer_trusted: self.peer_trusted,
            read_size: self.read_size,
            idle,
        }
    }

    /// Serve requests until the connection closes, is upgraded, or goes idle.
    async fn run(&mut self) -> Exit {
        let mut first = self.woke.is_none();
        if first {
            if self.ctx.config.proxy_protocol != ProxyProtocol::Off && !self.read_proxy_header().await {
                return Exit::Closed;
            }
            // Trust is decided on the peer as the PROXY header gave it, and a PROXY header
            // counts only from a peer in --proxy-allow-from: behind an NLB the source is the
            // client itself, whose own X-Forwarded-For must not be believed, and a client
            // that reaches the port directly cannot name a trusted source.
            self.peer_trusted = self.ctx.config.trusted_proxies.contains_peer(&self.peer);
        }
        loop {
            // A pipelined request already whole in the buffer is parsed here, without the
            // wait's future (its clock reads and deadline) being made for it; anything else
            // (a head still arriving, an error to answer) is `read_head`'s.
            let buffered = match self.rbuf.is_empty() {
                true => Ok(None),
                false => parse_head(&self.rbuf, &self.ctx.config.limits),
            };
            let parsed = match buffered {
                Ok(Some(parsed)) => parsed,
                // Moved out and dropped, so that no slot for it is kept across the wait.
                other => {
                    drop(other);
                    match self.read_head(first).await {
                        Ok(parsed) => parsed,
                        Err(Wait::Closed) => return Exit::Closed,
                        Err(Wait::Idle) => {
                            self.close().await;
                            return Exit::Closed;
                        }
                        Err(Wait::Error(e)) => {
                            self.fail(e).await;
                            return Exit::Closed;
                        }
                        Err(Wait::Parked(idle)) => return Exit::Parked(idle),
                    }
                }
            };
            first = false;
            match self.exchange(parsed).await {
                Outcome::KeepAlive => {}
                Outcome::Upgrade(upgrade) => return Exit::Upgraded(upgrade),
                Outcome::Close => {
                    self.close().await;
                    return Exit::Closed;
                }
                Outcome::Abort => return Exit::Closed,
            }
        }
    }

    /// Read the PROXY protocol header the connection must start with (`--proxy-protocol`);
    /// the source it names becomes the peer. A missing, malformed or late header closes
    /// the connection without a response. Returns whether to go on.
    async fn read_proxy_header(&mut self) -> bool {
        let ctx = self.ctx.clone();
        if !ctx.config.proxy_allow_from.contains_peer(&self.peer) {
            // Not the load balancer: whatever it would send, its PROXY header is not believed.
            ExecutorStats::add(&ctx.stats.proxy_refused, 1);
            tracing::debug!(peer = %self.peer, "PROXY protocol connection from a peer not in --proxy-allow-from; closing");
            return false;
        }
        let deadline = Instant::now() + ctx.config.header_timeout;
        loop {
            match parse_proxy_header(&self.rbuf, ctx.config.proxy_protocol) {
                Ok(Some(header)) => {
                    self.rbuf.advance(header.len);
                    if let Some(source) = header.source {
                        self.peer = Peer::Tcp(source);
                    }
                    return true;
                }
                Ok(None) => {}
                Err(e) => {
                    ExecutorStats::add(&ctx.stats.proxy_refused, 1);
                    tracing::debug!(peer = %self.peer, error = ?e, "bad PROXY protocol header; closing");
                    return false;
                }
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.read_some(wait, None, false).await {
                ReadOutcome::Data => {}
                ReadOutcome::TimedOut => {
                    ExecutorStats::add(&ctx.stats.proxy_refused, 1);
                    return false;
                }
                ReadOutcome::Eof | ReadOutcome::Failed | ReadOutcome::Parked(_) => return false,
            }
        }
    }

    /// Wait until the read buffer starts with a complete head.
    ///
    /// On a new connection the head must be complete `header_timeout` after the connection
    /// started; between requests the connection may idle for `keep_alive`, and once a head
    /// has started the rest must arrive within `header_timeout`.
    async fn read_head(&mut self, first: bool) -> Result<ParsedHead, Wait> {
        let ctx = self.ctx.clone();
        let cfg = &ctx.config;
        let mut deadline: Option<Instant> = first.then(|| Instant::now() + cfg.header_timeout);
        let mut progress = HeadProgress::default();
        loop {
            let started = !self.rbuf.is_empty();
            if started {
                if progress.needs_parse(&self.rbuf, &cfg.limits) {
                    match parse_head(&self.rbuf, &cfg.limits) {
                        Ok(Some(parsed)) => return Ok(parsed),
                        Ok(None) => {}
                        Err(e) => return Err(Wait::Error(e)),
                    }
                }
                deadline.get_or_insert_with(|| Instant::now() + cfg.header_timeout);
            }
            // Responses to earlier pipelined requests go out before waiting on the client.
            if self.flush().await.is_err() {
                return Err(Wait::Closed);
            }
            let mut wait = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => cfg.keep_alive,
            };
            // Between requests, a drain cuts the idle wait short.
            let interruptible = !started && !first;
            if interruptible && ctx.drain.is_fired() {
                wait = wait.min(DRAIN_IDLE_GRACE);
            }
            let drain = (interruptible && !ctx.drain.is_fired()).then_some(&ctx.drain);
            match self.read_some(wait, drain, interruptible).await {
                ReadOutcome::Data => {}
                ReadOutcome::Eof | ReadOutcome::Failed => return Err(Wait::Closed),
                // Nothing of a request arrived: a quiet close, no response owed.
                ReadOutcome::TimedOut if !started => return Err(Wait::Idle),
                ReadOutcome::TimedOut => return Err(Wait::Error(ParseError::HeadTimeout)),
                ReadOutcome::Parked(idle) => return Err(Wait::Parked(idle)),
            }
        }
    }

    /// One request and its response.
    async fn exchange(&mut self, parsed: ParsedHead) -> Outcome {
        let ctx = self.ctx.clone();
        let head = {
            let len = parsed.len;
            parsed.into_head(self.rbuf.split_to(len).freeze())
        };
        ctx.count_request();
        self.started = self.recorded_at.take().unwrap_or_else(Stamp::now);
        if ctx.access_log.is_some() {
            // Without an access log, `log_head` is never set: nothing to clear either.
            self.log_head = Some(head.clone());
        }
        // Who the client is, from this request alone (before anything can refuse it, so no
        // response is ever logged with an earlier request's forwarded client).
        let forwarded_host = self.learn_client(&head);
        // Taken now: a streamed body takes the transport away until the handler is done.
        // The certificate is the connection's (fixed by its handshake): asked for once.
        if self.client_cert.is_none() {
            self.client_cert = self.io.as_ref().and_then(|io| io.client_subject());
        }

        let is_head = head.method() == "HEAD";
        if ctx.slots.taken.get() >= ctx.max_in_flight
            && !ctx.config.limit_exempt_paths.iter().any(|p| p == head.path())
        {
            // --limit-concurrency: refuse rather than queue (the body is left unread, so the
            // connection closes).
            let encoded =
                self.encode_response_head(Response::status_text(503), is_head, head.version(), true);
            return self.write_body(encoded).await;
        }

        let version = head.version();
        self.trailers_ok = head.accepts_trailers();
        let keep_alive = head.keep_alive() && !ctx.config.keep_alive.is_zero();
        let expect_continue = head.expect_continue();
        let decoder = BodyDecoder::with_limits(head.framing(), &ctx.config.limits);

        let mut wire = None;
        let body = match head.framing() {
            Framing::None => RequestBody::empty(),
            Framing::Length(n) if self.rbuf.len() as u64 >= n => {
                RequestBody::full(self.rbuf.split_to(n as usize).freeze())
            }
            Framing::Chunked if !self.rbuf.is_empty() => match decode_buffered(&decoder, &self.rbuf) {
                Err(e) => return self.error_outcome(e, version, is_head).await,
                Ok(Some((data, used))) => {
                    self.rbuf.advance(used);
                    RequestBody::full(Bytes::from(data))
                }
                Ok(None) => self.stream_body(decoder, expect_continue, &mut wire).await,
            },
            _ => self.stream_body(decoder, expect_continue, &mut wire).await,
        };
        if self.io.is_none() && wire.is_none() {
            return Outcome::Abort; // flushing before the body failed
        }

        let mut must_close = false;
        let mut panic = None;
        let mut response = {
            let _in_flight = ctx.slots.enter(wire.as_ref().map(|w| w.borrow().hold.clone()));
            // A handler may do its work in `call` itself and return a ready future (the
            // demo's `/plaintext` does): a panic there is the handler's too. The request
            // waits where it was built for the call to take it, so the closure that catches
            // the panic holds a pointer rather than a copy of it; its scope ends before the
            // await, so it is no part of the connection's future.
            let started = {
                let mut request = mem::ManuallyDrop::new(Request::with_all(
                    head,
                    self.peer,
                    body,
                    self.client,
                    self.scheme,
                    forwarded_host,
                    self.client_cert.clone(),
                ));
                // SAFETY: handed over once, in the closure (which runs once), and not used
                // after: the handler owns it, and drops it, unwinding too.
                catch_unwind(AssertUnwindSafe(|| unsafe { ctx.handler.call_in_place(&mut *request) }))
            };
            let answer_500 = || Response::status_text(500);
            match started {
                // The response comes out of the handler's future as it is, or the 500.
                Ok(fut) => catch_panic_or(fut, &mut panic, answer_500).await,
                Err(thrown) => {
                    panic = Some(thrown);
                    answer_500()
                }
            }
        };
        if let Some(panic) = panic {
            ExecutorStats::add(&ctx.stats.handler_panics, 1);
            tracing::error!(peer = %self.peer, panic = panic_message(&panic), "handler panicked; answering 500");
            must_close = true;
        }

        if let Some(wire) = wire {
            let mut wire = wire.borrow_mut();
            wire.detached = true;
            match wire.io.take() {
                Some(io) => self.io = Some(io),
                // The handler dropped a body read half way: the socket went with it.
                None => return Outcome::Abort,
            }
            self.rbuf = mem::take(&mut wire.rbuf);
            if let Some(e) = wire.error {
                // A broken body is the server's to answer, whatever the handler returned.
                ctx.stats.record_parse_error(e);
                tracing::debug!(peer = %self.peer, error = %e, "bad request body");
                response = error_response(e);
                must_close = true;
            } else if !wire.decoder.is_done() {
                // Unread body: the rest of the stream is not a request. Close, and let the
                // lingering read swallow what the client still sends.
                must_close = true;
            }
        }

        if let Some(upgrade) = response.take_upgrade() {
            if !must_close {
                // Boxed, as is the session: rare, and otherwise part of every connection's future.
                return Box::pin(self.upgrade(response, upgrade, version)).await;
            }
        }
        if !(200..600).contains(&response.status()) {
            // A 1xx is never a final response (RFC 9110 15.2; a 101 only with an upgrade,
            // above), and 600 and up are no HTTP status (15): the client would take the
            // next response for this one's.
            tracing::error!(
                peer = %self.peer,
                status = response.status(),
                "the handler's status cannot end a request; answering 500"
            );
            response = Response::status_text(500);
        }
        let close = must_close
            || !keep_alive
            || response.wants_close()
            || ctx.drain.is_fired()
            || ctx.spent.is_fired();
        match self.respond_buffered(&mut response, is_head, version, close) {
            Some(outcome) => outcome,
            None => {
                let encoded = self.encode_response_head(response, is_head, version, close);
                self.write_body(encoded).await
            }
        }
    }

    /// Write the `101` that accepts a WebSocket (or 403 to an origin `--ws-origins` does not
    /// allow), with any earlier pipelined responses before it.
    async fn upgrade(&mut self, mut response: Response, mut upgrade: Upgrade, version: Version) -> Outcome {
        if !crate::ws::handshake::origin_allowed(upgrade.origin(), &self.ctx.config.ws.origins) {
            tracing::debug!(peer = %self.peer, "WebSocket origin not in --ws-origins; 403");
            let encoded = self.encode_response_head(Response::status_text(403), false, version, true);
            return self.write_body(encoded).await;
        }
        // Checked: the origin (a slice of the read buffer) is not kept for the WebSocket's life.
        upgrade.origin = None;
        upgrade.negotiate(&mut response, &self.ctx.config.ws);
        let encoded = self.encode_response_head(response, false, version, false);
        match self.write_body(encoded).await {
            Outcome::KeepAlive if self.flush().await.is_ok() => Outcome::Upgrade(Box::new(upgrade)),
            Outcome::KeepAlive => Outcome::Abort,
            other => other,
        }
    }

    /// Hand the connection, and the bytes read past the handshake, to the WebSocket session:
    /// the connection's task goes on as the returned future, boxed (`None`: no socket left to
    /// hand over). It holds no `--limit-concurrency` slot: a WebSocket is an open connection,
    /// not a request in flight.
    // Boxed as it comes: taken out of its box in the connection's task, it would keep a slot
    // for itself in that task's future, in every WebSocket.
    #[allow(clippy::boxed_local)]
    fn hand_over(mut self: Box<Self>, upgrade: Box<Upgrade>) -> Option<Pin<Box<impl Future<Output = ()>>>> {
        let upgrade = *upgrade;
        let io = self.io.take()?;
        let rbuf = mem::take(&mut self.rbuf);
        let ctx = self.ctx.clone();
        // The HTTP connection is kept for the WebSocket's life only to write the `101`'s
        // access log line at its end; and then without its buffers and timer (the session
        // has its own).
        let owed = self.ctx.access_log.is_some().then_some(self).map(|mut conn| {
            conn.wbuf = BytesMut::new();
            conn.timer.release();
            conn
        });
        let session = crate::ws::session::run::<T, K, _>(io, rbuf, upgrade, ctx);
        Some(Box::pin(WebSocketTask { session, owed }))
    }

    /// Set the client and scheme of the request `head` (the peer's own, unless the peer is a
    /// trusted proxy that says otherwise); returns the host the proxy names, if believed.
    fn learn_client(&mut self, head: &crate::http::RequestHead) -> Option<Bytes> {
        (self.client, self.scheme) = (self.peer.ip(), self.own_scheme());
        if !self.peer_trusted || !head.has_forwarding_fields() {
            return None;
        }
        let cfg = &self.ctx.config;
        let f = forwarded(head.headers(), &cfg.trusted_proxies, cfg.forwarded);
        self.client = f.client.or(self.client);
        self.scheme = f.proto.unwrap_or(self.scheme);
        f.host.map(|h| head.bytes_of(h))
    }

    /// The scheme of the connection itself: `https` when the transport is TLS.
    fn own_scheme(&self) -> &'static str {
        match &self.io {
            Some(io) if io.is_secure() => "https",
            _ => "http",
        }
    }

    /// Hand the socket to a streamed request body for the handler to read.
    async fn stream_body(
        &mut self,
        decoder: BodyDecoder,
        expect_continue: bool,
        wire: &mut Option<Rc<RefCell<BodyWire<T>>>>,
    ) -> RequestBody {
        // Earlier pipelined responses (and so the 100 Continue after them) go out first.
        if self.flush().await.is_err() {
            self.io = None;
            return RequestBody::empty();
        }
        let shared = Rc::new(RefCell::new(BodyWire {
            io: self.io.take(),
            // A client that already sent body bytes is not waiting for 100 Continue.
            continue_pending: expect_continue && self.rbuf.is_empty(),
            rbuf: mem::take(&mut self.rbuf),
            decoder,
            error: None,
            detached: false,
            hold: Rc::new(Cell::new(Hold::Held)),
        }));
        *wire = Some(shared.clone());
        let cfg = &self.ctx.config;
        let hold = shared.borrow().hold.clone();
        RequestBody::stream(Box::new(StreamBody::<T, K> {
            wire: shared,
            hold,
            body_timeout: cfg.body_timeout,
            write_timeout: cfg.write_timeout,
            min_rate: cfg.body_min_rate,
            first_read: None,
            received: 0,
            slots: self.ctx.slots.clone(),
            _timer: PhantomData,
        }))
    }

    /// Encode the status line and fields of `response` into the write buffer; `close` marks
    /// it the last one. [`Conn::write_body`] then writes its body. Two steps, called one after
    /// the other at each site: the response and its fields are then no part of the write's
    /// future (nor of every connection's future), and that future is made in place.
    fn encode_response_head(
        &mut self,
        response: Response,
        is_head: bool,
        version: Version,
        close: bool,
    ) -> Encoded {
        let event_stream = response.is_event_stream();
        let (status, headers, body) = response.into_parts();
        let HeadFraming { send_body, length, close, .. } =
            self.encode_head(status, &headers, &body, is_head, version, close);
        // Kept past the writes only for the access log, and then boxed.
        let log_fields = self.ctx.access_log.is_some().then(|| Box::new(headers));
        Encoded { status, body, send_body, length, close, event_stream, log_fields }
    }

    /// The status line, `headers` and the framing and connection fields, into the write
    /// buffer; returns how the body is framed.
    #[inline(always)]
    fn encode_head(
        &mut self,
        status: u16,
        headers: &Fields,
        body: &ResponseBody,
        is_head: bool,
        version: Version,
        close: bool,
    ) -> HeadFraming {
        let framing = HeadFraming::of(status, body, is_head, version, close);
        encode_head_dated(
            &mut self.wbuf,
            status,
            headers.iter(),
            framing.length,
            framing.connection,
            &self.ctx.date.borrow(),
        );
        framing
    }

    /// [`Conn::encode_response_head`] and then [`Conn::write_body`], for a body that only
    /// needs copying into the write buffer (a full body up to `INLINE_BODY_MAX`, or none)
    /// when that leaves the buffer under its high water mark: done without a future, and
    /// without the [`Encoded`] in between. `None` for any other response, left as it was
    /// for those two. Encoded from where the response is: taken by value, it was moved once
    /// more.
    fn respond_buffered(
        &mut self,
        response: &mut Response,
        is_head: bool,
        version: Version,
        close: bool,
    ) -> Option<Outcome> {
        // Decided on the body's size alone (a HEAD's large body, which would not be copied,
        // goes the long way too: rare, and the same answer).
        let copied = match response.body() {
            ResponseBody::Full(bytes) => bytes.len(),
            ResponseBody::Empty => 0,
            _ => usize::MAX,
        };
        if copied > INLINE_BODY_MAX || self.wbuf.len() + copied >= WRITE_HIGH_WATER {
            return None;
        }
        let (status, event_stream) = (response.status(), response.is_event_stream());
        let (headers, body) = response.parts_mut();
        let HeadFraming { send_body, close, .. } =
            self.encode_head(status, headers, body, is_head, version, close);
        let mut sent = 0;
        if let ResponseBody::Full(bytes) = body {
            if send_body && !bytes.is_empty() {
                self.wbuf.extend_from_slice(bytes);
                sent = bytes.len() as u64;
            }
        }
        let log_fields = self.ctx.access_log.is_some().then(|| Box::new(mem::take(headers)));
        self.record(status, log_fields, sent);
        Some(if close || (event_stream && self.ctx.draining()) { Outcome::Close } else { Outcome::KeepAlive })
    }

    /// Write the body of a response whose head is encoded (and the buffer, when it must go
    /// now). Every response is counted (metrics) and logged (access log) here, once written,
    /// or in [`Conn::respond_buffered`] for one that only needed copying.
    async fn write_body(&mut self, encoded: Encoded) -> Outcome {
        let Encoded { status, body, send_body, length, mut close, event_stream, log_fields } = encoded;
        let mut sent = 0u64;
        let mut result = match body {
            ResponseBody::Full(bytes) if send_body && !bytes.is_empty() => {
                sent = bytes.len() as u64;
                if bytes.len() <= INLINE_BODY_MAX {
                    self.wbuf.extend_from_slice(&bytes);
                    Ok(())
                } else {
                    match self.flush().await {
                        Ok(()) => self.write_bytes(bytes).await,
                        Err(()) => Err(()),
                    }
                }
            }
            // Boxed: the stream's state is large and rare, and it would otherwise be part of
            // every connection's future, idle or not (the stream allocates anyway).
            ResponseBody::Stream(stream) if send_body => {
                let frames: FrameStream = Box::pin(DataFrames(stream));
                Box::pin(self.write_stream(frames, length, event_stream, &mut sent)).await
            }
            ResponseBody::Frames { frames, .. } if send_body => {
                Box::pin(self.write_stream(frames, length, event_stream, &mut sent)).await
            }
            _ => Ok(()),
        };
        if result.is_ok() && self.wbuf.len() >= WRITE_HIGH_WATER {
            result = self.flush().await;
        }
        self.record(status, log_fields, sent);
        // An event stream the drain ended: the connection goes with it (the client reconnects
        // to a server that is not draining).
        close |= event_stream && self.ctx.draining();
        match result {
            Err(()) => Outcome::Abort,
            Ok(()) if close => Outcome::Close,
            Ok(()) => Outcome::KeepAlive,
        }
    }

    /// Count a response in the executor's metrics and write its access log line.
    /// `headers`: the response's fields, when the access log is on. A `101`'s line waits for
    /// the end of its WebSocket (`hand_over`).
    fn record(&mut self, status: u16, headers: Option<Box<Fields>>, sent: u64) {
        let now = Stamp::now();
        self.recorded_at = Some(now);
        self.ctx.stats.record_response(status, now.micros_since(self.started));
        if self.ctx.access_log.is_none() {
            return; // the access log costs nothing when it is off: not even a call
        }
        let elapsed = now.since(self.started);
        if status == 101 {
            self.upgrade_headers = headers;
            return;
        }
        self.log(status, headers.as_deref(), sent, None, elapsed);
    }

    /// Write the access log line of the current request (if the log is on): `sent` bytes
    /// out and, for a WebSocket, `received` bytes in, `elapsed` since its head.
    fn log(
        &mut self,
        status: u16,
        headers: Option<&Fields>,
        sent: u64,
        received: Option<u64>,
        elapsed: Duration,
    ) {
        let Some(log) = &self.ctx.access_log else { return };
        let head = self.log_head.take();
        let request_id = match head.as_ref().and_then(|h| h.header("x-request-id")) {
            Some(id) => String::from_utf8_lossy(id).into_owned(),
            None => log.new_request_id(),
        };
        let response_headers: Vec<(&str, &[u8])> = headers.map(|h| h.iter().collect()).unwrap_or_default();
        log.log(&Entry {
            time: SystemTime::now(),
            client: self.client,
            scheme: self.scheme,
            head: head.as_ref(),
            status,
            bytes: sent,
            bytes_in: received,
            duration: elapsed,
            executor: log.executor(),
            request_id: &request_id,
            response_headers: &response_headers,
            client_cert: self.client_cert.as_deref(),
        });
    }

    /// Send a streamed body framed as `length` says (chunked, close-delimited, or exactly
    /// `Known(n)` bytes). Chunks that are ready at once are batched into one write; the
    /// buffer is flushed whenever the stream has to wait. A body that breaks (an error, a
    /// panic, more or fewer bytes than its length) ends the connection without the end of
    /// its framing, so the client can tell it is incomplete.
    ///
    /// An `event_stream` ([`Response::sse`]) yields one whole event per chunk. It ends, as if
    /// the stream had, at the first chunk boundary after the executor starts draining (so
    /// never mid-event, and a stream that never waits is stopped too); while it waits, a
    /// `: ping` comment goes out every `sse_ping_interval`.
    async fn write_stream(
        &mut self,
        mut stream: FrameStream,
        length: BodyLength,
        event_stream: bool,
        sent: &mut u64,
    ) -> Result<(), ()> {
        let chunked = length == BodyLength::Chunked;
        let ctx = self.ctx.clone();
        let ping_every = Some(ctx.config.sse_ping_interval).filter(|d| event_stream && !d.is_zero());
        let mut trailers = None;
        // A stream that is always ready, to a socket that always has room, never waits: yield
        // now and then so the executor's other tasks (its heartbeat among them) run.
        let mut budget = crate::coop::Budget::new();
        loop {
            let polled = if event_stream && ctx.draining() {
                Ok(Poll::Ready(None))
            } else {
                poll_fn(|cx| Poll::Ready(catch_unwind(AssertUnwindSafe(|| stream.as_mut().poll_next(cx)))))
                    .await
            };
            let item = match polled {
                Ok(Poll::Ready(item)) => item,
                Ok(Poll::Pending) if event_stream => {
                    budget.reset();
                    self.flush().await?;
                    let woke = catch_panic(wait_for_event::<K>(stream.as_mut(), &ctx.drain, ping_every))
                        .await
                        .map_err(|panic| {
                            tracing::error!(peer = %self.peer, panic = panic_message(&panic), "response stream panicked");
                        })?;
                    match woke {
                        EventWait::Item(item) => item,
                        EventWait::Drain => None,
                        EventWait::Ping => {
                            *sent += PING.len() as u64;
                            if chunked {
                                encode_chunk(&mut self.wbuf, PING);
                            } else {
                                self.wbuf.extend_from_slice(PING);
                            }
                            continue;
                        }
                    }
                }
                Ok(Poll::Pending) => {
                    budget.reset();
                    self.flush().await?;
                    catch_panic(poll_fn(|cx| stream.as_mut().poll_next(cx))).await.map_err(|panic| {
                        tracing::error!(peer = %self.peer, panic = panic_message(&panic), "response stream panicked");
                    })?
                }
                Err(panic) => {
                    tracing::error!(peer = %self.peer, panic = panic_message(&panic), "response stream panicked");
                    return Err(());
                }
            };
            let data = match item {
                None => {
                    let ended = self.end_stream(length, *sent, trailers);
                    if ended.is_err() {
                        // What was sent goes out; the close that follows tells it is short.
                        let _ = self.flush().await;
                    }
                    return ended;
                }
                Some(Err(e)) => {
                    tracing::warn!(peer = %self.peer, error = %e, "response stream failed; closing connection");
                    let _ = self.flush().await;
                    return Err(());
                }
                Some(Ok(Frame::Trailers(fields))) => {
                    trailers = Some(fields);
                    // Counted like data: a stream that is always ready with frames that
                    // write nothing must still let the executor's other tasks run.
                    if budget.spend(0) {
                        crate::coop::yield_now().await;
                    }
                    continue;
                }
                Some(Ok(Frame::Data(data))) => data,
            };
            if data.is_empty() {
                if budget.spend(0) {
                    crate::coop::yield_now().await;
                }
                continue;
            }
            let len = data.len();
            *sent += len as u64;
            if let BodyLength::Known(n) = length {
                if *sent > n {
                    tracing::warn!(peer = %self.peer, length = n, "response body longer than its length; closing connection");
                    let _ = self.flush().await;
                    return Err(());
                }
            }
            if data.len() > INLINE_BODY_MAX {
                if chunked {
                    encode_chunk_size(&mut self.wbuf, data.len());
                }
                self.flush().await?;
                self.write_bytes(data).await?;
                if chunked {
                    self.wbuf.extend_from_slice(b"\r\n");
                }
            } else {
                if chunked {
                    encode_chunk(&mut self.wbuf, &data);
                } else {
                    self.wbuf.extend_from_slice(&data);
                }
                if self.wbuf.len() >= WRITE_HIGH_WATER {
                    self.flush().await?;
                }
            }
            if budget.spend(len) {
                crate::coop::yield_now().await;
            }
        }
    }

    /// The end of a streamed body: the last chunk (with trailers when the client accepts
    /// them), or a check that a body of known length was whole.
    fn end_stream(
        &mut self,
        length: BodyLength,
        sent: u64,
        trailers: Option<Vec<(std::borrow::Cow<'static, str>, Bytes)>>,
    ) -> Result<(), ()> {
        match length {
            BodyLength::Chunked => match trailers.filter(|_| self.trailers_ok) {
                Some(fields) => encode_last_chunk_with_trailers(
                    &mut self.wbuf,
                    fields.iter().map(|(n, v)| (n.as_ref(), &v[..])),
                ),
                None => self.wbuf.extend_from_slice(LAST_CHUNK),
            },
            BodyLength::Known(n) if sent != n => {
                tracing::warn!(peer = %self.peer, length = n, sent, "response body shorter than its length; closing connection");
                return Err(());
            }
            _ => {}
        }
        Ok(())
    }

    /// Answer a refused request and close.
    async fn fail(&mut self, e: ParseError) {
        self.started = Stamp::now();
        // The access log still names what was asked for, when the request line was read.
        self.log_head = match self.ctx.access_log {
            Some(_) => crate::http::refused_request_line(&self.rbuf, &self.ctx.config.limits),
            None => None,
        };
        (self.client, self.scheme) = (self.peer.ip(), self.own_scheme());
        if let Outcome::Close = self.error_outcome(e, Version::Http11, false).await {
            self.close().await;
        }
    }

    /// Answer a request that cannot be served with its 4xx/5xx, and close. `is_head`: it is
    /// a HEAD request's answer (no body follows its head).
    async fn error_outcome(&mut self, e: ParseError, version: Version, is_head: bool) -> Outcome {
        self.ctx.stats.record_parse_error(e);
        tracing::debug!(peer = %self.peer, error = %e, kind = e.kind(), "refusing request");
        let encoded = self.encode_response_head(error_response(e), is_head, version, true);
        self.write_body(encoded).await
    }

    /// Graceful close: flush, FIN, then read and discard until the client closes too (or
    /// the linger time or byte budget runs out). Closing with unread bytes would send RST,
    /// which can destroy a response the client has not read yet.
    async fn close(&mut self) {
        if self.flush().await.is_err() {
            return;
        }
        let Some(io) = self.io.as_mut() else { return };
        if io.shutdown_write().is_err() {
            return;
        }
        let deadline = Instant::now() + self.ctx.config.linger;
        let mut discarded = 0;
        self.rbuf.clear();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.read_some(left, None, false).await {
                ReadOutcome::Data => {
                    discarded += self.rbuf.len();
                    self.rbuf.clear();
                    if discarded > LINGER_MAX_BYTES {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// One read into the read buffer, bounded by `wait` and, if given, by `shorten`.
    ///
    /// With `shorten`, the wait is cut down to at most `DRAIN_IDLE_GRACE` from the moment the
    /// latch fires. The read itself stays in flight: cancelling a completion-based read can
    /// lose bytes the kernel has already copied into its buffer (a request the client sent
    /// would vanish), so only a timeout, after which the connection closes, drops it.
    ///
    /// With `may_idle` (between requests, nothing of the next one read yet), a read that
    /// waits past `IDLE_GRACE` is called off without losing a byte (`read_unless`) and the
    /// connection lets go of its buffers, waiting for readability with none (`idle_wait`);
    /// once its waits have been short, a busy connection reads the plain way (`was_idle`).
    async fn read_some(
        &mut self,
        mut wait: Duration,
        mut shorten: Option<&Latch>,
        may_idle: bool,
    ) -> ReadOutcome {
        self.recorded_at = None;
        if self.io.is_none() {
            return ReadOutcome::Failed;
        }
        if wait.is_zero() {
            return ReadOutcome::TimedOut;
        }
        let between = may_idle && wait > IDLE_GRACE && self.rbuf.is_empty();
        if between && self.was_idle {
            // After a parked wait, this read goes on from where that wait ended.
            let waited = match self.woke.take() {
                Some(woke) => woke,
                None => self.idle_wait(wait, shorten).await,
            };
            match waited {
                IdleWait::Done(outcome) => return outcome,
                IdleWait::Readable { left, drained } => {
                    wait = left;
                    if drained {
                        shorten = None;
                    }
                }
            }
        }
        let room = self.make_read_room();
        let Some(io) = self.io.as_mut() else {
            return ReadOutcome::Failed;
        };
        let read = 'read: {
            // Pinned here for both paths: the future then holds one read, not a slot for each.
            let mut read = pin!(io.read(mem::take(&mut self.rbuf)));
            if between && !self.was_idle {
                // A busy connection's plain read: if it outlasts the grace, the connection
                // has gone idle after all, and its next wait between requests is one that
                // lets go of its buffers.
                if let Some(done) = self.timer.timeout(IDLE_GRACE, read.as_mut()).await {
                    break 'read Some(done);
                }
                self.was_idle = true;
                wait -= IDLE_GRACE;
                if shorten.is_some_and(Latch::is_fired) {
                    wait = wait.min(DRAIN_IDLE_GRACE);
                    shorten = None;
                }
            }
            match shorten {
                None => self.timer.timeout(wait, read).await,
                Some(latch) => {
                    let first = first_of(self.timer.timeout(wait, read.as_mut()), latch.wait()).await;
                    match first {
                        Either::Left(done) => done,
                        // Draining: the same read, for a little longer at most.
                        Either::Right(()) => self.timer.timeout(wait.min(DRAIN_IDLE_GRACE), read).await,
                    }
                }
            }
        };
        match read {
            // The buffer went with the cancelled read; the connection is closing anyway.
            None => ReadOutcome::TimedOut,
            Some((result, buf)) => self.finish_read(result, buf, room),
        }
    }

    /// Between requests: read for `IDLE_GRACE` (a busy client's next request comes well
    /// within it), then call the read off and report `ReadOutcome::Parked` with the rest of
    /// `wait`: the connection lets go of its working state and waits for the socket to
    /// become readable (`Parked::wait`, cut short by `shorten` as `read_some` does).
    async fn idle_wait(&mut self, wait: Duration, shorten: Option<&Latch>) -> IdleWait {
        let room = self.make_read_room();
        let Some(io) = self.io.as_mut() else {
            return IdleWait::Done(ReadOutcome::Failed);
        };
        let drain = async move {
            match shorten {
                Some(latch) => latch.wait().await,
                None => std::future::pending().await,
            }
        };
        let stop = self.timer.timeout(IDLE_GRACE, drain);
        let (result, buf) = io.read_unless(mem::take(&mut self.rbuf), stop).await;
        if let Some(result) = result {
            // Within the grace: a busy client, whose reads need not be called off.
            self.was_idle = false;
            return IdleWait::Done(self.finish_read(result, buf, room));
        }
        // Idle: the connection parks (`Conn::run` returns, and the working state with its
        // buffers and timer is let go) for the rest of its wait.
        drop(buf);
        let drained = shorten.is_some_and(Latch::is_fired);
        let mut left = wait.saturating_sub(IDLE_GRACE);
        if drained {
            left = left.min(DRAIN_IDLE_GRACE);
        }
        IdleWait::Done(ReadOutcome::Parked(Idle { left, drained, watch_drain: shorten.is_some() }))
    }

    /// The read buffer back from a completed read, and what the read came to.
    fn finish_read(&mut self, result: std::io::Result<usize>, buf: BytesMut, room: usize) -> ReadOutcome {
        self.rbuf = buf;
        match result {
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => {
                if n >= room && self.read_size < MAX_READ_BUF {
                    // The client sends more at a time than fits (large heads, deep
                    // pipelining): read with more room from now on.
                    self.read_size *= 2;
                }
                ReadOutcome::Data
            }
            Err(_) => ReadOutcome::Failed,
        }
    }

    /// Make room in the read buffer for the next read; returns the room.
    ///
    /// A partly filled buffer (the rest of a head still to come) grows when it is nearly
    /// full. An empty one, between requests, goes back to the front of its allocation when
    /// nothing else holds that (no copy, no allocation), so its start does not creep forward
    /// request after request until a read must allocate a larger one; one that a large head
    /// grew well past `read_size` is let go, so an idle connection holds `read_size` bytes.
    fn make_read_room(&mut self) -> usize {
        let room = self.rbuf.capacity() - self.rbuf.len();
        if !self.rbuf.is_empty() {
            if room < MIN_READ_SPACE {
                self.rbuf.reserve(self.read_size);
            }
        } else if room > 2 * self.read_size {
            self.rbuf = BytesMut::with_capacity(self.read_size);
        } else if room < self.read_size
            && !self.rbuf.try_reclaim(self.read_size)
            && room < (self.read_size / 2).max(MIN_READ_SPACE)
        {
            // Too small for `read_size`, or still shared (the handler kept some of the
            // request's bytes), and not much room left: a new one.
            self.rbuf = BytesMut::with_capacity(self.read_size);
        }
        self.rbuf.capacity() - self.rbuf.len()
    }

    /// Write out the write buffer, within the write timeout.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.recorded_at = None;
        let io = self.io.as_mut().ok_or(())?;
        let buf = mem::take(&mut self.wbuf);
        // Made where it stays: the write's future is a few hundred bytes, and passed by value
        // into the timeout and then into this future's state it was copied twice per flush
        // (a `memcpy` each, a fifth of a keep-alive request's instructions).
        let write = pin!(io.write_all(buf));
        match self.timer.timeout(self.ctx.config.write_timeout, write).await {
            Some((Ok(()), mut buf)) => {
                // Keep the buffer for the next batch, unless one big response grew it: an
                // idle connection should not hold on to that.
                if buf.capacity() <= 4 * WRITE_HIGH_WATER {
                    buf.clear();
                    self.wbuf = buf;
                }
                Ok(())
            }
            _ => Err(()),
        }
    }

    async fn write_bytes(&mut self, bytes: Bytes) -> Result<(), ()> {
        let io = self.io.as_mut().ok_or(())?;
        let write = pin!(io.write_bytes(bytes));
        match self.timer.timeout(self.ctx.config.write_timeout, write).await {
            Some(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

/// The response for a refused request: its status, and the reason as text.
fn error_response(e: ParseError) -> Response {
    let status = e.status();
    let body = format!("{} {}: {}\n", status, crate::http::response::reason(status), e);
    Response::new(status)
        .with_header("content-type", Bytes::from_static(b"text/plain; charset=utf-8"))
        .with_body(body)
}

/// What an event stream's wait ended with.
enum EventWait {
    Item(Option<std::io::Result<Frame>>),
    /// The executor drains: end the stream here, between two events.
    Drain,
    /// No event for the ping interval.
    Ping,
}

/// Wait for the next event of an event stream, the drain, or (with `ping_every`) the time for
/// a keepalive comment, whichever comes first. The stream is polled first, so an event that
/// is ready as the drain fires is still sent whole.
async fn wait_for_event<K: Timer>(
    mut stream: std::pin::Pin<&mut (dyn futures_core::Stream<Item = std::io::Result<Frame>> + 'static)>,
    drain: &Latch,
    ping_every: Option<Duration>,
) -> EventWait {
    let mut drained = pin!(drain.wait());
    let mut ping = pin!(async {
        match ping_every {
            Some(d) => K::sleep(d).await,
            None => std::future::pending().await,
        }
    });
    poll_fn(|cx| {
        if let Poll::Ready(item) = stream.as_mut().poll_next(cx) {
            return Poll::Ready(EventWait::Item(item));
        }
        if drained.as_mut().poll(cx).is_ready() {
            return Poll::Ready(EventWait::Drain);
        }
        if ping.as_mut().poll(cx).is_ready() {
            return Poll::Ready(EventWait::Ping);
        }
        Poll::Pending
    })
    .await
}

/// A stream of data chunks seen as frames.
struct DataFrames(BodyStream);

impl futures_core::Stream for DataFrames {
    type Item = std::io::Result<Frame>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx).map(|item| item.map(|r| r.map(Frame::Data)))
    }
}

/// Holds a slot of [`Slots`] for as long as it lives (the handler's run).
struct InFlight<'a> {
    slots: &'a Slots,
    hold: Option<Rc<Cell<Hold>>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let held = self.hold.as_ref().map_or(Hold::Held, |hold| hold.replace(Hold::Released));
        // Stepped out: the body's read gave the slot back already.
        if held == Hold::Held {
            self.slots.sub(1);
        }
    }
}

/// Where the slot of a request with a streamed body is: its body may still be read after
/// the handler returned (by a task it handed the body to), and neither the read's step out
/// nor the handler's end may count the slot twice.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hold {
    /// Taken by the running handler.
    Held,
    /// Given back while the body's read waits for the client.
    SteppedOut,
    /// The handler returned: no slot any more.
    Released,
}

/// A slot given back while a request waits for its client; taken again when dropped, if
/// the handler still runs.
struct SteppedOut<'a> {
    slots: &'a Slots,
    hold: &'a Cell<Hold>,
}

impl Drop for SteppedOut<'_> {
    fn drop(&mut self) {
        if self.hold.get() == Hold::SteppedOut {
            self.hold.set(Hold::Held);
            self.slots.add(1);
        }
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic)")
}

/// The socket and read state while a handler streams a request body.
struct BodyWire<T> {
    io: Option<T>,
    rbuf: BytesMut,
    decoder: BodyDecoder,
    /// `100 Continue` is owed before the first read.
    continue_pending: bool,
    error: Option<ParseError>,
    /// Set when the request has been answered: later reads get `BodyError::Gone`.
    detached: bool,
    /// The request's slot of the executor's `Slots`, shared with its body.
    hold: Rc<Cell<Hold>>,
}

/// A request body read from the connection on demand.
struct StreamBody<T, K> {
    wire: Rc<RefCell<BodyWire<T>>>,
    body_timeout: Duration,
    write_timeout: Duration,
    /// The whole-body deadline: `body_timeout` after the first read, plus a second for each
    /// `min_rate` bytes received (`min_rate` 0: none).
    min_rate: u64,
    first_read: Option<Instant>,
    received: u64,
    /// The executor's slots, stepped out of while waiting for the client.
    slots: Rc<Slots>,
    /// The request's slot (the same as its `BodyWire`'s).
    hold: Rc<Cell<Hold>>,
    _timer: PhantomData<fn() -> K>,
}

impl<T: Transport, K: Timer> BodySource for StreamBody<T, K> {
    fn next_chunk(&mut self) -> ChunkFuture<'_> {
        Box::pin(self.next())
    }
}

impl<T: Transport, K: Timer> StreamBody<T, K> {
    /// How long the next read may wait: the gap limit, cut short by the whole-body deadline.
    fn read_wait(&mut self) -> Duration {
        let first = *self.first_read.get_or_insert_with(Instant::now);
        if self.min_rate == 0 {
            return self.body_timeout;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        let deadline = first + self.body_timeout + earned;
        // Zero makes the read time out at once (408).
        self.body_timeout.min(deadline.saturating_duration_since(Instant::now()))
    }

    async fn next(&mut self) -> Option<Result<Bytes, BodyError>> {
        loop {
            // Decode what is buffered; take the socket out only when a read is needed, so no
            // RefCell borrow is held across an await.
            let (mut io, mut rbuf, send_continue) = {
                let mut guard = self.wire.borrow_mut();
                let w = &mut *guard;
                if w.detached {
                    return Some(Err(BodyError::Gone));
                }
                if let Some(e) = w.error {
                    return Some(Err(BodyError::Protocol(e)));
                }
                match w.decoder.decode(&w.rbuf) {
                    Ok(Decoded::Data { consumed, range }) => {
                        let taken = w.rbuf.split_to(consumed).freeze();
                        return Some(Ok(taken.slice(range)));
                    }
                    Ok(Decoded::Done { consumed }) => {
                        w.rbuf.advance(consumed);
                        return None;
                    }
                    Ok(Decoded::NeedMore { consumed }) => w.rbuf.advance(consumed),
                    Err(e) => {
                        w.error = Some(e);
                        return Some(Err(BodyError::Protocol(e)));
                    }
                }
                let Some(io) = w.io.take() else {
                    return Some(Err(BodyError::Gone));
                };
                (io, mem::take(&mut w.rbuf), mem::replace(&mut w.continue_pending, false))
            };

            let mut failure = None;
            if send_continue {
                let sent =
                    timeout::<K, _>(self.write_timeout, io.write_bytes(Bytes::from_static(CONTINUE))).await;
                if !matches!(sent, Some(Ok(()))) {
                    failure = Some(ParseError::IncompleteBody);
                }
            }
            if failure.is_none() {
                if rbuf.capacity() - rbuf.len() < MIN_READ_SPACE {
                    rbuf.reserve(READ_GROW);
                }
                let wait = self.read_wait();
                let waiting = self.slots.step_out(&self.hold);
                let read = timeout::<K, _>(wait, io.read(rbuf)).await;
                drop(waiting);
                rbuf = match read {
                    None => {
                        failure = Some(ParseError::BodyTimeout);
                        BytesMut::new()
                    }
                    Some((Ok(n), buf)) => {
                        if n == 0 {
                            failure = Some(ParseError::IncompleteBody);
                        }
                        self.received += n as u64;
                        buf
                    }
                    Some((Err(_), buf)) => {
                        failure = Some(ParseError::IncompleteBody);
                        buf
                    }
                };
            }

            let mut w = self.wire.borrow_mut();
            w.io = Some(io);
            w.rbuf = rbuf;
            if let Some(e) = failure {
                w.error = Some(e);
                return Some(Err(BodyError::Protocol(e)));
            }
        }
    }
}

/// How a response's head frames its body, decided from its status, body and request.
struct HeadFraming {
    /// False for HEAD and for statuses without a body.
    send_body: bool,
    length: BodyLength,
    connection: ConnectionHeader,
    /// This is the connection's last response (asked, or a body the close delimits).
    close: bool,
}

impl HeadFraming {
    #[inline]
    fn of(status: u16, body: &ResponseBody, is_head: bool, version: Version, mut close: bool) -> HeadFraming {
        let allows_body = status_allows_body(status);
        let length = match body {
            _ if !allows_body => BodyLength::Forbidden,
            // HTTP/1.0 has no chunked coding: a streamed body ends when the connection does.
            // (For HEAD as well: its head must be the one a GET would get, never chunked.)
            ResponseBody::Frames { length: Some(n), .. } => BodyLength::Known(*n),
            ResponseBody::Stream(_) | ResponseBody::Frames { .. } if version == Version::Http10 => {
                BodyLength::CloseDelimited
            }
            ResponseBody::Stream(_) | ResponseBody::Frames { .. } => BodyLength::Chunked,
            ResponseBody::Full(b) => BodyLength::Known(b.len() as u64),
            ResponseBody::Empty => BodyLength::Known(0),
        };
        close |= length == BodyLength::CloseDelimited;
        let connection = match (close, version) {
            _ if status == 101 => ConnectionHeader::Upgrade,
            (true, _) => ConnectionHeader::Close,
            (false, Version::Http10) => ConnectionHeader::KeepAlive,
            (false, Version::Http11) => ConnectionHeader::Omit,
        };
        HeadFraming { send_body: allows_body && !is_head, length, connection, close }
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
