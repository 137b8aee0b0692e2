#!/usr/bin/env bash
# Cluster mode's benchmarks (issue: cluster mode), side by side in one run on
# one machine, everything on loopback:
#
#   1. steady state, alternating ROUNDS times (default 3):
#      embedded  one `heartbeat serve`, 10k members at 1 Hz (heartbeat bench)
#      cluster1  3 replicas on a 3-member etcd, the same 10k on one replica
#      and once: cluster3, 3 replicas x 10k members each (30k)
#      -> server CPU per ping, RSS per member, etcd writes/s while pinging
#   2. failover: 10k members on replica A, kill -9 A (examples/failover.rs)
#      -> false DEAD, time until all ALIVE on B/C, etcd writes/s in the burst
#   3. the peer a user would pick instead: one etcd lease + key per member,
#      1 s keepalives (examples/etcd_leases.rs) -> etcd CPU, false expiries
#   4. fleet: 3 replicas x MEMBERS (30k by default), etcd CPU at steady state,
#      then the same fleet as etcd leases on the same 3-member etcd
#   5. lifecycle: etcd writes per member lifecycle (join, leave, removal; join,
#      SUSPECT, DEAD, removal), from etcd's revision
#
#   scripts/bench-cluster.sh > cluster-bench.txt
#   PARTS="leases" scripts/bench-cluster.sh     # steady, failover, leases, fleet, lifecycle
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
MEMBERS=${MEMBERS:-10000}
cargo build --release --bins --example failover --example etcd_leases >&2
HB=target/release/heartbeat
ETCD_BIN=$(scripts/etcd.sh)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

