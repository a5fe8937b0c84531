//! Running the connection driver without a network: an in-memory transport that replays a
//! script of reads and records every write. Used by the driver's unit tests, the fuzz
//! targets and property tests; it is part of the public API so they can reach it.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::app::Handler;
use crate::conn::{serve, ConnCtx, DriverConfig};
use crate::io::{ReadHalf, Timer, Transport, WriteHalf};
use crate::state::ServerState;

/// What the driver did on one connection.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// Each write, in order (a pipelined batch is one entry).
    pub writes: Vec<Vec<u8>>,
    /// How many reads the driver asked for (the last one past the script reads EOF).
    pub reads: usize,
    /// The spare room of the buffer handed to each read (what an idle connection holds).
    pub read_rooms: Vec<usize>,
    /// Whether the driver sent FIN (a graceful close).
    pub shutdown: bool,
}

impl Transcript {
    /// Everything written, concatenated.
    pub fn output(&self) -> Vec<u8> {
        self.writes.concat()
    }
}

/// A transport whose reads come from a script, one step per read; an exhausted script
/// reads as end of stream. Reads never return more than the buffer's spare room, as a
/// socket would not.
pub struct MemoryIo {
    script: Vec<Vec<u8>>,
    log: Rc<RefCell<Transcript>>,
    /// After the script, reads wait for ever instead of reading end of stream.
    stalls: bool,
}

impl MemoryIo {
    /// A client that sends `reads` and then closes. With the transcript it writes to.
    pub fn new(reads: Vec<Vec<u8>>) -> (MemoryIo, Rc<RefCell<Transcript>>) {
        let log = Rc::new(RefCell::new(Transcript::default()));
        (MemoryIo { script: reads, log: log.clone(), stalls: false }, log)
    }

    /// A client that sends `reads` and then nothing more, and stays connected: a read past
    /// the script never completes. With the transcript it writes to.
    pub fn stalling(reads: Vec<Vec<u8>>) -> (MemoryIo, Rc<RefCell<Transcript>>) {
        let log = Rc::new(RefCell::new(Transcript::default()));
        (MemoryIo { script: reads, log: log.clone(), stalls: true }, log)
    }
}

impl Transport for MemoryIo {
    type ReadHalf = MemoryIo;
    type WriteHalf = MemoryWrite;

    fn split(self) -> (MemoryIo, MemoryWrite) {
        let log = self.log.clone();
        (self, MemoryWrite { log })
    }

    async fn read(&mut self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        let room = (buf.capacity() - buf.len()).max(1);
        {
            let mut log = self.log.borrow_mut();
            log.reads += 1;
            log.read_rooms.push(room);
        }
        let Some(next) = self.script.first_mut() else {
            if self.stalls {
                std::future::pending::<()>().await;
            }
            return (Ok(0), buf);
        };
        let n = next.len().min(room);
        buf.extend_from_slice(&next[..n]);
        next.drain(..n);
        if next.is_empty() {
            self.script.remove(0);
        }
        (Ok(n), buf)
    }

    /// A script never waits, so there is nothing to stop.
    async fn read_unless<S: Future>(
        &mut self,
        buf: BytesMut,
        _stop: S,
    ) -> (Option<io::Result<usize>>, BytesMut) {
        let (result, buf) = Transport::read(self, buf).await;
        (Some(result), buf)
    }

    async fn readable(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        self.log.borrow_mut().writes.push(buf.to_vec());
        (Ok(()), buf)
    }

    async fn write_bytes(&mut self, buf: Bytes) -> io::Result<()> {
        self.log.borrow_mut().writes.push(buf.to_vec());
        Ok(())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.log.borrow_mut().shutdown = true;
        Ok(())
    }
}

impl ReadHalf for MemoryIo {
    async fn read(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        Transport::read(self, buf).await
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        Transport::readable(self)
    }
}

/// The write side of a split [`MemoryIo`]: it records into the same transcript.
pub struct MemoryWrite {
    log: Rc<RefCell<Transcript>>,
}

impl WriteHalf for MemoryWrite {
    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        self.log.borrow_mut().writes.push(buf.to_vec());
        (Ok(()), buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.log.borrow_mut().shutdown = true;
        Ok(())
    }
}

/// A timer that never fires: with [`MemoryIo`] every operation completes at once, so no
/// timeout is ever reached.
pub struct NeverTimer;

impl Timer for NeverTimer {
    type Sleep = std::future::Pending<()>;

    fn sleep(_: Duration) -> std::future::Pending<()> {
        std::future::pending()
    }
}

/// Poll `fut` to completion with a no-op waker; it must never wait on anything but
/// [`MemoryIo`]. Panics if it does not finish within `max_polls` polls.
pub fn block_on<F: Future>(fut: F, max_polls: usize) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..max_polls {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the connection did not finish over an always-ready transport (a handler waiting on a timer?)");
}

/// Serve one connection whose client sends `reads` (one step per read) and then closes.
pub fn run_connection<H: Handler>(reads: Vec<Vec<u8>>, config: DriverConfig, handler: H) -> Transcript {
    let (io, log) = MemoryIo::new(reads);
    let state = Arc::new(ServerState::new(1));
    let ctx = Rc::new(ConnCtx::new(config, handler, state.executor(0), state, usize::MAX));
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal address");
    block_on(serve::<MemoryIo, NeverTimer, H>(io, peer.into(), ctx), 1_000_000);
    let transcript = log.borrow().clone();
    transcript
}
