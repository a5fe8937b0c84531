#!/usr/bin/env python3
"""Checks for percore's deployment kit; run by deploy/check.sh (which installs the tools).

Each check prints `ok` or `FAIL` lines; warnings are printed but do not fail. The exit
status is 1 when any check failed. Besides running the real tools (systemd-analyze, nginx
-t, hadolint, shellcheck, kubernetes-validate, cfn-lint, botocore's validator), it checks
that the numbers in the different files agree, with percore's own duration/size grammar.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# Keys of percore settings that are being added to src/config right now. Mentioning them
# (commented out in percore.toml, in docs) is only a warning until they exist; using one
# in a file that percore would read is an error like any unknown key. Drop names from
# here once they have landed.
UPCOMING: set[str] = set()

# System calls the service's SystemCallFilter= must allow. Traced with `strace -f` on
# percore through start-up, requests, SIGHUP (reload), SIGUSR2 (upgrade: fork + exec) and
# SIGTERM (drain); plus the epoll fallback (io_uring refused), sd_notify (sendto/sendmsg),
# /bin/kill for ExecReload=, and a few equivalents glibc may pick instead.
REQUIRED_SYSCALLS = """
accept4 access arch_prctl bind brk clone clone3 close dup2 dup3 execve exit exit_group fcntl
futex getpid getrandom getsockname getsockopt gettid io_uring_enter io_uring_setup
io_uring_register ioctl listen madvise mmap mprotect munmap newfstatat openat pipe2 poll
prctl pread64 prlimit64 read readlink recvfrom rseq rt_sigaction rt_sigprocmask
rt_sigtimedwait sched_getaffinity sched_setaffinity set_robust_list set_tid_address
setsockopt shutdown sigaltstack socket socketpair statx write epoll_create1 epoll_ctl
epoll_wait epoll_pwait eventfd2 sendto sendmsg kill wait4 waitid setrlimit
""".split()

results: list[tuple[str, str, str]] = []  # (status, check, message)


def ok(check: str, msg: str) -> None:
    results.append(("ok", check, msg))
    print(f"  ok    {check}: {msg}")


def fail(check: str, msg: str) -> None:
    results.append(("FAIL", check, msg))
    print(f"  FAIL  {check}: {msg}")


def warn(check: str, msg: str) -> None:
    results.append(("warn", check, msg))
    print(f"  warn  {check}: {msg}")


def expect(cond: bool, check: str, good: str, bad: str | None = None) -> bool:
    if cond:
        ok(check, good)
    else:
        fail(check, bad or f"not true: {good}")
    return cond


def section(title: str) -> None:
    print(f"\n== {title}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


# --- percore's grammar (src/config/mod.rs: parse_duration, parse_size) --------------------


def seconds(value: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|sec|m|min|h)?\s*", str(value))
    if not m:
        raise ValueError(f"not a percore duration: {value!r}")
    n = float(m.group(1))
    return n * {None: 1, "s": 1, "sec": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def size(value: str) -> int:
    m = re.fullmatch(r"\s*([0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m:
        raise ValueError(f"not a percore size: {value!r}")
    unit = m.group(2).lower()
    mult = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
            "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}
    if unit not in mult:
        raise ValueError(f"bad size unit in {value!r}")
    return int(m.group(1)) * mult[unit]


def systemd_seconds(value: str) -> float:
    """systemd time spans: `45s`, `1min 30s`, `90` (seconds), `500ms`."""
    total = 0.0
    units = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "ms": 0.001, "msec": 0.001, "m": 60,
             "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}
    parts = re.findall(r"([0-9.]+)\s*([a-z]*)", value)
    if not parts:
        raise ValueError(f"not a systemd time span: {value!r}")
    for num, unit in parts:
        total += float(num) * units[unit]
    return total


def nginx_seconds(value: str) -> float:
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h|d)?", value)
    if not m:
        raise ValueError(f"not an nginx time: {value!r}")
    return int(m.group(1)) * {None: 1, "s": 1, "ms": 0.001, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def nginx_size(value: str) -> int:
    m = re.fullmatch(r"([0-9]+)([kKmMgG])?", value)
    if not m:
        raise ValueError(f"not an nginx size: {value!r}")
    return int(m.group(1)) * {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[(m.group(2) or "").lower() or None]


# --- what percore accepts -------------------------------------------------------------


def known_flags() -> set[str]:
    """Every flag, from the `env = "PERCORE_X"` attributes in src/config (every flag has one)."""
    names = set()
    for path in (ROOT / "src").rglob("*.rs"):
        for env in re.findall(r'env\s*=\s*"PERCORE_([A-Z0-9_]+)"', path.read_text()):
            names.add(env.lower().replace("_", "-"))
    return names


FLAGS: set[str] = set()
DEFAULTS = {"drain-delay": "0s", "graceful-timeout": "30s", "keep-alive": "75s", "timeout": "30s",
            "max-body-size": "16MiB", "port": "8000", "host": "127.0.0.1", "backlog": "2048"}


def check_flag_names(check: str, names: list[str], what: str) -> None:
    bad = sorted({n for n in names if n not in FLAGS and n not in UPCOMING})
    upcoming = sorted({n for n in names if n not in FLAGS and n in UPCOMING})
    if bad:
        fail(check, f"{what} not known to percore (src/config): {', '.join(bad)}")
    elif upcoming:
        fail(check, f"{what} not in src/config yet: {', '.join(upcoming)} (percore would refuse them)")
    else:
        ok(check, f"{len(set(names))} {what} all known to percore")


def flags_in_argv(argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        if a.startswith("--"):
            out.append(a[2:].split("=", 1)[0])
    return out


def env_flag_names(env_names: list[str]) -> list[str]:
    return [e[len("PERCORE_"):].lower().replace("_", "-") for e in env_names if e.startswith("PERCORE_")]


# --- percore.toml --------------------------------------------------------------------------

TOML: dict = {}


def setting(key: str, source: dict | None = None) -> str:
    src = TOML if source is None else source
    return str(src.get(key, src.get(key.replace("-", "_"), DEFAULTS.get(key))))


def check_config(percore_bin: str | None) -> None:
    section("deploy/percore.toml")
    path = DEPLOY / "percore.toml"
    try:
        TOML.update(tomllib.loads(path.read_text()))
        ok("toml", f"parses ({len(TOML)} keys set)")
    except Exception as e:  # noqa: BLE001
        fail("toml", f"{rel(path)}: {e}")
        return
    check_flag_names("toml keys", [k.replace("_", "-") for k in TOML], "keys set")
    commented = re.findall(r"^#\s*([a-z][a-z0-9_-]*)\s*=", path.read_text(), re.M)
    unknown = sorted({k for k in commented if k not in FLAGS and k not in UPCOMING})
    if unknown:
        fail("toml comments", f"commented-out keys that are no percore setting: {', '.join(unknown)}")
    else:
        ok("toml comments", f"{len(commented)} commented-out keys are settings")
    pending = sorted({k for k in commented if k not in FLAGS and k in UPCOMING})
    if pending:
        warn("toml comments", f"documented but not in src/config yet: {', '.join(pending)}")
    missing = sorted(FLAGS - {k.replace("_", "-") for k in TOML} - set(commented) - {"config"})
    # A new flag without its line here is drift, not breakage: warn, do not fail.
    if missing:
        warn("toml coverage", f"settings not documented in the example yet: {', '.join(missing)}")
    else:
        ok("toml coverage", "every percore setting appears in the file")
    for key in ("drain-delay", "graceful-timeout", "keep-alive", "timeout"):
        try:
            seconds(setting(key))
        except ValueError as e:
            fail("toml values", str(e))
    try:
        size(setting("max-body-size"))
    except ValueError as e:
        fail("toml values", str(e))

    # The real parser, when a percore binary built from this tree is at hand.
    if not percore_bin:
        newest_src = max(p.stat().st_mtime for p in [*(ROOT / "src").rglob("*.rs"), ROOT / "Cargo.toml"])
        for cand in (ROOT / "target/release/percore", ROOT / "target/debug/percore"):
            if cand.exists() and cand.stat().st_mtime >= newest_src:
                percore_bin = str(cand)
                break
    if percore_bin:
        r = run([percore_bin, "check-config", "--config", str(path)], env=clean_env())
        expect(r.returncode == 0, "percore check-config", f"{percore_bin} accepts the file",
               f"{percore_bin} check-config failed: {(r.stderr or r.stdout).strip()[:400]}")
    else:
        warn("percore check-config", "no percore binary newer than src/ (set PERCORE_BIN); key names checked "
             "against src/config only")
    check_https_config(path, percore_bin)


def check_https_config(base: Path, percore_bin: str | None) -> None:
    """deploy/percore-https.toml: keys percore knows, certbot's paths, and (with a binary and
    openssl) `check-config` on percore.toml with those lines in, the paths on a throwaway pair."""
    section("deploy/percore-https.toml")
    path = DEPLOY / "percore-https.toml"
    try:
        https = tomllib.loads(path.read_text())
    except Exception as e:  # noqa: BLE001
        fail("toml", f"{rel(path)}: {e}")
        return
    check_flag_names("toml keys", list(https), "keys set")
    live = re.compile(r"/etc/letsencrypt/live/[^/]+/")
    cert, key = str(https.get("certfile", "")), str(https.get("keyfile", ""))
    expect(live.match(cert) is not None and cert.endswith("/fullchain.pem") and key == cert[:-len("fullchain.pem")]
           + "privkey.pem", "certbot paths", f"certfile/keyfile are certbot's live/DOMAIN/fullchain.pem and "
           "privkey.pem", f"certfile {cert!r}, keyfile {key!r}")
    binds = [str(b) for b in https.get("bind", [])]
    expect(any(b.endswith(":443") and not b.startswith("http:") for b in binds), "bind", "HTTPS on port 443",
           f"bind {binds}")
    expect(any(b.startswith("http:127.0.0.1:") for b in binds), "bind",
           "a plain loopback address for local probes", f"bind {binds}")
    if not percore_bin:
        warn("percore check-config", "no percore binary: the HTTPS lines were not run through check-config")
        return
    if not shutil.which("openssl"):
        warn("percore check-config", "no openssl to make a test certificate: HTTPS lines not run through check-config")
        return
    with tempfile.TemporaryDirectory(prefix="percore-https-") as tmp:
        pem, pkey = Path(tmp) / "fullchain.pem", Path(tmp) / "privkey.pem"
        r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-days", "1", "-subj", "/CN=localhost", "-keyout", str(pkey), "-out", str(pem)])
        if not expect(r.returncode == 0, "openssl", "test certificate made", r.stderr.strip()[:300]):
            return
        # percore.toml with its own lines for these keys left out, then the HTTPS lines.
        keys = set(https)
        own = [ln for ln in base.read_text().splitlines()
               if not (m := re.match(r"\s*([a-z][a-z0-9_-]*)\s*=", ln)) or m.group(1) not in keys]
        snippet = path.read_text().replace(cert, str(pem)).replace(key, str(pkey))
        merged = Path(tmp) / "percore.toml"
        merged.write_text("\n".join(own) + "\n" + snippet)
        r = run([percore_bin, "check-config", "--config", str(merged)], env=clean_env())
        expect(r.returncode == 0, "percore check-config", "accepts percore.toml with the HTTPS lines",
               f"check-config failed: {(r.stderr or r.stdout).strip()[:400]}")


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("PERCORE_")}


# --- systemd -------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file, in order (a key may repeat); `[Section]` ignored."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def syscall_groups() -> dict[str, list[str]]:
    r = run(["systemd-analyze", "syscall-filter", "--no-pager"])
    groups: dict[str, list[str]] = {}
    cur = None
    for line in r.stdout.splitlines():
        if line.startswith("@"):
            cur = line.strip()
            groups[cur] = []
        elif cur and line.startswith("    ") and not line.strip().startswith("#") and line.strip():
            groups[cur].append(line.strip())
        elif not line.startswith(" "):
            cur = None
    return groups


def expand(name: str, groups: dict[str, list[str]], seen: set[str] | None = None) -> set[str]:
    seen = seen or set()
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out: set[str] = set()
    for member in groups.get(name, []):
        out |= expand(member, groups, seen)
    return out


def allowed_syscalls(filters: list[str], groups: dict[str, list[str]]) -> set[str] | None:
    """systemd's rule: the first SystemCallFilter= decides allow-list or deny-list; each later
    line adds (allow) or removes (~deny) names. Returns the allowed set for an allow-list."""
    if not filters or filters[0].startswith("~"):
        return None
    allowed = expand("@default", groups)  # always permitted
    for line in filters:
        deny = line.startswith("~")
        names = set()
        for item in line.lstrip("~").split():
            names |= expand(item.split(":")[0], groups)
        allowed = allowed - names if deny else allowed | names
    return allowed


def check_systemd() -> None:
    section("deploy/systemd")
    svc_path = DEPLOY / "systemd/percore.service"
    sock_path = DEPLOY / "systemd/percore.socket"
    unix_sock_path = DEPLOY / "systemd/percore-unix.socket"
    svc = parse_unit(svc_path)
    sock = parse_unit(sock_path)
    one = lambda k: (svc.get(k) or [""])[-1]  # noqa: E731

    # systemd-analyze verify on copies whose binary path points at a stub, in a temp dir:
    # verify needs ExecStart= binaries to exist, and must not touch /etc/systemd.
    with tempfile.TemporaryDirectory(prefix="percore-units-") as tmp:
        stub = Path(tmp) / "bin/percore"
        stub.parent.mkdir()
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        for p in (svc_path, sock_path, unix_sock_path):
            (Path(tmp) / p.name).write_text(p.read_text().replace("/usr/local/bin/percore", str(stub)))
        # The HTTPS drop-in, where systemd looks for it (percore.service.d/).
        (Path(tmp) / "percore.service.d").mkdir()
        (Path(tmp) / "percore.service.d/https.conf").write_text((DEPLOY / "systemd/percore-https.conf").read_text())
        r = run(["systemd-analyze", "verify", "--man=no", "percore.service", "percore.socket", "percore-unix.socket"], cwd=tmp,
                env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_UNIT_PATH": f"{tmp}:"})
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
        # Anything verify says about our files (unknown keys, bad values) is an error; it
        # exits 0 for many of them, so its output is what counts.
        ours = [ln for ln in lines if "percore" in ln or tmp in ln]
        other = [ln for ln in lines if ln not in ours]
        for ln in other:
            warn("systemd-analyze verify", f"(environment) {ln}")
        expect(r.returncode == 0 and not ours, "systemd-analyze verify",
               "percore.service (with the HTTPS drop-in), percore.socket and percore-unix.socket load cleanly",
               "; ".join(ours) or f"exit {r.returncode}")

        # (The security score is the unit's own, without the drop-in.)
        shutil.rmtree(Path(tmp) / "percore.service.d")
        r = run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(Path(tmp) / "percore.service")])
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout + r.stderr)
        if m:
            score = float(m.group(1))
            crosses = [ln.strip() for ln in r.stdout.splitlines() if ln.lstrip().startswith("✗")]
            print("        exposure deductions (✗):")
            for ln in crosses:
                print("          " + re.sub(r"\s{2,}", "  ", ln))
            print(f"        >>> systemd-analyze security exposure: {score} {m.group(2)} "
                  f"(0 = locked down, 10 = unprotected)")
            expect(score <= 2.0, "systemd-analyze security", f"exposure {score} {m.group(2)} (limit 2.0)",
                   f"exposure {score} {m.group(2)} above 2.0: the hardening regressed")
        else:
            fail("systemd-analyze security", (r.stdout + r.stderr).strip()[:400] or "no score printed")

    # What the unit must say.
    expect(one("Type") == "notify", "unit", "Type=notify", f"Type={one('Type')} (want notify)")
    expect(one("NotifyAccess") == "all", "unit", "NotifyAccess=all (SIGUSR2 upgrade)",
           "NotifyAccess must be all: the upgraded process notifies systemd")
    exec_start = one("ExecStart").split()
    expect(exec_start[:3] == ["/usr/local/bin/percore", "--config", "/etc/percore/percore.toml"], "unit",
           "ExecStart runs /usr/local/bin/percore --config /etc/percore/percore.toml", f"ExecStart={exec_start}")
    check_flag_names("unit flags", flags_in_argv(exec_start) + [f for line in svc.get("ExecReload", [])
                     for f in flags_in_argv(line.split()) if "percore" in line], "flags on Exec lines")
    expect("/bin/kill -HUP $MAINPID" in svc.get("ExecReload", []), "unit", "ExecReload=/bin/kill -HUP $MAINPID")
    expect(one("Restart") == "always" and one("KillSignal") == "SIGTERM", "unit", "Restart=always, KillSignal=SIGTERM")
    drain = seconds(setting("drain-delay")) + seconds(setting("graceful-timeout")) + 1
    stop = systemd_seconds(one("TimeoutStopSec") or "90s")
    expect(stop > drain, "unit timing", f"TimeoutStopSec {stop:g}s > drain-delay + graceful-timeout + 1s = {drain:g}s",
           f"TimeoutStopSec {stop:g}s <= {drain:g}s: systemd would SIGKILL percore mid-drain")
    wd = systemd_seconds(one("WatchdogSec") or "0")
    expect(wd > seconds(setting("timeout")), "unit timing", f"WatchdogSec {wd:g}s > percore --timeout "
           f"{seconds(setting('timeout')):g}s", "WatchdogSec must exceed --timeout (percore replaces a stuck "
           "executor itself at --timeout)")
    expect(bool(one("LimitMEMLOCK")) and bool(one("LimitNOFILE")), "unit", "LimitNOFILE and LimitMEMLOCK set")
    expect(one("DynamicUser") == "yes" or bool(one("User")), "unit", "runs as a non-root user")
    caps = one("AmbientCapabilities")
    expect("CAP_NET_BIND_SERVICE" not in caps, "unit", "no CAP_NET_BIND_SERVICE by default (port 8000)")

    groups = syscall_groups()
    if not groups:
        fail("SystemCallFilter", "systemd-analyze syscall-filter printed nothing")
    else:
        filters = svc.get("SystemCallFilter", [])
        allowed = allowed_syscalls(filters, groups)
        if allowed is None:
            fail("SystemCallFilter", "not an allow-list (first line must allow, e.g. @system-service)")
        else:
            missing = [s for s in REQUIRED_SYSCALLS if s not in allowed and s in expand("@known", groups)]
            expect(not missing, "SystemCallFilter", f"allows all {len(REQUIRED_SYSCALLS)} system calls percore "
                   "makes (io_uring, affinity, exec for upgrades, epoll fallback)",
                   f"blocks system calls percore makes: {' '.join(missing)}")
            uring = {"io_uring_setup", "io_uring_enter", "io_uring_register"}
            where = [g for g in ("@aio", "@system-service") if uring <= expand(g, groups)]
            ok("SystemCallFilter", f"io_uring_* are in {', '.join(where) or 'no group'} on this systemd "
               "(and listed explicitly in the unit)")

    expect((sock.get("Service") or [""])[-1] == "percore.service" and bool(sock.get("ListenStream")), "socket unit",
           "ListenStream= set, Service=percore.service")

    https = parse_unit(DEPLOY / "systemd/percore-https.conf")
    cap = "CAP_NET_BIND_SERVICE"
    expect(https.get("CapabilityBoundingSet") == [cap] and https.get("AmbientCapabilities") == [cap], "HTTPS drop-in",
           f"adds only {cap} (port 443)", f"CapabilityBoundingSet={https.get('CapabilityBoundingSet')} "
           f"AmbientCapabilities={https.get('AmbientCapabilities')}")
    expect(https.get("PrivateUsers") == ["no"], "HTTPS drop-in", "PrivateUsers=no (a capability in a user "
           "namespace opens no host port)")
    expect(bool(https.get("SupplementaryGroups")), "HTTPS drop-in", "SupplementaryGroups= to read certbot's key")


# --- sysctl --------------------------------------------------------------------------------

SYSCTL: dict[str, str] = {}


def check_sysctl() -> None:
    section("deploy/sysctl/99-percore.conf")
    path = DEPLOY / "sysctl/99-percore.conf"
    bad = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"(-?)([a-z0-9_]+(?:\.[a-zA-Z0-9_-]+)+)\s*=\s*(\S(?:.*\S)?)", line)
        if not m:
            bad.append(f"line {n}: not `key = value`: {raw!r}")
            continue
        key, value = m.group(2), m.group(3)
        if key in SYSCTL:
            bad.append(f"line {n}: {key} set twice")
        SYSCTL[key] = value
        if not Path("/proc/sys", key.replace(".", "/")).exists():
            warn("sysctl keys", f"{key} does not exist on this kernel/namespace "
                 f"({'ignored there: leading -' if m.group(1) else 'sysctl --system would report it'})")
    expect(not bad, "sysctl syntax", f"{len(SYSCTL)} settings, each `key = value`", "; ".join(bad))
    try:
        lo, hi = (int(x) for x in SYSCTL["net.ipv4.ip_local_port_range"].split())
        port = int(setting("port"))
        expect(not lo <= port <= hi, "sysctl vs percore", f"percore port {port} outside the ephemeral range {lo}-{hi}",
               f"percore port {port} inside the ephemeral range {lo}-{hi}")
        expect(int(SYSCTL["net.core.somaxconn"]) >= int(setting("backlog")), "sysctl vs percore",
               "somaxconn >= percore --backlog")
        nofile = int((parse_unit(DEPLOY / "systemd/percore.service").get("LimitNOFILE") or ["0"])[-1])
        expect(nofile <= int(SYSCTL.get("fs.nr_open", "1048576")), "sysctl vs unit",
               f"LimitNOFILE {nofile} <= fs.nr_open {SYSCTL.get('fs.nr_open', '1048576')}")
    except (KeyError, ValueError) as e:
        fail("sysctl vs percore", f"cannot compare: {e}")


# --- nginx ---------------------------------------------------------------------------------


def check_nginx(nginx: str) -> None:
    section("deploy/nginx/percore.conf")
    conf = DEPLOY / "nginx/percore.conf"
    with tempfile.TemporaryDirectory(prefix="percore-nginx-") as prefix:
        for d in ("logs", "tmp"):
            os.mkdir(os.path.join(prefix, d))
        main = Path(prefix) / "nginx.conf"
        main.write_text(f"""
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {conf};
}}
""")
        r = run([nginx, "-t", "-q", "-e", "stderr", "-p", prefix + "/", "-c", str(main)])
        out = (r.stdout + r.stderr).strip()
        expect(r.returncode == 0 and "emerg" not in out, "nginx -t", f"{nginx}: syntax ok", out[:600])
        if "[warn]" in out:
            warn("nginx -t", out[:400])

    text = re.sub(r"#.*", "", conf.read_text())
    up = re.search(r"upstream\s+percore\s*\{(.*?)\}", text, re.S)
    if not up:
        fail("nginx", "no `upstream percore { }` block")
        return
    ups = up.group(1)
    keep_alive = seconds(setting("keep-alive"))
    m = re.search(r"keepalive_timeout\s+(\S+);", ups)
    if expect(bool(m), "nginx upstream", "keepalive_timeout set in the upstream"):
        t = nginx_seconds(m.group(1))
        expect(t < keep_alive, "nginx vs percore", f"upstream keepalive_timeout {t:g}s < percore keep-alive {keep_alive:g}s",
               f"upstream keepalive_timeout {t:g}s >= percore keep-alive {keep_alive:g}s: 502s on reuse")
    expect(re.search(r"^\s*keepalive\s+\d+;", ups, re.M) is not None, "nginx upstream", "keepalive connection pool")
    expect("keepalive_requests" in ups, "nginx upstream", "keepalive_requests set")
    m = re.search(r"server\s+([0-9.]+):(\d+)", ups)
    expect(bool(m) and m.group(1) == setting("host") and m.group(2) == setting("port"), "nginx vs percore",
           f"upstream server is percore's {setting('host')}:{setting('port')}")
    expect(re.search(r"proxy_http_version\s+1\.1;", text) is not None, "nginx", "proxy_http_version 1.1")
    # Either no Connection header to the upstream at all, or the WebSocket map that is empty
    # for every request without Upgrade (both keep upstream keepalive).
    empty = re.search(r'proxy_set_header\s+Connection\s+"";', text) is not None
    mapped = (
        re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", text) is not None
        and re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", text) is not None
        and re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade\s*\{[^}]*(''|\"\")\s+(''|\"\")\s*;", text)
        is not None
    )
    expect(empty or mapped, "nginx",
           'proxy_set_header Connection "" (or $connection_upgrade, empty without Upgrade, with Upgrade $http_upgrade)')
    for h in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        expect(re.search(rf"proxy_set_header\s+{h}\s", text) is not None, "nginx", f"sets {h}")
    m = re.search(r"client_max_body_size\s+(\S+);", text)
    if expect(bool(m), "nginx", "client_max_body_size set"):
        expect(nginx_size(m.group(1)) == size(setting("max-body-size")), "nginx vs percore",
               f"client_max_body_size {m.group(1)} == percore max-body-size {setting('max-body-size')}")
    m = re.search(r"proxy_read_timeout\s+(\S+);", text)
    if expect(bool(m), "nginx", "proxy_read_timeout set"):
        expect(nginx_seconds(m.group(1)) > seconds(setting("timeout")), "nginx vs percore",
               "proxy_read_timeout above percore --timeout")


# --- Docker --------------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    pats = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line.lstrip("!").lstrip("/"))
        rx, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        pats.append((neg, re.compile(rx + r"\Z")))
    return pats


def in_context(path: str, pats) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent dirs wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for neg, rx in pats:
        if any(rx.match(p) for p in prefixes):
            excluded = not neg
    return not excluded


def check_docker(venv: Path) -> None:
    section("Dockerfile, .dockerignore")
    from dockerfile_parse import DockerfileParser

    df = DockerfileParser(path=str(ROOT / "Dockerfile"))
    instr = [(i["instruction"], i["value"]) for i in df.structure]
    froms = [v for k, v in instr if k == "FROM"]
    expect(len(froms) == 2 and froms[0].startswith("rust:1-bookworm") and froms[0].lower().endswith(" as builder"),
           "Dockerfile", "two stages, builder FROM rust:1-bookworm", f"FROM lines: {froms}")
    expect(froms[-1].split()[0] in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12"), "Dockerfile",
           f"runtime stage FROM {froms[-1]}")
    runs = " ".join(v for k, v in instr if k == "RUN")
    expect("cargo build --release --locked" in runs, "Dockerfile", "cargo build --release --locked")
    users = [v for k, v in instr if k == "USER"]
    expect(bool(users) and users[-1].split(":")[0] not in ("0", "root"), "Dockerfile", f"non-root USER {users[-1:]}")
    expect(("EXPOSE", "8000") in instr, "Dockerfile", "EXPOSE 8000")
    expect(("STOPSIGNAL", "SIGTERM") in instr, "Dockerfile", "STOPSIGNAL SIGTERM")
    hc = [v for k, v in instr if k == "HEALTHCHECK"]
    expect(bool(hc) and "/usr/local/bin/percore-healthcheck" in hc[-1], "Dockerfile", "HEALTHCHECK runs percore-healthcheck")
    cmd = [v for k, v in instr if k == "CMD"]
    expect(bool(cmd) and json.loads(cmd[-1]) == ["percore", "--host", "0.0.0.0"], "Dockerfile",
           'CMD ["percore", "--host", "0.0.0.0"]', f"CMD {cmd[-1:]}")
    if cmd:
        check_flag_names("Dockerfile flags", flags_in_argv(json.loads(cmd[-1])), "flags in CMD")

    r = run([str(venv / "bin/hadolint"), "--no-color", str(ROOT / "Dockerfile")])
    expect(r.returncode == 0, "hadolint", "no findings", (r.stdout + r.stderr).strip()[:600])

    # The build context after .dockerignore: everything COPY needs must be in it.
    pats = dockerignore_patterns()
    copies = [v.split() for k, v in instr if k == "COPY"]
    for args in copies:
        if any(a.startswith("--from") for a in args):
            continue
        for src in [a for a in args if not a.startswith("--")][:-1]:
            if src == ".":
                continue
            expect((ROOT / src).exists() and in_context(src, pats), "build context", f"COPY source {src} is in it",
                   f"COPY source {src} is missing or excluded by .dockerignore")
    git = shutil.which("git")
    files = run([git, "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.split() if git else []
    if not files:
        files = [rel(p) for p in ROOT.rglob("*") if p.is_file() and "target" not in p.parts and ".git" not in p.parts]
    kept = [f for f in files if in_context(f, pats)]
    expect(not any(f.startswith(("target/", ".git/", "deploy/systemd")) for f in kept), "build context",
           f"{len(kept)} of {len(files)} files; target/, .git/, deploy/ (but deploy/docker) left out")
    # Cargo must find every target it declares (benches/codec.rs!) in the context alone.
    cargo = shutil.which("cargo")
    if cargo:
        with tempfile.TemporaryDirectory(prefix="percore-ctx-") as ctx:
            for f in kept:
                dst = Path(ctx, f)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, dst)
            # `cargo fetch --locked` loads every target the manifest declares (a [[bench]]
            # whose file is excluded fails here, as `cargo build` in the image would) and
            # refuses a Cargo.lock that no longer matches Cargo.toml (the image builds with
            # --locked). It downloads crates only if this machine lacks them.
            r = run([cargo, "fetch", "--locked", "--quiet"], cwd=ctx, timeout=240)
            expect(r.returncode == 0, "build context", "cargo fetch --locked works inside the context "
                   "(every Cargo.toml target present, Cargo.lock up to date)", r.stderr.strip()[-600:])
    else:
        warn("build context", "cargo not installed: Cargo.toml targets not checked against the context")


# --- AWS -----------------------------------------------------------------------------------


def check_aws(venv: Path) -> None:
    section("deploy/aws")
    docs = {}
    for name in ("ecs-task-definition.json", "alb-target-group.json", "alb-attributes.json",
                 "ecs-task-definition-https.json", "alb-target-group-https.json"):
        path = DEPLOY / "aws" / name
        r = run([sys.executable, "-m", "json.tool", str(path)])
        if expect(r.returncode == 0, "json.tool", f"{name} is valid JSON", r.stderr.strip()):
            docs[name] = json.loads(path.read_text())
    if len(docs) < 5:
        return
    import botocore.session
    from botocore.validate import ParamValidator

    session = botocore.session.get_session()
    elb_model = session.get_service_model("elbv2").operation_model("ModifyLoadBalancerAttributes")
    report = ParamValidator().validate({"LoadBalancerArn": "arn:aws:x", "Attributes": docs["alb-attributes.json"]},
                                       elb_model.input_shape)
    expect(not report.has_errors(), "ALB attributes", "valid ModifyLoadBalancerAttributes Attributes",
           report.generate_report())
    ecs_model = session.get_service_model("ecs").operation_model("RegisterTaskDefinition")
    for task_name, tg_name in (("ecs-task-definition.json", "alb-target-group.json"),
                               ("ecs-task-definition-https.json", "alb-target-group-https.json")):
        report = ParamValidator().validate(docs[task_name], ecs_model.input_shape)
        expect(not report.has_errors(), "ECS task definition", f"{task_name}: valid RegisterTaskDefinition input "
               "(botocore model)", report.generate_report())
        r = run([str(venv / "bin/cfn-lint"), "--format", "parseable", str(DEPLOY / "aws" / tg_name)])
        expect(r.returncode == 0, "cfn-lint", f"{tg_name} template is valid", (r.stdout + r.stderr).strip()[:600])
        check_ecs_alb(docs[task_name], docs[tg_name], docs["alb-attributes.json"], task_name)


def ecs_argv(c: dict) -> list[str]:
    """The container's command as words; a `sh -c` script is split as the shell would."""
    import shlex

    cmd = c.get("command", [])
    if c.get("entryPoint", [])[-1:] == ["-c"] and len(cmd) == 1:
        return shlex.split(cmd[0])
    return cmd


