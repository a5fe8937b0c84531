//! The report: markdown tables (medians, spreads, ratios to hyper-mt), the CSV of every run,
//! and hand-written SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use crate::servers::Kind;
use crate::{procfs, CoreResults, Options, Run, Workload};

const REF: Kind = Kind::HyperMt;

pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn stat(mut v: Vec<f64>) -> Option<Stat> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some(Stat { median, min: v[0], max: v[n - 1], n })
}

fn runs_of(r: &CoreResults, k: Kind, w: Workload) -> impl Iterator<Item = &Run> {
    r.runs.iter().filter(move |x| x.server == k && x.workload == w)
}

pub fn metric(r: &CoreResults, k: Kind, w: Workload, f: impl Fn(&Run) -> f64) -> Option<Stat> {
    stat(runs_of(r, k, w).map(f).collect())
}

fn cpu(r: &Run) -> f64 {
    r.cpu_per_mreq()
}

fn kilo(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn lat(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn spread_pct(s: &Stat) -> String {
    if s.median == 0.0 || s.n < 2 {
        return String::new();
    }
    format!(" ±{:.0}%", (s.max - s.min) / 2.0 / s.median * 100.0)
}

fn ratio(a: Option<&Stat>, b: Option<&Stat>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

fn fmt_ratio(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into())
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

pub fn markdown(o: &Options, all: &[&CoreResults], wrk: &Path) -> String {
    let mut m = String::new();
    let wrk_version = std::process::Command::new(wrk)
        .arg("-v")
        .output()
        .ok()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned()
                + String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("")
        })
        .unwrap_or_default();
    let wrk_version = wrk_version.split(" Copyright").next().unwrap_or("").trim().to_owned();
    let _ = writeln!(m, "Command: `{}`\n", o.command_line);
    let _ = writeln!(
        m,
        "Machine: {} CPUs ({}), kernel {}; {}; loopback 127.0.0.1. Each measured run: wrk `-c{}` for {} s, \
         {} interleaved round(s) (server order rotated every round), after a {} s warm-up per server and workload. \
         Cells are medians; ± is half the min–max spread over the rounds in % of the median.\n",
        procfs::machine_cpus().len(),
        procfs::model_name(),
        procfs::kernel(),
        wrk_version.trim(),
        o.connections,
        o.duration,
        o.rounds,
        o.warmup
    );
    for r in all {
        core_section(&mut m, o, r);
    }
    if all.len() > 1 {
        scaling_section(&mut m, o, all);
    }
    m
}

fn core_section(m: &mut String, o: &Options, r: &CoreResults) {
    let _ = writeln!(
        m,
        "### {} server core(s) [{}], wrk on {} core(s) [{}] with {} thread(s)\n",
        r.cores,
        procfs::cpu_list(&r.server_cpus),
        r.client_cpus.len(),
        procfs::cpu_list(&r.client_cpus),
        r.wrk_threads
    );
    let _ = writeln!(m, "Load average (1/5/15 min) before: {}; after: {}.\n", r.load.0, r.load.1);
    let _ = writeln!(m, "| server | what | at start |\n|---|---|---|");
    for (k, note) in &r.servers {
        let _ = writeln!(m, "| {} | {} | {} |", k.name(), k.describe(), note.replace('|', "\\|"));
    }
    let _ = writeln!(m);
    let kinds: Vec<Kind> = r.servers.iter().map(|s| s.0).collect();
    let workloads: Vec<Workload> =
        Workload::ALL.into_iter().filter(|w| r.runs.iter().any(|x| x.workload == *w)).collect();
    let _ = writeln!(
        m,
        "| workload | server | **server CPU-s per M req** | CPU vs floor | CPU vs hyper-mt | server-core busy s per M req | req/s | req/s vs hyper-mt | p50 | p99 | p99 vs hyper-mt | RSS after load | errors |"
    );
    let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &w in &workloads {
        let floor_cpu = metric(r, Kind::Floor, w, cpu);
        let ref_cpu = metric(r, REF, w, cpu);
        let ref_rps = metric(r, REF, w, |x| x.rps);
        let ref_p99 = metric(r, REF, w, |x| x.p99_us);
        let label = match w {
            Workload::Pipelined => format!("pipelined ×{}", o.depth),
            _ => w.name().to_owned(),
        };
        for &k in &kinds {
            let (Some(c), Some(rps)) = (metric(r, k, w, cpu), metric(r, k, w, |x| x.rps)) else {
                continue;
            };
            let busy = metric(r, k, w, |x| x.busy_per_mreq())
                .map(|b| format!("{:.2}", b.median))
                .unwrap_or_else(|| "–".into());
            let p50 = metric(r, k, w, |x| x.p50_us).map(|s| lat(s.median)).unwrap_or_else(|| "–".into());
            let p99 = metric(r, k, w, |x| x.p99_us);
            let p99_text = p99
                .as_ref()
                .map(|s| format!("{}{}", lat(s.median), spread_pct(s)))
                .unwrap_or_else(|| "–".into());
            let rss = metric(r, k, w, |x| x.rss_kib as f64).map(|s| mib(s.max)).unwrap_or_default();
            let errors: u64 = runs_of(r, k, w).map(|x| x.errors).sum();
            let _ = writeln!(
                m,
                "| {label} | {} | **{:.2}** ({:.2}–{:.2}) | {} | {} | {busy} | {}{} | {} | {p50} | {p99_text} | {} | {rss} | {errors} |",
                k.name(),
                c.median,
                c.min,
                c.max,
                fmt_ratio(ratio(Some(&c), floor_cpu.as_ref())),
                fmt_ratio(ratio(Some(&c), ref_cpu.as_ref())),
                kilo(rps.median),
                spread_pct(&rps),
                fmt_ratio(ratio(Some(&rps), ref_rps.as_ref())),
                fmt_ratio(ratio(p99.as_ref(), ref_p99.as_ref())),
            );
        }
    }
    let _ = writeln!(
        m,
        "\nCPU-s per M req: utime+stime of the server process(es) (/proc/PID/stat) over the run, per million \
         requests. Server-core busy: all non-idle time of the server cores (/proc/stat) per million requests; \
         it includes softirq work in ksoftirqd and anything else that ran there, so a gap to the first column \
         means other load. No p99 for pipelined runs: wrk records one latency per batch and then corrects \
         for coordinated omission as if per response, which makes its percentiles meaningless.\n"
    );

    if !r.idle.is_empty() {
        let _ = writeln!(
            m,
            "Memory with {} idle keep-alive connections (each made one request, then left open; VmRSS of the server process(es), kernel socket buffers not included):\n",
            o.idle
        );
        let _ = writeln!(m, "| server | RSS before | RSS with idle connections | per connection | open | sample still answering |\n|---|---:|---:|---:|---:|---:|");
        for i in &r.idle {
            let per = (i.rss_after_kib as f64 - i.rss_before_kib as f64) / i.opened.max(1) as f64;
            let _ = writeln!(
                m,
                "| {} | {} | **{}** | {:.2} KiB | {}{} | {}/{} |",
                i.server.name(),
                mib(i.rss_before_kib as f64),
                mib(i.rss_after_kib as f64),
                per,
                i.opened,
                if i.failed > 0 { format!(" ({} failed)", i.failed) } else { String::new() },
                i.sample_ok,
                i.sample
            );
        }
        let _ = writeln!(m);
    }

    if !r.syscalls.is_empty() {
        let _ = writeln!(
            m,
            "System calls per request (`strace -c -f -p PID` over ~{} requests from wrk `-c{}`; under strace every server is slower, so batches are larger than without it; io_uring operations submitted through `io_uring_enter` are not system calls of their own):\n",
            o.strace_requests, o.connections
        );
        let _ = writeln!(
            m,
            "| workload | server | syscalls / request | largest (per request) |\n|---|---|---:|---|"
        );
        for sc in &r.syscalls {
            let per = |n: u64| n as f64 / sc.requests.max(1) as f64;
            let top = sc
                .top
                .iter()
                .take(4)
                .map(|(n, c)| format!("{n} {:.2}", per(*c)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                m,
                "| {} | {} | **{:.2}** | {} |",
                sc.workload.name(),
                sc.server.name(),
                per(sc.total),
                top
            );
        }
        let _ = writeln!(m);
    }

    if !r.profiles.is_empty() {
        let _ = writeln!(m, "Profiles (`perf record` during wrk `/plaintext`; full reports in the files):\n");
        for p in &r.profiles {
            let _ = writeln!(
                m,
                "- {}: {:.0}% of samples in the kernel; `{}`",
                p.server.name(),
                p.kernel_pct,
                p.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
            );
        }
        let _ = writeln!(m);
    }

    targets(m, r);
}

fn targets(m: &mut String, r: &CoreResults) {
    let has = |k: Kind| r.servers.iter().any(|s| s.0 == k);
    if !has(Kind::PercoreMonoio) || !(has(REF) || has(Kind::Floor)) {
        return;
    }
    let _ = writeln!(m, "Targets ({} server core(s)):\n", r.cores);
    let _ = writeln!(m, "| target | measured | met |\n|---|---|---|");
    let mut row = |t: String, measured: String, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(m, "| {t} | {measured} | {verdict} |");
    };
    for (w, limit) in [(Workload::Plaintext, 0.6), (Workload::Json, 0.6), (Workload::Pipelined, 0.5)] {
        if let Some(x) =
            ratio(metric(r, Kind::PercoreMonoio, w, cpu).as_ref(), metric(r, REF, w, cpu).as_ref())
        {
            row(
                format!("percore-monoio CPU/request ≤ {limit}× hyper-mt, {}", w.name()),
                format!("{x:.2}×"),
                Some(x <= limit),
            );
        }
    }
    if let Some(x) = ratio(
        metric(r, Kind::PercoreMonoio, Workload::Pipelined, cpu).as_ref(),
        metric(r, Kind::Floor, Workload::Pipelined, cpu).as_ref(),
    ) {
        row(
            "percore-monoio CPU/request ≤ 1.2× the floor's, pipelined".into(),
            format!("{x:.2}×"),
            Some(x <= 1.2),
        );
    }
    // Issue #12: percore's CPU per request below may-minihttp's (the TechEmpower Rust entry).
    for w in Workload::ALL {
        if let Some(x) = ratio(
            metric(r, Kind::PercoreMonoio, w, cpu).as_ref(),
            metric(r, Kind::MayMinihttp, w, cpu).as_ref(),
        ) {
            row(
                format!("percore-monoio CPU/request < may-minihttp's, {}", w.name()),
                format!("{x:.2}×"),
                Some(x < 1.0),
            );
        }
    }
    for w in [Workload::Plaintext, Workload::Json] {
        let a = metric(r, Kind::PercoreMonoio, w, |x| x.p99_us);
        let b = metric(r, REF, w, |x| x.p99_us);
        if let (Some(a), Some(b)) = (a, b) {
            row(
                format!("percore-monoio p99 ≤ hyper-mt's, {}", w.name()),
                format!("{} vs {} ({:.2}×)", lat(a.median), lat(b.median), a.median / b.median),
                Some(a.median <= b.median),
            );
        }
    }
    if let Some(i) = r.idle.iter().find(|i| i.server == Kind::PercoreMonoio) {
        let ok = i.rss_after_kib < 64 * 1024 && i.failed == 0;
        row(
            format!("percore-monoio RSS < 64 MiB with {} idle connections", i.opened),
            mib(i.rss_after_kib as f64),
            Some(ok),
        );
    }
    if let Some(i) = r.idle.iter().find(|i| i.server == Kind::PercoreTokio) {
        row(
            format!("(percore-tokio RSS with {} idle connections)", i.opened),
            mib(i.rss_after_kib as f64),
            Some(i.rss_after_kib < 64 * 1024),
        );
    }
    if has(Kind::PercoreTokio) && has(Kind::HyperTpc) {
        for w in Workload::ALL {
            let c = ratio(
                metric(r, Kind::PercoreTokio, w, cpu).as_ref(),
                metric(r, Kind::HyperTpc, w, cpu).as_ref(),
            );
            let q = ratio(
                metric(r, Kind::PercoreTokio, w, |x| x.rps).as_ref(),
                metric(r, Kind::HyperTpc, w, |x| x.rps).as_ref(),
            );
            if let (Some(c), Some(q)) = (c, q) {
                row(
                    format!("percore-tokio within 10% of hyper-tpc (CPU/request), {}", w.name()),
                    format!("CPU {c:.2}×, req/s {q:.2}×"),
                    Some(c <= 1.10),
                );
            }
        }
    }
    if has(Kind::PercoreTokio) && has(Kind::PercoreTokioMt) {
        // Not a target: per-core runtimes and listeners against one shared runtime and
        // listener, with the same IO model (epoll), codec, driver and handlers.
        for w in Workload::ALL {
            let c = ratio(
                metric(r, Kind::PercoreTokio, w, cpu).as_ref(),
                metric(r, Kind::PercoreTokioMt, w, cpu).as_ref(),
            );
            if let Some(c) = c {
                row(
                    format!(
                        "(percore-tokio CPU/request vs percore-tokio-mt: per-core runtimes vs one shared runtime), {}",
                        w.name()
                    ),
                    format!("{c:.2}×"),
                    None,
                );
            }
        }
    }
    let _ = writeln!(m);
}

pub fn scaling_markdown(m: &mut String, o: &Options, all: &[&CoreResults]) {
    scaling_section(m, o, all)
}

fn scaling_section(m: &mut String, o: &Options, all: &[&CoreResults]) {
    let _ = writeln!(m, "### Scaling\n");
    let kinds: Vec<Kind> =
        Kind::ALL.into_iter().filter(|k| all.iter().any(|r| r.servers.iter().any(|s| s.0 == *k))).collect();
    for w in Workload::ALL {
        if !all.iter().any(|r| r.runs.iter().any(|x| x.workload == w)) {
            continue;
        }
        let label =
            if w == Workload::Pipelined { format!("pipelined ×{}", o.depth) } else { w.name().to_owned() };
        let _ = write!(m, "{label}: req/s (server CPU-s per M req)\n\n| server |");
        for r in all {
            let _ = write!(m, " {} core(s), wrk {} |", r.cores, r.client_cpus.len());
        }
        let _ = write!(m, "\n|---|");
        for _ in all {
            let _ = write!(m, "---:|");
        }
        let _ = writeln!(m);
        for &k in &kinds {
            let _ = write!(m, "| {} |", k.name());
            for r in all {
                match (metric(r, k, w, |x| x.rps), metric(r, k, w, cpu)) {
                    (Some(q), Some(c)) => {
                        let _ = write!(m, " {} ({:.2}) |", kilo(q.median), c.median);
                    }
                    _ => {
                        let _ = write!(m, " – |");
                    }
                }
            }
            let _ = writeln!(m);
        }
        let _ = writeln!(m);
    }
}

pub fn csv(r: &CoreResults) -> String {
    let mut s = String::from("cores,round,server,workload,requests,rps,p50_us,p99_us,cpu_s,cpu_s_per_mreq,rss_kib,errors,cores_busy_s\n");
    for x in &r.runs {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{:.1},{:.1},{:.1},{:.3},{:.3},{},{},{:.3}",
            x.cores,
            x.round + 1,
            x.server.name(),
            x.workload.name(),
            x.requests,
            x.rps,
            x.p50_us,
            x.p99_us,
            x.cpu_s,
            x.cpu_per_mreq(),
            x.rss_kib,
            x.errors,
            x.cores_busy_s
        );
    }
    s
}

