#!/usr/bin/env python3
"""Load for benches/callgrind/run.sh, with callgrind dumps around each measured phase.

    load.py PORT PATH REQUESTS VALGRIND_PID

Opens 4 connections for the pipelined phase and 64 for the keep-alive phase, warms both
sets up (so every connection is accepted and has served requests before the measure), then:
dump; REQUESTS GET PATH over the 4 connections, 16 pipelined on each; dump; REQUESTS over
the 64 connections, one request at a time on each (keep-alive); dump. Dumps 2 and 3 of the
callgrind run hold exactly the instructions of the two phases.

CALLGRIND_HOST=VALUE sets the requests' Host (default `x`, as in every table so far; wrk sends
`127.0.0.1:PORT`, which costs a server that checks its Host some 100-250 instructions more).
"""
import os, selectors, socket, subprocess, sys

port = int(sys.argv[1]); path = sys.argv[2]; requests = int(sys.argv[3]); vpid = sys.argv[4]
host = os.environ.get("CALLGRIND_HOST", "x")
REQ = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.setblocking(False)
        self.buf = b""
        self.waiting = 0

    def responses(self):
        """Complete responses in the buffer, consumed."""
        n = 0
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return n
            head = self.buf[:i].lower()
            j = head.find(b"content-length:")
            if j < 0:
                raise SystemExit("load.py: a response without content-length")
            cl = int(head[j + 15:].split(b"\r\n", 1)[0])
            if len(self.buf) < i + 4 + cl:
                return n
            self.buf = self.buf[i + 4 + cl:]
            n += 1


def run(conns, depth, total):
    """`total` requests over `conns`, at most `depth` outstanding on each (sent together)."""
    sel = selectors.DefaultSelector()
    sent = done = 0
    for c in conns:
        sel.register(c.s, selectors.EVENT_READ, c)

    def send(c):
        nonlocal sent
        k = min(depth, total - sent)
        if k > 0:
            c.s.sendall(REQ * k)
            c.waiting = k
            sent += k

    for c in conns:
        send(c)
    while done < total:
        for key, _ in sel.select(timeout=60):
            c = key.data
            d = c.s.recv(1 << 20)
            if not d:
                raise SystemExit("load.py: server closed a connection")
            c.buf += d
            n = c.responses()
            c.waiting -= n
            done += n
            if c.waiting == 0:
                send(c)
    for c in conns:
        sel.unregister(c.s)


def dump(label):
    subprocess.run(["callgrind_control", f"--dump={label}", vpid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


pipelined = [Conn() for _ in range(4)]
keepalive = [Conn() for _ in range(64)]
run(pipelined, 16, 2048)
run(keepalive, 1, 1024)
dump("warm-up")
run(pipelined, 16, requests)
dump("pipelined")
run(keepalive, 1, requests)
dump("keep-alive")
for c in pipelined + keepalive:
    c.s.close()
