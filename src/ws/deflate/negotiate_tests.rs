use super::*;

fn agree(values: &[&str]) -> Option<DeflateParams> {
    negotiate(values.iter().map(|v| v.as_bytes()))
}

fn header(values: &[&str]) -> Option<String> {
    agree(values).map(|p| p.response_header())
}

#[test]
fn plain_offer_is_accepted_with_defaults() {
    let p = agree(&["permessage-deflate"]).unwrap();
    assert_eq!(
        p,
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            echo_server_max_window_bits: false,
        }
    );
    assert_eq!(p.response_header(), "permessage-deflate");
    // Extension names compare ASCII case-insensitively.
    assert_eq!(header(&["PerMessage-Deflate"]).as_deref(), Some("permessage-deflate"));
}

#[test]
fn no_offer_no_deflate() {
    assert_eq!(agree(&[]), None);
    assert_eq!(agree(&["x-webkit-deflate-frame"]), None);
    assert_eq!(agree(&["", " , "]), None);
}

#[test]
fn context_takeover_parameters_are_echoed() {
    assert_eq!(
        header(&["permessage-deflate; server_no_context_takeover"]).as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    assert_eq!(
        header(&["permessage-deflate; client_no_context_takeover"]).as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    let p = agree(&["permessage-deflate;client_no_context_takeover;server_no_context_takeover"]).unwrap();
    assert!(p.server_no_context_takeover && p.client_no_context_takeover);
    assert_eq!(
        p.response_header(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
}

#[test]
fn server_max_window_bits_is_kept_to_or_declined() {
    for bits in 9..=15u8 {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        let p = agree(&[&offer]).unwrap();
        assert_eq!(p.server_max_window_bits, bits);
        assert_eq!(p.response_header(), format!("permessage-deflate; server_max_window_bits={bits}"));
    }
    // Quoted values are tokens after unquoting (RFC 6455 §9.1).
    assert_eq!(
        agree(&["permessage-deflate; server_max_window_bits=\"10\""]).unwrap().server_max_window_bits,
        10
    );
    // The deflater cannot keep to a 256-byte window: declined rather than claimed.
    assert_eq!(agree(&["permessage-deflate; server_max_window_bits=8"]), None);
}

#[test]
fn client_max_window_bits_is_accepted_and_not_named() {
    for offer in [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=8",
        "permessage-deflate; client_max_window_bits=15",
        "permessage-deflate; client_max_window_bits=\"12\"",
    ] {
        // The server inflates with a 15-bit window, which reads any smaller one; a response
        // may leave the parameter out (RFC 7692 §7.1.2.2).
        assert_eq!(header(&[offer]).as_deref(), Some("permessage-deflate"), "{offer}");
    }
}

#[test]
fn invalid_offers_are_declined() {
    for offer in [
        // Values out of range, with leading zeros, missing, or where none is allowed.
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=0x0f",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        // Unknown and repeated parameters.
        "permessage-deflate; foo",
        "permessage-deflate; mux=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        // Syntax: empty parameter, a quoted value that is no token, an open quote.
        "permessage-deflate;; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits=\"1 2\"",
        "permessage-deflate; client_max_window_bits=\"12",
        "permessage-deflate; =10",
    ] {
        assert_eq!(agree(&[offer]), None, "{offer}");
    }
}

#[test]
fn first_acceptable_offer_wins() {
    // Declined offers are skipped, in one header value or across several.
    let p = agree(&["permessage-deflate; server_max_window_bits=8, permessage-deflate; foo=1, \
         permessage-deflate; server_max_window_bits=12, permessage-deflate"])
    .unwrap();
    assert_eq!(p.server_max_window_bits, 12);
    let p = agree(&[
        "x-other; a=\"b,permessage-deflate\"",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; server_no_context_takeover",
    ])
    .unwrap();
    assert_eq!(p.response_header(), "permessage-deflate; client_no_context_takeover");
}

#[test]
fn offers_parse_to_their_parameters() {
    let offer = parse_offer(
        b"permessage-deflate; server_no_context_takeover; client_max_window_bits; server_max_window_bits=11",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        offer,
        DeflateOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: Some(11),
            client_max_window_bits: Some(None),
        }
    );
    assert!(parse_offer(b"other-extension; a=1").is_none());
    assert_eq!(
        parse_offer(b"permessage-deflate; nope").unwrap(),
        Err(OfferError::UnknownParameter("nope".into()))
    );
}