etcd_up() { # starts a fresh 3-member etcd; sets ETCD_PIDS and ENDPOINTS
  local name=$1 cluster="" i
  rm -rf "$work/etcd"
  for i in 1 2 3; do cluster+="m$i=http://127.0.0.1:2380$i,"; done
  ETCD_PIDS=()
  for i in 1 2 3; do
    "$ETCD_BIN/etcd" --name "m$i" --data-dir "$work/etcd/m$i" \
      --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
      --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
      --initial-cluster "${cluster%,}" --initial-cluster-token "$name" \
      --heartbeat-interval 100 --election-timeout 1000 --log-level error --logger zap \
      >/dev/null 2>&1 &
    ETCD_PIDS+=($!)
    pids+=($!)
  done
  ENDPOINTS=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
  for _ in $(seq 100); do
    "$ETCD_BIN/etcdctl" --endpoints "$ENDPOINTS" endpoint health >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "etcd did not start" >&2
  exit 1
}
etcd_down() {
  for p in "${ETCD_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${ETCD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
revision() {
  "$ETCD_BIN/etcdctl" --endpoints "$ENDPOINTS" endpoint status -w json |
    python3 -c 'import json,sys; print(max(e["Status"]["header"]["revision"] for e in json.load(sys.stdin)))'
}

stable() { # waits (at most 60 s) until etcd's revision held still for 3 s: all joined
  local last now same=0
  last=$(revision)
  for _ in $(seq 60); do
    sleep 1
    now=$(revision)
    if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
    last=$now
    [ "$same" -ge 3 ] && return
  done
}

serve() { # serve NAME ARGS...: starts a server; sets SPID and ADDR
  local name=$1
  shift
  "$HB" serve --listen 127.0.0.1:0 --log-format json --max-join-rate 100000 --retention 1s "$@" \
    2>"$work/$name.log" &
  SPID=$!
  pids+=($SPID)
  for _ in $(seq 200); do grep -q '"listening"' "$work/$name.log" && break; sleep 0.05; done
  ADDR=$(grep -m1 '"listening"' "$work/$name.log" |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["addr"])')
  for _ in $(seq 200); do "$HB" check --server "$ADDR" heartbeat.v1.Heartbeat >/dev/null 2>&1 && return; sleep 0.05; done
  echo "$name never became ready" >&2
  exit 1
}
bench() { # bench ADDR PID OUT [SERVICE]: distinct services, so benches never share identities
  "$HB" bench --server "$1" --service "${4:-bench}" --members "$MEMBERS" --connections 20 \
    --interval 1s --duration 40s --server-pid "$2" --json --quiet >"$3"
}
report() { # report LABEL FILE [writes/s]
  python3 - "$@" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
j = json.load(open(path))
extra = f", etcd writes/s while pinging {sys.argv[3]}" if len(sys.argv) > 3 else ""
print(f"{label}: server CPU {j['server_cpu_us_per_ping']:.2f} us/ping, "
      f"RSS {j['server_rss_per_member_bytes'] / 1024:.2f} KiB/member, "
      f"RTT p99 {j['rtt_us']['p99'] / 1000:.2f} ms, joined {j['joined']}, "
      f"false expiries {j['false_expiries']}{extra}")
PY
}
cluster_flags() { echo --etcd-endpoints "$ENDPOINTS" --etcd-prefix "/$1/" --etcd-lease-ttl 10s; }
etcd_ticks() { # CPU ticks of the etcd members so far
  python3 -c "print(sum(sum(int(x) for x in open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()[11:13]) for p in '${ETCD_PIDS[*]}'.split()))"
}

PARTS=${PARTS:-"steady failover leases fleet lifecycle"}
if [[ " $PARTS " == *" steady "* ]]; then
echo "== steady state, $MEMBERS members per loaded server at 1 Hz, 40 s measured"
for round in $(seq "$ROUNDS"); do
  serve embedded
  bench "$ADDR" "$SPID" "$work/e.json"
  report "round $round embedded" "$work/e.json"
  kill "$SPID"; wait "$SPID" 2>/dev/null || true

  etcd_up "c1-$round"
  serve a $(cluster_flags "c1-$round"); a_pid=$SPID; a_addr=$ADDR
  serve b $(cluster_flags "c1-$round"); b_pid=$SPID
  serve c $(cluster_flags "c1-$round"); c_pid=$SPID
  bench "$a_addr" "$a_pid" "$work/c1.json" &
  bpid=$!
  # etcd's revision over 20 s inside the measured phase (all joined by
  # then, none left yet: the Leaves at the end are writes).
  stable; r0=$(revision); sleep 15; r1=$(revision)
  wait "$bpid"
  report "round $round cluster1" "$work/c1.json" "$(( (r1 - r0) / 15 ))"
  kill "$a_pid" "$b_pid" "$c_pid"; wait "$a_pid" "$b_pid" "$c_pid" 2>/dev/null || true
  etcd_down
done

etcd_up c3
serve a $(cluster_flags c3); a_pid=$SPID; a_addr=$ADDR
serve b $(cluster_flags c3); b_pid=$SPID; b_addr=$ADDR
serve c $(cluster_flags c3); c_pid=$SPID; c_addr=$ADDR
bench "$a_addr" "$a_pid" "$work/c3a.json" bench-a & ba=$!
bench "$b_addr" "$b_pid" "$work/c3b.json" bench-b & bb=$!
bench "$c_addr" "$c_pid" "$work/c3c.json" bench-c & bc=$!
stable; r0=$(revision); sleep 15; r1=$(revision)
wait "$ba" "$bb" "$bc"
for x in a b c; do report "cluster3 replica $x" "$work/c3$x.json" "$(( (r1 - r0) / 15 ))"; done
kill "$a_pid" "$b_pid" "$c_pid"; wait "$a_pid" "$b_pid" "$c_pid" 2>/dev/null || true
etcd_down

fi
if [[ " $PARTS " == *" failover "* ]]; then
echo "== failover: members on replica A, kill -9 A (member interval 1 s, timeout 3 s, lease TTL 10 s)"
for n in 3000 "$MEMBERS"; do
  etcd_up "f-$n"
  serve a $(cluster_flags "f-$n"); a_pid=$SPID; a_addr=$ADDR
  serve b $(cluster_flags "f-$n"); b_pid=$SPID; b_addr=$ADDR
  serve c $(cluster_flags "f-$n"); c_pid=$SPID; c_addr=$ADDR
  echo -n "$n members: "
  target/release/examples/failover --servers "$a_addr,$b_addr,$c_addr" --members "$n" \
    --kill-pid "$a_pid" --etcd 127.0.0.1:23791 || echo "(failed)"
  kill "$b_pid" "$c_pid"; wait "$b_pid" "$c_pid" 2>/dev/null || true
  etcd_down
done

fi
if [[ " $PARTS " == *" leases "* ]]; then
echo "== etcd leases: $MEMBERS leases (TTL 3 s) + keys, keepalive every 1 s, 30 s measured"
etcd_up leases
target/release/examples/etcd_leases --etcd "$ENDPOINTS" --members "$MEMBERS" --ttl 3s --interval 1s \
  --duration 30s --etcd-pids "$(IFS=,; echo "${ETCD_PIDS[*]}")"
echo "== etcd during heartbeat's steady state, for comparison: 3 replicas, $MEMBERS members"
etcd_down
etcd_up hb-etcd
serve a $(cluster_flags hb-etcd); a_pid=$SPID; a_addr=$ADDR
serve b $(cluster_flags hb-etcd)
serve c $(cluster_flags hb-etcd)
bench "$a_addr" "$a_pid" "$work/hb.json" & bpid=$!
stable
t0=$(python3 -c "print(sum(sum(int(x) for x in open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()[11:13]) for p in '${ETCD_PIDS[*]}'.split()))")
sleep 20
t1=$(python3 -c "print(sum(sum(int(x) for x in open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()[11:13]) for p in '${ETCD_PIDS[*]}'.split()))")
wait "$bpid"
python3 -c "print(f'heartbeat cluster, $MEMBERS members pinging: etcd CPU {($t1 - $t0) / 100 / 20:.4f} cores')"
report "heartbeat cluster (same run)" "$work/hb.json"
fi
if [[ " $PARTS " == *" fleet "* ]]; then
echo "== fleet: 3 replicas x $MEMBERS members (one bench each), then the same fleet as etcd leases, one 3-member etcd each"
etcd_up fleet-hb
serve a $(cluster_flags fleet); a_pid=$SPID; a_addr=$ADDR
serve b $(cluster_flags fleet); b_pid=$SPID; b_addr=$ADDR
serve c $(cluster_flags fleet); c_pid=$SPID; c_addr=$ADDR
bench "$a_addr" "$a_pid" "$work/fa.json" fleet-a & ba=$!
bench "$b_addr" "$b_pid" "$work/fb.json" fleet-b & bb=$!
bench "$c_addr" "$c_pid" "$work/fc.json" fleet-c & bc=$!
stable; r0=$(revision); t0=$(etcd_ticks); sleep 20; t1=$(etcd_ticks); r1=$(revision)
wait "$ba" "$bb" "$bc"
python3 -c "print(f'heartbeat cluster, 3 x $MEMBERS members pinging at 1 Hz: etcd CPU {($t1 - $t0) / 100 / 20:.4f} cores, etcd writes {($r1 - $r0) / 20:.1f}/s')"
for x in a b c; do report "replica $x" "$work/f$x.json"; done
kill "$a_pid" "$b_pid" "$c_pid"; wait "$a_pid" "$b_pid" "$c_pid" 2>/dev/null || true
etcd_down
etcd_up fleet-leases
echo -n "etcd leases, $((3 * MEMBERS)) members: "
target/release/examples/etcd_leases --etcd "$ENDPOINTS" --members "$((3 * MEMBERS))" --ttl 3s --interval 1s \
  --duration 30s --etcd-pids "$(IFS=,; echo "${ETCD_PIDS[*]}")" || echo "(failed)"
etcd_down
fi
if [[ " $PARTS " == *" lifecycle "* ]]; then
LIFE=${LIFE:-2000}
echo "== lifecycle: etcd writes per member, $LIFE members, 3 replicas (retention 1 s)"
etcd_up life
serve a $(cluster_flags life); a_pid=$SPID; a_addr=$ADDR
serve b $(cluster_flags life); b_pid=$SPID
serve c $(cluster_flags life); c_pid=$SPID
r0=$(revision)
# Join, ping 10 s, Leave; removal 1 s after.
"$HB" bench --server "$a_addr" --service life-left --members "$LIFE" --connections 20 --interval 1s \
  --duration 10s --json --quiet >"$work/life-left.json"
stable; r1=$(revision)
# Join, ping, then half of them hang: SUSPECT, DEAD, removal; the rest Leave.
"$HB" bench --server "$a_addr" --service life-dead --members "$LIFE" --connections 20 --interval 1s \
  --timeout 3s --duration 15s --hung 0.5 --json --quiet >"$work/life-dead.json"
stable; r2=$(revision)
python3 - "$LIFE" "$r0" "$r1" "$r2" <<'PY'
import sys
n, r0, r1, r2 = (int(x) for x in sys.argv[1:])
left = (r1 - r0) / n
# The second run: half as the first (join, leave, removal), half silent.
dead = ((r2 - r1) - left * n / 2) / (n / 2)
print(f"join, ping 10 s, leave, removal: {left:.2f} etcd writes per member")
print(f"join, ping, silent: SUSPECT, DEAD, removal: {dead:.2f} etcd writes per member")
PY
kill "$a_pid" "$b_pid" "$c_pid"; wait "$a_pid" "$b_pid" "$c_pid" 2>/dev/null || true
etcd_down
fi
