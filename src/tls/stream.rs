//! [`TlsStream`]: TLS over any [`Transport`], with the owned buffers of the transport below.
//!
//! The handshake happens inside the first read, so it runs under whatever limit the caller
//! puts on that read (the driver's `--header-timeout`). A first byte that is not a TLS
//! handshake record is a plain HTTP client on the TLS port: it gets a plain-text 400, as
//! nginx answers, instead of a TLS alert it cannot read.

use crate::peer::Peer;
use std::cell::RefCell;
use std::future::Future;
use std::io::{self, BufRead, Write};
use std::mem;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rustls::ServerConnection;

use super::config::TlsConfig;
use super::subject::subject_of;
use crate::io::{ReadHalf, Transport, WriteHalf};
use crate::state::ExecutorStats;

/// Room for ciphertext reads: one full TLS record (16 KiB plus its header and tag).
const CIPHERTEXT_READ: usize = 16 * 1024 + 512;
/// A ciphertext write buffer grown past this by a large response is let go afterwards.
const CIPHERTEXT_KEEP: usize = 256 * 1024;
/// The content type of a TLS handshake record: what every TLS client sends first.
const HANDSHAKE_RECORD: u8 = 0x16;
/// After answering a plain HTTP client, this much of what it still sends is read and
/// discarded (so closing does not reset the answer away) before closing.
const PLAIN_DISCARD_MAX: usize = 64 * 1024;

const PLAIN_HTTP_BODY: &str =
    "400 Bad Request: this port speaks HTTPS, and a plain HTTP request was sent to it\n";

/// A TLS server connection over the transport `T`.
pub struct TlsStream<T> {
    inner: T,
    /// Behind `Rc<RefCell>` so that a read half and a write half of one connection (a
    /// WebSocket session reading while it writes) can each hold it; no borrow is ever held
    /// across an await.
    session: Rc<RefCell<Session>>,
}

struct Session {
    conn: ServerConnection,
    /// Ciphertext read and not yet given to rustls (empty while a read has the buffer).
    incoming: BytesMut,
    /// Ciphertext for the peer (empty while a write has the buffer).
    outgoing: BytesMut,
    /// Whether any byte arrived yet: the first one tells TLS from plain HTTP.
    seen_bytes: bool,
    /// `close_notify` is queued; FIN follows once it is written.
    closing: bool,
    fin_sent: bool,
    /// The verified client certificate's subject, once the handshake is done.
    subject: Option<Arc<str>>,
    peer: Peer,
    stats: Arc<ExecutorStats>,
}

impl<T: Transport> TlsStream<T> {
    /// Start a server connection over `inner` (nothing is read until the first read).
    pub fn new(inner: T, config: &TlsConfig, peer: Peer, stats: Arc<ExecutorStats>) -> io::Result<Self> {
        let conn = ServerConnection::new(config.rustls().clone()).map_err(io::Error::other)?;
        let session = Session {
            conn,
            incoming: BytesMut::new(),
            outgoing: BytesMut::new(),
            seen_bytes: false,
            closing: false,
            fin_sent: false,
            subject: None,
            peer,
            stats,
        };
        Ok(TlsStream { inner, session: Rc::new(RefCell::new(session)) })
    }

    /// See [`Session::take_plaintext`].
    fn take_plaintext(&self, buf: &mut BytesMut) -> Option<io::Result<usize>> {
        self.session.borrow_mut().take_plaintext(buf)
    }

    /// Write out whatever rustls has for the peer (handshake flights, session tickets,
    /// alerts, encrypted data, `close_notify`), then FIN if the write side is closing.
    async fn push(&mut self) -> io::Result<()> {
        loop {
            let next = self.session.borrow_mut().next_outgoing()?;
            let Some(out) = next else {
                let mut s = self.session.borrow_mut();
                if s.closing && !s.fin_sent {
                    s.fin_sent = true;
                    return self.inner.shutdown_write();
                }
                return Ok(());
            };
            let (result, out) = self.inner.write_all(out).await;
            result?;
            self.session.borrow_mut().recycle_outgoing(out);
        }
    }

