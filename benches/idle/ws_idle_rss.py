#!/usr/bin/env python3
"""Memory per idle WebSocket of a running percore (the demo app's /ws echo).

    benches/idle/ws_idle_rss.py PORT PID [N] [--talk]

Opens N (default 2,000) connections, upgrades each to a WebSocket with a `GET /ws`
handshake, leaves them idle, waits 1.5 s and prints the growth of the VmRSS of PID and its
children per WebSocket (kernel socket buffers are not in any process's RSS). A lighter
stand-in for `compare ws`'s idle test, which needs the comparison's own build.

--talk: each WebSocket first has the echo answer two short messages, 0.5 s apart (so the
second comes after a silence, as a chat's next message does), and then goes idle: what a
WebSocket that was used holds when it goes quiet, beside one that never said anything.
"""
import base64, os, resource, socket, sys, time

talk = "--talk" in sys.argv
args = [a for a in sys.argv[1:] if a != "--talk"]
port = int(args[0]); pid = int(args[1]); n = int(args[2]) if len(args) > 2 else 2000
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


def say(conns, text):
    """Send `text` on every WebSocket (a masked text frame) and read each echo back."""
    payload = text.encode()
    frame = bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload  # zero mask
    for s in conns:
        s.sendall(frame)
    for s in conns:
        got = b""
        while len(got) < 2 + len(payload):
            chunk = s.recv(64)
            if not chunk:
                raise SystemExit("ws_idle_rss.py: the server closed a connection")
            got += chunk
        if got[2:] != payload:
            raise SystemExit(f"ws_idle_rss.py: unexpected echo {got[:40]!r}")


if talk:
    say(conns, "hello")
    time.sleep(0.5)
    say(conns, "again")
time.sleep(1.5)
after = rss_kib()
print(f"{n} idle WebSockets{' (after talking)' if talk else ''}: RSS {before} KiB -> {after} KiB, {(after - before) / n:.2f} KiB each")
