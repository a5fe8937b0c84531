//! End-to-end comparison: percore (monoio/io_uring and tokio/epoll) against a hyper 1.x
//! reference server (tokio multi-thread, and thread-per-core), may-minihttp (the
//! TechEmpower Rust entry), and nginx when installed, under wrk on 127.0.0.1.
//!
//! ```sh
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- --cores 1
//! ```
//!
//! Every server runs pinned (taskset) to the same N server cores; wrk runs pinned to the
//! other cores. Runs are interleaved across servers and repeated; the report gives medians,
//! spreads and ratios to hyper-mt, in `results/` as markdown, CSV and an SVG chart.
//! `compare --help` lists the options.

mod axum_app;
mod callgrind;
mod floor;
mod hyper_ref;
mod hyper_tls;
mod idle;
mod may_minihttp_ref;
mod procfs;
mod report;
mod servers;
mod tls_bench;
mod wrk;
mod ws_bench;
mod ws_peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use servers::{Kind, Programs, Server};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Plaintext,
    Json,
    Pipelined,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Plaintext, Workload::Json, Workload::Pipelined];
    pub fn name(self) -> &'static str {
        match self {
            Workload::Plaintext => "plaintext",
            Workload::Json => "json",
            Workload::Pipelined => "pipelined",
        }
    }
    pub fn path(self) -> &'static str {
        match self {
            Workload::Json => "/json",
            _ => "/plaintext",
        }
    }
    fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    pub cores: usize,
    pub round: usize,
    pub server: Kind,
    pub workload: Workload,
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_s: f64,
    /// Busy time of the server cores over the run (/proc/stat): the server's own CPU plus
    /// softirq work in ksoftirqd and anything else that ran there.
    pub cores_busy_s: f64,
    pub rss_kib: u64,
    pub errors: u64,
}

impl Run {
    /// Server CPU-seconds per million requests.
    pub fn cpu_per_mreq(&self) -> f64 {
        if self.requests == 0 {
            f64::NAN
        } else {
            self.cpu_s / self.requests as f64 * 1e6
        }
    }

    /// Server-core busy seconds per million requests.
    pub fn busy_per_mreq(&self) -> f64 {
        if self.requests == 0 {
            f64::NAN
        } else {
            self.cores_busy_s / self.requests as f64 * 1e6
        }
    }
}

#[derive(Debug, Clone)]
pub struct IdleResult {
    pub server: Kind,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub opened: usize,
    pub failed: usize,
    pub sample_ok: usize,
    pub sample: usize,
    pub open_s: f64,
}

#[derive(Debug, Clone)]
pub struct SyscallResult {
    pub server: Kind,
    pub workload: Workload,
    pub requests: u64,
    pub total: u64,
    pub top: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub server: Kind,
    pub file: PathBuf,
    pub kernel_pct: f64,
    pub top: Vec<String>,
}

pub struct CoreResults {
    pub cores: usize,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    pub wrk_threads: usize,
    pub servers: Vec<(Kind, String)>,
    pub runs: Vec<Run>,
    pub idle: Vec<IdleResult>,
    pub syscalls: Vec<SyscallResult>,
    pub profiles: Vec<Profile>,
    /// /proc/loadavg before and after (other work on the machine shows here).
    pub load: (String, String),
}

#[derive(Clone)]
pub struct Options {
    pub explicit_servers: bool,
    pub cores: Vec<usize>,
    pub duration: u64,
    pub warmup: u64,
    pub rounds: usize,
    pub connections: usize,
    pub depth: usize,
    pub idle: usize,
    pub servers: Vec<Kind>,
    pub workloads: Vec<Workload>,
    pub strace: bool,
    pub strace_requests: u64,
    pub profile: bool,
    /// Also count instructions per request under callgrind (floor, percore, hyper).
    pub callgrind: bool,
    pub percore_bin: Option<PathBuf>,
    pub build: bool,
    pub wrk: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub out: PathBuf,
    pub port_base: u16,
    pub command_line: String,
}

const HELP: &str = "compare: percore vs hyper vs nginx under wrk, on 127.0.0.1

USAGE:
  cargo run --release --manifest-path benches/compare/Cargo.toml -- [OPTIONS]

