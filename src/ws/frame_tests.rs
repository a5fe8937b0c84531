use super::*;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A client frame: `b0` is FIN/RSV/opcode, the payload masked with `MASK`.
fn client(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

const FIN: u8 = 0x80;

/// Decode everything in `bytes`, fed `step` bytes at a time.
fn decode_all(bytes: &[u8], step: usize, max: usize) -> Result<Vec<Event>, FrameError> {
    decode_with(Decoder::new(max), bytes, step)
}

/// Decode everything in `bytes` with `decoder`, fed `step` bytes at a time.
fn decode_with(mut decoder: Decoder, bytes: &[u8], step: usize) -> Result<Vec<Event>, FrameError> {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(event) = decoder.decode(&mut buf)? {
            events.push(event);
        }
    }
    Ok(events)
}

fn text(s: &str) -> Event {
    Event::Text(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn single_frames_in_any_split() {
    let long = vec![7u8; 70_000];
    let mut wire = client(FIN | 1, b"Hello");
    wire.extend(client(FIN | 2, &[1, 2, 3]));
    wire.extend(client(FIN | 2, &long));
    wire.extend(client(FIN | 1, b""));
    for step in [1, 2, 3, 7, 100, 1 << 20] {
        let events = decode_all(&wire, step, 1 << 20).unwrap();
        assert_eq!(
            events,
            vec![
                text("Hello"),
                Event::Binary(Bytes::from_static(&[1, 2, 3])),
                Event::Binary(Bytes::from(long.clone())),
                text("")
            ],
            "step {step}"
        );
    }
}

#[test]
fn fragments_are_joined_and_control_frames_pass_between_them() {
    let mut wire = client(1, "κό".as_bytes());
    wire.extend(client(FIN | 9, b"ping"));
    wire.extend(client(0, "σ".as_bytes()));
    wire.extend(client(0, b""));
    wire.extend(client(FIN | 0xA, b"pong"));
    wire.extend(client(FIN, "με".as_bytes()));
    for step in [1, 5, 1000] {
        let events = decode_all(&wire, step, 1024).unwrap();
        assert_eq!(
            events,
            vec![
                Event::Ping(Bytes::from_static(b"ping")),
                Event::Pong(Bytes::from_static(b"pong")),
                text("κόσμε")
            ]
        );
    }
}

#[test]
fn code_point_split_between_fragments_is_valid() {
    let euro = "€".as_bytes();
    let mut wire = client(1, &euro[..1]);
    wire.extend(client(0, &euro[1..2]));
    wire.extend(client(FIN, &euro[2..]));
    assert_eq!(decode_all(&wire, 1, 64).unwrap(), vec![text("€")]);
}

#[test]
fn protocol_errors_map_to_1002() {
    let unmasked = vec![FIN | 1, 2, b'h', b'i'];
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (unmasked, FrameError::Unmasked),
        (client(FIN | 0x40 | 1, b"x"), FrameError::ReservedBits),
        (client(FIN | 0x20 | 2, b"x"), FrameError::ReservedBits),
        (client(FIN | 0x10 | 9, b""), FrameError::ReservedBits),
        (client(FIN | 3, b""), FrameError::UnknownOpcode(3)),
        (client(FIN | 0xB, b""), FrameError::UnknownOpcode(0xB)),
        (client(9, b"frag"), FrameError::FragmentedControl),
        (client(FIN | 9, &[0; 126]), FrameError::ControlTooLong),
        (client(FIN, b"x"), FrameError::UnexpectedContinuation),
        ([client(1, b"a"), client(FIN | 1, b"b")].concat(), FrameError::InterleavedMessage),
        ([client(2, b"a"), client(2, b"b")].concat(), FrameError::InterleavedMessage),
        (client(FIN | 8, &[3]), FrameError::ClosePayloadTooShort),
    ];
    for (wire, want) in cases {
        for step in [1, 1000] {
            assert_eq!(decode_all(&wire, step, 1024), Err(want), "{wire:x?}");
        }
        assert_eq!(want.close_code(), code::PROTOCOL_ERROR);
    }
}

#[test]
fn length_with_top_bit_is_refused_from_the_head() {
    let mut wire = vec![FIN | 2, 0x80 | 127];
    wire.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    assert_eq!(decode_all(&wire, 1, usize::MAX), Err(FrameError::LengthTopBit));
}

#[test]
fn errors_in_the_first_two_bytes_need_nothing_more() {
    let mut decoder = Decoder::new(1024);
    let mut buf = BytesMut::from(&[FIN | 0x40 | 1, 0x80 | 126][..]);
    assert_eq!(decoder.decode(&mut buf), Err(FrameError::ReservedBits));
    let mut buf = BytesMut::from(&[FIN | 1, 5][..]);
    assert_eq!(Decoder::new(1024).decode(&mut buf), Err(FrameError::Unmasked));
}

#[test]
fn invalid_utf8_fails_fast_inside_a_frame() {
    // The frame announces 100 bytes; the third byte is invalid, the rest never comes.
    let mut payload = b"ok\xFF".to_vec();
    payload.resize(100, b'a');
    let wire = client(FIN | 1, &payload);
    let head_and_three = &wire[..6 + 3];
    assert_eq!(decode_all(head_and_three, 1, 1024), Err(FrameError::InvalidUtf8));
    assert_eq!(FrameError::InvalidUtf8.close_code(), code::INVALID_PAYLOAD);
}

#[test]
fn invalid_utf8_fails_fast_across_fragments() {
    // A first fragment whose last bytes can start no code point; the message never ends.
    let wire = client(1, b"\xCE\xBA\xED\xA0");
    assert_eq!(decode_all(&wire, 100, 1024), Err(FrameError::InvalidUtf8));
    // An incomplete code point at the end of the message.
    let wire = [client(1, b"a\xE2\x82"), client(FIN, b"")].concat();
    assert_eq!(decode_all(&wire, 100, 1024), Err(FrameError::InvalidUtf8));
    // Binary messages are not checked.
    let wire = client(FIN | 2, b"\xFF");
    assert_eq!(decode_all(&wire, 100, 1024).unwrap(), vec![Event::Binary(Bytes::from_static(b"\xFF"))]);
}

#[test]
fn size_limit_is_applied_from_frame_heads() {
    // Exactly the limit passes, across fragments.
    let wire = [client(2, &[1; 60]), client(FIN, &[2; 40])].concat();
    assert_eq!(decode_all(&wire, 7, 100).unwrap().len(), 1);
    // One byte more fails at the second head, with none of its payload sent.
    let wire = [client(2, &[1; 60]), client(FIN, &[2; 41])].concat();
    assert_eq!(decode_all(&wire[..wire.len() - 41], 1, 100), Err(FrameError::TooBig));
    // A head announcing a huge frame fails at once.
    let mut huge = vec![FIN | 2, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&MASK);
    assert_eq!(decode_all(&huge, 1, 16 << 20), Err(FrameError::TooBig));
    assert_eq!(FrameError::TooBig.close_code(), code::TOO_BIG);
}

#[test]
fn close_payloads() {
    let close = |payload: &[u8]| decode_all(&client(FIN | 8, payload), 3, 1024);
    assert_eq!(close(b"").unwrap(), vec![Event::Close(None)]);
    let ok = close(b"\x03\xE8bye").unwrap();
    assert_eq!(ok, vec![Event::Close(Some(CloseFrame { code: 1000, reason: Bytes::from_static(b"bye") }))]);
    for valid in [1000, 1001, 1002, 1003, 1007, 1010, 1014, 3000, 4999] {
        assert!(close(&u16::to_be_bytes(valid)).is_ok(), "{valid}");
    }
    for invalid in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_eq!(close(&u16::to_be_bytes(invalid)), Err(FrameError::BadCloseCode(invalid)), "{invalid}");
        assert_eq!(FrameError::BadCloseCode(invalid).close_code(), code::PROTOCOL_ERROR);
    }
    assert_eq!(close(b"\x03\xE8\xFF"), Err(FrameError::InvalidUtf8));
}

