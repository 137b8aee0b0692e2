#!/usr/bin/env python3
"""Markdown tables of scripts/bench.sh's JSON reports (target/bench/*.json).

    python3 scripts/bench_tables.py target/bench PIN PART... -- SIZE...
"""

import json
import re
import statistics
import sys
from pathlib import Path


def load(out, name):
    try:
        return json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def row(r):
    """The common columns of one bench report."""
    rtt, late = r["rtt_us"], r["detection_lateness_ms"]
    cpu = r.get("server_cpu_us_per_ping")
    rss = r.get("server_rss_per_member_bytes")
    joined = f"{r['joined']}" + (f" ({r['refused']} refused)" if r.get("refused") else "")
    return (f"{joined} | {r['pings_per_sec']:.0f} | {cpu:.1f} | {rss / 1024:.2f} | "
            f"{rtt['p50'] / 1e3:.2f} / {rtt['p99'] / 1e3:.2f} / {rtt['p999'] / 1e3:.2f} | "
            f"{r['false_expiries']} | {r['hung_detected']}/{r['hung']} | "
            f"{late['p50']:.2f} / {late['p99']:.2f} | {r['join_time_ms']:.0f}")


HEAD = ("| joined | pings/s | CPU µs/ping | RSS KiB/member | RTT p50 / p99 / p99.9 ms | "
        "false expiries | hung detected | lateness p50 / p99 ms | join ms |")
RULE = "|---|---|---|---|---|---|---|---|---|"


