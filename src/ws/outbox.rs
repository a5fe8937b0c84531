//! What a WebSocket has yet to write: frames encoded into one buffer, except the payloads of
//! large messages, which are queued as they are, shared and not copied, between the encoded
//! parts. An echoed or relayed 16 KiB message then costs no copy in user space: its payload
//! is the received frame's bytes, written from where they were read (a vectored write).

use bytes::{Bytes, BytesMut};

use super::frame::{self, OpCode};

/// Payloads at least this large are queued by reference instead of copied. Below it a copy
/// is cheaper than the vectored write's bookkeeping.
pub const SHARE_MIN: usize = 8 * 1024;

/// Frames waiting to be written, in order: `parts`, then `tail`.
#[derive(Default)]
pub struct Outbox {
    /// Encoded frames (frozen) and shared payloads queued before `tail`.
    parts: Vec<Bytes>,
    parts_len: usize,
    /// Where frames are encoded.
    tail: BytesMut,
}

/// What the writer takes from the outbox.
pub enum Batch {
    /// Encoded frames only: one buffer.
    Encoded(BytesMut),
    /// Encoded frames and shared payloads, in order.
    Parts(Vec<Bytes>),
}

impl Outbox {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.parts_len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer frames are encoded into, after everything queued so far.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Queue an unfragmented, uncompressed data frame with `payload`: copied when it is
    /// small, shared when it is large.
    pub fn push_frame(&mut self, opcode: OpCode, payload: Bytes) {
        if payload.len() < SHARE_MIN {
            frame::encode(&mut self.tail, opcode, &payload);
            return;
        }
        frame::encode_head(&mut self.tail, opcode, payload.len());
        self.push_shared(payload);
    }

    /// Queue bytes that are already a whole frame (or the rest of one whose head was just
    /// encoded): shared when large, copied when small.
    pub fn push_encoded(&mut self, bytes: &Bytes) {
        if bytes.len() < SHARE_MIN {
            self.tail.extend_from_slice(bytes);
        } else {
            self.push_shared(bytes.clone());
        }
    }

    fn push_shared(&mut self, bytes: Bytes) {
        if !self.tail.is_empty() {
            let encoded = self.tail.split().freeze();
            self.parts_len += encoded.len();
            self.parts.push(encoded);
        }
        self.parts_len += bytes.len();
        self.parts.push(bytes);
    }

    /// Take everything queued; frames encoded from now on go into `spare` (when only
    /// encoded frames were queued, the writer gives their buffer back as the next spare).
    /// The encoded buffer always leaves with the batch: one whose frames went out as parts
    /// would otherwise stay behind, empty but holding its whole allocation, in an idle
    /// WebSocket.
    pub fn take(&mut self, spare: BytesMut) -> Batch {
        let encoded = std::mem::replace(&mut self.tail, spare);
        if self.parts.is_empty() {
            return Batch::Encoded(encoded);
        }
        if !encoded.is_empty() {
            self.parts.push(encoded.freeze());
        }
        self.parts_len = 0;
        Batch::Parts(std::mem::take(&mut self.parts))
    }

    /// Let go of the room an empty outbox keeps (the buffer the writer last handed back,
    /// sized by the last burst): a WebSocket that goes quiet holds none.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.parts = Vec::new();
            self.tail = BytesMut::new();
        }
    }

    /// Drop everything queued (the connection is finished).
    pub fn clear(&mut self) {
        self.parts.clear();
        self.parts_len = 0;
        self.tail.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(batch: Batch) -> Vec<u8> {
        match batch {
            Batch::Encoded(buf) => buf.to_vec(),
            Batch::Parts(parts) => parts.concat(),
        }
    }

    fn encoded(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        frame::encode(&mut buf, opcode, payload);
        buf.to_vec()
    }

    #[test]
    fn small_payloads_are_copied_into_one_buffer() {
        let mut outbox = Outbox::default();
        outbox.push_frame(OpCode::Text, Bytes::from_static(b"hello"));
        frame::encode(outbox.buf(), OpCode::Pong, b"");
        assert_eq!(outbox.len(), 7 + 2);
        let batch = outbox.take(BytesMut::new());
        assert!(matches!(batch, Batch::Encoded(_)));
        assert_eq!(wire(batch), [encoded(OpCode::Text, b"hello"), encoded(OpCode::Pong, b"")].concat());
        assert!(outbox.is_empty());
    }

    #[test]
    fn large_payloads_are_shared_in_order_between_encoded_frames() {
        let large = Bytes::from(vec![7u8; SHARE_MIN + 1]);
        let mut outbox = Outbox::default();
        frame::encode(outbox.buf(), OpCode::Ping, b"p");
        outbox.push_frame(OpCode::Binary, large.clone());
        outbox.push_frame(OpCode::Text, Bytes::from_static(b"after"));
        let prepared: Bytes = encoded(OpCode::Binary, &large).into();
        outbox.push_encoded(&prepared);
        let expected = [
            encoded(OpCode::Ping, b"p"),
            encoded(OpCode::Binary, &large),
            encoded(OpCode::Text, b"after"),
            prepared.to_vec(),
        ]
        .concat();
        assert_eq!(outbox.len(), expected.len());
        let Batch::Parts(parts) = outbox.take(BytesMut::new()) else {
            panic!("large payloads go out as parts");
        };
        assert!(parts.iter().any(|p| p.as_ptr() == large.as_ptr()), "the payload is not copied");
        assert!(parts.iter().any(|p| p.as_ptr() == prepared.as_ptr()), "the prepared frame is not copied");
        assert_eq!(parts.concat(), expected);
        assert!(outbox.is_empty());
        assert_eq!(outbox.buf().capacity(), 0, "the spare given to `take` is the new buffer");
        // What is queued after a take goes into the next batch only.
        outbox.push_frame(OpCode::Text, Bytes::from_static(b"next"));
        assert_eq!(wire(outbox.take(BytesMut::new())), encoded(OpCode::Text, b"next"));
    }
}
