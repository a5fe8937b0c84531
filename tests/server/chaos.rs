//! The supervisor under combined events and faults: a stop request after an upgrade, a
//! frozen process, a stall during an upgrade, a crash at the descriptor limit, a crash just
//! before a reload, leaving on `--max-stuck`, a reload during a drain. Each test aims at
//! one defect that single-event tests did not show.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::supervisor::{assert_log, assert_serves, crash, expect_exit, fetch, in_flight};
use crate::support::*;

/// A keep-alive connection served by executor `index` (found by asking `/executor`, a
/// debug route, on new connections until one lands there).
fn on_executor(s: &ServerProc, index: usize) -> Client {
    for _ in 0..200 {
        let mut c = s.client();
        c.send(&get("/executor"));
        if c.response().text().trim() == index.to_string() {
            return c;
        }
    }
    panic!("no connection landed on executor {index} in 200 tries");
}

/// The pid of the process a SIGUSR2 started, from the old process's log.
fn successor_pid(s: &ServerProc) -> i32 {
    assert!(
        s.wait_log("upgrade: the new process serves", Duration::from_secs(20)),
        "no successor; logs:\n{}",
        s.logs().join("\n")
    );
    let line = s.logs().into_iter().find(|l| l.contains("the new process serves")).unwrap();
    line.split("\"pid\":").nth(1).and_then(|r| r.split([',', '}']).next()).unwrap().parse().unwrap()
}

/// Kills (SIGKILL, by pid) a process this test caused to start, when dropped.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the successor our own server started for this test.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// Item 1: after `kill -USR2`, the first SIGTERM to the old process is the drain it already
/// runs, not a second stop request: its in-flight requests finish and it exits 0.
#[test]
fn sigterm_after_an_upgrade_lets_in_flight_requests_finish() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "2", "--graceful-timeout", "20s"]);
    let sent = Instant::now();
    let mut clients: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = s.client();
            c.send(&get("/delay?ms=4000"));
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    s.signal(libc::SIGUSR2);
    let _successor = KillOnDrop(successor_pid(&s));
    s.signal(libc::SIGTERM);
    assert!(
        sent.elapsed() < Duration::from_millis(3500),
        "SIGTERM came {:?} after the 4 s requests (the machine is too slow): the test proves nothing",
        sent.elapsed()
    );
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.try_response(false);
        assert!(
            r.as_ref().is_some_and(|r| r.status == 200),
            "in-flight request {i} cut by the first SIGTERM after an upgrade: {r:?}; logs:\n{}",
            s.logs().join("\n")
        );
    }
    let status = expect_exit(&mut s, Duration::from_secs(5), "SIGTERM after SIGUSR2");
    assert!(status.success(), "old process exit status {status:?}");
    assert_eq!(s.log_count("second stop request"), 0, "the first SIGTERM is not a second stop request");
}

/// Item 2: a process frozen (SIGSTOP) for longer than `--timeout` has no stuck executor
/// when it thaws: nothing is replaced and the process does not give up.
#[test]
fn a_frozen_process_is_not_a_stalled_executor() {
    let _turn = heavy();
    let mut s = ServerProc::start(&[
        "--workers",
        "2",
        "--stall-detect",
        "300ms",
        "--timeout",
        "1s",
        "--max-stuck",
        "1",
    ]);
    assert_serves(s.addr, "/plaintext", Duration::from_secs(2), "before the freeze");
    // Which thread runs first after SIGCONT is up to the scheduler: several rounds.
    for round in 0..5 {
        s.signal(libc::SIGSTOP);
        thread::sleep(Duration::from_millis(1500));
        s.signal(libc::SIGCONT);
        thread::sleep(Duration::from_millis(400));
        assert!(s.exited().is_none(), "exited after freeze {round}; logs:\n{}", s.logs().join("\n"));
    }
    assert_serves(s.addr, "/plaintext", Duration::from_secs(2), "after the freezes");
    assert_eq!(
        s.log_count("stuck past --timeout"),
        0,
        "a frozen process had its executors replaced; logs:\n{}",
        s.logs().join("\n")
    );
}

/// Item 3: an upgrade while an executor is stalled: the old process steered new
/// connections away from it, and the new process, which owns the sockets now, must not
/// inherit that steering: all its executors get new connections.
#[test]
fn an_upgrade_during_a_stall_leaves_no_steering_behind() {
    let _turn = heavy();
    // A stall-detect of 1 s, not less: on a loaded machine a fresh process's executor can be
    // a few hundred milliseconds late to start, and steering away from it would be right.
    let mut s = ServerProc::start(&[
        "--workers",
        "2",
        "--debug-routes",
        "--stall-detect",
        "1s",
        "--timeout",
        "60s",
        "--graceful-timeout",
        "2s",
    ]);
    let _staller = in_flight(&s, "/stall?ms=6000");
    assert_log(&s, "executor stalled", Duration::from_secs(3), "a 6 s /stall");
    s.signal(libc::SIGUSR2);
    let _successor = KillOnDrop(successor_pid(&s));
    let mut seen = [0usize; 2];
    for _ in 0..40 {
        let r = fetch(s.addr, "/executor", Duration::from_secs(3)).expect("the new process serves");
        let i: usize = String::from_utf8_lossy(&r.body).trim().parse().expect("an executor index");
        seen[i] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "new connections per executor of the new process: {seen:?}");
}

