//! Pipelined requests: many in one write, answered in order.

use std::time::Duration;

use crate::support::*;

#[test]
fn sixteen_echoes_in_one_write_answer_in_order() {
    let s = ServerProc::start(&[]);
    let bodies: Vec<String> = (0..16).map(|i| format!("body-{i:02}-{}", "x".repeat(i))).collect();
    let raw: Vec<u8> = bodies.iter().flat_map(|b| post_echo(b.as_bytes())).collect();
    let mut c = s.client();
    c.send(&raw);
    for (i, b) in bodies.iter().enumerate() {
        let r = c.response();
        assert_eq!(r.status, 200, "pipelined response {i}");
        assert_eq!(&r.text(), b, "pipelined response {i} out of order or wrong");
    }
    // Still usable afterwards.
    c.send(&get("/plaintext"));
    assert_eq!(c.response().text(), "Hello, World!");
}

#[test]
fn sixteen_mixed_requests_with_bodies_in_the_middle() {
    let s = ServerProc::start(&[]);
    let mut raw = Vec::new();
    let mut expect: Vec<String> = Vec::new();
    for i in 0..16 {
        match i % 4 {
            0 => {
                raw.extend(get("/plaintext"));
                expect.push("Hello, World!".into());
            }
            1 => {
                let b = format!("post-{i}");
                raw.extend(post_echo(b.as_bytes()));
                expect.push(b);
            }
            2 => {
                raw.extend(get("/json"));
                expect.push(r#"{"message":"Hello, World!"}"#.into());
            }
            _ => {
                // A chunked body in the middle of the pipeline.
                let b = format!("chunked-{i}");
                raw.extend(format!("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).into_bytes());
                expect.push(b);
            }
        }
    }
    let mut c = s.client();
    c.send(&raw);
    for (i, e) in expect.iter().enumerate() {
        let r = c.response();
        assert_eq!(r.status, 200, "pipelined response {i}");
        assert_eq!(&r.text(), e, "pipelined response {i}");
    }
}

#[test]
fn pipeline_with_head_and_streams() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(&cat(&[
        &get("/stream?chunks=2&size=5"),
        b"HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
        &get("/stream?chunks=3&size=7"),
        &get("/nope"),
        &post_echo(b"last"),
    ]));
    assert_eq!(c.response().body.len(), 10, "first /stream");
    let h = c.head_response();
    assert_eq!((h.status, h.header("content-length")), (200, Some("13")), "HEAD in a pipeline");
    assert_eq!(c.response().body.len(), 21, "second /stream");
    assert_eq!(c.response().status, 404, "unknown path in a pipeline");
    assert_eq!(c.response().text(), "last", "echo at the end of the pipeline");
}

#[test]
fn pipeline_ending_in_connection_close() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(&cat(&[
        &post_echo(b"one"),
        &post_echo(b"two"),
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        &get("/json"), // after the close: never answered
    ]));
    assert_eq!(c.response().text(), "one");
    assert_eq!(c.response().text(), "two");
    let r = c.response();
    assert_eq!(r.text(), "Hello, World!");
    assert!(r.closes(), "third response must say connection: close");
    assert!(c.expect_closed(Duration::from_secs(3)), "nothing after Connection: close is answered");
}

#[test]
fn pipeline_split_across_writes() {
    let s = ServerProc::start(&[]);
    let raw = cat(&[&post_echo(b"alpha"), &get("/plaintext"), &post_echo(b"omega")]);
    let mut c = s.client();
    // Split at awkward places: inside a head, inside a body.
    for piece in raw.chunks(7) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.response().text(), "alpha");
    assert_eq!(c.response().text(), "Hello, World!");
    assert_eq!(c.response().text(), "omega");
}
