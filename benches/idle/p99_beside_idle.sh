#!/usr/bin/env bash
# The busy clients' latency beside idle keep-alive connections: wrk's median and p99 on
# /plaintext against one executor, alone and then with 10,000 connections that were served
# once and left idle (held by a Python client for the second run).
#
#   benches/idle/p99_beside_idle.sh target/release/percore monoio [PORT]
set -euo pipefail
bin=$1 rt=$2 port=${3:-18964}
ulimit -n 20000 2>/dev/null || true
"$bin" --runtime "$rt" --workers 1 --port "$port" --log-level warn &
pid=$!
ready=$(mktemp -u)
trap 'kill $pid 2>/dev/null || true; rm -f "$ready"' EXIT
sleep 1.5
measure() {
  wrk -t1 -c50 -d8s --latency "http://127.0.0.1:$port/plaintext" |
    awk '/ 50%| 99%|Requests\/sec/ {printf "%s %s  ", $1, $2} END {print ""}'
}
echo "$rt alone:            $(measure)"
python3 - "$port" "$ready" <<'PY' &
import socket, sys, time
port, ready = int(sys.argv[1]), sys.argv[2]
req = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
conns = []
for _ in range(10000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    got = b""
    while b"World" not in got:
        got += s.recv(4096)
    conns.append(s)
open(ready, "w").write("1")
time.sleep(60)
PY
hold=$!
for _ in $(seq 240); do [ -f "$ready" ] && break; sleep 0.5; done
sleep 1
echo "$rt beside 10k idle:  $(measure)"
kill "$hold" 2>/dev/null || true
wait "$hold" 2>/dev/null || true
