use bytes::BytesMut;
use flate2::{Compress, Compression, FlushCompress};

use super::*;

/// A message compressed as a client does (raw DEFLATE, sync flush, tail taken off).
fn client_compress(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = c.total_in();
    loop {
        let taken = (c.total_in() - start) as usize;
        c.compress_vec(&data[taken..], &mut out, FlushCompress::Sync).unwrap();
        if c.total_in() - start == data.len() as u64 && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    if out.is_empty() {
        // An empty message after a flush: zlib emits nothing, a client sends 0x00.
        return vec![0x00];
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

fn inflate_all(inflater: &mut Inflater, compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = BytesMut::new();
    inflater.feed(compressed, &mut out, limit)?;
    inflater.finish(&mut out, limit)?;
    Ok(out.to_vec())
}

#[test]
fn round_trip_with_context_takeover() {
    let mut c = Compress::new(Compression::default(), false);
    let mut inflater = Inflater::new(false);
    for message in [&b"Hello"[..], b"Hello", b"", b"Hello, Hello, Hello"] {
        let z = client_compress(&mut c, message);
        assert_eq!(inflate_all(&mut inflater, &z, 1 << 20).unwrap(), message);
    }
}

#[test]
fn rfc7692_examples() {
    // §7.2.3.1: "Hello" in one compressed message.
    let mut inflater = Inflater::new(false);
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate_all(&mut inflater, &hello, 100).unwrap(), b"Hello");
    // §7.2.3.2: the second "Hello" refers back to the first (context takeover).
    assert_eq!(inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(), b"Hello");
    // §7.2.3.3: no compression (a stored block).
    let mut fresh = Inflater::new(false);
    let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(inflate_all(&mut fresh, &stored, 100).unwrap(), b"Hello");
    // §7.2.3.4: a final block (BFINAL set); the next message starts a new stream.
    let mut fin = Inflater::new(false);
    assert_eq!(inflate_all(&mut fin, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(), b"Hello");
    assert_eq!(inflate_all(&mut fin, &hello, 100).unwrap(), b"Hello");
    // §7.2.3.6: an empty message.
    assert_eq!(inflate_all(&mut Inflater::new(false), &[0x00], 100).unwrap(), b"");
}

#[test]
fn fed_in_pieces_as_in_one() {
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
    let z = client_compress(&mut Compress::new(Compression::default(), false), &data);
    let mut inflater = Inflater::new(false);
    let mut out = BytesMut::new();
    for piece in z.chunks(7) {
        inflater.feed(piece, &mut out, 1 << 20).unwrap();
    }
    inflater.finish(&mut out, 1 << 20).unwrap();
    assert_eq!(&out[..], &data[..]);
}

#[test]
fn bomb_is_stopped_at_the_limit() {
    // 16 MiB of zeros compress to about 16 KiB; with a 64 KiB limit the inflater stops
    // after at most limit + 1 bytes of output.
    let zeros = vec![0u8; 16 << 20];
    let z = client_compress(&mut Compress::new(Compression::best(), false), &zeros);
    assert!(z.len() < 64 * 1024, "{}", z.len());
    let mut inflater = Inflater::new(false);
    let mut out = BytesMut::new();
    let limit = 64 * 1024;
    assert_eq!(inflater.feed(&z, &mut out, limit), Err(InflateError::TooBig));
    assert!(out.len() <= limit + 1 && out.capacity() <= 2 * (limit + STEP), "{}", out.capacity());
    // Exactly the limit is fine.
    let z = client_compress(&mut Compress::new(Compression::best(), false), &zeros[..limit]);
    assert_eq!(inflate_all(&mut Inflater::new(false), &z, limit).unwrap().len(), limit);
    assert_eq!(inflate_all(&mut Inflater::new(false), &z, limit - 1), Err(InflateError::TooBig));
}

#[test]
fn garbage_is_corrupt() {
    // BTYPE 11 is reserved.
    assert_eq!(inflate_all(&mut Inflater::new(false), &[0xff, 0xff, 0xff], 100), Err(InflateError::Corrupt));
    // Bytes after a final block.
    let mut inflater = Inflater::new(false);
    let mut out = BytesMut::new();
    let result = inflater.feed(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x01], &mut out, 100);
    assert_eq!(result, Err(InflateError::Corrupt));
}

#[test]
fn no_context_takeover_resets_between_messages() {
    // With client_no_context_takeover the client compresses each message afresh; a
    // back-reference to the previous message is then an error, as it must be.
    let mut inflater = Inflater::new(true);
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate_all(&mut inflater, &hello, 100).unwrap(), b"Hello");
    assert_eq!(inflate_all(&mut inflater, &hello, 100).unwrap(), b"Hello");
    assert_eq!(inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100), Err(InflateError::Corrupt));
}