OPTIONS:
  --cores N[,N..]        server cores (default 1); wrk gets the remaining cores (at least 1).
                         A list (1,2,4,8) runs each and adds a scaling table
  --duration SECS        length of each measured wrk run (default 5)
  --warmup SECS          one warm-up run per server and workload before the rounds (default 1)
  --rounds N             interleaved rounds (default 3)
  --connections N        wrk connections (default 64)
  --depth N              pipelining depth of the `pipelined` workload (default 16)
  --idle N               idle keep-alive connections for the memory test (default 10000; 0 = skip)
  --servers LIST         of floor,percore-monoio,percore-tokio,percore-tokio-mt,percore-glommio,
                         hyper-mt,hyper-tpc,may-minihttp,nginx (default: all; glommio and
                         tokio-mt when the percore build has them, nginx when installed)
  --workloads LIST       of plaintext,json,pipelined (default: all)
  --no-strace            skip syscall counting (default: on when strace is installed)
  --strace-requests N    requests per syscall count (default 50000)
  --profile              perf record the percore servers and hyper-mt under plaintext
  --callgrind            also count user-space instructions per request under callgrind for the
                         floor, percore (monoio, native handlers), hyper and may-minihttp,
                         pipelined and keep-alive, /plaintext and /json (results/callgrind.md; needs valgrind)
  --percore-bin PATH     use this percore binary (default: build target/release/percore)
  --no-build             do not run `cargo build --release` at the root
  --wrk PATH             wrk binary (default: wrk on PATH)
  --nginx PATH           nginx binary (default: nginx on PATH or /usr/sbin)
  --out DIR              results directory (default benches/compare/results)
  --port-base PORT       first port (default 18100)

  compare serve-hyper --mode mt|tpc --threads N --cpus LIST --port P
                         run the hyper reference server alone
  compare callgrind [--percore-bin PATH] [--paths /plaintext,/json] [--out DIR] [--port P]
                    [--host HOST]
                         only the callgrind counts (as --callgrind), percore not rebuilt;
                         --host sets the requests' Host (default x; wrk sends 127.0.0.1:PORT)
  compare serve-floor --threads N --port P
                         the floor: the cheapest monoio responder wrk accepts (counts request
                         ends, writes canned answers)
  compare serve-may-minihttp --threads N --port P
                         may-minihttp (the TechEmpower Rust entry) on N may worker threads
  compare serve-axum --threads N --port P
                         the axum router on axum::serve
  compare serve-percore-axum [PERCORE FLAGS]
                         the axum router on percore (cli::run_service)

  compare ws [--servers LIST] [--sizes 20,16384] [--conns 100,500] [--idle 10000] ...
                         WebSocket echo: percore /ws against tokio-tungstenite and
                         fastwebsockets, messages per server CPU-second and idle memory
  compare serve-ws tungstenite|fastwebsockets --port P
                         one of those echo servers alone

  The axum comparison: --servers axum-serve,percore-axum-tokio,percore-axum-monoio,percore-monoio,hyper-mt";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        explicit_servers: false,
        cores: vec![1],
        duration: 5,
        warmup: 1,
        rounds: 3,
        connections: 64,
        depth: 16,
        idle: 10_000,
        servers: Kind::ALL.to_vec(),
        workloads: Workload::ALL.to_vec(),
        strace: true,
        strace_requests: 50_000,
        profile: false,
        callgrind: false,
        percore_bin: None,
        build: true,
        wrk: None,
        nginx: None,
        out: manifest_dir().join("results"),
        port_base: 18100,
        command_line: String::new(),
    };
    let mut explicit_servers = false;
    let mut i = 0;
    let value = |i: &mut usize| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or_else(|| format!("{} needs a value", args[*i - 1]))
    };
    let num =
        |s: String| -> Result<u64, String> { s.parse::<u64>().map_err(|_| format!("not a number: {s}")) };
    while i < args.len() {
        match args[i].as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--cores" => {
                o.cores = value(&mut i)?
                    .split(',')
                    .map(|c| num(c.trim().to_owned()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "--duration" => o.duration = num(value(&mut i)?)?.max(1),
            "--warmup" => o.warmup = num(value(&mut i)?)?,
            "--rounds" => o.rounds = num(value(&mut i)?)?.max(1) as usize,
            "--connections" => o.connections = num(value(&mut i)?)?.max(1) as usize,
            "--depth" => o.depth = num(value(&mut i)?)?.max(1) as usize,
            "--idle" => o.idle = num(value(&mut i)?)? as usize,
            "--servers" => {
                explicit_servers = true;
                o.servers = value(&mut i)?
                    .split(',')
                    .map(|s| Kind::parse(s.trim()).ok_or_else(|| format!("unknown server {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--workloads" => {
                o.workloads = value(&mut i)?
                    .split(',')
                    .map(|s| Workload::parse(s.trim()).ok_or_else(|| format!("unknown workload {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--no-strace" => o.strace = false,
            "--strace-requests" => o.strace_requests = num(value(&mut i)?)?.max(1000),
            "--profile" => o.profile = true,
            "--callgrind" => o.callgrind = true,
            "--percore-bin" => {
                o.percore_bin = Some(PathBuf::from(value(&mut i)?));
                o.build = false;
            }
            "--no-build" => o.build = false,
            "--wrk" => o.wrk = Some(PathBuf::from(value(&mut i)?)),
            "--nginx" => o.nginx = Some(PathBuf::from(value(&mut i)?)),
            "--out" => o.out = PathBuf::from(value(&mut i)?),
            "--port-base" => o.port_base = num(value(&mut i)?)? as u16,
            other => return Err(format!("unknown option {other} (see --help)")),
        }
        i += 1;
    }
    if o.cores.is_empty() || o.cores.contains(&0) {
        return Err("--cores needs numbers of at least 1".into());
    }
    if o.nginx.is_none() {
        o.nginx = servers::find_nginx();
    }
    if o.nginx.is_none() {
        if explicit_servers && o.servers.contains(&Kind::Nginx) {
            return Err("nginx requested but not installed (apt-get install nginx)".into());
        }
        o.servers.retain(|&k| k != Kind::Nginx);
    }
    if !o.servers.contains(&Kind::HyperMt) {
        eprintln!("note: hyper-mt is the reference for the ratios; without it they are left out");
    }
    o.explicit_servers = explicit_servers;
    o.command_line =
        std::iter::once("compare".to_owned()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-hyper") {
        std::process::exit(serve_hyper(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("callgrind") {
        std::process::exit(match callgrind_only(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("compare: {e}");
                1
            }
        });
    }
    if args.first().map(String::as_str) == Some("serve-floor") {
        let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let threads = value("--threads").and_then(|v| v.parse().ok()).unwrap_or(1);
        let port = value("--port").and_then(|v| v.parse().ok()).unwrap_or(8080);
        std::process::exit(match floor::serve(port, threads) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("serve-floor: {e}");
                1
            }
        });
    }
    if args.first().map(String::as_str) == Some("serve-percore-axum") {
        // percore's own command line (every flag after the subcommand) around the router.
        let _ = args;
        let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        argv.remove(1);
        std::process::exit(match percore::cli::run_service_with_args(argv, |_exec| axum_app::router()) {
            code if code == std::process::ExitCode::SUCCESS => 0,
            _ => 1,
        });
    }
    if args.first().map(String::as_str) == Some("serve-may-minihttp") {
        let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let threads = value("--threads").and_then(|v| v.parse().ok()).unwrap_or(1);
        let port = value("--port").and_then(|v| v.parse().ok()).unwrap_or(8080);
        std::process::exit(match may_minihttp_ref::serve(port, threads) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("serve-may-minihttp: {e}");
                1
            }
        });
    }
    if args.first().map(String::as_str) == Some("serve-axum") {
        let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let threads = value("--threads").and_then(|v| v.parse().ok()).unwrap_or(1);
        let port = value("--port").and_then(|v| v.parse().ok()).unwrap_or(8080);
        std::process::exit(match axum_app::serve_axum(threads, port) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("serve-axum: {e}");
                1
            }
        });
    }
    if let Some(sub @ ("ws" | "serve-ws")) = args.first().map(String::as_str) {
        let ran = if sub == "ws" { ws_bench::run(&args[1..]) } else { ws_peers::serve(&args[1..]) };
        std::process::exit(match ran {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("compare {sub}: {e}");
                1
            }
        });
    }
    if args.first().map(String::as_str) == Some("serve-hyper-tls") {
        let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let threads = value("--threads").and_then(|v| v.parse().ok()).unwrap_or(1);
        let port = value("--port").and_then(|v| v.parse().ok()).unwrap_or(8443);
        let (cert, key) = (value("--cert").unwrap_or_default(), value("--key").unwrap_or_default());
        std::process::exit(match hyper_tls::serve(port, threads, Path::new(&cert), Path::new(&key)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("serve-hyper-tls: {e}");
                1
            }
        });
    }
    if args.first().map(String::as_str) == Some("tls") {
        std::process::exit(match tls_bench::run(&args[1..]) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("compare tls: {e}");
                1
            }
        });
    }
    if args.first().map(String::as_str) == Some("scaling-from-csv") {
        std::process::exit(match scaling_from_csv(&args[1..]) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("compare: {e}");
                1
            }
        });
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run_all(&opts) {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
}

