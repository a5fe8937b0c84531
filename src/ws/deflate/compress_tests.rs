use bytes::BytesMut;

use super::super::Inflater;
use super::*;

fn inflate(inflater: &mut Inflater, z: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    inflater.feed(z, &mut out, 1 << 24).unwrap();
    inflater.finish(&mut out, 1 << 24).unwrap();
    out.to_vec()
}

#[test]
fn messages_round_trip_for_every_window() {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    for bits in 9..=15 {
        for no_context in [false, true] {
            let mut deflater = Deflater::new(bits, no_context);
            let mut inflater = Inflater::new(no_context);
            for message in [&b"Hello"[..], b"Hello", b"", &big, b"Hello"] {
                let z = deflater.compress(message).to_vec();
                assert!(!z.ends_with(&[0x00, 0x00, 0xff, 0xff]) || z.len() < 4);
                assert_eq!(inflate(&mut inflater, &z), message, "window {bits}, no context {no_context}");
            }
        }
    }
}

#[test]
fn empty_message_is_one_zero_byte() {
    // RFC 7692 §7.2.3.6.
    assert_eq!(Deflater::new(15, false).compress(b""), &[0x00]);
}

#[test]
fn context_takeover_shrinks_repeats() {
    let mut deflater = Deflater::new(15, false);
    let first = deflater.compress(b"a message that repeats itself").len();
    let second = deflater.compress(b"a message that repeats itself").len();
    assert!(second < first, "{second} vs {first}");
    // Without context takeover the repeat costs as much as the first.
    let mut fresh = Deflater::new(15, true);
    let first = fresh.compress(b"a message that repeats itself").len();
    assert_eq!(fresh.compress(b"a message that repeats itself").len(), first);
}

#[test]
fn small_window_never_refers_further_back() {
    // With a 9-bit window, a repeat 1000 bytes back cannot be a back-reference; an inflater
    // limited to 9 bits (as the client's is) reads the output.
    let mut deflater = Deflater::new(9, false);
    let block: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 241) as u8).collect();
    let message = [block.clone(), block].concat();
    let z = deflater.compress(&message).to_vec();
    let mut d = flate2::Decompress::new_with_window_bits(false, 9);
    let mut out = Vec::with_capacity(4096);
    let mut input = z.clone();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
    assert_eq!(out, message);
}
