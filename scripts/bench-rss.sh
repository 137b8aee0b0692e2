#!/usr/bin/env bash
# Memory per member, measured side by side: the bare tonic floor
# (examples/baseline.rs) and `heartbeat serve`, alternating, ROUNDS times,
# MEMBERS members at 1 Hz over 20 connections. Loopback only; never part
# of CI.
#
#   ./scripts/bench-rss.sh [ROUNDS] [MEMBERS]
#   EXTRA="old=/path/to/older/heartbeat" ./scripts/bench-rss.sh 7 10000
#
# Three figures per run, each divided by the members that joined:
#   joined  `heartbeat bench`'s own: RSS right after the last Join minus
#           RSS before the first (what BENCHMARKS.md's scale tables show;
#           it catches whatever the joins have in flight at that moment);
#   anon    anonymous RSS at the end of the run (steady state) minus
#           before: the heap;
#   file    file-backed RSS at the end minus before: code and data pages of
#           the binary that serving members touched for the first time (a
#           fixed cost, however many members).
# Medians per variant follow the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
MEMBERS=${2:-10000}
DURATION=${DURATION:-5s}
PORT=${PORT:-50332}
cargo build --release --locked --bin heartbeat --example baseline >&2
HB=target/release/heartbeat
serve=(serve --listen "127.0.0.1:$PORT" --log-format json --max-join-rate 1000000 --drain 100ms)
variants=("floor=target/release/examples/baseline" "heartbeat=$HB")
for extra in ${EXTRA:-}; do variants+=("$extra"); done
pin_server=() pin_bench=()
if [ "$(nproc)" -ge 2 ]; then pin_server=(taskset -c 0); pin_bench=(taskset -c 1); fi
out=target/bench
mkdir -p "$out"
results="$out/rss.tsv"
: >"$results"
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
for r in $(seq "$ROUNDS"); do
  for v in "${variants[@]}"; do
    label=${v%%=*} bin=${v#*=}
    if [ "$label" = floor ]; then
      "${pin_server[@]}" "$bin" "127.0.0.1:$PORT" 2>"$out/rss-server.log" &
    else
      "${pin_server[@]}" "$bin" "${serve[@]}" 2>"$out/rss-server.log" &
    fi
    pid=$!
    for _ in $(seq 100); do grep -q listening "$out/rss-server.log" && break; sleep 0.1; done
    anon0=$(kib "$pid" RssAnon) file0=$(kib "$pid" RssFile)
    "${pin_bench[@]}" "$HB" bench --server "127.0.0.1:$PORT" --members "$MEMBERS" --connections 20 \
      --interval 1s --duration "$DURATION" --server-pid "$pid" --json --quiet >"$out/rss-bench.json"
    anon1=$(kib "$pid" RssAnon) file1=$(kib "$pid" RssFile)
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$label" "$r" "$anon0" "$anon1" "$file0" "$file1" "$out/rss-bench.json" >>"$results" <<'EOF'
import json, sys
label, r, a0, a1, f0, f1, path = sys.argv[1:]
d = json.load(open(path))
n = d["joined"]
print(label, r, d["server_rss_per_member_bytes"], round((int(a1) - int(a0)) * 1024 / n),
      round((int(f1) - int(f0)) * 1024 / n), sep="\t")
EOF
    tail -1 "$results" >&2
  done
done
python3 - "$results" "$MEMBERS" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
labels = list(dict.fromkeys(r[0] for r in rows))
med = {l: [statistics.median(int(r[i]) for r in rows if r[0] == l) for i in (2, 3, 4)] for l in labels}
print(f"\n{sys.argv[2]} members, medians of {len(rows) // len(labels)} runs, bytes per member\n")
print("| | joined | anon (end) | file (end) | anon + file | vs floor |")
print("|---|---|---|---|---|---|")
for l in labels:
    j, a, f = med[l]
    ratio = (a + f) / sum(med["floor"][1:]) if "floor" in med else float("nan")
    print(f"| {l} | {j:.0f} | {a:.0f} | {f:.0f} | {a + f:.0f} | {ratio:.3f}x |")
EOF