/// `scaling-from-csv --machine-cpus N --rounds R --duration D OUT_PREFIX FILE.csv...`: the
/// scaling table and chart again from the `*-runs.csv` files of runs made apart (one machine,
/// several invocations).
fn scaling_from_csv(args: &[String]) -> Result<(), String> {
    let mut o = parse_args(&[])?;
    let mut machine = 0usize;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let next = |i: usize| args.get(i + 1).cloned().ok_or("missing value");
        match args[i].as_str() {
            "--machine-cpus" => machine = next(i)?.parse().map_err(|_| "--machine-cpus")?,
            "--rounds" => o.rounds = next(i)?.parse().map_err(|_| "--rounds")?,
            "--duration" => o.duration = next(i)?.parse().map_err(|_| "--duration")?,
            "--connections" => o.connections = next(i)?.parse().map_err(|_| "--connections")?,
            "--depth" => o.depth = next(i)?.parse().map_err(|_| "--depth")?,
            a => {
                files.push(a.to_owned());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if files.len() < 2 {
        return Err("need OUT_PREFIX and at least one CSV".into());
    }
    let prefix = PathBuf::from(files.remove(0));
    let mut by_cores: std::collections::BTreeMap<usize, Vec<Run>> = Default::default();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split(',').collect();
            if c.len() < 12 {
                continue;
            }
            let num = |j: usize| c[j].parse::<f64>().unwrap_or(f64::NAN);
            let run = Run {
                cores: num(0) as usize,
                round: num(1) as usize - 1,
                server: Kind::parse(c[2]).ok_or_else(|| format!("{f}: server {}", c[2]))?,
                workload: Workload::parse(c[3]).ok_or_else(|| format!("{f}: workload {}", c[3]))?,
                requests: num(4) as u64,
                rps: num(5),
                p50_us: num(6),
                p99_us: num(7),
                cpu_s: num(8),
                cores_busy_s: if c.len() > 12 { num(12) } else { f64::NAN },
                rss_kib: num(10) as u64,
                errors: num(11) as u64,
            };
            by_cores.entry(run.cores).or_default().push(run);
        }
    }
    let results: Vec<CoreResults> = by_cores
        .into_iter()
        .map(|(cores, runs)| {
            let servers = Kind::ALL
                .into_iter()
                .filter(|k| runs.iter().any(|r| r.server == *k))
                .map(|k| (k, String::new()))
                .collect();
            CoreResults {
                cores,
                server_cpus: (0..cores).collect(),
                client_cpus: (cores..machine.max(cores + 1)).collect(),
                wrk_threads: machine.saturating_sub(cores).max(1),
                servers,
                runs,
                idle: Vec::new(),
                syscalls: Vec::new(),
                profiles: Vec::new(),
                load: Default::default(),
            }
        })
        .collect();
    let refs: Vec<&CoreResults> = results.iter().collect();
    let mut md = String::new();
    report::scaling_markdown(&mut md, &o, &refs);
    std::fs::write(prefix.with_extension("md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(prefix.with_extension("svg"), report::scaling_svg(&refs, &o))
        .map_err(|e| e.to_string())?;
    println!("{md}");
    Ok(())
}

fn serve_hyper(args: &[String]) -> i32 {
    let (mut mode, mut threads, mut cpus, mut port) = (hyper_ref::Mode::MultiThread, 1, Vec::new(), 8080u16);
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--mode" => {
                mode = if v == "tpc" { hyper_ref::Mode::ThreadPerCore } else { hyper_ref::Mode::MultiThread }
            }
            "--threads" => threads = v.parse().unwrap_or(1),
            "--cpus" => cpus = v.split(',').filter_map(|c| c.parse().ok()).collect(),
            "--port" => port = v.parse().unwrap_or(8080),
            _ => {}
        }
        i += 2;
    }
    match hyper_ref::serve(mode, port, threads, &cpus) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("serve-hyper: {e}");
            1
        }
    }
}

