#!/usr/bin/env bash
# Runs every test of heartbeat on a fresh machine, installing what the tests
# need first (Python packages into a local venv under target/, etcd and
# Chromium from Debian's packages). CI runs this
# exact script through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s (%s)\n' "$*" "$(date +%T)"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

step "each part builds alone (cargo features)"
for features in client server agent bench; do
  cargo clippy --locked --lib --no-default-features --features "$features" -- -D warnings
done

step "etcd for the cluster tests (Debian's etcd-server/etcd-client, unpacked under target/etcd)"
HEARTBEAT_ETCD_BIN="$(scripts/etcd.sh)"
export HEARTBEAT_ETCD_BIN

step "Rust tests (unit, property, integration over real TCP)"
cargo build --locked --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
cargo test --locked --doc

step "Chromium for the status page's browser tests (Debian's chromium)"
HEARTBEAT_CHROMIUM="$(scripts/chromium.sh)"
export HEARTBEAT_CHROMIUM

step "interop: grpcurl, Python and Node clients, a real browser, manifests, examples"
venv=target/interop-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r tests/interop/requirements.txt -r examples/python/requirements.txt
npm ci --prefix examples/node --no-audit --no-fund --loglevel=error
PATH="$PWD/$venv/bin:$PATH" HEARTBEAT_BIN="$PWD/target/debug/heartbeat" \
  "$venv/bin/python" -m pytest tests/interop -q -p no:cacheprovider
