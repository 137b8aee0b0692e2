#!/usr/bin/env bash
# A/B of two builds of `heartbeat bench` as the load generator, against one
# server (the B build), pinned: server on CPU 0, load generator on CPU 1.
# Alternates A and B for ROUNDS rounds (default 3) and prints, per run, the
# load generator's CPU seconds (user + sys) and the report's figures.
#
#   scripts/bench-ab.sh path/to/old/heartbeat target/release/heartbeat
#
# Each run: 10k members on 10 connections at 1 s for 20 s. The server keeps
# LEFT members for 1 s only, so every run starts from an empty table.
set -euo pipefail
A=$1
B=$2
ROUNDS=${ROUNDS:-3}
out=$(mktemp -d)
trap 'kill "$spid" 2>/dev/null || true; rm -rf "$out"' EXIT
taskset -c 0 "$B" serve --listen 127.0.0.1:0 --max-join-rate 100000 --retention 1s \
  --log-format json 2>"$out/server.log" &
spid=$!
for _ in $(seq 100); do grep -q '"listening"' "$out/server.log" && break; sleep 0.1; done
addr=$(grep -m1 '"listening"' "$out/server.log" |
  python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["addr"])')
for round in $(seq "$ROUNDS"); do
  for which in A B; do
    bin=$A
    [ "$which" = B ] && bin=$B
    /usr/bin/time -f "%U %S" -o "$out/time" taskset -c 1 "$bin" bench --server "$addr" \
      --members 10000 --connections 10 --interval 1s --duration 20s \
      --server-pid "$spid" --json --quiet >"$out/report"
    python3 - "$which" "$round" "$out/time" "$out/report" <<'PY'
import json, sys
which, rnd, t, r = sys.argv[1:]
user, sys_ = map(float, open(t).read().split())
j = json.loads(open(r).read())
print(f"{which} round {rnd}: load generator CPU {user + sys_:.2f} s, "
      f"server {j['server_cpu_us_per_ping']:.2f} us/ping, RTT p99 {j['rtt_us']['p99'] / 1000:.2f} ms, "
      f"joined {j['joined']}, false expiries {j['false_expiries']}")
PY
  done
done