fn run_all(o: &Options) -> Result<(), String> {
    let wrk = match &o.wrk {
        Some(w) => w.clone(),
        None => servers::find_in_path("wrk")
            .ok_or("wrk not found: install it (apt-get install wrk) or pass --wrk PATH")?,
    };
    if servers::find_in_path("taskset").is_none() {
        return Err("taskset not found (apt-get install util-linux)".into());
    }
    let root = manifest_dir().join("../..");
    let percore = match &o.percore_bin {
        Some(p) => p.clone(),
        None => root.join("target/release/percore"),
    };
    if o.build {
        eprintln!("== cargo build --release (percore, at {})", root.display());
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "percore", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .status()
            .map_err(|e| format!("cargo: {e}"))?;
        if !status.success() {
            return Err("building percore failed; fix the build or pass --no-build / --percore-bin".into());
        }
    }
    if !percore.is_file() {
        return Err(format!("{} missing: run `cargo build --release` at the root", percore.display()));
    }
    let mut o_servers = o.servers.clone();
    // Older builds lack some runtimes; leave those out unless they were asked for.
    let help = Command::new(&percore)
        .arg("--help")
        .output()
        .map(|h| String::from_utf8_lossy(&h.stdout).into_owned())
        .unwrap_or_default();
    for (kind, runtime) in [(Kind::PercoreGlommio, "glommio"), (Kind::PercoreTokioMt, "tokio-mt")] {
        if o_servers.contains(&kind) && !help.contains(runtime) {
            if o.explicit_servers {
                return Err(format!("this percore build has no {runtime} runtime"));
            }
            o_servers.retain(|&k| k != kind);
        }
    }
    let o = &Options { servers: o_servers, ..o.clone() };
    let progs = Programs {
        percore: percore.canonicalize().unwrap_or(percore),
        // COMPARE_SELF: this program when it runs through a wrapper (another loader).
        me: match std::env::var_os("COMPARE_SELF") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe().map_err(|e| e.to_string())?,
        },
        nginx: o.nginx.clone(),
    };
    let strace = if o.strace { servers::find_in_path("strace") } else { None };
    let perf = if o.profile { servers::find_in_path("perf") } else { None };
    let allowed = procfs::machine_cpus();
    let nofile = procfs::raise_nofile();
    if o.idle > 0 && (nofile as usize) < o.idle + 100 {
        eprintln!("warning: open-files limit {nofile} is below --idle {}; the idle test may fail", o.idle);
    }
    let workdir = std::env::temp_dir().join(format!("percore-compare-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;

    let mut all = Vec::new();
    for &cores in &o.cores {
        if cores >= allowed.len() {
            eprintln!(
                "skipping --cores {cores}: only {} CPUs here, and wrk needs at least one of its own",
                allowed.len()
            );
            continue;
        }
        let res = run_cores(o, &progs, &wrk, strace.as_deref(), perf.as_deref(), &allowed, cores, &workdir)?;
        let md = report::markdown(o, &[&res], &wrk);
        let stem = format!("compare-{cores}core");
        std::fs::write(o.out.join(format!("{stem}.md")), &md).map_err(|e| e.to_string())?;
        std::fs::write(o.out.join(format!("{stem}.svg")), report::svg(&res, o)).map_err(|e| e.to_string())?;
        std::fs::write(o.out.join(format!("{stem}-runs.csv")), report::csv(&res))
            .map_err(|e| e.to_string())?;
        eprintln!("== wrote {}/{stem}.{{md,svg}}, {stem}-runs.csv", o.out.display());
        all.push(res);
    }
    if all.is_empty() {
        return Err("nothing ran".into());
    }
    let refs: Vec<&CoreResults> = all.iter().collect();
    let md = report::markdown(o, &refs, &wrk);
    if all.len() > 1 {
        let list = o.cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("-");
        std::fs::write(o.out.join(format!("scaling-{list}.md")), &md).map_err(|e| e.to_string())?;
        std::fs::write(o.out.join(format!("scaling-{list}.svg")), report::scaling_svg(&refs, o))
            .map_err(|e| e.to_string())?;
        eprintln!("== wrote {}/scaling-{list}.{{md,svg}}", o.out.display());
    }
    println!("{md}");
    let _ = std::fs::remove_dir_all(&workdir);
    if o.callgrind {
        let paths = ["/plaintext".to_owned(), "/json".to_owned()];
        run_callgrind(&progs.percore, &progs.me, &paths, &o.out, o.port_base + 90, &o.command_line)?;
    }
    Ok(())
}

/// Count instructions per request under callgrind; print the table and write it to
/// `out/callgrind.md` (the profiles go to `out/callgrind/`).
fn run_callgrind(
    percore: &Path,
    me: &Path,
    paths: &[String],
    out: &Path,
    port: u16,
    command: &str,
) -> Result<(), String> {
    if servers::find_in_path("valgrind").is_none() {
        return Err("valgrind not found (apt-get install valgrind)".into());
    }
    let counts = callgrind::measure(percore, me, paths, &out.join("callgrind"), port)?;
    let md = callgrind::markdown(&counts, command);
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("callgrind.md"), &md).map_err(|e| e.to_string())?;
    eprintln!("== wrote {}/callgrind.md", out.display());
    println!("{md}");
    Ok(())
}

