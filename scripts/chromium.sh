#!/usr/bin/env bash
# Makes sure Debian's chromium is installed for the status page's browser
# tests (tests/interop/test_status_page.py drives it with Playwright), and
# prints its path. Chromium needs its shared libraries, so unlike etcd it is
# installed with apt (as root, refreshing the package lists when they lack
# it); a chromium already on PATH, or HEARTBEAT_CHROMIUM, is used as it is.
# Never `playwright install`: that downloads a browser from the network.
set -euo pipefail
if [ -n "${HEARTBEAT_CHROMIUM:-}" ] && [ -x "$HEARTBEAT_CHROMIUM" ]; then
  echo "$HEARTBEAT_CHROMIUM"
  exit 0
fi
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "chromium is not installed and this is not root: apt-get install chromium" >&2
    exit 1
  fi
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2; }
  if ! apt_install 2>/dev/null; then
    apt-get update -qq >&2
    apt_install || { echo "cannot install chromium with apt-get" >&2; exit 1; }
  fi
fi
command -v chromium
