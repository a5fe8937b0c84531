#!/usr/bin/env bash
# User-space instructions per request of one server under valgrind's callgrind: the
# difference between runs of 2,000 and 6,000 keep-alive requests (16 pipelined, one
# connection), so start-up cost cancels out. Deterministic, unlike CPU time on a shared
# machine. All threads of the process are counted.
#
#   benches/callgrind/run.sh NAME PORT PATH -- SERVER COMMAND...
#   benches/callgrind/run.sh native 18951 /plaintext -- target/release/percore --port 18951 --workers 1
#   benches/callgrind/run.sh axum-serve 18953 /plaintext -- benches/compare/target/release/compare serve-axum --threads 1 --port 18953
#   benches/callgrind/run.sh percore-axum 18954 /plaintext -- benches/compare/target/release/compare \
#       serve-percore-axum --port 18954 --workers 1 --runtime tokio --log-level warn
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name=$1 port=$2 path=$3
shift 4
out="${CALLGRIND_OUT:-$(mktemp -d)}"
declare -A total
for n in 2000 6000; do
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.$n.out" "$@" >/dev/null 2>&1 &
  vpid=$!
  for _ in $(seq 1 150); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
    sleep 0.2
  done
  python3 "$here/load.py" "$port" "$n" "$path"
  # percore drains on the first signal and stops at once on the second.
  kill -INT "$vpid" 2>/dev/null || true
  sleep 0.5
  kill -TERM "$vpid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$vpid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  total[$n]=$(grep -h "^totals" "$out/$name.$n.out"* | awk '{s += $2} END {print s + 0}')
done
echo "$name: $(( (${total[6000]} - ${total[2000]}) / 4000 )) instructions per request (profiles in $out)"
