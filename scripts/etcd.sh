#!/usr/bin/env bash
# Puts Debian's etcd (server and etcdctl, 3.4) under target/etcd/usr/bin for
# the cluster tests, without installing a service: `apt-get download` and
# `dpkg -x`, refreshing the package lists first when they lack it (root).
# An etcd already on PATH is used as it is. Prints the directory holding the
# binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
  dirname "$(command -v etcd)"
  exit 0
fi
dest=target/etcd
if [ ! -x "$dest/usr/bin/etcd" ] || [ ! -x "$dest/usr/bin/etcdctl" ]; then
  mkdir -p "$dest/debs"
  fetch() { (cd "$dest/debs" && apt-get download etcd-server etcd-client) >&2 2>/dev/null; }
  if ! fetch; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >&2
    fi
    fetch || { echo "cannot download etcd-server/etcd-client with apt-get" >&2; exit 1; }
  fi
  for deb in "$dest"/debs/*.deb; do
    dpkg -x "$deb" "$dest"
  done
fi
echo "$PWD/$dest/usr/bin"