    /// Read ciphertext once (unless some is still waiting) and give it to rustls.
    /// `Ok(false)`: the peer closed.
    async fn pull(&mut self) -> io::Result<bool> {
        let waiting = !self.session.borrow().incoming.is_empty();
        if !waiting {
            let incoming = self.session.borrow_mut().incoming_room();
            let (result, incoming) = self.inner.read(incoming).await;
            let first_byte = incoming.first().copied();
            self.session.borrow_mut().incoming = incoming;
            if result? == 0 {
                let s = self.session.borrow();
                if s.seen_bytes && s.conn.is_handshaking() {
                    s.handshake_failed("the client closed the connection during the handshake");
                }
                return Ok(false);
            }
            let first = !mem::replace(&mut self.session.borrow_mut().seen_bytes, true);
            if first && first_byte != Some(HANDSHAKE_RECORD) {
                return self.refuse_plain_http().await;
            }
        }
        let fed = self.session.borrow_mut().feed();
        if let Err(e) = fed {
            // rustls queued an alert saying why; the peer should hear it.
            let _ = self.push().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(true)
    }

    /// Answer a plain HTTP client with a plain-text 400 and close.
    async fn refuse_plain_http(&mut self) -> io::Result<bool> {
        self.session.borrow().handshake_failed("plain HTTP sent to the TLS port; answering 400");
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{PLAIN_HTTP_BODY}",
            PLAIN_HTTP_BODY.len()
        );
        self.inner.write_bytes(Bytes::from(response)).await?;
        self.inner.shutdown_write()?;
        // Read what the client still sends (its request's rest) until it closes, so the
        // close does not turn into a reset that destroys the answer; the caller's read
        // timeout bounds the wait.
        let mut buf = mem::take(&mut self.session.borrow_mut().incoming);
        let mut discarded = 0;
        while discarded < PLAIN_DISCARD_MAX {
            buf.clear();
            let (result, b) = self.inner.read(buf).await;
            buf = b;
            match result {
                Ok(n) if n > 0 => discarded += n,
                _ => break,
            }
        }
        Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP on the TLS port"))
    }

