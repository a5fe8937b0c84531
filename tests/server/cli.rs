//! The command line: bad flags, a busy port, environment variables, workers and CPUs.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const EXIT_LIMIT: Duration = Duration::from_secs(15);

#[test]
fn unknown_flag_fails_with_message() {
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--no-such-flag"]);
    let (status, stderr) = run_to_exit(cmd, EXIT_LIMIT);
    let status = status.expect("percore with an unknown flag did not exit");
    assert!(!status.success(), "unknown flag must fail, got {status}");
    assert!(stderr.contains("--no-such-flag"), "stderr should name the bad flag: {stderr:?}");
}

#[test]
fn bad_flag_value_fails() {
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--header-timeout", "soon"]);
    let (status, stderr) = run_to_exit(cmd, EXIT_LIMIT);
    assert!(!status.expect("did not exit").success(), "bad duration must fail");
    assert!(stderr.contains("header-timeout"), "stderr should name the flag: {stderr:?}");
}

#[test]
fn port_in_use_fails_clearly() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = Command::new(bin());
    cmd.args(["--port", &port, "--workers", "1"]);
    let (status, stderr) = run_to_exit(cmd, EXIT_LIMIT);
    let status = status.expect("percore on a busy port did not exit (did it join the port?)");
    assert!(!status.success(), "busy port must fail, got {status}");
    assert!(
        stderr.to_ascii_lowercase().contains("address already in use"),
        "stderr should say 'address already in use': {stderr:?}"
    );
    drop(taken);
}

#[test]
fn port_from_environment() {
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.args(["--workers", "1", "--log-format", "json"]).env("PERCORE_PORT", port.to_string());
    let s = ServerProc::spawn_command(cmd).expect("server with PERCORE_PORT did not start");
    assert_eq!(s.addr.port(), port, "PERCORE_PORT={port} not used");
    let r = s.request(&get("/plaintext"));
    assert_eq!(r.text(), "Hello, World!");
}

#[test]
fn flag_overrides_environment() {
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--workers", "1", "--log-format", "json"]).env("PERCORE_MAX_HEADERS", "5");
    let s = ServerProc::spawn_command(cmd).expect("server did not start");
    // PERCORE_MAX_HEADERS=5 applies (no flag given).
    let mut raw = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..6 {
        raw.extend(format!("X-{i}: v\r\n").into_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert_eq!(s.request(&raw).status, 431, "PERCORE_MAX_HEADERS=5 from the environment");
}

#[test]
fn more_workers_than_cores_starts_with_warning() {
    let cores = allowed_cpus().len().max(1);
    let workers = (cores + 1).to_string();
    let s = ServerProc::start(&["--workers", &workers]);
    let r = s.request(&get("/plaintext"));
    assert_eq!(r.text(), "Hello, World!", "server with --workers {workers} on {cores} core(s)");
    let logs = s.logs();
    let started = logs.iter().filter(|l| l.contains("executor started")).count();
    assert_eq!(started, cores + 1, "executor started lines: {logs:#?}");
    assert!(
        logs.iter().any(|l| l.contains("\"WARN\"")),
        "expected a warning about workers > cores: {logs:#?}"
    );
}

#[test]
fn taskset_single_core_starts_one_executor() {
    if !on_path("taskset") {
        eprintln!("note: taskset not on PATH; skipping");
        return;
    }
    let core = *allowed_cpus().first().expect("allowed CPU list");
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &core.to_string(), bin(), "--port", "0", "--log-format", "json"]);
    let s = ServerProc::spawn_command(cmd).expect("percore under taskset did not start");
    let logs = s.logs();
    let started: Vec<&String> = logs.iter().filter(|l| l.contains("executor started")).collect();
    assert_eq!(started.len(), 1, "taskset -c {core}: expected exactly one executor: {logs:#?}");
    assert_eq!(
        json_field(started[0], "core").as_deref(),
        Some(core.to_string().as_str()),
        "executor core: {}",
        started[0]
    );
    assert_eq!(s.request(&get("/plaintext")).text(), "Hello, World!");
}

#[test]
fn cpus_outside_the_cpu_set_fails() {
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--cpus", "99"]);
    let (status, stderr) = run_to_exit(cmd, EXIT_LIMIT);
    let status = status.expect("percore --cpus 99 did not exit");
    assert!(!status.success(), "--cpus 99 must fail");
    assert!(
        !stderr.contains("panicked"),
        "percore --cpus 99 panicked instead of reporting an error: {}",
        stderr.lines().take(3).collect::<Vec<_>>().join(" | ")
    );
    assert!(
        stderr.contains("99") && stderr.contains("--cpus"),
        "message should name --cpus and CPU 99: {stderr:?}"
    );
}

#[test]
fn workers_zero_fails() {
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--workers", "0"]);
    let (status, stderr) = run_to_exit(cmd, EXIT_LIMIT);
    assert!(!status.expect("did not exit").success(), "--workers 0 must fail: {stderr:?}");
    assert!(stderr.contains("workers"), "message should name --workers: {stderr:?}");
}

#[test]
fn cpus_inside_the_cpu_set_starts_there() {
    let core = *allowed_cpus().first().expect("allowed CPU list");
    let core_s = core.to_string();
    let s = ServerProc::spawn(&["--port", "0", "--log-format", "json", "--cpus", &core_s]).unwrap_or_else(
        |logs| {
            panic!(
                "percore --cpus {core} did not start: {}",
                logs.lines().take(3).collect::<Vec<_>>().join(" | ")
            )
        },
    );
    let logs = s.logs();
    let started: Vec<&String> = logs.iter().filter(|l| l.contains("executor started")).collect();
    assert_eq!(started.len(), 1, "--cpus {core}: expected one executor: {logs:#?}");
    assert_eq!(json_field(started[0], "core").as_deref(), Some(core_s.as_str()));
    assert_eq!(s.request(&get("/plaintext")).text(), "Hello, World!");
}
