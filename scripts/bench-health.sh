#!/usr/bin/env bash
# Health/Check throughput with h2load (Debian's nghttp2-client): the
# tonic-health reporter (examples/health_baseline.rs) against `heartbeat
# serve`, both with MEMBERS names registered, back to back in one run, ROUNDS
# times (alternating). The heartbeat members are held by `heartbeat bench` at
# a 60 s interval, stopped (SIGSTOP) while h2load runs.
# PIN=1 (default on 2+ CPUs) runs the server on CPU 0 and h2load on CPU 1.
#   MEMBERS=10000 REQUESTS=200000 ROUNDS=3 ./scripts/bench-health.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(nproc)" -ge 2 ]; then PIN=${PIN:-1}; else PIN=0; fi
server_cpu=() client_cpu=()
if [ "$PIN" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); fi
MEMBERS=${MEMBERS:-10000}
REQUESTS=${REQUESTS:-200000}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-50341}
command -v h2load >/dev/null || { echo "needs h2load (apt-get install nghttp2-client)" >&2; exit 1; }
cargo build --release --locked --bin heartbeat --example health_baseline >&2
HB=target/release/heartbeat
out=target/bench
mkdir -p "$out"
# grpc.health.v1.HealthCheckRequest{service:"bench"}, length-prefixed.
printf '\x00\x00\x00\x00\x07\x0a\x05bench' >"$out/check.bin"

load() { # NAME
  "${client_cpu[@]}" h2load -n "$REQUESTS" -c 10 -m 20 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$out/check.bin" "http://127.0.0.1:$PORT/grpc.health.v1.Health/Check" >"$out/h2load-$1.txt"
  grep -E "^finished in|^requests:" "$out/h2load-$1.txt" | sed "s/^/$1: /"
}

for r in $(seq "$ROUNDS"); do
  "${server_cpu[@]}" target/release/examples/health_baseline "127.0.0.1:$PORT" "$MEMBERS" 2>"$out/health-baseline.log" &
  pid=$!
  for _ in $(seq 300); do grep -q listening "$out/health-baseline.log" && break; sleep 0.1; done
  load "tonic-health-$r"
  kill "$pid"; wait "$pid" 2>/dev/null || true

  "${server_cpu[@]}" "$HB" serve --listen "127.0.0.1:$PORT" --log-format json --max-join-rate 1000000 \
    --drain 100ms 2>"$out/health-heartbeat.log" &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out/health-heartbeat.log" && break; sleep 0.1; done
  "${client_cpu[@]}" "$HB" bench --server "127.0.0.1:$PORT" --members "$MEMBERS" --connections 10 \
    --interval 60s --duration 600s --quiet --json >/dev/null &
  bench=$!
  for _ in $(seq 600); do
    n=$(grep -c '"member joined"' "$out/health-heartbeat.log" 2>/dev/null || true)
    [ "${n:-0}" -ge "$MEMBERS" ] && break
    sleep 0.1
  done
  # The member holder is stopped while h2load runs: its members (60 s
  # interval, 120 s timeout) stay listed, and it takes no CPU from h2load.
  kill -STOP "$bench"
  load "heartbeat-$r"
  kill -KILL "$bench" 2>/dev/null || true
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
done