#[test]
fn server_frames_are_unmasked_with_minimal_lengths() {
    let mut out = BytesMut::new();
    encode(&mut out, OpCode::Text, b"hi");
    assert_eq!(&out[..], b"\x81\x02hi");
    for (len, head) in
        [(125usize, vec![0x82, 125]), (126, vec![0x82, 126, 0, 126]), (65535, vec![0x82, 126, 255, 255])]
    {
        let mut out = BytesMut::new();
        encode(&mut out, OpCode::Binary, &vec![0; len]);
        assert_eq!(&out[..head.len()], &head[..]);
        assert_eq!(out.len(), head.len() + len);
    }
    let mut out = BytesMut::new();
    encode(&mut out, OpCode::Binary, &vec![0; 65536]);
    assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
}

#[test]
fn close_reason_is_cut_at_a_character_boundary() {
    let mut out = BytesMut::new();
    encode_close(&mut out, 1001, &"é".repeat(100));
    assert_eq!(out[1] as usize, 2 + 122);
    assert_eq!(&out[2..4], &1001u16.to_be_bytes());
    assert!(std::str::from_utf8(&out[4..]).is_ok());
}

#[test]
fn unmask_matches_a_bytewise_xor_at_any_offset() {
    let data: Vec<u8> = (0..=255).collect();
    for offset in 0..4 {
        let mut fast = data.clone();
        unmask(&mut fast, MASK, offset);
        let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ MASK[(i + offset) % 4]).collect();
        assert_eq!(fast, slow, "offset {offset}");
    }
}

