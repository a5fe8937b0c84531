//! Which cores executors run on: the process's CPU affinity mask, the cgroup v2 CPU quota,
//! and an explicit `--cpus` list, always kept inside the set the process was given.

use std::fs;

/// Cores this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> =
        core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Let the calling thread run on any of `cores` (and nowhere else). Failing leaves the
/// thread where it was, which only matters for placement, so it is logged, not fatal.
pub fn confine_current_thread(cores: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it for ids below
    // CPU_SETSIZE, and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), cores = ?cores, "cannot confine thread to cores");
    }
}

/// The cgroup v2 `cpu.max` quota as a whole number of CPUs (rounded up), if one is set on
/// this process's cgroup or an ancestor.
pub fn cgroup_cpu_limit() -> Option<usize> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let mut limit: Option<usize> = None;
    loop {
        if let Ok(max) = fs::read_to_string(dir.join("cpu.max")) {
            let mut parts = max.split_whitespace();
            if let (Some(quota), Some(period)) = (parts.next(), parts.next()) {
                if let (Ok(q), Ok(p)) = (quota.parse::<u64>(), period.parse::<u64>()) {
                    if p > 0 {
                        let cpus = q.div_ceil(p).max(1) as usize;
                        limit = Some(limit.map_or(cpus, |l| l.min(cpus)));
                    }
                }
            }
        }
        if dir.as_os_str() == "/sys/fs/cgroup" || !dir.pop() {
            break;
        }
    }
    limit
}

/// Parse a CPU list such as `0-3,6`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid CPU list entry {part:?} (expected e.g. 0-3,6)");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err("empty CPU list".to_string());
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// How many executors to start and where each is pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlan {
    /// The core of each executor (`None`: unpinned).
    pub cores: Vec<Option<usize>>,
    /// Things an operator should hear about (e.g. more workers than cores).
    pub warnings: Vec<String>,
}

/// Decide executors and cores.
///
/// - cores: `--cpus` if given (it must lie inside `allowed`), else `allowed`;
/// - workers: `--workers` if given, else the number of those cores, capped by the cgroup quota;
/// - executor `i` is pinned to `cores[i % len]` unless `pin` is false.
pub fn plan(
    workers: Option<usize>,
    cpus: Option<&[usize]>,
    pin: bool,
    allowed: &[usize],
    quota: Option<usize>,
) -> Result<CpuPlan, String> {
    let mut warnings = Vec::new();
    let cores: Vec<usize> = match cpus {
        Some(list) => {
            let outside: Vec<String> =
                list.iter().filter(|c| !allowed.contains(c)).map(|c| c.to_string()).collect();
            if !outside.is_empty() && !allowed.is_empty() {
                return Err(format!(
                    "--cpus names CPU {} outside this process's CPU set ({})",
                    outside.join(","),
                    format_cpu_list(allowed)
                ));
            }
            list.to_vec()
        }
        None if allowed.is_empty() => vec![0],
        None => allowed.to_vec(),
    };
    let default_workers = quota.map_or(cores.len(), |q| q.min(cores.len())).max(1);
    let workers = match workers {
        Some(0) => return Err("--workers must be at least 1".to_string()),
        Some(n) => {
            if n > cores.len() && pin {
                warnings.push(format!(
                    "--workers {n} exceeds the {} core(s) available; executors will share cores",
                    cores.len()
                ));
            }
            n
        }
        None => default_workers,
    };
    // A CPU quota below the CPU set (a container with --cpus but no cpuset of its own) is
    // time on shared cores, not cores: pinning every such container to the first N cores of
    // the host would pile them onto the same ones.
    let pin = if pin && cpus.is_none() && quota.is_some_and(|q| q < cores.len()) {
        warnings.push(format!(
            "a CPU quota of {} CPUs without a CPU set of its own: executors are not pinned \
             (give the container a cpuset, or choose cores with --cpus)",
            quota.unwrap_or(0)
        ));
        false
    } else {
        pin
    };
    let cores = (0..workers).map(|i| pin.then(|| cores[i % cores.len()])).collect();
    Ok(CpuPlan { cores, warnings })
}

/// Format a sorted CPU list compactly (`0-3,6`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("2").unwrap(), vec![2]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
    }

    #[test]
    fn plans_within_the_allowed_set() {
        let p = plan(None, None, true, &[0, 1], None).unwrap();
        assert_eq!(p.cores, vec![Some(0), Some(1)]);
        let p = plan(None, None, true, &[0, 1, 2, 3], Some(2)).unwrap();
        assert_eq!(p.cores, vec![None, None], "a quota without a cpuset: no pinning");
        let p = plan(None, Some(&[2, 3]), true, &[0, 1, 2, 3], Some(2)).unwrap();
        assert_eq!(p.cores, vec![Some(2), Some(3)], "explicit cores are pinned");
        let p = plan(Some(3), None, true, &[0], None).unwrap();
        assert_eq!(p.cores, vec![Some(0), Some(0), Some(0)]);
        assert_eq!(p.warnings.len(), 1);
        assert!(plan(None, Some(&[5]), true, &[0, 1], None).is_err());
        let p = plan(None, Some(&[1]), true, &[0, 1], None).unwrap();
        assert_eq!(p.cores, vec![Some(1)]);
        let p = plan(Some(2), None, false, &[0, 1], None).unwrap();
        assert_eq!(p.cores, vec![None, None]);
        assert!(plan(Some(0), None, true, &[0], None).is_err());
    }
}
