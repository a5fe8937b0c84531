#!/bin/sh
# percore's certbot deploy hook: after certbot issued or renewed a certificate that
# percore serves, make its new key readable by percore's group and reload percore (which
# re-reads --certfile/--keyfile; open connections keep theirs, no request fails).
#
# Install (certbot runs every executable in this directory after each successful renewal):
#   install -D -m 0755 deploy/certbot/percore-deploy-hook.sh \
#     /etc/letsencrypt/renewal-hooks/deploy/percore.sh
# or name it for one certificate: certbot certonly ... --deploy-hook /path/to/this.
#
# certbot sets RENEWED_LINEAGE=/etc/letsencrypt/live/DOMAIN. The hook acts only when
# percore's config names a file of that lineage (certfile or keyfile), so other
# certificates on the host renew without reloading percore.
#
# Environment (optional, for other layouts and for deploy/check.sh):
#   PERCORE_CONFIG         percore's config file      [/etc/percore/percore.toml]
#   PERCORE_KEY_GROUP      group that reads the key   [ssl-cert]
#   PERCORE_RELOAD         reload command             [systemctl reload percore]
# `systemctl reload percore` first runs `percore check-config` (ExecReload= in
# deploy/systemd/percore.service): a bad pair fails the hook, visibly in certbot's log,
# and percore keeps serving the old certificate.
set -eu

config=${PERCORE_CONFIG:-/etc/percore/percore.toml}
group=${PERCORE_KEY_GROUP:-ssl-cert}
lineage=${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE for deploy hooks}

if [ ! -r "$config" ]; then
  echo "percore-deploy-hook: cannot read ${config} (set PERCORE_CONFIG)" >&2
  exit 1
fi
if ! grep -E '^[[:space:]]*(certfile|keyfile)[[:space:]]*=' "$config" | grep -qF "\"${lineage}/"; then
  exit 0
fi

# live/DOMAIN/privkey.pem is a symlink to archive/DOMAIN/privkeyN.pem, N new each renewal.
key=$(readlink -f "${lineage}/privkey.pem")
chgrp "$group" "$key"
chmod 0640 "$key"

# shellcheck disable=SC2086 # the reload command is words on purpose
${PERCORE_RELOAD:-systemctl reload percore}
echo "percore-deploy-hook: ${lineage} installed; percore reloaded"
