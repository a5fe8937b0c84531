#!/bin/bash
# percore-healthcheck: the container health check (Dockerfile HEALTHCHECK, ECS healthCheck).
#
# GET /health from the percore in this container and exit 0 on "200", 1 otherwise. The
# runtime image (debian:bookworm-slim) has no curl or wget; bash's /dev/tcp opens the TCP
# connection instead, so the image needs no extra package (curl would add ~10 MB of
# libraries and their CVEs) and the check costs one fork+exec of bash.
#
# Environment (all optional):
#   PERCORE_HEALTHCHECK_HOST  address to connect to        [127.0.0.1]
#   PERCORE_HEALTHCHECK_PORT  port                          [$PERCORE_PORT, else 8000]
#   PERCORE_HEALTHCHECK_PATH  path                          [/health]
# If percore's port is set with --port on the command line, set PERCORE_HEALTHCHECK_PORT
# too (the flag is invisible from here). /health is liveness: it answers 200 while
# draining, so a draining container is not marked unhealthy and killed mid-drain; use
# /ready only for load-balancer routing.
#
# The caller (Docker --timeout, ECS healthCheck.timeout) bounds the connect; the read
# waits at most 2 s itself.
set -u

host=${PERCORE_HEALTHCHECK_HOST:-127.0.0.1}
port=${PERCORE_HEALTHCHECK_PORT:-${PERCORE_PORT:-8000}}
path=${PERCORE_HEALTHCHECK_PATH:-/health}

# fd 3: a TCP connection (bash's built-in /dev/tcp/HOST/PORT, no /dev access needed).
# (bash's own "connection refused" lines are dropped; the message below says it once.)
if ! { exec 3<>"/dev/tcp/${host}/${port}"; } 2>/dev/null; then
  echo "percore-healthcheck: cannot connect to ${host}:${port}" >&2
  exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: percore-healthcheck\r\nConnection: close\r\n\r\n' \
  "$path" "$host" >&3

# Only the status line matters: "HTTP/1.1 200 OK\r".
status=''
if ! IFS= read -r -t 2 status <&3; then
  echo "percore-healthcheck: no answer from ${host}:${port}${path}" >&2
  exit 1
fi
exec 3<&-
status=${status%$'\r'}
case $status in
  'HTTP/1.1 200 '* | 'HTTP/1.0 200 '*) exit 0 ;;
  *)
    echo "percore-healthcheck: ${host}:${port}${path} answered '${status}'" >&2
    exit 1
    ;;
esac
