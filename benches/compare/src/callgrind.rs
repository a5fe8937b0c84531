//! `compare callgrind`: user-space instructions per request under valgrind's callgrind
//! (benches/callgrind/run.sh) for the floor, percore's native handlers (monoio, one
//! executor), hyper (one `current_thread` runtime) and may-minihttp (one `may` worker),
//! pipelined (4 connections × 16) and keep-alive (64 connections), with every server's
//! ratio to the floor. Instruction counts are deterministic, so one run each is enough, and
//! they do not move with other load on the machine the way CPU time does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One server's counts for one path.
pub struct Counts {
    pub server: &'static str,
    pub path: String,
    pub pipelined: u64,
    pub keep_alive: u64,
}

/// The goals of issue #12 for percore's native handlers.
const GOAL_PIPELINED: u64 = 1_300;
const GOAL_KEEP_ALIVE: u64 = 3_000;

/// Run the four servers under callgrind for each of `paths`; profiles go to `out`.
pub fn measure(
    percore: &Path,
    me: &Path,
    paths: &[String],
    out: &Path,
    port: u16,
) -> Result<Vec<Counts>, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../callgrind/run.sh");
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    for path in paths {
        let p = port.to_string();
        let servers: [(&'static str, Vec<String>); 4] = [
            ("floor", vec![me.display().to_string(), "serve-floor".into(), "--port".into(), p.clone()]),
            (
                "percore-native",
                vec![
                    percore.display().to_string(),
                    "--runtime".into(),
                    "monoio".into(),
                    "--workers".into(),
                    "1".into(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    p.clone(),
                    "--log-level".into(),
                    "warn".into(),
                ],
            ),
            (
                "hyper",
                vec![
                    me.display().to_string(),
                    "serve-hyper".into(),
                    "--mode".into(),
                    "tpc".into(),
                    "--threads".into(),
                    "1".into(),
                    "--port".into(),
                    p.clone(),
                ],
            ),
            (
                "may-minihttp",
                vec![
                    me.display().to_string(),
                    "serve-may-minihttp".into(),
                    "--threads".into(),
                    "1".into(),
                    "--port".into(),
                    p.clone(),
                ],
            ),
        ];
        for (server, cmd) in servers {
            let name = format!("{server}{}", path.replace('/', "-"));
            eprintln!("callgrind: {server} {path}");
            let output = Command::new("bash")
                .arg(&script)
                .args([&name, &p, path, "--"])
                .args(&cmd)
                .env("CALLGRIND_OUT", out)
                .output()
                .map_err(|e| format!("run {}: {e}", script.display()))?;
            let text = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                return Err(format!("{name}: {}{}", text, String::from_utf8_lossy(&output.stderr)));
            }
            let (pipelined, keep_alive) =
                parse(&text).ok_or_else(|| format!("{name}: unexpected output from run.sh: {text}"))?;
            all.push(Counts { server, path: path.clone(), pipelined, keep_alive });
        }
    }
    Ok(all)
}

/// The two counts of run.sh's line: `NAME PATH: pipelined N instructions/request, keep-alive M ...`.
fn parse(line: &str) -> Option<(u64, u64)> {
    let number_after = |word: &str| -> Option<u64> {
        let rest = &line[line.find(word)? + word.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((number_after("pipelined ")?, number_after("keep-alive ")?))
}

/// The markdown table, with ratios to the floor and the goals for percore.
pub fn markdown(counts: &[Counts], command: &str) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "User-space instructions per request under `valgrind --tool=callgrind` (one executor; 16,000 requests \
         per phase, counted between callgrind dumps after a warm-up; all threads of the process). \
         Command: `{command}`\n"
    );
    let _ = writeln!(
        m,
        "| path | server | pipelined (4 conn × 16) | vs floor | keep-alive (64 conn) | vs floor |\n|---|---|---:|---:|---:|---:|"
    );
    for c in counts {
        let floor = counts.iter().find(|f| f.server == "floor" && f.path == c.path);
        let vs = |a: u64, b: Option<u64>| match b {
            Some(b) if b > 0 => format!("{:.2}×", a as f64 / b as f64),
            _ => "–".into(),
        };
        let _ = writeln!(
            m,
            "| {} | {} | **{}** | {} | **{}** | {} |",
            c.path,
            c.server,
            c.pipelined,
            vs(c.pipelined, floor.map(|f| f.pipelined)),
            c.keep_alive,
            vs(c.keep_alive, floor.map(|f| f.keep_alive)),
        );
    }
    let _ = writeln!(m, "\n| goal | measured | met |\n|---|---|---|");
    for c in counts.iter().filter(|c| c.server == "percore-native") {
        let verdict = |ok: bool| if ok { "yes" } else { "**no**" };
        let _ = writeln!(
            m,
            "| percore {} pipelined ≤ {GOAL_PIPELINED} instructions/request | {} | {} |",
            c.path,
            c.pipelined,
            verdict(c.pipelined <= GOAL_PIPELINED)
        );
        let _ = writeln!(
            m,
            "| percore {} keep-alive ≤ {GOAL_KEEP_ALIVE} instructions/request | {} | {} |",
            c.path,
            c.keep_alive,
            verdict(c.keep_alive <= GOAL_KEEP_ALIVE)
        );
    }
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_run_sh_line() {
        let line = "floor-plaintext /plaintext: pipelined 339 instructions/request, keep-alive 1742 instructions/request (profiles in /tmp/x)";
        assert_eq!(super::parse(line), Some((339, 1742)));
    }
}
