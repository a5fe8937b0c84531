//! What the harness reads from /proc, and the few process settings it changes.

use std::fs;

/// Clock ticks per second (the unit of utime/stime in /proc/PID/stat).
pub fn clk_tck() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Fields after the `(comm)` of /proc/PID/stat; index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The process and all its descendants (nginx: master and workers).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(f) = stat_fields(p) {
                    if let Some(ppid) = f.get(1).and_then(|x| x.parse::<u32>().ok()) {
                        parents.push((p, ppid));
                    }
                }
            }
        }
    }
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for &(p, pp) in &parents {
            if pp == parent && !all.contains(&p) {
                all.push(p);
            }
        }
        i += 1;
    }
    all
}

/// utime + stime of a whole process (all its threads), in seconds, summed over `pids`.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let tck = clk_tck();
    pids.iter()
        .filter_map(|&p| stat_fields(p))
        .map(|f| {
            let u: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0);
            let s: f64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
            (u + s) / tck
        })
        .sum()
}

/// VmRSS in KiB, summed over `pids`.
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&p| fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .sum()
}

/// Threads of a process (for the record: how many the server runs).
pub fn threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// Raise the soft open-files limit to the hard one.
pub fn raise_nofile() -> u64 {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            return r.rlim_cur as u64;
        }
    }
    0
}

static MACHINE_CPUS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

/// The CPUs this process could run on when it started (before it pinned itself).
pub fn machine_cpus() -> Vec<usize> {
    MACHINE_CPUS.get_or_init(allowed_cpus).clone()
}

/// Busy time (everything but idle and iowait) of `cpus` in seconds, from /proc/stat.
pub fn cores_busy_seconds(cpus: &[usize]) -> f64 {
    let tck = clk_tck();
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut total = 0.0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(n) = name.strip_prefix("cpu").and_then(|n| n.parse::<usize>().ok()) else { continue };
        if !cpus.contains(&n) {
            continue;
        }
        let v: Vec<f64> = f.filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
        total += busy / tck;
    }
    total
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Pin the calling thread (and threads it starts later) to `cpus`.
pub fn pin_self(cpus: &[usize]) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// `0-3,6` style list.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

pub fn model_name() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

pub fn send_signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