/// Item 4: with the process at its descriptor limit, an executor crash is restarted with
/// backoff while the healthy executor finishes its in-flight request; the process stays.
#[test]
fn a_crash_at_the_descriptor_limit_keeps_the_healthy_executor_serving() {
    let _turn = heavy();
    // glommio needs more descriptors per executor (three rings, the accept watcher).
    let limit: libc::rlim_t = if crate::RUNTIME == "glommio" { 160 } else { 120 };
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--workers", "2", "--log-format", "json", "--debug-routes"]);
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut s = ServerProc::spawn_command(cmd).expect("server with RLIMIT_NOFILE lowered did not start");
    let mut healthy = on_executor(&s, 0);
    let mut doomed = on_executor(&s, 1);
    // Use up the descriptors: more idle connections than the process may hold.
    let hogs: Vec<TcpStream> =
        (0..4 * limit as usize).filter_map(|_| TcpStream::connect(s.addr).ok()).collect();
    assert_log(&s, "out of file descriptors", Duration::from_secs(5), "descriptors used up");
    healthy.send(&get("/delay?ms=2000"));
    doomed.send(&get("/crash"));
    assert_log(&s, "executor died", Duration::from_secs(5), "/crash at the descriptor limit");
    let r = healthy.try_response(false);
    assert!(
        r.as_ref().is_some_and(|r| r.status == 200),
        "the healthy executor's in-flight request: {r:?}; logs:\n{}",
        s.logs().join("\n")
    );
    assert!(s.exited().is_none(), "the process ended; logs:\n{}", s.logs().join("\n"));
    drop(hogs);
    assert_log(&s, "executor restarted", Duration::from_secs(10), "descriptors free again");
    for i in 0..5 {
        assert_serves(s.addr, "/plaintext", Duration::from_secs(2), &format!("after the restart ({i})"));
    }
}

/// Item 6: an executor that crashes just before a SIGHUP is a death like any other: logged
/// (and counted towards the crash-loop limit), not retired silently by the reload.
#[test]
fn a_crash_just_before_a_reload_is_recorded() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "1", "--debug-routes"]);
    // The supervisor's own tick may see the death first: several rounds.
    for n in 1..=3 {
        crash(s.addr);
        assert!(
            s.wait_log_count("crash requested", n, Duration::from_secs(2)),
            "crash {n} did not happen; logs:\n{}",
            s.logs().join("\n")
        );
        s.signal(libc::SIGHUP);
        assert!(
            s.wait_log_count("reload done", n, Duration::from_secs(5)),
            "reload {n} did not finish; logs:\n{}",
            s.logs().join("\n")
        );
        assert!(
            s.wait_log_count("executor died", n, Duration::from_secs(3)),
            "crash {n} (just before a SIGHUP) not recorded; logs:\n{}",
            s.logs().join("\n")
        );
        assert_serves(s.addr, "/plaintext", Duration::from_secs(2), &format!("after reload {n}"));
    }
}

/// Item 7: leaving because of `--max-stuck` drains the executors that still serve (their
/// in-flight requests finish) before the process exits non-zero.
#[test]
fn leaving_on_max_stuck_drains_the_serving_executors_first() {
    let _turn = heavy();
    let mut s = ServerProc::start(&[
        "--workers",
        "2",
        "--debug-routes",
        "--stall-detect",
        "300ms",
        "--timeout",
        "1s",
        "--max-stuck",
        "0",
        "--graceful-timeout",
        "5s",
    ]);
    let mut serving = on_executor(&s, 0);
    let mut staller = on_executor(&s, 1);
    serving.send(&get("/delay?ms=2500"));
    staller.send(&get("/stall?ms=5000"));
    let status = expect_exit(&mut s, Duration::from_secs(8), "a stuck executor with --max-stuck 0");
    assert!(!status.success(), "leaving on --max-stuck must exit non-zero, got {status:?}");
    assert_log(&s, "stuck past --timeout", Duration::ZERO, "--max-stuck 0");
    let r = serving.try_response(false);
    assert!(
        r.as_ref().is_some_and(|r| r.status == 200),
        "the in-flight request on the healthy executor was cut: {r:?}; logs:\n{}",
        s.logs().join("\n")
    );
}

/// Item 8: a SIGHUP during a drain is ignored, with a log line, and the drain goes on.
#[test]
fn sighup_during_a_drain_is_ignored_with_a_word() {
    let mut s = ServerProc::start(&["--workers", "1", "--graceful-timeout", "10s"]);
    let mut c = in_flight(&s, "/delay?ms=1500");
    s.signal(libc::SIGTERM);
    assert_log(&s, "listeners closed", Duration::from_secs(2), "SIGTERM");
    s.signal(libc::SIGHUP);
    assert_log(&s, "reload ignored while draining", Duration::from_secs(2), "SIGHUP during a drain");
    assert_eq!(c.response().status, 200, "the in-flight request finishes");
    let status = expect_exit(&mut s, Duration::from_secs(5), "drain with a SIGHUP in it");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(s.log_count("executor replaced"), 0, "nothing reloaded during the drain");
}