/// With permessage-deflate: decode everything in `bytes`, fed `step` bytes at a time.
fn decode_deflate(bytes: &[u8], step: usize, max: usize) -> Result<Vec<Event>, FrameError> {
    decode_with(Decoder::with_inflater(max, crate::ws::deflate::Inflater::new(false)), bytes, step)
}

const RSV1: u8 = 0x40;
/// "Hello", compressed (RFC 7692 §7.2.3.1), and again referring back to it (§7.2.3.2).
const HELLO_Z: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
const HELLO_AGAIN_Z: [u8; 5] = [0xf2, 0x00, 0x11, 0x00, 0x00];

#[test]
fn compressed_messages_inflate_in_any_split() {
    let mut wire = client(FIN | RSV1 | 1, &HELLO_Z);
    // Fragmented: RSV1 on the first frame only, a ping between the fragments.
    wire.extend(client(RSV1 | 1, &HELLO_AGAIN_Z[..2]));
    wire.extend(client(FIN | 9, b"p"));
    wire.extend(client(FIN, &HELLO_AGAIN_Z[2..]));
    // Uncompressed messages may be mixed in (RSV1 clear).
    wire.extend(client(FIN | 2, &[1, 2, 3]));
    wire.extend(client(FIN | RSV1 | 2, &[0x00]));
    for step in [1, 2, 3, 5, 1 << 20] {
        let events = decode_deflate(&wire, step, 1 << 20).unwrap();
        assert_eq!(
            events,
            vec![
                text("Hello"),
                Event::Ping(Bytes::from_static(b"p")),
                text("Hello"),
                Event::Binary(Bytes::from_static(&[1, 2, 3])),
                Event::Binary(Bytes::new()),
            ],
            "step {step}"
        );
    }
}

#[test]
fn rsv1_without_deflate_is_refused() {
    assert_eq!(decode_all(&client(FIN | RSV1 | 1, &HELLO_Z), 1 << 20, 100), Err(FrameError::ReservedBits));
}

#[test]
fn rsv1_on_control_or_continuation_is_a_protocol_error() {
    for op in [8u8, 9, 10] {
        let e = decode_deflate(&client(FIN | RSV1 | op, b""), 1 << 20, 100).unwrap_err();
        assert_eq!(e, FrameError::CompressedControl);
        assert_eq!(e.close_code(), code::PROTOCOL_ERROR);
    }
    for first in [2u8, RSV1 | 2] {
        let mut wire = client(first, &HELLO_Z[..3]);
        wire.extend(client(FIN | RSV1, &HELLO_Z[3..]));
        let e = decode_deflate(&wire, 1 << 20, 100).unwrap_err();
        assert_eq!(e, FrameError::CompressedContinuation);
        assert_eq!(e.close_code(), code::PROTOCOL_ERROR);
    }
    // RSV2 and RSV3 stay reserved.
    for rsv in [0x20u8, 0x10] {
        assert_eq!(decode_deflate(&client(FIN | rsv | 1, b"x"), 1 << 20, 100), Err(FrameError::ReservedBits));
    }
}

#[test]
fn deflate_bomb_is_too_big_while_inflating() {
    // 8 MiB of zeros in about 8 KiB; the limit is 64 KiB.
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut z = Vec::with_capacity(64 * 1024);
    c.compress_vec(&vec![0u8; 8 << 20], &mut z, flate2::FlushCompress::Sync).unwrap();
    z.truncate(z.len() - 4);
    let e = decode_deflate(&client(FIN | RSV1 | 2, &z), 1 << 20, 64 * 1024).unwrap_err();
    assert_eq!(e, FrameError::TooBig);
    assert_eq!(e.close_code(), code::TOO_BIG);
}

#[test]
fn compressed_text_is_checked_as_utf8() {
    // "\xff" compressed (a stored block).
    let e = decode_deflate(&client(FIN | RSV1 | 1, &[0x00, 0x01, 0x00, 0xfe, 0xff, 0xff]), 1 << 20, 100);
    assert_eq!(e, Err(FrameError::InvalidUtf8));
    let e = decode_deflate(&client(FIN | RSV1 | 1, &[0xff, 0xff, 0xff]), 1 << 20, 100);
    assert_eq!(e, Err(FrameError::BadCompression));
}
