#!/usr/bin/env bash
# The browser the dashboard test drives (packages/server/tests/dashboard.test.ts): Debian's
# `chromium` package at /usr/bin/chromium, controlled by playwright-core (which downloads no
# browser of its own). Idempotent and non-interactive: a quiet no-op when it is installed;
# otherwise `apt-get update` + `apt-get install` (root, or sudo without a password).
# Safe under CI with no stdin.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "ci-browser: need root (or passwordless sudo) to install chromium" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
echo "ci-browser: installing chromium"
"${as_root[@]}" apt-get update -q </dev/null
"${as_root[@]}" apt-get install "${apt_opts[@]}" --no-install-recommends chromium </dev/null
[ -x "$CHROMIUM" ] || { echo "ci-browser: $CHROMIUM missing after install" >&2; exit 1; }
echo "ci-browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium installed)"
