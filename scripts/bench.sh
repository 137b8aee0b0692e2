#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: `heartbeat bench` against the bare tonic baseline
# (examples/baseline.rs) and against `heartbeat serve`, back to back in one
# run, at each fleet size; prints a Markdown table with the ratios.
#   SIZES="1000 10000" DURATION=20s CONNS=20 HUNG=0.01 ./scripts/bench.sh
# Loopback only. Never part of CI: timing does not gate anything.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000"}
DURATION=${DURATION:-20s}
CONNS=${CONNS:-20}
HUNG=${HUNG:-0.01}
PORT=${PORT:-50331}
cargo build --release --locked --bin heartbeat --example baseline >&2
HB=target/release/heartbeat
BASE=target/release/examples/baseline
out=target/bench
mkdir -p "$out"

run() { # NAME MEMBERS SERVER-COMMAND...
  local name=$1 n=$2
  shift 2
  "$@" 2>"$out/$name-$n.log" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$out/$name-$n.log" && break; sleep 0.1; done
  echo "== $name, $n members" >&2
  "$HB" bench --server "127.0.0.1:$PORT" --members "$n" --connections "$CONNS" \
    --duration "$DURATION" --interval 1s --timeout 3s --hung "$HUNG" \
    --server-pid "$pid" --json --quiet >"$out/$name-$n.json"
  kill -TERM "$pid"
  wait "$pid" || true
}

for n in $SIZES; do
  run baseline "$n" "$BASE" "127.0.0.1:$PORT"
  run heartbeat "$n" "$HB" serve --listen "127.0.0.1:$PORT" --log-format json \
    --max-join-rate 1000000 --drain 100ms
done

python3 - "$out" $SIZES <<'PY'
import json, sys
out, sizes = sys.argv[1], sys.argv[2:]
print("| members | server | pings/s | CPU µs/ping | RSS KiB/member | RTT p50 / p99 / p99.9 ms | false expiries | hung detected | lateness p50 / p99 ms | join ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in sizes:
    rows = {name: json.load(open(f"{out}/{name}-{n}.json")) for name in ("baseline", "heartbeat")}
    for name, r in rows.items():
        rtt, late = r["rtt_us"], r["detection_lateness_ms"]
        cpu = r["server_cpu_us_per_ping"]
        print(f"| {n} | {name} | {r['pings_per_sec']:.0f} | {cpu:.1f} | {r['server_rss_per_member_bytes']/1024:.2f} | "
              f"{rtt['p50']/1e3:.2f} / {rtt['p99']/1e3:.2f} / {rtt['p999']/1e3:.2f} | {r['false_expiries']} | "
              f"{r['hung_detected']}/{r['hung']} | {late['p50']:.2f} / {late['p99']:.2f} | {r['join_time_ms']:.0f} |")
    b, h = rows["baseline"], rows["heartbeat"]
    cpu_ratio = h["server_cpu_us_per_ping"] / b["server_cpu_us_per_ping"] if b["server_cpu_us_per_ping"] else float("nan")
    rss_ratio = h["server_rss_per_member_bytes"] / max(b["server_rss_per_member_bytes"], 1)
    print(f"| {n} | **ratio** | | **{cpu_ratio:.2f}×** | **{rss_ratio:.2f}×** | | | | | |")
PY
