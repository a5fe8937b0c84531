//! Sockets that outlive a process: systemd socket activation, and the SIGUSR2 binary
//! upgrade that hands the listening sockets to a new process without refusing anyone.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::*;

#[test]
fn socket_activation_serves_on_the_passed_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    // LISTEN_PID must be the server's own pid: the shell's, kept by exec.
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=http exec \"$@\"", "sh", bin()]).args([
        "--workers",
        "2",
        "--log-format",
        "json",
        "--port",
        "1",
    ]);
    put_at_fd3(&mut cmd, fd);
    let mut server = ServerProc::spawn_command(cmd).expect("socket-activated server starts");
    assert_eq!(server.addr, addr, "serves on the passed socket, not on --port");
    assert!(server.logs().iter().any(|l| l.contains("inherited sockets") && l.contains("http")));
    for _ in 0..10 {
        let r = server.request(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
    }
    // A drain lets go of the socket but leaves it listening: it is the service manager's,
    // for the next start (here the test plays systemd and still holds it).
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let _queued =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("still listening after the drain");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok(), "the connection waits in the socket for the next start");
}

#[test]
fn a_socket_that_is_not_listening_is_refused() {
    let stream_owner = TcpListener::bind("127.0.0.1:0").unwrap();
    let not_listening = TcpStream::connect(stream_owner.local_addr().unwrap()).unwrap();
    let fd = not_listening.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"", "sh", bin()]).args(["--port", "0"]);
    put_at_fd3(&mut cmd, fd);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert!(!status.expect("exits").success());
    assert!(stderr.contains("not listening"), "{stderr}");
}

/// Make `fd` the child's descriptor 3, inheritable, as a service manager would.
fn put_at_fd3(cmd: &mut Command, fd: i32) {
    // SAFETY: dup2 and fcntl are async-signal-safe. dup2 onto itself would keep FD_CLOEXEC,
    // so that case clears the flag explicitly.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Keep-alive clients hammering `addr`; counts requests answered, connections refused, and
/// requests lost (sent, then EOF or reset before a complete response).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, refused, lost) = (Arc::default(), Arc::default(), Arc::default());
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, refused, lost): (
                    Arc<AtomicBool>,
                    Arc<AtomicU64>,
                    Arc<AtomicU64>,
                    Arc<AtomicU64>,
                ) = (stop.clone(), Arc::clone(&ok), Arc::clone(&refused), Arc::clone(&lost));
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                            Ok(s) => s,
                            Err(_) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        };
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        while !stop.load(Ordering::Relaxed) {
                            if let Err(e) = s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n") {
                                eprintln!("lost: write failed: {e}");
                                lost.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            match read_response(&mut s) {
                                Some(close) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                    if close {
                                        break;
                                    }
                                }
                                None => {
                                    eprintln!("lost: no complete response");
                                    lost.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load { stop, ok, refused, lost, threads }
    }

    /// (ok, refused, lost)
    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        )
    }
}

/// One `/plaintext` response; `Some(closes)` if complete.
fn read_response(s: &mut TcpStream) -> Option<bool> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"Hello, World!") {
        match s.read(&mut chunk) {
            Ok(0) => {
                eprintln!("EOF after {} bytes", buf.len());
                return None;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("read error {e} after {} bytes", buf.len());
                return None;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Some(text.contains("connection: close"))
}

#[test]
fn sigusr2_upgrade_under_load_loses_nothing() {
    let _turn = heavy();
    let mut server = ServerProc::start(&["--workers", "2"]);
    let load = Load::start(server.addr, 4);
    thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGUSR2);
    assert!(
        server.wait_log("upgrade: the new process serves", Duration::from_secs(20)),
        "no successor: {:?}",
        server.logs()
    );
    let line = server.logs().into_iter().find(|l| l.contains("the new process serves")).unwrap();
    let pid: i32 =
        line.split("\"pid\":").nth(1).and_then(|r| r.split([',', '}']).next()).unwrap().parse().unwrap();
    let status = server.wait_exit(Duration::from_secs(10));
    thread::sleep(Duration::from_millis(500));
    let (ok, refused, lost) = load.finish();
    eprintln!("load: ok {ok} refused {refused} lost {lost}");
    let after = server.request(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    // The successor is ours to stop (our server started it): it drains and exits on SIGTERM.
    stop_successor(pid, Duration::from_secs(15), &|| server.logs());
    assert!(status.expect("old process exits").success(), "old process exit status");
    assert_eq!(after.status, 200, "the new process serves on the same port");
    assert_eq!(lost, 0, "requests lost across the upgrade (ok {ok}, refused {refused})");
    assert_eq!(refused, 0, "connections refused across the upgrade");
    assert!(ok > 100, "load ran: {ok}");
}
