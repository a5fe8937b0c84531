#!/usr/bin/env python3
"""Memory per idle WebSocket of a running percore (the demo app's /ws echo).

    benches/idle/ws_idle_rss.py PORT PID [N]

Opens N (default 2,000) connections, upgrades each to a WebSocket with a `GET /ws`
handshake, leaves them idle, waits 1.5 s and prints the growth of the VmRSS of PID and its
children per WebSocket (kernel socket buffers are not in any process's RSS). A lighter
stand-in for `compare ws`'s idle test, which needs the comparison's own build.
"""
import base64, os, resource, socket, sys, time

port = int(sys.argv[1]); pid = int(sys.argv[2]); n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))


def rss_kib():
    total = 0
    for p in [pid] + [int(c) for c in os.popen(f"pgrep -P {pid}").read().split()]:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


key = base64.b64encode(os.urandom(16)).decode()
handshake = (
    f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()
before = rss_kib()
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(handshake)
    head = b""
    while b"\r\n\r\n" not in head:
        got = s.recv(4096)
        if not got:
            raise SystemExit("ws_idle_rss.py: the server closed a connection")
        head += got
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise SystemExit(f"ws_idle_rss.py: no 101: {head[:80]!r}")
    conns.append(s)
time.sleep(1.5)
after = rss_kib()
print(f"{n} idle WebSockets: RSS {before} KiB -> {after} KiB, {(after - before) / n:.2f} KiB each")