fn color(k: Kind) -> &'static str {
    match k {
        Kind::Floor => "#000000",
        Kind::PercoreMonoio => "#d62728",
        Kind::PercoreTokio => "#ff7f0e",
        Kind::PercoreTokioMt => "#8c564b",
        Kind::PercoreGlommio => "#9467bd",
        Kind::HyperMt => "#1f77b4",
        Kind::HyperTpc => "#17becf",
        Kind::MayMinihttp => "#e6ab02",
        Kind::Nginx => "#2ca02c",
        Kind::AxumServe => "#7f7f7f",
        Kind::PercoreAxumTokio => "#e377c2",
        Kind::PercoreAxumMonoio => "#bcbd22",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

type Groups = Vec<(String, Vec<(Kind, Option<Stat>)>)>;
type MetricFn = fn(&Run) -> f64;

/// One grouped horizontal-bar panel: groups of rows, each bar a median with a min–max whisker.
struct Panel {
    title: String,
    /// (group label, rows of (server, stat)); a row without a stat keeps its place, empty.
    groups: Groups,
    fmt: fn(f64) -> String,
}

const ROW: f64 = 17.0;
const GAP: f64 = 22.0;
const LABEL_W: f64 = 150.0;
const PANEL_W: f64 = 285.0;
const PANEL_GAP: f64 = 40.0;

fn draw_panels(svg: &mut String, panels: &[Panel], top: f64) -> f64 {
    let mut bottom = top;
    for (pi, p) in panels.iter().enumerate() {
        let x0 = LABEL_W + pi as f64 * (PANEL_W + PANEL_GAP);
        let max = p
            .groups
            .iter()
            .flat_map(|g| g.1.iter().filter_map(|(_, s)| s.as_ref().map(|s| s.max)))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.02;
        let _ = writeln!(
            svg,
            r#"<text x="{x0}" y="{}" font-weight="bold" font-size="11">{}</text>"#,
            top - 8.0,
            esc(&p.title)
        );
        let mut y = top;
        for (gi, (label, rows)) in p.groups.iter().enumerate() {
            if gi > 0 {
                y += GAP;
            }
            if pi == 0 {
                let _ = writeln!(
                    svg,
                    r#"<text x="6" y="{}" font-weight="bold" font-size="12">{}</text>"#,
                    y + 12.0,
                    esc(label)
                );
            }
            let _ = writeln!(
                svg,
                r##"<line x1="{x0}" y1="{y}" x2="{x0}" y2="{}" stroke="#333" stroke-width="1"/>"##,
                y + rows.len() as f64 * ROW + 14.0
            );
            y += 14.0;
            for (k, s) in rows {
                if pi == 0 {
                    let _ =
                        writeln!(svg, r#"<text x="18" y="{}" font-size="11">{}</text>"#, y + 12.0, k.name());
                }
                let Some(s) = s else {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{}" y="{}" font-size="10" fill="#777">n/a</text>"##,
                        x0 + 4.0,
                        y + 12.0
                    );
                    y += ROW;
                    continue;
                };
                let w = s.median / max * PANEL_W;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x0}" y="{}" width="{w:.1}" height="{}" fill="{}"/>"#,
                    y + 2.0,
                    ROW - 4.0,
                    color(*k)
                );
                let (a, b) = (x0 + s.min / max * PANEL_W, x0 + s.max / max * PANEL_W);
                let cy = y + ROW / 2.0;
                let _ = writeln!(
                    svg,
                    r##"<path d="M{a:.1},{cy} H{b:.1} M{a:.1},{:.1} V{:.1} M{b:.1},{:.1} V{:.1}" stroke="#000" stroke-width="1" fill="none"/>"##,
                    cy - 3.0,
                    cy + 3.0,
                    cy - 3.0,
                    cy + 3.0
                );
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{}" font-size="10">{}</text>"#,
                    b.max(x0 + w) + 4.0,
                    y + 12.0,
                    (p.fmt)(s.median)
                );
                y += ROW;
            }
        }
        bottom = bottom.max(y);
    }
    bottom
}