    /// Complete the handshake before the first write (a response sent without reading,
    /// such as a 503 refusal): the keys to encrypt with come from it.
    async fn handshake(&mut self) -> io::Result<()> {
        while self.session.borrow().conn.is_handshaking() {
            self.push().await?;
            if !self.pull().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    async fn write_plaintext(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.session.borrow().conn.is_handshaking() {
            self.handshake().await?;
        }
        while !data.is_empty() {
            // rustls takes as much as its send buffer allows, encrypted at once.
            let n = self.session.borrow_mut().conn.writer().write(data)?;
            data = &data[n..];
            self.push().await?;
            if n == 0 && !data.is_empty() && !self.session.borrow().conn.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// The read side of a split [`TlsStream`].
pub struct TlsRead<R> {
    inner: R,
    session: Rc<RefCell<Session>>,
}

impl<R: ReadHalf> ReadHalf for TlsRead<R> {
    async fn read(&mut self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            if let Some(result) = self.session.borrow_mut().take_plaintext(&mut buf) {
                return (result, buf);
            }
            let waiting = !self.session.borrow().incoming.is_empty();
            if !waiting {
                let incoming = self.session.borrow_mut().incoming_room();
                let (result, incoming) = self.inner.read(incoming).await;
                self.session.borrow_mut().incoming = incoming;
                match result {
                    Ok(0) => return (Ok(0), buf),
                    Ok(_) => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            if let Err(e) = self.session.borrow_mut().feed() {
                return (Err(io::Error::new(io::ErrorKind::InvalidData, e)), buf);
            }
        }
    }

    async fn readable(&mut self) -> io::Result<()> {
        if self.session.borrow_mut().holds_input() {
            return Ok(());
        }
        self.inner.readable().await
    }
}

/// The write side of a split [`TlsStream`].
pub struct TlsWrite<W> {
    inner: W,
    session: Rc<RefCell<Session>>,
}

impl<W: WriteHalf> TlsWrite<W> {
    /// Write out whatever rustls has for the peer.
    async fn push(&mut self) -> io::Result<()> {
        loop {
            // Bound first: no borrow of the session may live across the write.
            let next = self.session.borrow_mut().next_outgoing()?;
            let Some(out) = next else { return Ok(()) };
            let (result, out) = self.inner.write_all(out).await;
            result?;
            self.session.borrow_mut().recycle_outgoing(out);
        }
    }
}

impl<W: WriteHalf> WriteHalf for TlsWrite<W> {
    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let mut data = &buf[..];
        while !data.is_empty() {
            let written = self.session.borrow_mut().conn.writer().write(data);
            let n = match written {
                Ok(n) => n,
                Err(e) => return (Err(e), buf),
            };
            data = &data[n..];
            if let Err(e) = self.push().await {
                return (Err(e), buf);
            }
            if n == 0 && !data.is_empty() {
                return (Err(io::ErrorKind::WriteZero.into()), buf);
            }
        }
        // What the read half left for the peer goes out even when there was nothing to write.
        let pushed = self.push().await;
        (pushed, buf)
    }

    /// `close_notify`, then FIN.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.borrow_mut().conn.send_close_notify();
        self.push().await?;
        self.inner.shutdown().await
    }
}

impl Session {
    /// What rustls has for the peer, taken out to be written; `None` when there is nothing.
    fn next_outgoing(&mut self) -> io::Result<Option<BytesMut>> {
        let mut writer = (&mut self.outgoing).writer();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut writer)?;
        }
        Ok((!self.outgoing.is_empty()).then(|| mem::take(&mut self.outgoing)))
    }

    /// Keep a written ciphertext buffer for the next flight, unless one large write grew it.
    fn recycle_outgoing(&mut self, mut out: BytesMut) {
        if out.capacity() <= CIPHERTEXT_KEEP {
            out.clear();
            self.outgoing = out;
        }
    }

    /// Past the handshake, with nothing to send, no ciphertext waiting to be decrypted and
    /// not closing: a read would only wait on the peer.
    fn settled(&self) -> bool {
        self.seen_bytes
            && !self.conn.is_handshaking()
            && !self.conn.wants_write()
            && self.incoming.is_empty()
            && !self.closing
    }

    /// Whether a read would find bytes here without reading the socket: ciphertext not yet
    /// given to rustls, or decrypted bytes (or the peer's `close_notify`) not yet taken.
    fn holds_input(&mut self) -> bool {
        if !self.incoming.is_empty() {
            return true;
        }
        !matches!(self.conn.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// The ciphertext buffer, taken out for a read, with room for one.
    fn incoming_room(&mut self) -> BytesMut {
        let mut incoming = mem::take(&mut self.incoming);
        if incoming.capacity() < CIPHERTEXT_READ {
            incoming.reserve(CIPHERTEXT_READ);
        }
        incoming
    }

    /// Move decrypted bytes into `buf` (at most its spare room, but never none).
    /// `None`: nothing decrypted yet; `Some(Ok(0))`: the peer sent `close_notify`.
    fn take_plaintext(&mut self, buf: &mut BytesMut) -> Option<io::Result<usize>> {
        let mut reader = self.conn.reader();
        match reader.fill_buf() {
            Ok(chunk) => {
                let room = buf.capacity() - buf.len();
                let n = if room == 0 { chunk.len() } else { chunk.len().min(room) };
                buf.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                Some(Ok(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            // The peer closed TCP without close_notify once everything was read: the
            // protocol's own framing says whether anything was cut short.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(Ok(0)),
            Err(e) => Some(Err(e)),
        }
    }

    /// Give every waiting ciphertext byte to rustls and let it process them.
    fn feed(&mut self) -> Result<(), rustls::Error> {
        let handshaking = self.conn.is_handshaking();
        while !self.incoming.is_empty() {
            let mut rest = &self.incoming[..];
            match self.conn.read_tls(&mut rest) {
                // The peer's close_notify came: rustls takes nothing after it, and what
                // follows is ignored (RFC 8446 6.1). Kept, it would be offered again and
                // again, never taken: a loop that does not yield.
                Ok(0) => {
                    self.incoming.clear();
                    break;
                }
                Ok(n) => self.incoming.advance(n),
                // A handshake message larger than rustls will join (64 KiB): it can never
                // take more, so this is the end of the connection, not a wait.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    if handshaking {
                        self.handshake_failed(&e.to_string());
                    }
                    return Err(rustls::Error::General(e.to_string()));
                }
                // rustls's buffer of decrypted bytes is full: the rest waits for the reader.
                Err(_) => break,
            }
            if let Err(e) = self.conn.process_new_packets() {
                if handshaking {
                    self.handshake_failed(&e.to_string());
                }
                return Err(e);
            }
        }
        if handshaking && !self.conn.is_handshaking() {
            self.subject = self
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| subject_of(cert))
                .map(Arc::from);
        }
        Ok(())
    }

    /// Count a failed handshake; logged at debug only, as scanners fail them all day.
    fn handshake_failed(&self, why: &str) {
        ExecutorStats::add(&self.stats.tls_handshake_failures, 1);
        tracing::debug!(peer = %self.peer, error = why, "TLS handshake failed");
    }
}

impl<T: Transport> Transport for TlsStream<T> {
    type ReadHalf = TlsRead<T::ReadHalf>;
    type WriteHalf = TlsWrite<T::WriteHalf>;

    /// The halves share the TLS session; each drives its own side of the transport below.
    /// Split after the handshake (a WebSocket after its `101`): what rustls has to send
    /// while the read half reads (an alert, a key update) goes out with the next write.
    fn split(self) -> (TlsRead<T::ReadHalf>, TlsWrite<T::WriteHalf>) {
        let (read, write) = self.inner.split();
        (
            TlsRead { inner: read, session: self.session.clone() },
            TlsWrite { inner: write, session: self.session },
        )
    }

    async fn read(&mut self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            if let Some(result) = self.take_plaintext(&mut buf) {
                return (result, buf);
            }
            if let Err(e) = self.push().await {
                return (Err(e), buf);
            }
            match self.pull().await {
                Ok(true) => {}
                Ok(false) => return (Ok(0), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Only a settled session waits on the socket here. Anything else comes back at once
    /// with nothing read (`None`): `readable` is then ready at once for bytes already here,
    /// and the read that follows runs under the caller's limit. So does a record that
    /// arrives only in part: nothing here waits for the rest without a limit.
    async fn read_unless<S: Future>(
        &mut self,
        mut buf: BytesMut,
        stop: S,
    ) -> (Option<io::Result<usize>>, BytesMut) {
        if let Some(result) = self.take_plaintext(&mut buf) {
            return (Some(result), buf);
        }
        if !self.session.borrow().settled() {
            return (None, buf);
        }
        let incoming = self.session.borrow_mut().incoming_room();
        let (result, incoming) = self.inner.read_unless(incoming, stop).await;
        match result {
            // Nothing arrived: the ciphertext buffer (a whole record's room) goes too.
            None => (None, buf),
            Some(Ok(0)) => (Some(Ok(0)), buf),
            Some(Err(e)) => (Some(Err(e)), buf),
            Some(Ok(_)) => {
                self.session.borrow_mut().incoming = incoming;
                let fed = self.session.borrow_mut().feed();
                if let Err(e) = fed {
                    // rustls queued an alert saying why; the peer should hear it.
                    let _ = self.push().await;
                    return (Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))), buf);
                }
                match self.take_plaintext(&mut buf) {
                    Some(result) => (Some(result), buf),
                    None => (None, buf),
                }
            }
        }
    }

    async fn readable(&mut self) -> io::Result<()> {
        if self.session.borrow_mut().holds_input() {
            return Ok(());
        }
        // What rustls has for the peer goes out before a wait that may be long.
        self.push().await?;
        self.inner.readable().await
    }

    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let result = self.write_plaintext(&buf).await;
        (result, buf)
    }

    async fn write_bytes(&mut self, buf: Bytes) -> io::Result<()> {
        self.write_plaintext(&buf).await
    }

    /// Queue `close_notify`; it goes out, followed by FIN, with the next read (the driver's
    /// lingering read after its shutdown). A handshake that never finished (a silent client,
    /// or one cut off by `--header-timeout` mid-ClientHello) has no session to close: FIN
    /// alone, as nginx closes it, rather than an alert to a peer that may not speak TLS.
    fn shutdown_write(&mut self) -> io::Result<()> {
        let mut s = self.session.borrow_mut();
        if !s.conn.is_handshaking() {
            s.conn.send_close_notify();
        }
        s.closing = true;
        Ok(())
    }

    fn is_secure(&self) -> bool {
        true
    }

    fn client_subject(&self) -> Option<Arc<str>> {
        self.session.borrow().subject.clone()
    }
}
