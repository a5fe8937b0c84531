#!/usr/bin/env bash
# deploy/check.sh: check the deployment kit (deploy/, Dockerfile, .dockerignore,
# docs/deploying.md) with the real tools, and check that its numbers agree with each other
# and with percore's flags.
#
#   bash deploy/check.sh          # from anywhere; exits non-zero on any real problem
#
# What it runs (the checks themselves are in deploy/check_deploy.py):
#   systemd   systemd-analyze verify (units), systemd-analyze security --offline (exposure
#             score), the SystemCallFilter= allow-list against the system calls percore makes
#   nginx     nginx -t on deploy/nginx/percore.conf inside a throwaway http{} block
#   sysctl    syntax; each key present under /proc/sys (only a warning: containers differ)
#   Docker    hadolint, dockerfile-parse assertions, the .dockerignore'd build context
#   AWS       JSON syntax, the ECS task definition and ALB attributes against botocore's API
#             models, the target group template with cfn-lint
#   k8s       YAML syntax, kubernetes-validate --strict against the API schemas
#   shell     shellcheck, and the container health check against a local HTTP server
#   numbers   TimeoutStopSec / stopTimeout / terminationGracePeriodSeconds vs drain-delay +
#             graceful-timeout, keep-alive vs nginx and ALB idle timeouts, body size limits,
#             ports, and that every percore flag, PERCORE_* variable and config key used
#             exists in src/config (keys being added now are only warned about)
#
# What it installs when missing (Debian/Ubuntu, as root or with passwordless sudo):
#   apt: systemd (for systemd-analyze), procps (/bin/kill, named by ExecReload=),
#        python3 + python3-venv; nginx is downloaded with `apt-get download` and unpacked
#        into the cache (never installed, so no nginx service gets enabled or started)
#   pip: deploy/check-requirements.txt into a private venv
# Everything goes to $PERCORE_CHECK_CACHE (default ~/.cache/percore-deploy-check), so a
# second run installs nothing. Set PERCORE_BIN=path/to/percore to also run
# `percore check-config` on deploy/percore.toml (done anyway when target/*/percore is newer
# than src/).
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
CACHE=${PERCORE_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/percore-deploy-check}
mkdir -p "$CACHE"
INSTALLED=()

log() { printf 'check.sh: %s\n' "$*"; }
die() {
  printf 'check.sh: ERROR: %s\n' "$*" >&2
  exit 1
}

# Root, or passwordless sudo, for apt-get.
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
fi
can_apt() { command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ ${#SUDO[@]} -gt 0 ]; }; }

APT_UPDATED=0
apt_update() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    can_apt || die "apt-get update needs root (or passwordless sudo)"
    "${SUDO[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
}
apt_install() {
  can_apt || die "missing $*: install it (Debian: apt-get install $*) or run as root"
  apt_update
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  INSTALLED+=("apt: $*")
}

# --- systemd-analyze, /bin/kill ------------------------------------------------------------
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
[ -x /bin/kill ] || apt_install procps

# --- nginx: unpacked from its .deb into the cache, unless one is on PATH --------------------
# Sets NGINX (not run in $(...): the apt bookkeeping above must survive it).
NGINX=''
find_nginx() {
  if command -v nginx >/dev/null 2>&1; then
    NGINX=$(command -v nginx)
    return
  fi
  local dir=$CACHE/nginx bin
  bin=$(find "$dir" -path '*/sbin/nginx' -type f 2>/dev/null | head -n1 || true)
  if [ -z "$bin" ]; then
    apt_update
    rm -rf "$dir" && mkdir -p "$dir/deb"
    # The package holding the binary: "nginx" on Debian 12+/Ubuntu 24.04+, "nginx-core" before.
    local pkg
    for pkg in nginx nginx-core; do
      if (cd "$dir/deb" && apt-get -qq -o APT::Sandbox::User=root download "$pkg" >/dev/null 2>&1); then
        break
      fi
    done
    local deb
    for deb in "$dir"/deb/*.deb; do
      [ -e "$deb" ] || die "cannot download an nginx package with apt-get download"
      dpkg-deb -x "$deb" "$dir/root"
    done
    bin=$(find "$dir/root" -path '*/sbin/nginx' -type f | head -n1 || true)
    [ -n "$bin" ] || die "no sbin/nginx in the downloaded package"
    INSTALLED+=("apt-get download: $(basename "$dir"/deb/*.deb) (unpacked in $dir, not installed)")
  fi
  # Shared libraries it needs (OpenSSL, PCRE2, zlib, libcrypt) that a minimal system may lack.
  if ldd "$bin" 2>/dev/null | grep -q 'not found'; then
    apt_install libssl3 libpcre2-8-0 zlib1g libcrypt1
  fi
  NGINX=$bin
}
find_nginx

# --- Python venv with the pinned linters ----------------------------------------------------
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv
VENV=$CACHE/venv
STAMP="$(sha256sum deploy/check-requirements.txt | cut -c1-16) $(python3 -c 'import sys; print(sys.version.split()[0])')"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null || true)" != "$STAMP" ]; then
  log "creating $VENV (pip install -r deploy/check-requirements.txt)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --timeout 60 --retries 3 \
    -r deploy/check-requirements.txt
  echo "$STAMP" >"$VENV/.stamp"
  INSTALLED+=("pip (venv $VENV): $(grep -Ev '^\s*(#|$)' deploy/check-requirements.txt | tr '\n' ' ')")
fi

# --- the checks -------------------------------------------------------------------------
status=0
"$VENV/bin/python" deploy/check_deploy.py --venv "$VENV" --nginx "$NGINX" || status=$?

if [ ${#INSTALLED[@]} -gt 0 ]; then
  log "installed this run:"
  printf '  %s\n' "${INSTALLED[@]}"
else
  log "installed this run: nothing (all tools present; cache $CACHE)"
fi
log "took $((SECONDS - START)) s"
if [ "$status" -ne 0 ]; then
  log "FAILED"
  exit "$status"
fi
log "all deployment checks passed"