/// `compare callgrind`'s options: each known one with its value; `--help` prints the usage.
fn callgrind_options(args: &[String]) -> Result<std::collections::HashMap<&str, String>, String> {
    const USAGE: &str = "usage: compare callgrind [--percore-bin PATH] [--paths /plaintext,/json] \
[--out DIR] [--port P] [--host HOST]\n  --host sets the requests' Host field (default x; wrk sends 127.0.0.1:PORT)";
    let mut given = std::collections::HashMap::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            name @ ("--percore-bin" | "--paths" | "--out" | "--port" | "--host") => {
                let value = rest.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
                given.insert(name, value.clone());
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(given)
}

/// `compare callgrind [--percore-bin PATH] [--paths LIST] [--out DIR] [--port P] [--host HOST]`.
fn callgrind_only(args: &[String]) -> Result<(), String> {
    let given = callgrind_options(args)?;
    let value = |name: &str| given.get(name).cloned();
    if let Some(host) = value("--host") {
        // run.sh hands it to load.py; the servers it starts ignore it.
        std::env::set_var("CALLGRIND_HOST", host);
    }
    let percore = value("--percore-bin")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../target/release/percore"));
    if !percore.is_file() {
        return Err(format!("{} missing: run `cargo build --release` at the root", percore.display()));
    }
    let paths: Vec<String> =
        value("--paths").unwrap_or_else(|| "/plaintext,/json".into()).split(',').map(str::to_owned).collect();
    let out = value("--out").map(PathBuf::from).unwrap_or_else(|| manifest_dir().join("results"));
    let port = match value("--port") {
        Some(v) => v.parse().map_err(|_| format!("--port: not a port: {v}"))?,
        None => 18190,
    };
    let me = match std::env::var_os("COMPARE_SELF") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let command =
        std::iter::once("compare".to_owned()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    run_callgrind(&percore.canonicalize().unwrap_or(percore), &me, &paths, &out, port, &command)
}

#[allow(clippy::too_many_arguments)]
fn run_cores(
    o: &Options,
    progs: &Programs,
    wrk: &Path,
    strace: Option<&Path>,
    perf: Option<&Path>,
    allowed: &[usize],
    cores: usize,
    workdir: &Path,
) -> Result<CoreResults, String> {
    let load_before = procfs::loadavg();
    let server_cpus = allowed[..cores].to_vec();
    let client_cpus = allowed[cores..].to_vec();
    let client_list = procfs::cpu_list(&client_cpus);
    let wrk_threads = client_cpus.len().min(o.connections);
    // The harness itself (idle-test client, bookkeeping) stays off the server cores.
    procfs::pin_self(&client_cpus);
    eprintln!(
        "== {cores} server core(s) [{}], wrk on [{client_list}] with {wrk_threads} thread(s)",
        procfs::cpu_list(&server_cpus)
    );

    let dir = workdir.join(format!("{cores}c"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let pipeline = wrk::script(&dir, "pipeline", "/plaintext", o.depth, None).map_err(|e| e.to_string())?;

    // Every server stays up for the whole run (idle ones use no CPU); load goes to one at a time.
    let mut running: Vec<Server> = Vec::new();
    let mut port = o.port_base + (cores as u16) * 10;
    for &kind in &o.servers {
        while !servers::port_free(port) {
            port += 1;
        }
        let s = Server::start(kind, progs, &server_cpus, port, &dir)?;
        eprintln!("   started {} on :{} (pid {}; {})", kind.name(), s.port, s.pid, s.note);
        running.push(s);
        port += 1;
    }
    let notes = running.iter().map(|s| (s.kind, s.note.clone())).collect();

    let run_one = |s: &Server,
                   w: Workload,
                   secs: u64,
                   script: Option<&Path>|
     -> Result<(wrk::WrkResult, f64, f64, u64), String> {
        let pids = s.pids();
        let before = procfs::cpu_seconds(&pids);
        let busy_before = procfs::cores_busy_seconds(&server_cpus);
        let r = wrk::WrkRun {
            wrk,
            client_cpus: &client_list,
            threads: wrk_threads,
            connections: o.connections,
            duration_s: secs as f64,
            script,
            url: format!("http://127.0.0.1:{}{}", s.port, w.path()),
            stop_when: None,
        }
        .run()?;
        let cpu = procfs::cpu_seconds(&s.pids()) - before;
        let busy = procfs::cores_busy_seconds(&server_cpus) - busy_before;
        let rss = procfs::rss_kib(&s.pids());
        std::thread::sleep(Duration::from_millis(300));
        Ok((r, cpu, busy, rss))
    };
    let script_for = |w: Workload| if w == Workload::Pipelined { Some(pipeline.as_path()) } else { None };

    if o.warmup > 0 {
        eprintln!("   warm-up: {} s per server and workload", o.warmup);
        for s in &running {
            for &w in &o.workloads {
                run_one(s, w, o.warmup, script_for(w))?;
            }
        }
    }

    let mut runs = Vec::new();
    let started = Instant::now();
    for round in 0..o.rounds {
        for &w in &o.workloads {
            // Rotate the order each round so no server always runs first or last.
            let n = running.len();
            for k in 0..n {
                let s = &running[(k + round) % n];
                let (r, cpu, busy, rss) = run_one(s, w, o.duration, script_for(w))?;
                let run = Run {
                    cores,
                    round,
                    server: s.kind,
                    workload: w,
                    requests: r.requests,
                    rps: r.rps,
                    p50_us: r.p50_us,
                    // Pipelined, wrk records one latency per batch but corrects for coordinated
                    // omission as if per response; its 99th is then meaningless (often 0).
                    p99_us: if r.p99_us > 0.0 && w != Workload::Pipelined { r.p99_us } else { f64::NAN },
                    cpu_s: cpu,
                    cores_busy_s: busy,
                    rss_kib: rss,
                    errors: r.socket_errors + r.non_2xx,
                };
                eprintln!(
                    "   round {} {:<9} {:<15} {:>9.0} req/s  p50 {:>8.1} us  p99 {:>8.1} us  {:>6.2} CPU-s/Mreq (cores busy {:>6.2})  rss {:>6} KiB{}",
                    round + 1,
                    w.name(),
                    s.kind.name(),
                    run.rps,
                    run.p50_us,
                    run.p99_us,
                    run.cpu_per_mreq(),
                    run.busy_per_mreq(),
                    rss,
                    if run.errors > 0 { format!("  errors {}", run.errors) } else { String::new() }
                );
                runs.push(run);
            }
        }
    }
    eprintln!("   rounds took {:.0} s", started.elapsed().as_secs_f64());

    let mut idle_results = Vec::new();
    if o.idle > 0 {
        for s in &running {
            let pids = s.pids();
            let before = procfs::rss_kib(&pids);
            let mut idle = idle::open(s.port, o.idle);
            std::thread::sleep(Duration::from_secs(2));
            let after = procfs::rss_kib(&s.pids());
            let sample = 100.min(idle.conns.len());
            let ok = idle::still_open(&mut idle, sample);
            eprintln!(
                "   idle {:<15} {} conns open ({} failed) in {:.1} s: RSS {} -> {} KiB; {ok}/{sample} still answer",
                s.kind.name(),
                idle.conns.len(),
                idle.failed,
                idle.seconds,
                before,
                after
            );
            idle_results.push(IdleResult {
                server: s.kind,
                rss_before_kib: before,
                rss_after_kib: after,
                opened: idle.conns.len(),
                failed: idle.failed,
                sample_ok: ok,
                sample,
                open_s: idle.seconds,
            });
            drop(idle);
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    let mut syscalls = Vec::new();
    if let Some(strace) = strace {
        let per_thread = o.strace_requests.div_ceil(wrk_threads as u64);
        for &w in [Workload::Plaintext, Workload::Pipelined].iter().filter(|w| o.workloads.contains(w)) {
            let depth = if w == Workload::Pipelined { o.depth } else { 1 };
            let done_dir = dir.join(format!("done-{}", w.name()));
            let script = wrk::script(
                &dir,
                &format!("stop-{}", w.name()),
                w.path(),
                depth,
                Some((per_thread, done_dir.as_path())),
            )
            .map_err(|e| e.to_string())?;
            for s in &running {
                let _ = std::fs::remove_dir_all(&done_dir);
                std::fs::create_dir_all(&done_dir).map_err(|e| e.to_string())?;
                match count_syscalls(
                    strace,
                    s,
                    w,
                    &script,
                    &done_dir,
                    wrk,
                    &client_list,
                    wrk_threads,
                    o,
                    &dir,
                ) {
                    Ok(r) => {
                        eprintln!(
                            "   strace {:<9} {:<15} {} requests, {:.2} syscalls/request",
                            w.name(),
                            s.kind.name(),
                            r.requests,
                            r.total as f64 / r.requests.max(1) as f64
                        );
                        syscalls.push(r);
                    }
                    Err(e) => eprintln!("   strace {} {}: {e}", w.name(), s.kind.name()),
                }
            }
        }
    }

    let mut profiles = Vec::new();
    if let Some(perf) = perf {
        for s in running.iter().filter(|s| s.kind.is_percore() || s.kind == Kind::HyperMt) {
            match profile(perf, s, wrk, &client_list, wrk_threads, o, cores) {
                Ok(p) => {
                    eprintln!(
                        "   perf {:<15} kernel {:.0}% -> {}",
                        s.kind.name(),
                        p.kernel_pct,
                        p.file.display()
                    );
                    profiles.push(p);
                }
                Err(e) => eprintln!("   perf {}: {e}", s.kind.name()),
            }
        }
    }

    for s in running {
        s.stop();
    }
    Ok(CoreResults {
        cores,
        server_cpus,
        client_cpus,
        wrk_threads,
        servers: notes,
        runs,
        idle: idle_results,
        syscalls,
        profiles,
        load: (load_before, procfs::loadavg()),
    })
}

#[allow(clippy::too_many_arguments)]
fn count_syscalls(
    strace: &Path,
    s: &Server,
    w: Workload,
    script: &Path,
    done_dir: &Path,
    wrk: &Path,
    client_list: &str,
    wrk_threads: usize,
    o: &Options,
    dir: &Path,
) -> Result<SyscallResult, String> {
    let out = dir.join(format!("strace-{}-{}.txt", s.kind.name(), w.name()));
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(client_list).arg(strace).args(["-c", "-f", "-q", "-o"]).arg(&out);
    for p in s.pids() {
        cmd.arg("-p").arg(p.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(700));
    let r = wrk::WrkRun {
        wrk,
        client_cpus: client_list,
        threads: wrk_threads,
        connections: o.connections,
        duration_s: 120.0,
        script: Some(script),
        url: format!("http://127.0.0.1:{}{}", s.port, w.path()),
        stop_when: Some((done_dir, wrk_threads)),
    }
    .run();
    std::thread::sleep(Duration::from_millis(300));
    procfs::send_signal(child.id(), libc::SIGINT);
    let _ = child.wait();
    let r = r?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut rows: Vec<(String, u64)> = Vec::new();
    let mut total = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let name = f[f.len() - 1].to_owned();
        let calls: u64 = match f[3].parse() {
            Ok(c) => c,
            Err(_) => continue,
        };
        if name == "total" {
            total = calls;
        } else {
            rows.push((name, calls));
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    if total == 0 {
        total = rows.iter().map(|r| r.1).sum();
    }
    Ok(SyscallResult { server: s.kind, workload: w, requests: r.requests, total, top: rows })
}

fn profile(
    perf: &Path,
    s: &Server,
    wrk: &Path,
    client_list: &str,
    wrk_threads: usize,
    o: &Options,
    cores: usize,
) -> Result<Profile, String> {
    let data =
        std::env::temp_dir().join(format!("percore-compare-{}-{}.perf", std::process::id(), s.kind.name()));
    let secs = o.duration.max(3);
    let mut rec = Command::new("taskset");
    rec.arg("-c")
        .arg(client_list)
        .arg(perf)
        .args(["record", "-F", "1999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &s.pid.to_string(), "--", "sleep", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = rec.spawn().map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(200));
    let _ = wrk::WrkRun {
        wrk,
        client_cpus: client_list,
        threads: wrk_threads,
        connections: o.connections,
        duration_s: secs as f64,
        script: None,
        url: format!("http://127.0.0.1:{}/plaintext", s.port),
        stop_when: None,
    }
    .run();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !data.is_file() {
        return Err(format!("perf record failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let report = |sort: &str, limit: &str| -> Result<String, String> {
        let out = Command::new(perf)
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                sort,
                "--percent-limit",
                limit,
                "-g",
                "none",
                "-i",
            ])
            .arg(&data)
            .stderr(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let by_dso = report("dso", "0.5")?;
    let by_sym = report("dso,sym", "0.4")?;
    let kernel_pct = by_dso
        .lines()
        .filter(|l| l.contains("[kernel"))
        .filter_map(|l| l.split_whitespace().next().and_then(|p| p.trim_end_matches('%').parse::<f64>().ok()))
        .sum();
    let top: Vec<String> = by_sym
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(25)
        .map(|l| l.trim_end().to_owned())
        .collect();
    let file = o.out.join(format!("profile-{}-{cores}core.txt", s.kind.name()));
    let header = format!(
        "# perf record -F 1999 -g -p <{}> during wrk -c{} /plaintext ({secs} s)\n# share of samples by binary:\n",
        s.kind.name(),
        o.connections
    );
    std::fs::write(&file, format!("{header}{by_dso}\n# by symbol:\n{by_sym}")).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&data);
    Ok(Profile { server: s.kind, file, kernel_pct, top })
}
