//! Running wrk and reading what it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub socket_errors: u64,
    pub non_2xx: u64,
}

/// One wrk invocation.
pub struct WrkRun<'a> {
    pub wrk: &'a Path,
    pub client_cpus: &'a str,
    pub threads: usize,
    pub connections: usize,
    pub duration_s: f64,
    pub script: Option<&'a Path>,
    pub url: String,
    /// Stop wrk (SIGINT: it still prints its report) once this many files are in this
    /// directory: the script's threads each write one when they reach their request count.
    pub stop_when: Option<(&'a Path, usize)>,
}

impl WrkRun<'_> {
    pub fn run(&self) -> Result<WrkResult, String> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(self.client_cpus).arg(self.wrk);
        cmd.arg(format!("-t{}", self.threads.min(self.connections).max(1)))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration_s.ceil() as u64))
            .arg("--timeout")
            .arg("5s")
            .arg("--latency");
        if let Some(s) = self.script {
            cmd.arg("-s").arg(s);
        }
        cmd.arg(&self.url).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| format!("wrk: {e}"))?;
        if let Some((dir, count)) = self.stop_when {
            let deadline = Instant::now() + Duration::from_secs_f64(self.duration_s + 5.0);
            while Instant::now() < deadline {
                let done = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
                if done >= count {
                    // taskset exec'd wrk, so this pid is wrk's; SIGINT makes it report and exit.
                    unsafe {
                        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let out = child.wait_with_output().map_err(|e| format!("wrk: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("wrk failed ({}):\n{text}", out.status));
        }
        parse(&text).ok_or_else(|| format!("cannot read wrk output:\n{text}"))
    }
}

/// `618.05us`, `1.20ms`, `2.00s`, `1.00m` -> microseconds.
fn duration_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

pub fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut have_total = false;
    for line in text.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_us = duration_us(v)?,
            ["99%", v] => r.p99_us = duration_us(v)?,
            [n, "requests", "in", secs, ..] => {
                r.requests = n.parse().ok()?;
                r.seconds = duration_us(secs.trim_end_matches(','))? / 1e6;
                have_total = true;
            }
            ["Requests/sec:", v] => r.rps = v.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", v] => r.non_2xx = v.parse().ok()?,
            _ if t.starts_with("Socket errors:") => {
                r.socket_errors = t
                    .trim_start_matches("Socket errors:")
                    .split(',')
                    .filter_map(|p| p.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
                    .sum();
            }
            _ => {}
        }
    }
    have_total.then_some(r)
}

/// Lua for pipelining `depth` GETs of `path` in one write (TechEmpower's pipeline.lua),
/// optionally stopping each wrk thread after `stop_after.0` responses and dropping a file in
/// directory `stop_after.1` (for syscall counts over a fixed number of requests).
pub fn script(
    dir: &Path,
    name: &str,
    path: &str,
    depth: usize,
    stop_after: Option<(u64, &Path)>,
) -> std::io::Result<PathBuf> {
    let mut lua = String::new();
    if depth > 1 {
        lua.push_str(&format!(
            "init = function(args)\n  local r = {{}}\n  for i = 1, {depth} do r[i] = wrk.format(nil, \"{path}\") end\n  req = table.concat(r)\nend\n\
             request = function() return req end\n"
        ));
    }
    if let Some((n, done)) = stop_after {
        let done = done.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
        lua.push_str(&format!(
            "local counter = 0\n\
             function setup(thread)\n  thread:set(\"id\", counter)\n  counter = counter + 1\nend\n\
             local seen = 0\n\
             response = function(status, headers, body)\n  seen = seen + 1\n  if seen == {n} then\n    \
             local f = io.open(\"{done}/done-\" .. id, \"w\")\n    if f then f:close() end\n    wrk.thread:stop()\n  end\nend\n"
        ));
    }
    let file = dir.join(format!("{name}.lua"));
    std::fs::write(&file, lua)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:8001/plaintext
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   618.05us  101.00us   3.00ms   90.00%
    Req/Sec   101.00k     2.00k  105.00k    70.00%
  Latency Distribution
     50%  600.00us
     75%  650.00us
     90%  700.00us
     99%    1.20ms
  503012 requests in 5.00s, 55.19MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec: 100598.33
Transfer/sec:     11.04MB
";
        let r = super::parse(out).unwrap();
        assert_eq!(r.requests, 503012);
        assert_eq!(r.seconds, 5.0);
        assert_eq!(r.p50_us, 600.0);
        assert_eq!(r.p99_us, 1200.0);
        assert_eq!(r.socket_errors, 3);
        assert_eq!(r.non_2xx, 5);
        assert!((r.rps - 100598.33).abs() < 1e-6);
    }
}