def scale(out, sizes):
    print("### Scaling: baseline vs heartbeat serve\n")
    print("| members | server | run |" + HEAD[1:])
    print("|---|---|---" + RULE)
    summary = []
    for n in sizes:
        med = {}
        for name in ("baseline", "heartbeat"):
            runs = sorted(out.glob(f"scale-{name}-{n}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
            cpus, rsss = [], []
            for p in runs:
                r = load(out, p.stem)
                k = p.stem.rsplit("-", 1)[1]
                if not r:
                    print(f"| {n} | {name} | {k} | failed: see {p.stem}.log |")
                    continue
                print(f"| {n} | {name} | {k} | {row(r)} |")
                cpus.append(r["server_cpu_us_per_ping"])
                rsss.append(r["server_rss_per_member_bytes"])
            if cpus:
                med[name] = (statistics.median(cpus), statistics.median(rsss), min(cpus), max(cpus))
        if len(med) == 2:
            b, h = med["baseline"], med["heartbeat"]
            summary.append((n, b, h))
    print("\nMedians of the runs above:\n")
    print("| members | baseline CPU µs/ping (min–max) | heartbeat CPU µs/ping (min–max) | CPU ratio | "
          "baseline RSS KiB/member | heartbeat RSS KiB/member | RSS ratio |")
    print("|---|---|---|---|---|---|---|")
    for n, b, h in summary:
        print(f"| {n} | {b[0]:.1f} ({b[2]:.1f}–{b[3]:.1f}) | {h[0]:.1f} ({h[2]:.1f}–{h[3]:.1f}) | "
              f"**{h[0] / b[0]:.2f}×** | {b[1] / 1024:.2f} | {h[1] / 1024:.2f} | **{h[1] / b[1]:.2f}×** |")
    print()


def single(out, title, names):
    print(f"### {title}\n")
    print("| run |" + HEAD[1:] + " slowed |")
    print("|---" + RULE + "---|")
    for name in names:
        r = load(out, name)
        if r:
            print(f"| {name} | {row(r)} | {r.get('slowed', 0)} |")
        else:
            print(f"| {name} | failed: see {name}.log |")
    print()


def watch(out):
    print("### Health Watch fan-out over the network\n")
    r = load(out, "watch")
    if not r or not r.get("watch"):
        print("failed: see watch.log\n")
        return
    w = r["watch"]
    f = w["fanout_ms"]
    print("| members | watchers | flips | delivered | fan-out p50 / p99 / max ms |")
    print("|---|---|---|---|---|")
    print(f"| {r['joined']} | {w['watchers']} | {w['flips']} | {w['deliveries']}/{w['flips'] * w['watchers']} | "
          f"{f['p50']:.1f} / {f['p99']:.1f} / {f['max']:.1f} |\n")


def health(out):
    print("### Health/Check throughput (h2load)\n")
    try:
        text = (out / "health.txt").read_text()
    except OSError:
        print("not run\n")
        return
    runs = re.findall(r"^(tonic-health|heartbeat)-(\d+): finished in [^,]+, ([\d.]+) req/s", text, re.M)
    rates = {}
    for name, k, rate in runs:
        rates.setdefault(k, {})[name] = float(rate)
    print("| round | tonic-health req/s | heartbeat req/s | ratio |")
    print("|---|---|---|---|")
    for k in sorted(rates, key=int):
        t, h = rates[k].get("tonic-health", 0), rates[k].get("heartbeat", 0)
        print(f"| {k} | {t:,.0f} | {h:,.0f} | {h / t if t else float('nan'):.2f}× |")
    t = statistics.median(r.get("tonic-health", 0) for r in rates.values()) if rates else 0
    h = statistics.median(r.get("heartbeat", 0) for r in rates.values()) if rates else 0
    print(f"| **median** | {t:,.0f} | {h:,.0f} | **{h / t if t else float('nan'):.2f}×** |\n")


def peers(out):
    """The same fleet against the bare floor, heartbeat and etcd leases."""
    print("### Peers: the same fleet, the same run\n")
    rows = {"baseline": [], "heartbeat": [], "etcd": []}
    for name in rows:
        for p in sorted(out.glob(f"peers-{name}-*.json")):
            r = load(out, p.stem)
            if not r:
                continue
            if name == "etcd":
                late = r["detection_lateness_ms"]
                rows[name].append((r["etcd_cpu_us_per_renewal"], r["etcd_rss_per_member_bytes"], late["p99"],
                                   r["granted_in_s"], r["false_expiries"] + r["false_expiries_while_granting"],
                                   f"{r['hung_detected']}/{r['hung']}"))
            else:
                rows[name].append((r["server_cpu_us_per_ping"], r["server_rss_per_member_bytes"],
                                   r["detection_lateness_ms"]["p99"], r["join_time_ms"] / 1e3, r["false_expiries"],
                                   f"{r['hung_detected']}/{r['hung']}"))
    print("| peer | runs | CPU µs per renewal (median) | RSS KiB per member | lateness p99 ms | cold start s | "
          "false expiries | hung detected |")
    print("|---|---|---|---|---|---|---|---|")
    label = {"baseline": "bare tonic floor", "heartbeat": "heartbeat serve",
             "etcd": "etcd 3.4, one lease + key per member"}
    for name, rs in rows.items():
        if not rs:
            print(f"| {label[name]} | 0 | failed: see peers-{name}-*.log | | | | | |")
            continue
        med = lambda i: statistics.median(x[i] for x in rs)  # noqa: E731
        print(f"| {label[name]} | {len(rs)} | {med(0):.1f} ({min(x[0] for x in rs):.1f}–{max(x[0] for x in rs):.1f}) | "
              f"{med(1) / 1024:.2f} | {med(2):.1f} | {med(3):.2f} | {sum(x[4] for x in rs)} | "
              f"{', '.join(x[5] for x in rs)} |")
    print()


def main():
    out, pin = Path(sys.argv[1]), sys.argv[2] == "1"
    sep = sys.argv.index("--")
    parts, sizes = sys.argv[3:sep], sys.argv[sep + 1:]
    print(f"Pinned (server CPU 0, bench CPU 1): {'yes' if pin else 'no'}\n")
    for part in parts:
        if part == "scale":
            scale(out, sizes)
        elif part == "long":
            single(out, "Long run", sorted(p.stem for p in out.glob("long-*.json")))
        elif part == "overload":
            single(out, "Overload: --max-ping-rate 5000, 10k members at 1 s (timeout 3 s)", ["overload"])
        elif part == "watch":
            watch(out)
        elif part == "health":
            health(out)
        elif part == "peers":
            peers(out)


main()
