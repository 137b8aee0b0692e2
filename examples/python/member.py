#!/usr/bin/env python3
"""A heartbeat member in Python, with nothing but grpcio.

Joins, pings every agreed interval, keeps its own deadline on the server (no
answer within the agreed timeout: the server is lost, reconnect with jittered
backoff), and sends Leave on SIGTERM or SIGINT.

    python member.py --server 127.0.0.1:50051 --service orders --instance orders-1

Prints one line per event on stdout: `joined session=N interval=S timeout=S`,
`interval=S` (the server changed it in a Pong: adopted), `server lost: ...`,
`drained`, `left`.
"""

import argparse
import queue
import random
import signal
import sys
import threading
import time

import grpc

from heartbeat_stubs import pb, pb_grpc

END = object()


def say(line):
    print(line, flush=True)


class Session:
    """One Beat stream: requests through a queue, responses read on a thread."""

    def __init__(self, stub, join):
        self.requests = queue.Queue()
        self.responses = queue.Queue()
        self.requests.put(pb.BeatRequest(join=join))
        self.call = stub.Beat(iter(self.requests.get, END))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for msg in self.call:
                self.responses.put(msg)
            self.responses.put(END)
        except grpc.RpcError as e:
            self.responses.put(e)

    def send(self, **kind):
        self.requests.put(pb.BeatRequest(**kind))

    def next(self, timeout):
        """The next message, END, an RpcError, or None on timeout."""
        try:
            return self.responses.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None

    def close(self):
        self.requests.put(END)
        self.call.cancel()


def client_interval(told, timeout):
    """The interval to ping at, whatever the server says: within 100 ms..60 s
    and at most half the timeout (SPEC §5)."""
    return max(0.1, min(max(0.1, min(told, 60.0)), timeout / 2))


def run_session(stub, args, stopping):
    """Returns 'left', 'lost' or 'drained'."""
    join = pb.Join(service=args.service, instance=args.instance)
    join.interval.FromMilliseconds(int(args.interval * 1000))
    s = Session(stub, join)
    try:
        welcome = s.next(args.timeout)
        if welcome is None or welcome is END or isinstance(welcome, grpc.RpcError) or not welcome.HasField("welcome"):
            say(f"server lost: no Welcome ({welcome if isinstance(welcome, grpc.RpcError) else 'timeout'})")
            return "lost"
        w = welcome.welcome
        timeout = w.timeout.ToTimedelta().total_seconds() or args.timeout
        interval = client_interval(w.interval.ToTimedelta().total_seconds(), timeout)
        say(f"joined session={w.session} interval={interval} timeout={timeout}")
        seq, next_ping, last_heard = 0, time.monotonic(), time.monotonic()
        while not stopping.is_set():
            now = time.monotonic()
            if now >= next_ping:
                seq += 1
                ping = pb.Ping(seq=seq, status=pb.MEMBER_STATUS_SERVING)
                ping.sent_at.GetCurrentTime()
                s.send(ping=ping)
                next_ping += interval
            wait = min(next_ping, last_heard + timeout, now + 0.1) - now
            msg = s.next(wait)
            if msg is None:
                if time.monotonic() - last_heard > timeout:
                    say(f"server lost: no answer within {timeout}s")
                    return "lost"
                continue
            if msg is END or isinstance(msg, grpc.RpcError):
                detail = msg.details() if isinstance(msg, grpc.RpcError) else "stream ended"
                say(f"server lost: {detail}")
                return "lost"
            last_heard = time.monotonic()
            if msg.HasField("pong") and msg.pong.HasField("interval"):
                interval = client_interval(msg.pong.interval.ToTimedelta().total_seconds(), timeout)
                say(f"interval={interval}")
            if msg.HasField("drain"):
                say("drained")
                time.sleep(msg.drain.reconnect_after.ToTimedelta().total_seconds())
                return "drained"
        s.send(leave=pb.Leave(reason="shutting down"))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            msg = s.next(deadline - time.monotonic())
            if msg is END:
                say("left")
                break
            if msg is None or isinstance(msg, grpc.RpcError):
                say("leave not confirmed; the server's deadline decides")
                break
        return "left"
    finally:
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--service", required=True)
    p.add_argument("--instance", required=True)
    p.add_argument("--interval", type=float, default=1.0, help="requested interval, seconds")
    p.add_argument("--timeout", type=float, default=3.0, help="wait for Welcome, seconds")
    args = p.parse_args()

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    failures = 0
    while not stopping.is_set():
        # A fresh channel per session: a lost server may be a half-open
        # connection that the old channel would keep reusing.
        with grpc.insecure_channel(args.server) as channel:
            outcome = run_session(pb_grpc.HeartbeatStub(channel), args, stopping)
        if outcome == "left":
            break
        failures = failures + 1 if outcome == "lost" else 0
        # gRPC connection backoff: 100 ms x 1.6^n, +-20 %, capped at 10 s.
        delay = min(0.1 * 1.6 ** max(failures - 1, 0), 10.0) * random.uniform(0.8, 1.2)
        stopping.wait(delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