def check_ecs_alb(task: dict, tg_doc: dict, alb_attrs: list, name: str) -> None:
    """One ECS task definition against its ALB target group: flags, timing, ports, health."""
    c = task["containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in c.get("environment", [])}
    cmd = ecs_argv(c)
    # PERCORE_HEALTHCHECK_* are for deploy/docker/healthcheck.sh, not percore.
    percore_env = [e for e in env if not e.startswith("PERCORE_HEALTHCHECK_")]
    check_flag_names(f"{name} flags", flags_in_argv(cmd) + env_flag_names(percore_env),
                     "flags and PERCORE_* variables")
    ecs = {k: env.get("PERCORE_" + k.upper().replace("-", "_"), DEFAULTS.get(k)) for k in DEFAULTS}
    drain, grace = seconds(ecs["drain-delay"]), seconds(ecs["graceful-timeout"])
    stop = c.get("stopTimeout", 30)
    expect(drain + grace + 1 < stop <= 120, f"{name} timing",
           f"stopTimeout {stop} > drain-delay {drain:g} + graceful-timeout {grace:g} + 1, and <= 120",
           f"stopTimeout {stop} must be in ({drain + grace + 1:g}, 120]")
    hc = " ".join(c.get("healthCheck", {}).get("command", []))
    expect("percore-healthcheck" in hc or "/health" in hc, name, "container healthCheck probes /health")
    limits = {u["name"] for u in c.get("ulimits", [])}
    expect({"nofile", "memlock"} <= limits, name, "ulimits nofile and memlock")
    expect("linuxParameters" in c, name, "linuxParameters set")
    port = c["portMappings"][0]["containerPort"]
    binds = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--bind"]
    served = [b.rsplit(":", 1)[1] for b in binds if not b.startswith(("http:", "unix:"))]
    plain = [b.rsplit(":", 1)[1] for b in binds if b.startswith("http:")]
    cmd_port = served[0] if served else (cmd[cmd.index("--port") + 1] if "--port" in cmd else ecs["port"])
    tg = next(r for r in tg_doc["Resources"].values()
              if r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
    expect(str(port) == str(cmd_port) == str(tg["Port"]), f"{name} vs ALB",
           f"containerPort {port} = percore port {cmd_port} = target port {tg['Port']}")
    attrs = {a["Key"]: a["Value"] for a in tg.get("TargetGroupAttributes", [])}
    dereg = int(attrs.get("deregistration_delay.timeout_seconds", 300))
    expect(dereg >= drain + grace, "ALB timing", f"deregistration delay {dereg}s >= drain-delay + graceful-timeout "
           f"{drain + grace:g}s")
    expect(tg.get("HealthCheckPath") == "/ready", "ALB", "target group health check path /ready")
    detect = tg["HealthCheckIntervalSeconds"] * tg["UnhealthyThresholdCount"]
    expect(drain >= detect, "ALB timing", f"drain-delay {drain:g}s >= health check interval x unhealthy threshold "
           f"= {detect}s")
    expect(tg["HealthCheckTimeoutSeconds"] < tg["HealthCheckIntervalSeconds"], "ALB", "health check timeout < interval")
    idle = int({a["Key"]: a["Value"] for a in alb_attrs}.get("idle_timeout.timeout_seconds", 60))
    ka = seconds(ecs["keep-alive"])
    expect(idle < ka, "ALB vs percore", f"ALB idle timeout {idle}s < percore keep-alive {ka:g}s",
           f"ALB idle timeout {idle}s >= percore keep-alive {ka:g}s: the 502 trap")
    tls = "PERCORE_CERTFILE" in env
    expect(tg["Protocol"] == tg.get("HealthCheckProtocol", "HTTP") == ("HTTPS" if tls else "HTTP"), f"{name} vs ALB",
           f"target group and health check protocol {tg['Protocol']} ({'percore serves TLS' if tls else 'plain'})",
           f"percore {'serves TLS' if tls else 'is plain'} but the target group says {tg['Protocol']}, health "
           f"check {tg.get('HealthCheckProtocol')}")
    if tls:
        expect("PERCORE_KEYFILE" in env, name, "PERCORE_CERTFILE and PERCORE_KEYFILE set")
        scratch = [t["containerPath"] for t in c.get("linuxParameters", {}).get("tmpfs", [])]
        expect(any(env[k].startswith(d + "/") for d in scratch for k in ("PERCORE_CERTFILE", "PERCORE_KEYFILE")),
               name, f"certificate and key written to a tmpfs ({', '.join(scratch)}), the root file system read-only",
               f"PERCORE_CERTFILE/KEYFILE not on a tmpfs of the task ({scratch})")
        hc_port = env.get("PERCORE_HEALTHCHECK_PORT", "")
        expect(hc_port in plain, name, f"the container health check (plain HTTP) probes the http: address "
               f"on port {hc_port}", f"PERCORE_HEALTHCHECK_PORT {hc_port!r} is not a plain http: --bind port {plain}")


# --- Kubernetes ----------------------------------------------------------------------------


def check_kubernetes(venv: Path) -> None:
    section("deploy/kubernetes")
    import yaml

    objs = {}
    for name in ("deployment.yaml", "service.yaml"):
        path = DEPLOY / "kubernetes" / name
        try:
            objs[name] = list(yaml.safe_load_all(path.read_text()))
            ok("yaml", f"{name} parses ({len(objs[name])} document(s))")
        except yaml.YAMLError as e:
            fail("yaml", f"{name}: {e}")
    if len(objs) < 2:
        return
    files = [str(DEPLOY / "kubernetes" / n) for n in objs]
    for version in ("1.25.0", None):
        cmd = [str(venv / "bin/kubernetes-validate"), "--strict", "--quiet", *files]
        if version:
            cmd[1:1] = ["-k", version]
        r = run(cmd)
        expect(r.returncode == 0, "kubernetes-validate", f"--strict against Kubernetes {version or 'latest'} schemas",
               (r.stdout + r.stderr).strip()[:600])

    dep = objs["deployment.yaml"][0]
    svc = objs["service.yaml"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    argv = c.get("command", []) + c.get("args", [])
    check_flag_names("k8s flags", flags_in_argv(argv) + env_flag_names(list(env)), "flags and PERCORE_* variables")
    k = {key: env.get("PERCORE_" + key.upper().replace("-", "_")) or DEFAULTS.get(key) for key in DEFAULTS}
    pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    need = pre + seconds(k["drain-delay"]) + seconds(k["graceful-timeout"]) + 1
    grace = pod.get("terminationGracePeriodSeconds", 30)
    expect(grace > need, "k8s timing", f"terminationGracePeriodSeconds {grace} > preStop {pre} + drain-delay + "
           f"graceful-timeout + 1 = {need:g}", f"terminationGracePeriodSeconds {grace} <= {need:g}")
    expect(c["readinessProbe"]["httpGet"]["path"] == "/ready", "k8s", "readinessProbe /ready")
    expect(c["livenessProbe"]["httpGet"]["path"] == "/health", "k8s", "livenessProbe /health")
    res = c["resources"]
    cpu = str(res["limits"]["cpu"])
    expect(res["requests"] == res["limits"] and cpu.isdigit(), "k8s", f"requests == limits, whole CPUs ({cpu}): "
           "Guaranteed QoS")
    expect(pod.get("enableServiceLinks") is False or svc["metadata"]["name"] != "percore", "k8s",
           "enableServiceLinks: false (a Service named percore would inject PERCORE_PORT=tcp://...)")
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    expect(sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
           and sc.get("allowPrivilegeEscalation") is False, "k8s",
           "runAsNonRoot, readOnlyRootFilesystem, no privilege escalation")
    expect("seccompProfile" in sc, "k8s", "seccompProfile set (io_uring note in the file)")
    port_names = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    tp = svc["spec"]["ports"][0]["targetPort"]
    expect(tp in port_names or tp in port_names.values(), "k8s", f"Service targetPort {tp} is a container port")
    expect(svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(), "k8s",
           "Service selector matches the pod labels")


# --- shell scripts -------------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # as percore answers; the script matches the status line

    def do_GET(self):  # noqa: N802
        code = {"/health": 200, "/ready": 503}.get(self.path, 404)
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def check_shell(venv: Path) -> None:
    section("shell scripts")
    scripts = [DEPLOY / "check.sh", DEPLOY / "docker/healthcheck.sh", DEPLOY / "certbot/percore-deploy-hook.sh"]
    r = run([str(venv / "bin/shellcheck"), "--severity=style", *map(str, scripts)])
    expect(r.returncode == 0, "shellcheck", ", ".join(rel(s) for s in scripts), (r.stdout + r.stderr).strip()[:800])
    hc = DEPLOY / "docker/healthcheck.sh"
    expect(os.access(hc, os.X_OK), "healthcheck", "deploy/docker/healthcheck.sh is executable")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        def probe(path: str, p: int) -> int:
            env = {**clean_env(), "PERCORE_HEALTHCHECK_PORT": str(p), "PERCORE_HEALTHCHECK_PATH": path}
            return run(["bash", str(hc)], env=env, timeout=10).returncode

        expect(probe("/health", port) == 0, "healthcheck", "exit 0 on 200 /health")
        expect(probe("/ready", port) == 1, "healthcheck", "exit 1 on 503")
    finally:
        server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    expect(probe("/health", closed) == 1, "healthcheck", "exit 1 when nothing listens")
    check_certbot_hook()


def check_certbot_hook() -> None:
    """Run the deploy hook on a fake certbot lineage: it reloads (a stub) and makes the new key
    group-readable only for a lineage percore's config names."""
    hook = DEPLOY / "certbot/percore-deploy-hook.sh"
    expect(os.access(hook, os.X_OK), "certbot hook", "deploy/certbot/percore-deploy-hook.sh is executable")
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="percore-certbot-") as tmp:
        t = Path(tmp)
        (t / "archive/example.com").mkdir(parents=True)
        (t / "live/example.com").mkdir(parents=True)
        key = t / "archive/example.com/privkey2.pem"
        key.write_text("key\n")
        key.chmod(0o600)
        (t / "live/example.com/privkey.pem").symlink_to(key)
        conf = t / "percore.toml"
        https = (DEPLOY / "percore-https.toml").read_text().replace("/etc/letsencrypt", tmp)
        conf.write_text(https)
        reloads = t / "reloads"

        def hook_run(lineage: str) -> subprocess.CompletedProcess:
            env = {**clean_env(), "RENEWED_LINEAGE": lineage, "PERCORE_CONFIG": str(conf),
                   "PERCORE_KEY_GROUP": group, "PERCORE_RELOAD": f"touch {reloads}"}
            return run(["sh", str(hook)], env=env, timeout=10)

        r = hook_run(f"{tmp}/live/other.org")
        expect(r.returncode == 0 and not reloads.exists() and key.stat().st_mode & 0o777 == 0o600, "certbot hook",
               "another certificate's renewal leaves percore alone", (r.stdout + r.stderr).strip()[:300])
        r = hook_run(f"{tmp}/live/example.com")
        expect(r.returncode == 0 and reloads.exists() and key.stat().st_mode & 0o777 == 0o640, "certbot hook",
               "percore's certificate: key made group-readable (0640), percore reloaded",
               f"exit {r.returncode}, reloaded {reloads.exists()}, key mode {key.stat().st_mode & 0o777:o}: "
               f"{(r.stdout + r.stderr).strip()[:300]}")


# --- docs ----------------------------------------------------------------------------------


def check_docs() -> None:
    section("docs/migrating.md (the migration table)")
    path = ROOT / "docs" / "migrating.md"
    if not expect(path.exists(), "docs", "docs/migrating.md exists"):
        return
    text = path.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("|") and "`" in ln]
    # Migration table rows: | gunicorn | uvicorn | percore | notes |; percore flags in column 3.
    table = [re.split(r"(?<!\\)\|", ln) for ln in rows]
    table = [cells for cells in table if len(cells) == 6]  # 4 columns between outer pipes
    used = []
    for cells in table:
        if len(cells) > 3:
            used += re.findall(r"`--([a-z0-9-]+)", cells[3])
    bad = sorted({f for f in used if f not in FLAGS and f not in UPCOMING})
    expect(bool(used) and not bad, "docs", f"{len(set(used))} percore flags in the migration table all exist",
           f"unknown percore flags in the table: {', '.join(bad)}" if used else "no migration table found")
    for flag in ("-w", "-b", "--timeout", "--graceful-timeout", "--keep-alive", "--max-requests",
                 "--max-requests-jitter", "--worker-connections", "--backlog", "--limit-concurrency",
                 "--access-logfile", "--access-logformat", "--error-logfile", "--log-level",
                 "--forwarded-allow-ips", "--proxy-headers", "--proxy-protocol", "--timeout-keep-alive",
                 "--timeout-graceful-shutdown", "--limit-max-requests", "--no-access-log"):
        if f"`{flag}" not in text:
            fail("docs", f"migration table lacks {flag}")
    pending = sorted({f for f in used if f not in FLAGS and f in UPCOMING})
    if pending:
        warn("docs", f"table names flags not in src/config yet: {', '.join(pending)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", type=Path, required=True)
    ap.add_argument("--nginx", required=True)
    args = ap.parse_args()
    FLAGS.update(known_flags())
    if not FLAGS:
        print("cannot find percore's flags in src/ (env = \"PERCORE_...\")")
        return 1
    print(f"percore flags in src/config: {len(FLAGS)}")
    steps = [
        lambda: check_config(os.environ.get("PERCORE_BIN")),
        check_systemd,
        check_sysctl,
        lambda: check_nginx(args.nginx),
        lambda: check_docker(args.venv),
        lambda: check_aws(args.venv),
        lambda: check_kubernetes(args.venv),
        lambda: check_shell(args.venv),
        check_docs,
    ]
    for step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - a crash in one check is a failure, not the end
            fail("internal", f"{type(e).__name__}: {e}")
    failed = [r for r in results if r[0] == "FAIL"]
    warned = [r for r in results if r[0] == "warn"]
    print(f"\ndeploy checks: {len(results) - len(failed) - len(warned)} ok, {len(failed)} FAIL, {len(warned)} warnings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
