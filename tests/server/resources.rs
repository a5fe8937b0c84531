//! Running out of file descriptors: accept backs off and logs once, the server keeps
//! serving, and recovers when descriptors free up.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn fd_exhaustion_backs_off_and_recovers() {
    let _turn = heavy();
    // A hard limit the server cannot raise: room for its own descriptors and a few dozen
    // connections.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", bin()]).args([
        "--port",
        "0",
        "--workers",
        "1",
        "--log-format",
        "json",
    ]);
    let s = ServerProc::spawn_command(cmd).expect("starts under ulimit -n 64");
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..100 {
        if let Ok(c) = TcpStream::connect_timeout(&s.addr, Duration::from_secs(1)) {
            held.push(c);
        }
    }
    assert!(
        s.wait_log("out of file descriptors", Duration::from_secs(5)),
        "EMFILE is logged; logs:\n{}",
        s.logs().join("\n")
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.log_count("out of file descriptors"), 1, "logged once, not once per retry");
    drop(held);
    // Descriptors free up: the server serves again.
    let ok = eventually(Duration::from_secs(10), || {
        TcpStream::connect_timeout(&s.addr, Duration::from_secs(1)).is_ok_and(|c| {
            let mut c = Client::new(c);
            c.stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
            c.try_response(false).is_some_and(|r| r.status == 200)
        })
    });
    assert!(ok, "the server recovers once descriptors are free");
}
