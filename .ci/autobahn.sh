#!/usr/bin/env bash
# The Autobahn|Testsuite (cases 1-10 and a few permessage-deflate cases) against the demo
# echo on /ws: no case may FAIL.
# Uses the debug binary `cargo test` built; run.sh installs the suite on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

run="${AUTOBAHN_RUN:-../shared/autobahn/run.sh}"
if [ ! -x "$run" ]; then
  echo "autobahn: $run not found (set AUTOBAHN_RUN to the testsuite's run.sh)" >&2
  exit 1
fi
out="$(mktemp -d)"
log="$out/server.log"
cargo build --quiet --bin percore
"${CARGO_TARGET_DIR:-target}/debug/percore" --host 127.0.0.1 --port 0 --workers 1 --log-format json 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
addr=""
for _ in $(seq 1 100); do
  addr="$(grep -o '"address":"[^"]*"' "$log" | head -n1 | cut -d'"' -f4 || true)"
  [ -n "$addr" ] && break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "autobahn: the server did not start:" >&2
  cat "$log" >&2
  exit 1
fi
# Cases 1-10, and one small case of each permessage-deflate group (12.x.1, 13.x.1: 1000
# messages of 16 bytes, every offer variant): about 20 s more than 1-10 alone. The whole of
# 12.* and 13.* (`--compression` without `--cases`) takes 12 to 40 minutes; run it by hand.
"$run" "ws://$addr/ws" "$out/report" --compression \
  --cases "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.1.1,12.2.1,12.3.1,12.4.1,12.5.1,13.1.1,13.2.1,13.3.1,13.4.1,13.5.1,13.6.1,13.7.1"
