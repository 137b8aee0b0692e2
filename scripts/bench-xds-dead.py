#!/usr/bin/env python3
"""Discovery benchmark (SPEC §8): time from a member's DEAD to the last call
its backend receives, for stock xDS clients (grpcio and @grpc/grpc-js-xds,
alternating round by round).

Three backends (gRPC servers in this process, noting the monotonic time of
every call) are members of `web` through `heartbeat beat` agents with
`--endpoint`; one client process per kind calls `xds:///web` back to back
(examples/python/xds_client.py, examples/node/xds-client.js). A round
freezes one agent (SIGSTOP: its backend keeps serving), notes when
`heartbeat watch` prints the member's DEAD, watches for one more second,
and reports the last call the backend got relative to that DEAD (negative:
before the DEAD was printed), then resumes the agent and waits for calls to
come back.

    target/interop-venv/bin/python scripts/bench-xds-dead.py \
        --heartbeat target/release/heartbeat --rounds 5

One JSON line per round and client, then one summary line per client.
"""

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent import futures
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
WAIT = 20.0


class Calls:
    def __init__(self):
        self.lock = threading.Lock()
        self.at = defaultdict(list)

    def note(self, name):
        with self.lock:
            self.at[name].append(time.monotonic())

    def last(self, name):
        with self.lock:
            return self.at[name][-1] if self.at[name] else None

    def count_after(self, name, t):
        with self.lock:
            return sum(1 for x in self.at[name] if x > t)


def backend(name, calls):
    def who(_req, _ctx):
        calls.note(name)
        return name.encode()

    handler = grpc.method_handlers_generic_handler(
        "demo.v1.Who", {"Name": grpc.unary_unary_rpc_method_handler(who)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def lines_of(proc, q, stamp=False):
    for line in proc.stdout:
        q.put((time.monotonic(), line) if stamp else line)
    q.put(None)


class Client:
    """An xDS client process kept busy: a new batch as soon as one ends."""

    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.q = queue.Queue()
        threading.Thread(target=lines_of, args=(self.proc, self.q), daemon=True).start()
        self.running = True
        threading.Thread(target=self._feed, daemon=True).start()

    def _feed(self):
        while self.running:
            self.proc.stdin.write("10\n")
            self.proc.stdin.flush()
            if self.q.get(timeout=WAIT) is None:
                return

    def stop(self):
        self.running = False
        self.proc.kill()


def until(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise SystemExit(f"{what}: not within {timeout}s")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--heartbeat", default=str(ROOT / "target" / "release" / "heartbeat"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--interval", default="200ms")
    p.add_argument("--timeout", default="1s")
    args = p.parse_args()
    hb = args.heartbeat

    server = subprocess.Popen([hb, "serve", "--listen", "127.0.0.1:0", "--log-format", "json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addr = None
    for line in server.stderr:
        rec = json.loads(line)
        if rec.get("message") == "listening":
            addr = rec["addr"]
            break
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

    calls = Calls()
    names = ["b1", "b2", "b3"]
    backends = {n: backend(n, calls) for n in names}
    agents = {}
    for n in names:
        agents[n] = subprocess.Popen(
            [hb, "beat", "--server", addr, "--service", "web", "--instance", n, "--endpoint",
             f"127.0.0.1:{backends[n][1]}", "--interval", args.interval, "--timeout", args.timeout],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watch = subprocess.Popen([hb, "watch", "--server", addr, "--service", "web", "--json"],
                             stdout=subprocess.PIPE, text=True)
    events = queue.Queue()
    threading.Thread(target=lines_of, args=(watch, events, True), daemon=True).start()

    tmp = tempfile.mkdtemp()
    boot = Path(tmp) / "xds.json"
    boot.write_text(subprocess.run([hb, "xds-bootstrap", "--server", addr], capture_output=True, text=True,
                                   check=True).stdout)
    env = dict(os.environ, GRPC_XDS_BOOTSTRAP=str(boot))
    kinds = {
        "grpcio": [sys.executable, str(ROOT / "examples" / "python" / "xds_client.py"), "web"],
        "grpc-js-xds": ["node", str(ROOT / "examples" / "node" / "xds-client.js"), "web"],
    }
    results = defaultdict(list)
    try:
        for rnd in range(args.rounds):
            for kind, cmd in kinds.items():
                client = Client(cmd, env)
                try:
                    t0 = time.monotonic()
                    until(lambda: all(calls.count_after(n, t0) > 0 for n in names), "calls reach all three")
                    victim = names[rnd % 3]
                    agents[victim].send_signal(signal.SIGSTOP)
                    while True:
                        item = events.get(timeout=WAIT)
                        assert item is not None, "watch ended"
                        at, line = item
                        e = json.loads(line)
                        if e.get("type") == "DEAD" and e.get("instance") == victim:
                            t_dead = at
                            break
                    time.sleep(1.0)  # an observation window, not synchronisation
                    last = calls.last(victim)
                    after = calls.count_after(victim, t_dead)
                    others = sum(calls.count_after(n, t_dead) for n in names if n != victim)
                    r = {"round": rnd, "client": kind, "victim": victim,
                         "last_call_after_dead_ms": round((last - t_dead) * 1e3, 2),
                         "calls_after_dead": after, "calls_to_others_in_window": others}
                    print(json.dumps(r), flush=True)
                    results[kind].append(r)
                    agents[victim].send_signal(signal.SIGCONT)
                    t1 = time.monotonic()
                    until(lambda: calls.count_after(victim, t1) > 0, f"{victim} gets calls again")
                finally:
                    client.stop()
        for kind, rs in results.items():
            ms = sorted(r["last_call_after_dead_ms"] for r in rs)
            print(json.dumps({"client": kind, "rounds": len(rs), "median_ms": statistics.median(ms),
                              "max_ms": ms[-1], "calls_after_dead_max": max(r["calls_after_dead"] for r in rs)}),
                  flush=True)
    finally:
        for a in agents.values():
            a.send_signal(signal.SIGCONT)
            a.terminate()
        watch.terminate()
        server.terminate()
        for s, _ in backends.values():
            s.stop(0)


if __name__ == "__main__":
    main()
