#!/usr/bin/env python3
"""Memory a client that never reads holds in the server.

Starts BINARY (a percore build) on 127.0.0.1:18731 with one executor, opens 200
connections that each ask for a long /stream with chunks of SIZE bytes and never read,
waits 3 s, and prints the server's RSS growth per connection.

    python3 benches/nonreader.py target/release/percore 1024
"""
import re
import socket
import subprocess
import sys
import time

CONNS = 200
PORT = 18731


def rss_kib(pid):
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))


def main():
    binary, size = sys.argv[1], sys.argv[2]
    server = subprocess.Popen([binary, "--port", str(PORT), "--workers", "1"], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        base = rss_kib(server.pid)
        socks = []
        for _ in range(CONNS):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", PORT))
            s.sendall(f"GET /stream?chunks=100000&size={size} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            socks.append(s)
        time.sleep(3)
        grown = rss_kib(server.pid) - base
        print(f"chunk size {size}: RSS {base} KiB -> {base + grown} KiB with {CONNS} non-reading clients, "
              f"{grown / CONNS:.1f} KiB each")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
