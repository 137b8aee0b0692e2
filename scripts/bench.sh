#!/usr/bin/env bash
# Reproduces BENCHMARKS.md. Loopback only; never part of CI (timing gates
# nothing). Every part prints a Markdown table; raw JSON goes to target/bench.
#
#   ./scripts/bench.sh                  # everything (about 20 minutes)
#   PARTS="scale" SIZES="10000" ./scripts/bench.sh
#
# Parts (PARTS, default all of them):
#   scale    `heartbeat bench` against the bare tonic baseline
#            (examples/baseline.rs) and `heartbeat serve`, alternating, REPEAT
#            times per fleet size in SIZES; ratios of the medians.
#   long     LONG_MEMBERS members against `heartbeat serve` for LONG.
#   overload 10k members against `heartbeat serve --max-ping-rate 5000`.
#   watch    10k members and 10k Health Watch streams on a flipping service.
#   health   Health/Check throughput with h2load (scripts/bench-health.sh).
#   peers    The same fleet (PEERS_MEMBERS, 1 Hz, 1 % hung) against the bare
#            floor, `heartbeat serve`, and one etcd lease + key per member on
#            a one-member etcd (Debian's, as scripts/test.sh installs it;
#            examples/etcd_leases.rs), REPEAT rounds alternating: CPU per
#            renewal, RSS per member, detection lateness, cold start.
#
# PIN=1 (default on 2+ CPUs) pins the server to CPU 0 and the bench to CPU 1,
# so neither steals the other's core; PIN=0 lets the scheduler place them.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"scale long overload watch health peers"}
PEERS_MEMBERS=${PEERS_MEMBERS:-10000}
SIZES=${SIZES:-"1000 10000 20000 40000"}
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-20s}
CONNS=${CONNS:-20}
HUNG=${HUNG:-0.01}
LONG=${LONG:-5m}
LONG_MEMBERS=${LONG_MEMBERS:-20000}
PORT=${PORT:-50331}
if [ "$(nproc)" -ge 2 ]; then PIN=${PIN:-1}; else PIN=0; fi
cargo build --release --locked --bin heartbeat --example baseline --example etcd_leases >&2
HB=target/release/heartbeat
BASE=target/release/examples/baseline
out=target/bench
mkdir -p "$out"
server_cpu=() bench_cpu=()
if [ "$PIN" = 1 ]; then server_cpu=(taskset -c 0); bench_cpu=(taskset -c 1); fi

# run NAME SERVER-CMD... -- BENCH-ARGS...: one server, one bench against it.
run() {
  local name=$1
  shift
  local cmd=()
  while [ "$1" != -- ]; do cmd+=("$1"); shift; done
  shift
  "${server_cpu[@]}" "${cmd[@]}" 2>"$out/$name.log" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$out/$name.log" && break; sleep 0.1; done
  echo "== $name" >&2
  "${bench_cpu[@]}" "$HB" bench --server "127.0.0.1:$PORT" --connections "$CONNS" --interval 1s \
    --timeout 3s --server-pid "$pid" --json --quiet "$@" >"$out/$name.json" || true
  kill -TERM "$pid"
  wait "$pid" || true
}
serve=("$HB" serve --listen "127.0.0.1:$PORT" --log-format json --max-join-rate 1000000 --drain 100ms)
baseline=("$BASE" "127.0.0.1:$PORT")

for part in $PARTS; do
  case $part in
  scale)
    rm -f "$out"/scale-*
    for n in $SIZES; do
      for r in $(seq "$REPEAT"); do
        run "scale-baseline-$n-$r" "${baseline[@]}" -- --members "$n" --duration "$DURATION" --hung "$HUNG"
        run "scale-heartbeat-$n-$r" "${serve[@]}" -- --members "$n" --duration "$DURATION" --hung "$HUNG"
      done
    done
    ;;
  long)
    run "long-heartbeat-$LONG_MEMBERS" "${serve[@]}" -- --members "$LONG_MEMBERS" --duration "$LONG"
    ;;
  overload)
    run overload "${serve[@]}" --max-ping-rate 5000 -- --members 10000 --duration "$DURATION" \
      --join-within 5s --allow-partial
    ;;
  watch)
    run watch "${serve[@]}" -- --members 10000 --watchers 10000 --duration "$DURATION"
    ;;
  health)
    if ! command -v h2load >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -qq nghttp2-client >&2
    fi
    MEMBERS=10000 REQUESTS=1000000 ROUNDS=3 ./scripts/bench-health.sh | tee "$out/health.txt"
    ;;
  peers)
    rm -f "$out"/peers-*
    ETCD_BIN=$(scripts/etcd.sh)
    for r in $(seq "$REPEAT"); do
      run "peers-baseline-$r" "${baseline[@]}" -- --members "$PEERS_MEMBERS" --duration "$DURATION" --hung "$HUNG"
      run "peers-heartbeat-$r" "${serve[@]}" -- --members "$PEERS_MEMBERS" --duration "$DURATION" --hung "$HUNG"
      # One etcd member, data on the local disk, pinned as the servers are.
      rm -rf "$out/etcd-peers"
      "${server_cpu[@]}" "$ETCD_BIN/etcd" --name peers --data-dir "$out/etcd-peers" \
        --listen-client-urls "http://127.0.0.1:$PORT" --advertise-client-urls "http://127.0.0.1:$PORT" \
        --listen-peer-urls "http://127.0.0.1:$((PORT + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" \
        --initial-cluster "peers=http://127.0.0.1:$((PORT + 1))" \
        --log-level error --logger zap >"$out/peers-etcd-$r.log" 2>&1 &
      epid=$!
      for _ in $(seq 100); do
        "$ETCD_BIN/etcdctl" --endpoints "127.0.0.1:$PORT" endpoint health >/dev/null 2>&1 && break
        sleep 0.1
      done
      echo "== peers-etcd-$r" >&2
      "${bench_cpu[@]}" target/release/examples/etcd_leases --etcd "127.0.0.1:$PORT" \
        --members "$PEERS_MEMBERS" --ttl 3s --interval 1s --duration "$DURATION" --hung "$HUNG" \
        --etcd-pids "$epid" >"$out/peers-etcd-$r.json" || true
      kill -TERM "$epid"
      wait "$epid" || true
    done
    ;;
  *) echo "unknown part $part" >&2; exit 1 ;;
  esac
done

python3 scripts/bench_tables.py "$out" "$PIN" $PARTS -- $SIZES