pub fn svg(r: &CoreResults, o: &Options) -> String {
    let kinds: Vec<Kind> = r.servers.iter().map(|s| s.0).collect();
    let workloads: Vec<Workload> =
        Workload::ALL.into_iter().filter(|w| r.runs.iter().any(|x| x.workload == *w)).collect();
    let label = |w: Workload| {
        if w == Workload::Pipelined {
            format!("pipelined ×{}", o.depth)
        } else {
            w.name().to_owned()
        }
    };
    let groups = |f: MetricFn, only: &[Workload]| -> Groups {
        workloads
            .iter()
            .filter(|w| only.contains(w))
            .map(|&w| (label(w), kinds.iter().map(|&k| (k, metric(r, k, w, f))).collect()))
            .collect()
    };
    let mut panels = vec![
        Panel {
            title: "server CPU-s per million requests (lower is better)".into(),
            groups: groups(cpu, &Workload::ALL),
            fmt: |v| format!("{v:.2}"),
        },
        Panel {
            title: "requests/s (higher is better)".into(),
            groups: groups(|x| x.rps, &Workload::ALL),
            fmt: kilo,
        },
        // wrk's percentiles for pipelined batches are not per request; left out.
        Panel {
            title: "p99 latency, ms (lower is better)".into(),
            groups: groups(|x| x.p99_us / 1000.0, &[Workload::Plaintext, Workload::Json]),
            fmt: |v| format!("{v:.2}"),
        },
    ];
    if !r.idle.is_empty() {
        let rows = kinds
            .iter()
            .map(|&k| {
                let st = r.idle.iter().find(|i| i.server == k).map(|i| {
                    let v = i.rss_after_kib as f64 / 1024.0;
                    Stat { median: v, min: v, max: v, n: 1 }
                });
                (k, st)
            })
            .collect();
        panels.push(Panel {
            title: format!("RSS MiB with {} idle connections (lower)", o.idle),
            groups: vec![(format!("{} idle", o.idle), rows)],
            fmt: |v| format!("{v:.1}"),
        });
    }
    let width = LABEL_W + panels.len() as f64 * (PANEL_W + PANEL_GAP) + 20.0;
    let mut body = String::new();
    let bottom = draw_panels(&mut body, &panels, 78.0);
    let height = bottom + 40.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="6" y="20" font-size="15" font-weight="bold">percore vs hyper vs nginx: {} server core(s), wrk on {} core(s), -c{}, 127.0.0.1</text>
<text x="6" y="38" font-size="11">bars: median of {} rounds × {} s; whiskers: min–max. {} ({} CPUs), kernel {}</text>
"#,
        r.cores,
        r.client_cpus.len(),
        o.connections,
        o.rounds,
        o.duration,
        esc(&procfs::model_name()),
        procfs::machine_cpus().len(),
        esc(&procfs::kernel())
    );
    let mut lx = 6.0;
    for &k in &kinds {
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="46" width="12" height="10" fill="{}"/><text x="{}" y="55" font-size="11">{}</text>"#,
            color(k),
            lx + 16.0,
            k.name()
        );
        lx += 30.0 + k.name().len() as f64 * 6.5;
    }
    svg.push_str(&body);
    let _ = writeln!(
        svg,
        r##"<text x="6" y="{}" font-size="10" fill="#555">loopback; one wrk per client core: req/s is bounded by wrk as much as by the server, so compare CPU per request.</text>"##,
        height - 12.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// Small multiples: one row per workload, req/s and CPU-s/Mreq against server cores.
pub fn scaling_svg(all: &[&CoreResults], o: &Options) -> String {
    let kinds: Vec<Kind> =
        Kind::ALL.into_iter().filter(|k| all.iter().any(|r| r.servers.iter().any(|s| s.0 == *k))).collect();
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| all.iter().any(|r| r.runs.iter().any(|x| x.workload == *w)))
        .collect();
    let (pw, ph, left, top) = (380.0, 200.0, 70.0, 70.0);
    let width = left + 2.0 * (pw + 80.0);
    let height = top + workloads.len() as f64 * (ph + 70.0) + 10.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="6" y="20" font-size="15" font-weight="bold">Scaling with server cores (wrk on the other cores, -c{}); medians of {} rounds</text>
"#,
        o.connections, o.rounds
    );
    let mut lx = 6.0;
    for &k in &kinds {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="32" width="12" height="10" fill="{}"/><text x="{}" y="41" font-size="11">{}</text>"#,
            color(k),
            lx + 16.0,
            k.name()
        );
        lx += 30.0 + k.name().len() as f64 * 6.5;
    }
    let cores: Vec<usize> = all.iter().map(|r| r.cores).collect();
    let xpos = |i: usize| if cores.len() > 1 { i as f64 / (cores.len() - 1) as f64 * pw } else { pw / 2.0 };
    for (wi, &w) in workloads.iter().enumerate() {
        let y0 = top + wi as f64 * (ph + 70.0);
        let name =
            if w == Workload::Pipelined { format!("pipelined ×{}", o.depth) } else { w.name().to_owned() };
        let panels: [(&str, MetricFn); 2] = [("req/s", |x| x.rps), ("server CPU-s per M req", cpu)];
        for (pi, (title, f)) in panels.iter().enumerate() {
            let x0 = left + pi as f64 * (pw + 80.0);
            let max = all
                .iter()
                .flat_map(|r| kinds.iter().filter_map(move |&k| metric(r, k, w, *f).map(|st| st.median)))
                .fold(0.0f64, f64::max)
                .max(1e-9)
                * 1.1;
            let _ = writeln!(
                s,
                r#"<text x="{x0}" y="{}" font-size="12" font-weight="bold">{} — {}</text>"#,
                y0 - 6.0,
                esc(&name),
                title
            );
            let _ = writeln!(
                s,
                r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
            );
            for t in 0..=4 {
                let v = max * t as f64 / 4.0;
                let y = y0 + ph - v / max * ph;
                let lab = if pi == 0 { kilo(v) } else { format!("{v:.1}") };
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{lab}</text><line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##,
                    x0 - 4.0,
                    y + 3.0,
                    x0 + pw
                );
            }
            for (i, c) in cores.iter().enumerate() {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{c}</text>"#,
                    x0 + xpos(i),
                    y0 + ph + 14.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">server cores</text>"#,
                x0 + pw / 2.0,
                y0 + ph + 28.0
            );
            for &k in &kinds {
                let pts: Vec<(f64, f64)> = all
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        metric(r, k, w, *f).map(|st| (x0 + xpos(i), y0 + ph - st.median / max * ph))
                    })
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let d = pts
                    .iter()
                    .enumerate()
                    .map(|(i, (x, y))| format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" }))
                    .collect::<String>();
                let _ = writeln!(s, r#"<path d="{d}" stroke="{}" stroke-width="2" fill="none"/>"#, color(k));
                for (x, y) in pts {
                    let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{}"/>"#, color(k));
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}
