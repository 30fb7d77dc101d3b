#!/usr/bin/env bash
# Debian packages the test suite needs beyond Node and npm:
#   nginx-light   the load-balancer tests run a real nginx in front of replicas and check
#                 docker/nginx.conf with `nginx -t`;
#   python3-yaml  the deployment tests parse docker/compose.yml with a real YAML parser;
#   chromium      the dashboard test drives Debian's Chromium (/usr/bin/chromium) with
#                 playwright-core, which downloads no browser of its own;
#   pgbouncer     the PgBouncer test runs replicas through a real PgBouncer in transaction
#                 pooling mode (packages/testkit/src/pgbouncer.ts).
# Idempotent and non-interactive: quiet no-op when everything is installed; otherwise
# `apt-get update` + `apt-get install` (root, or sudo without a password). Safe under CI=true
# with no stdin.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "ci-deps: need root (or passwordless sudo) to install: ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
echo "ci-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -q </dev/null
# nginx-light is the smallest build with the upstream/proxy modules; fall back to nginx where
# a release no longer ships it.
if ! "${as_root[@]}" apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}" </dev/null; then
  "${as_root[@]}" apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]/nginx-light/nginx}" </dev/null
fi
# Debian's postinst starts the packaged nginx and pgbouncer services where an init system runs;
# the tests start their own processes and need no system ones.
if command -v service >/dev/null 2>&1; then
  "${as_root[@]}" service nginx stop >/dev/null 2>&1 || true
  "${as_root[@]}" service pgbouncer stop >/dev/null 2>&1 || true
fi
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]
python3 -c 'import yaml'
[ -x /usr/bin/chromium ]
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]
echo "ci-deps: $( (nginx -v || /usr/sbin/nginx -v) 2>&1 | head -n 1), python3-yaml ok, $(/usr/bin/chromium --version 2>/dev/null || echo chromium), $( (pgbouncer --version || /usr/sbin/pgbouncer --version) 2>/dev/null | head -n 1)"
