#!/usr/bin/env bash
# User-space instructions per request of one server under valgrind's callgrind, in two
# phases of REQUESTS (default 16,000) GET PATH each: pipelined (4 connections x 16) and
# keep-alive (64 connections, one request at a time). load.py opens and warms up the
# connections, then has callgrind dump before and after each phase, so start-up, accepts
# and warm-up are not counted. Deterministic, unlike CPU time on a shared machine. All
# threads of the process are counted (a supervisor's timer wake-ups too).
#
#   benches/callgrind/run.sh NAME PORT PATH -- SERVER COMMAND...
#
#   benches/callgrind/run.sh floor 18950 /plaintext -- benches/compare/target/release/compare serve-floor --port 18950
#   benches/callgrind/run.sh native 18951 /plaintext -- target/release/percore --port 18951 --workers 1
#   benches/callgrind/run.sh hyper 18952 /plaintext -- benches/compare/target/release/compare serve-hyper --mode tpc --threads 1 --port 18952
#
# Prints one line: `NAME PATH: pipelined N instructions/request, keep-alive M instructions/request`.
# The SERVER COMMAND must be the program itself (not a script that execs it): valgrind
# does not follow exec. CALLGRIND_OUT=DIR keeps the profiles there (callgrind_annotate
# --inclusive=yes DIR/NAME.out.2 shows where the pipelined instructions go). CALLGRIND_HOST=VALUE sets
# the requests' Host field (default `x`; `CALLGRIND_HOST=127.0.0.1:PORT` is what wrk sends).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name=$1 port=$2 path=$3
shift 4
requests=${REQUESTS:-16000}
out="${CALLGRIND_OUT:-$(mktemp -d)}"
rm -f "$out/$name.out" "$out/$name.out".*
valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$out/$name.out" "$@" >"$out/$name.log" 2>&1 &
vpid=$!
for _ in $(seq 1 300); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
  sleep 0.2
done
status=0
python3 "$here/load.py" "$port" "$path" "$requests" "$vpid" || status=$?
# percore drains on the first signal and stops at once on the second.
kill -INT "$vpid" 2>/dev/null || true
sleep 0.5
kill -TERM "$vpid" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$vpid" 2>/dev/null || break; sleep 0.2; done
kill -KILL "$vpid" 2>/dev/null || true
wait "$vpid" 2>/dev/null || true
if [ "$status" != 0 ]; then
  echo "$name: the load failed (server log: $out/$name.log)" >&2
  exit 1
fi
per_request() { grep -h "^totals" "$out/$name.out.$1" | awk -v n="$requests" '{s += $2} END {printf "%d", s / n}'; }
echo "$name $path: pipelined $(per_request 2) instructions/request, keep-alive $(per_request 3) instructions/request (profiles in $out)"
