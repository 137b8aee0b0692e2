#!/usr/bin/env python3
"""A heartbeat member in Python, with nothing but grpcio.

Joins, pings every agreed interval, keeps its own deadline on the server (no
answer within the agreed timeout: the server is lost, reconnect with jittered
backoff), and sends Leave on SIGTERM or SIGINT. With `--endpoint`, gRPC
clients on `xds:///orders` are routed to it while it is live (SPEC §8).

    python member.py --server 127.0.0.1:50051 --service orders --instance orders-1 \
        --endpoint 10.0.0.7:8080

The flags mean what they mean for `heartbeat beat`: `--interval` and
`--timeout` are the requested ping interval and liveness timeout (durations
such as 250ms, 1s, 2m; the server may clamp them), `--max-retries` the failed
attempts in a row before the member reports itself offline (it keeps
retrying). Bad arguments exit 2 with a usage line, before any connection.

Prints one line per event on stdout: `joined session=N interval=S timeout=S`,
`interval=S` (the server changed it in a Pong: adopted), `server lost: ...`,
`offline after N failed attempts`, `drained`, `left`.
"""

import argparse
import queue
import random
import re
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


DEFAULT_TIMEOUT = 3.0  # the server's default, until a Welcome says otherwise
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text):
    """`250ms`, `1s`, `2m`, `1m30s` -> seconds, as `heartbeat beat` reads them."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (use e.g. 250ms, 1s, 2m)")
    seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than zero")
    return seconds


def name(chars, what):
    """A name of 1-128 characters from `chars` (SPEC §2)."""
    def check(text):
        if not re.fullmatch(f"[{chars}]{{1,128}}", text):
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {what}: 1-128 characters of {chars}")
        return text
    return check


def server(text):
    """`host:port` or `http://host:port` (this example speaks plaintext)."""
    addr = text[len("http://"):] if text.startswith("http://") else text
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use host:port (port 1-65535)")
    return addr


def endpoint(text):
    """`host:port` where this member serves its own traffic (the server
    checks it in full and answers INVALID_ARGUMENT naming join.endpoint)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use host:port (port 1-65535)")
    return text


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number, at least 1")
    return int(text)


def client_interval(told, timeout):
    """The interval to ping at, whatever the server says: within 100 ms..60 s
    and at most half the timeout (SPEC §5)."""
    return max(0.1, min(max(0.1, min(told, 60.0)), timeout / 2))


def run_session(stub, args, stopping):
    """Returns 'left', 'lost' or 'drained'."""
    join = pb.Join(service=args.service, instance=args.instance, endpoint=args.endpoint or "")
    if args.interval:
        join.interval.FromMilliseconds(int(args.interval * 1000))
    if args.timeout:
        join.timeout.FromMilliseconds(int(args.timeout * 1000))
    wait = args.timeout or DEFAULT_TIMEOUT
    s = Session(stub, join)
    try:
        welcome = s.next(wait)
        if welcome is None or welcome is END or isinstance(welcome, grpc.RpcError) or not welcome.HasField("welcome"):
            say(f"server lost: no Welcome ({welcome if isinstance(welcome, grpc.RpcError) else 'timeout'})")
            return "lost"
        w = welcome.welcome
        timeout = w.timeout.ToTimedelta().total_seconds() or wait
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
    p.add_argument("--server", type=server, default="127.0.0.1:50051", help="host:port")
    p.add_argument("--service", required=True, type=name("A-Za-z0-9._-", "service name"))
    p.add_argument("--instance", required=True, type=name("A-Za-z0-9._:-", "instance name"))
    p.add_argument("--interval", type=duration, help="requested ping interval, e.g. 500ms (the server may clamp it)")
    p.add_argument("--timeout", type=duration, help="requested liveness timeout, e.g. 3s (the server may clamp it)")
    p.add_argument("--endpoint", type=endpoint, help="host:port where this member serves; xDS clients are routed there")
    p.add_argument("--max-retries", type=positive, default=3, help="failed attempts in a row before reporting offline")
    args = p.parse_args()
    if args.service == "grpc.health.v1.Health" or args.service.startswith("heartbeat."):
        p.error(f"--service {args.service!r}: that name is reserved")

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
        if failures == args.max_retries:
            say(f"offline after {failures} failed attempts")
        # gRPC connection backoff: 100 ms x 1.6^n, +-20 %, capped at 10 s.
        delay = min(0.1 * 1.6 ** max(failures - 1, 0), 10.0) * random.uniform(0.8, 1.2)
        stopping.wait(delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
