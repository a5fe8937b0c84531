//! A real client: curl (skipped when it is not installed).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

fn curl_available() -> bool {
    if on_path("curl") {
        return true;
    }
    eprintln!("note: curl not on PATH; skipping curl test");
    false
}

fn curl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn curl");
    // Feed stdin from a thread so a full stdout pipe can never deadlock the test.
    let feeder = stdin.map(|data| {
        let mut w = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || w.write_all(&data))
    });
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        f.join().unwrap().expect("write curl's stdin");
    }
    assert!(out.status.success(), "curl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn curl_plaintext() {
    if !curl_available() {
        return;
    }
    let s = ServerProc::start(&[]);
    let out = curl(&[&format!("http://{}/plaintext", s.addr)], None);
    assert_eq!(String::from_utf8_lossy(&out), "Hello, World!");
}

#[test]
fn curl_echo_round_trip() {
    if !curl_available() {
        return;
    }
    let s = ServerProc::start(&[]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let out = curl(&["-X", "POST", "--data-binary", "@-", &format!("http://{}/echo", s.addr)], Some(&data));
    assert!(out == data, "curl echo differs: {} bytes back of {}", out.len(), data.len());
}

#[test]
fn curl_stream() {
    if !curl_available() {
        return;
    }
    let s = ServerProc::start(&[]);
    let out = curl(&[&format!("http://{}/stream?chunks=3&size=10", s.addr)], None);
    assert_eq!(out.len(), 30, "curl /stream?chunks=3&size=10");
}
