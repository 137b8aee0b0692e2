#!/usr/bin/env python3
"""What the HTTP API costs the server next to the gRPC reads it mirrors
(BENCHMARKS.md "Status page and HTTP API").

One release `heartbeat serve --http-listen` on loopback holds a fleet of
members (`heartbeat bench` processes, 60 s interval, so pings cost little).
Then, alternating in rounds, one read of the whole table by each way:

- `ListMembers` over gRPC (grpcio, the response kept as bytes),
- `GET /api/v1/members` (proto3 JSON),
- `WatchMembers` from 0 until SNAPSHOT_END over gRPC,
- `GET /api/v1/events` until SNAPSHOT_END (Server-Sent Events).

Each figure is the server's CPU time for a batch of BATCH reads (from
/proc/PID/stat, minus what the server spends idle with the same fleet over
the same wall time) divided by BATCH, and the client's wall time per read.
Medians over ROUNDS rounds.

    cargo build --release --bins
    target/interop-venv/bin/python scripts/bench-http.py [MEMBERS] [ROUNDS]
"""

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from http_server import serve

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("HEARTBEAT_BIN", str(ROOT / "target" / "release" / "heartbeat"))
BATCH = 5
TICK = os.sysconf("SC_CLK_TCK")


def stubs():
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="hb-stubs-")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    assert protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--python_out={out}",
                        str(ROOT / "proto" / "heartbeat" / "v1" / "heartbeat.proto")]) == 0
    sys.path.insert(0, out)
    from heartbeat.v1 import heartbeat_pb2

    return heartbeat_pb2


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main():
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    pb = stubs()
    server, grpc_addr, http_addr = serve(BIN)
    fleet = []
    per = max(1, members // 10)
    for k in range(0, members, per):
        fleet.append(subprocess.Popen(
            [BIN, "bench", "--server", grpc_addr, "--service", f"svc-{k // per}", "--members",
             str(min(per, members - k)), "--connections", "4", "--interval", "60s", "--duration", "1h",
             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    host, port = http_addr.rsplit(":", 1)
    channel = grpc.insecure_channel(grpc_addr, options=[("grpc.max_receive_message_length", 1 << 28)])
    list_raw = channel.unary_unary("/heartbeat.v1.Heartbeat/ListMembers",
                                   request_serializer=pb.ListMembersRequest.SerializeToString,
                                   response_deserializer=None)
    watch = channel.unary_stream("/heartbeat.v1.Heartbeat/WatchMembers",
                                 request_serializer=pb.WatchMembersRequest.SerializeToString,
                                 response_deserializer=pb.MemberEvent.FromString)
    try:
        deadline = time.monotonic() + 300
        while len(pb.ListMembersResponse.FromString(list_raw(pb.ListMembersRequest())).members) < members:
            assert time.monotonic() < deadline, "the fleet did not join"
            time.sleep(0.5)

        def grpc_list():
            return len(list_raw(pb.ListMembersRequest(), timeout=60))

        def http_list():
            c = http.client.HTTPConnection(host, int(port), timeout=60)
            c.request("GET", "/api/v1/members")
            n = len(c.getresponse().read())
            c.close()
            return n

        def grpc_watch():
            call = watch(pb.WatchMembersRequest(), timeout=60)
            n = 0
            for e in call:
                n += 1
                if e.type == pb.EVENT_TYPE_SNAPSHOT_END:
                    call.cancel()
                    return n
            raise AssertionError("no SNAPSHOT_END")

        def http_watch():
            c = http.client.HTTPConnection(host, int(port), timeout=60)
            c.request("GET", "/api/v1/events")
            r = c.getresponse()
            n = 0
            for line in r:
                if line.startswith(b"data:"):
                    n += 1
                    if b"EVENT_TYPE_SNAPSHOT_END" in line:
                        c.sock.close()
                        return n
            raise AssertionError("no SNAPSHOT_END")

        ways = {"ListMembers (gRPC)": grpc_list, "GET /api/v1/members": http_list,
                "WatchMembers snapshot (gRPC)": grpc_watch, "GET /api/v1/events snapshot (SSE)": http_watch}
        pid = server.pid
        t0, c0 = time.monotonic(), cpu_seconds(pid)
        time.sleep(3)
        idle = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        results = {name: ([], []) for name in ways}
        for _ in range(rounds):
            for name, read in ways.items():
                t, c = time.monotonic(), cpu_seconds(pid)
                for _ in range(BATCH):
                    read()
                wall = time.monotonic() - t
                cpu = cpu_seconds(pid) - c - idle * wall
                results[name][0].append(cpu / BATCH * 1000)
                results[name][1].append(wall / BATCH * 1000)
        size = {"ListMembers (gRPC)": grpc_list(), "GET /api/v1/members": http_list()}
        print(f"{members} members, {rounds} rounds of {BATCH} reads each way, idle server {idle * 1000:.1f} ms CPU/s")
        print("| read | server CPU ms per read (median) | wall ms per read (median) | bytes |")
        print("|---|---|---|---|")
        for name, (cpu, wall) in results.items():
            print(f"| {name} | {statistics.median(cpu):.1f} | {statistics.median(wall):.1f} | {size.get(name, '')} |")
    finally:
        channel.close()
        for p in fleet:
            p.kill()
            p.wait()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
