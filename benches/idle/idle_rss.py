#!/usr/bin/env python3
"""Memory per idle keep-alive connection of a running server.

    benches/idle/idle_rss.py PORT PID [N]

Opens N (default 5,000) connections to 127.0.0.1:PORT, makes one `GET /plaintext` on
each (so every connection is accepted and has been served once), leaves them idle, waits a
second and prints the growth of the VmRSS of PID and its children, per connection. Kernel
socket buffers are not part of any process's RSS. Example:

    target/release/percore --runtime monoio --workers 1 --port 18960 --log-level warn &
    benches/idle/idle_rss.py 18960 $!

With `--paced` it opens them 100 at a time, 0.3 s apart (longer than the server's 250 ms
idle grace, after which an idle connection lets go of its buffers): what the first batches
let go is reused by the next, as on a server where idle connections come and go, instead of
every connection's buffers being allocated before the first one goes idle.
"""
import os, resource, socket, sys, time

paced = "--paced" in sys.argv
args = [a for a in sys.argv[1:] if a != "--paced"]
port = int(args[0]); pid = int(args[1]); n = int(args[2]) if len(args) > 2 else 5000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))


def rss_kib(root):
    """VmRSS of `root` and its descendants, in KiB."""
    total = 0
    pids = [root]
    while pids:
        p = pids.pop()
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    pids += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
                except OSError:
                    pass
        except OSError:
            pass
    return total


REQ = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"


def one_request(s):
    buf = b""
    while True:
        d = s.recv(4096)
        if not d:
            raise SystemExit("idle_rss.py: the server closed a connection")
        buf += d
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            head = buf[:i].lower()
            j = head.find(b"content-length:")
            cl = int(head[j + 15:].split(b"\r\n", 1)[0]) if j >= 0 else 0
            if len(buf) >= i + 4 + cl:
                return


before = rss_kib(pid)
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(REQ)
    one_request(s)
    conns.append(s)
    if paced and len(conns) % 100 == 0:
        time.sleep(0.3)
time.sleep(1.0)
after = rss_kib(pid)
# The connections must still be served: one more request on a sample of them.
for s in conns[:: max(1, n // 20)]:
    s.sendall(REQ)
    one_request(s)
print(f"{n} idle connections: RSS {before} KiB -> {after} KiB, {(after - before) / n:.2f} KiB per connection")
