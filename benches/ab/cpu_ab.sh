#!/usr/bin/env bash
# Two percore builds side by side: server CPU-seconds per million requests under wrk, the
# builds interleaved run by run (this machine is noisy: compare within one run of this).
#
#   benches/ab/cpu_ab.sh BIN_A BIN_B [ROUNDS] [RUNTIME]
#
# One executor pinned to core 0, wrk (one thread) on core 1, 3 s per run after a 1 s
# warm-up, three workloads on /plaintext: keep-alive (64 connections), pipelined (256
# connections, 16 requests per write) and a new connection per request (16 connections,
# `Connection: close`). CPU is the server's utime + stime from /proc/PID/stat.
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} rt=${4:-monoio} port=${PORT:-18970}
lua=$(mktemp --suffix .lua)
trap 'rm -f "$lua"' EXIT
cat >"$lua" <<'LUA'
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/plaintext") end
  req = table.concat(r)
end
request = function() return req end
LUA
tick=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One run: prints CPU-seconds per million requests.
run() {
  local bin=$1 workload=$2 args
  case $workload in
    keep-alive) args=(-c 64) ;;
    pipelined) args=(-c 256 -s "$lua") ;;
    close) args=(-c 16 -H "Connection: close") ;;
  esac
  taskset -c 0 "$bin" --runtime "$rt" --workers 1 --port "$port" --log-level error 2>/dev/null &
  local pid=$!
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
    sleep 0.1
  done
  taskset -c 1 wrk -t1 -d1 "${args[@]}" "http://127.0.0.1:$port/plaintext" >/dev/null 2>&1
  local t0 t1 out n
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -d3 "${args[@]}" "http://127.0.0.1:$port/plaintext" 2>&1)
  t1=$(cpu_ticks "$pid")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  kill -INT "$pid" 2>/dev/null || true
  sleep 0.3
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 -c "print(f'{($t1 - $t0) / $tick / $n * 1e6:.2f}')"
}

echo "server CPU-s per million requests ($rt, $rounds interleaved rounds): A=$a B=$b"
for workload in keep-alive pipelined close; do
  ra="" rb=""
  for _ in $(seq "$rounds"); do
    ra="$ra $(run "$a" $workload)"
    rb="$rb $(run "$b" $workload)"
  done
  echo "$workload  A:$ra  B:$rb"
done
