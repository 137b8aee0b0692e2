#!/usr/bin/env python3
"""Instructions per ping, counted by callgrind: `heartbeat serve` against
the bare tonic floor (examples/baseline.rs), at a fixed load.

Instruction counts do not move with the machine's noise the way CPU seconds
do: the same binary, inputs and fleet give the same count on a loaded
machine. Each server runs under `valgrind --tool=callgrind` twice, with the
same fleet (`heartbeat bench`, native, MEMBERS members on CONNS connections,
1 s interval) measured for SHORT and then LONG seconds. Start-up, the joins
and the shutdown are the same in both runs, so

    instructions per ping = (I_long - I_short) / (pongs_long - pongs_short)

counts only the steady state: pings, pongs, timers, everything the server
does per second of a live fleet, divided by its pings. The same difference,
function by function (inclusive), says where the instructions go.

    cargo build --release --bin heartbeat --example baseline
    python3 scripts/bench-instructions.py [--members 200] [--top 25]

Prints a Markdown table (floor, heartbeat, ratio) and the top functions of
each by inclusive instructions per ping. Raw callgrind files go to
target/bench/callgrind/. User-space instructions only (callgrind does not
see the kernel).
"""

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "target" / "bench" / "callgrind"
HB = ROOT / "target" / "release" / "heartbeat"
BASE = ROOT / "target" / "release" / "examples" / "baseline"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cmd(kind, port):
    if kind == "floor":
        return [str(BASE), f"127.0.0.1:{port}"]
    return [str(HB), "serve", "--listen", f"127.0.0.1:{port}", "--log-format", "json",
            "--max-join-rate", "1000000", "--drain", "100ms"]


def run(kind, seconds, args):
    """One server under callgrind, one bench against it: (callgrind file, pongs)."""
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{kind}-{args.members}-{seconds}s.out"
    log = OUT / f"{kind}-{args.members}-{seconds}s.log"
    port = free_port()
    with open(log, "w") as err:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
             "--collect-systime=no", *server_cmd(kind, port)],
            stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while "listening" not in log.read_text():
            assert server.poll() is None, f"{kind} exited: see {log}"
            assert time.monotonic() < deadline, f"{kind} did not start under valgrind"
            time.sleep(0.2)
        bench = subprocess.run(
            [str(HB), "bench", "--server", f"127.0.0.1:{port}", "--members", str(args.members),
             "--connections", str(args.connections), "--interval", "1s", "--timeout", "10s",
             "--duration", f"{seconds}s", "--json", "--quiet"],
            capture_output=True, text=True, timeout=seconds + 300)
        report = json.loads(bench.stdout)
        assert report["joined"] == args.members, report
        assert report["false_expiries"] == 0, f"{kind} could not keep up under valgrind: {report}"
    finally:
        server.terminate()
        server.wait(timeout=300)
    return out, report["pongs"]


LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(?:\*\s+)?(.+?)(?:\s+\[[^\]]*\])?$")


def costs(path, inclusive):
    """Total instructions and instructions by function (inclusive of what
    each calls, or its own alone)."""
    text = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                           "--threshold=100", str(path)],
                          capture_output=True, text=True, check=True).stdout
    total = None
    functions = {}
    for line in text.splitlines():
        if total is None and line.rstrip().endswith("PROGRAM TOTALS"):
            total = int(line.split()[0].replace(",", ""))
            continue
        m = LINE.match(line)
        if m and ":" in m.group(2):
            name = m.group(2).split(":", 1)[1] if m.group(2).startswith(("???", "/")) else m.group(2)
            name = re.sub(r"::h[0-9a-f]{16}$", "", name)
            functions[name] = functions.get(name, 0) + int(m.group(1).replace(",", ""))
    assert total is not None, f"no PROGRAM TOTALS in {path}"
    return total, functions


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--short", type=int, default=10)
    p.add_argument("--long", type=int, default=20)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--floor", type=float, help="instructions per ping of the floor, from an earlier run: "
                   "measure heartbeat alone (the floor's count repeats to within 0.5 %%)")
    args = p.parse_args()
    for binary in (HB, BASE):
        assert binary.exists(), f"build it first: cargo build --release --bin heartbeat --example baseline ({binary})"
    per_ping = {}
    inclusive = {}
    own = {}
    kinds = ("heartbeat",) if args.floor else ("floor", "heartbeat")
    for kind in kinds:
        (short_out, short_pongs), (long_out, long_pongs) = run(kind, args.short, args), run(kind, args.long, args)
        pings = long_pongs - short_pongs
        assert pings > 0, (short_pongs, long_pongs)
        for table, incl in ((inclusive, True), (own, False)):
            (i_short, f_short), (i_long, f_long) = costs(short_out, incl), costs(long_out, incl)
            table[kind] = {name: (f_long.get(name, 0) - f_short.get(name, 0)) / pings for name in f_long}
        per_ping[kind] = (i_long - i_short) / pings
        print(f"{kind}: {i_short:,} / {i_long:,} instructions, {short_pongs:,} / {long_pongs:,} pongs",
              file=sys.stderr)
    if args.floor:
        per_ping["floor"] = args.floor
        inclusive["floor"] = own["floor"] = {}
    floor, hb = per_ping["floor"], per_ping["heartbeat"]
    print(f"{args.members} members on {args.connections} connections, 1 s interval, "
          f"{args.long} s - {args.short} s runs under callgrind\n")
    print("| server | instructions per ping | × floor |")
    print("|---|---|---|")
    print(f"| bare tonic floor | {floor:,.0f} | 1.00 |")
    print(f"| heartbeat serve | {hb:,.0f} | {hb / floor:.2f} |")
    def table(title, rows):
        print(f"\n{title}\n")
        print("| instructions per ping | function |")
        print("|---|---|")
        for name, cost in rows[:args.top]:
            print(f"| {cost:,.0f} | `{name[:140]}` |")

    for kind in kinds:
        # The runtime's own frames hold everything; leave them out.
        rows = [kv for kv in inclusive[kind].items() if kv[1] < 0.9 * per_ping[kind]]
        table(f"Top functions of {kind}, inclusive instructions per ping (below 90 % of the total):",
              sorted(rows, key=lambda kv: -kv[1]))
    for kind in kinds:
        table(f"Top functions of {kind}, own instructions per ping:",
              sorted(own[kind].items(), key=lambda kv: -kv[1]))
    names = set(own["floor"]) | set(own["heartbeat"])
    delta = {n: own["heartbeat"].get(n, 0) - own["floor"].get(n, 0) for n in names}
    table("Where heartbeat spends more than the floor (own instructions per ping, heartbeat - floor):",
          sorted(delta.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    main()
