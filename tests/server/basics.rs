use crate::support::*;

#[test]
fn plaintext_and_json() {
    let s = ServerProc::start(&[]);
    let r = s.request(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.header("date").is_some());
    let r = s.request(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.text(), r#"{"message":"Hello, World!"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
}
