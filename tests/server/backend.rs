//! The IO backend decision, tested for real: a server process under a seccomp filter that
//! refuses io_uring_setup (as Docker's and Kubernetes' default profiles do).

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// Make the child refuse io_uring_setup(2) with EPERM, as a container's seccomp profile
/// would. x86-64 only (the syscall number and audit arch are architecture-specific).
#[cfg(target_arch = "x86_64")]
fn deny_io_uring(cmd: &mut Command) {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const IO_URING_SETUP: u32 = 425;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let filter = [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 4), // arch
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 3, AUDIT_ARCH_X86_64),
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0), // syscall number
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, IO_URING_SETUP),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, SECCOMP_RET_ALLOW),
    ];
    // SAFETY: prctl with a program that outlives the call; only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &prog as *const _) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn without_io_uring_auto_falls_back_to_epoll_with_a_clear_warning() {
    let mut cmd = Command::new(bin());
    cmd.args([
        "--runtime",
        "monoio",
        "--io-backend",
        "auto",
        "--port",
        "0",
        "--workers",
        "2",
        "--log-format",
        "json",
    ]);
    deny_io_uring(&mut cmd);
    let s = ServerProc::spawn_command(cmd).expect("starts on epoll");
    assert!(s.wait_log("percore ready", Duration::from_secs(2)));
    let logs = s.logs();
    let warning =
        logs.iter().find(|l| l.contains("io_uring unavailable")).expect("one warning names the cause");
    assert!(warning.contains("seccomp"), "the cause: {warning}");
    assert!(warning.contains("io_uring_setup"), "the fix names what to allow: {warning}");
    assert_eq!(logs.iter().filter(|l| l.contains("io_uring unavailable")).count(), 1, "decided once");
    let ready = logs.iter().find(|l| l.contains("percore ready")).unwrap();
    assert!(ready.contains("\"driver\":\"epoll\""), "{ready}");
    assert_eq!(s.request(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n").status, 200);
    let m = s.request(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n").text();
    assert!(m.contains("driver=\"epoll\""), "metrics say which driver runs");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn without_io_uring_forcing_uring_fails_with_the_reason() {
    let mut cmd = Command::new(bin());
    cmd.args(["--runtime", "monoio", "--io-backend", "uring", "--port", "0"]);
    deny_io_uring(&mut cmd);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert!(!status.expect("exits").success());
    assert!(stderr.contains("--io-backend uring") && stderr.contains("seccomp"), "{stderr}");
}

#[test]
fn epoll_can_be_forced() {
    let s = ServerProc::start(&["--runtime", "monoio", "--io-backend", "epoll"]);
    assert!(s.wait_log("percore ready", Duration::from_secs(2)));
    let ready = s.logs().into_iter().find(|l| l.contains("percore ready")).unwrap();
    assert!(ready.contains("\"driver\":\"epoll\""), "{ready}");
    let mut c = s.client();
    for _ in 0..3 {
        c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(c.response().body, b"hello");
    }
}

#[test]
fn tokio_runs_on_epoll_and_refuses_uring() {
    let s = ServerProc::start(&["--runtime", "tokio"]);
    assert!(s.wait_log("percore ready", Duration::from_secs(2)));
    let ready = s.logs().into_iter().find(|l| l.contains("percore ready")).unwrap();
    assert!(ready.contains("\"runtime\":\"tokio\"") && ready.contains("\"driver\":\"epoll\""), "{ready}");
    let mut cmd = Command::new(bin());
    cmd.args(["--runtime", "tokio", "--io-backend", "uring", "--port", "0"]);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert!(!status.expect("exits").success());
    assert!(stderr.contains("needs the monoio runtime"), "{stderr}");
    let mut cmd = Command::new(bin());
    cmd.args(["--runtime", "tokio-mt", "--io-backend", "uring", "--port", "0"]);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert!(!status.expect("exits").success());
    assert!(stderr.contains("needs the monoio runtime"), "{stderr}");
}

/// Listening sockets on `port` in /proc/net/tcp (state 0A = LISTEN).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "0A"
        })
        .count()
}

#[test]
fn tokio_mt_shares_one_listener_between_executors() {
    let s = ServerProc::start(&["--runtime", "tokio-mt", "--workers", "2"]);
    assert!(s.wait_log("percore ready", Duration::from_secs(2)));
    let ready = s.logs().into_iter().find(|l| l.contains("percore ready")).unwrap();
    assert!(ready.contains("\"runtime\":\"tokio-mt\"") && ready.contains("\"driver\":\"epoll\""), "{ready}");
    assert_eq!(listening_sockets(s.addr.port()), 1, "tokio-mt: one socket for both executors");
    // Every executor serves from it, connection after connection.
    for _ in 0..20 {
        assert_eq!(s.request(&get("/plaintext")).text(), "Hello, World!");
    }
    let metrics = s.request(&get("/metrics")).text();
    assert!(metrics.contains("runtime=\"tokio-mt\""), "{metrics}");

    let t = ServerProc::start(&["--runtime", "tokio", "--workers", "2"]);
    assert_eq!(listening_sockets(t.addr.port()), 2, "tokio (per core): one SO_REUSEPORT socket per executor");
}
