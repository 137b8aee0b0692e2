"""Discovery (SPEC §8) with stock clients: grpcio and @grpc/grpc-js-xds dial
`xds:///web` through the bootstrap `heartbeat xds-bootstrap` prints, and are
routed round robin to the live, SERVING members only. Members are real
`heartbeat beat` agents in front of real backends (examples/python/
who_server.py, each its own process); each client is its own process (an
xDS client is per process) taking call counts on stdin.

Routing must follow liveness, not connection errors: the backend of a member
that turns NOT_SERVING, leaves or goes DEAD keeps running and accepting
calls, and still gets none once the update has reached the client.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

from conftest import ROOT, Lines, Server, heartbeat_bin

WAIT = 10.0
EXAMPLES = ROOT / "examples"


class Backend:
    """who_server.py and the agent that makes it a member of `web`."""

    def __init__(self, server, name, workdir, host="127.0.0.1"):
        self.name = name
        self.server = server
        self.up = workdir / f"{name}.up"
        self.up.touch()
        self.proc = Lines(sys.executable, str(EXAMPLES / "python" / "who_server.py"), "--name", name,
                          "--listen", f"{host}:0")
        self.port = int(self.proc.expect("listening").split()[1])
        self.endpoint = f"{host}:{self.port}"
        self.agent = None
        self.start_agent()

    def start_agent(self):
        self.agent = subprocess.Popen(
            [heartbeat_bin(), "beat", "--server", self.server.addr, "--service", "web", "--instance", self.name,
             "--endpoint", self.endpoint, "--interval", "200ms", "--timeout", "1s",
             "--check-exec", f"test -f {self.up}", "--check-timeout", "500ms"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        for p in (self.agent, self.proc.proc):
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
                p.wait(timeout=WAIT)


class XdsClient:
    """An example xDS client process: a count in, a JSON tally out."""

    def __init__(self, cmd, bootstrap):
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=str(bootstrap))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(cmd[1].rsplit("/", 1)[0]))
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def calls(self, n):
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        line = self.lines.get(timeout=WAIT + n * 5)
        assert line is not None, "the xDS client exited"
        return json.loads(line)

    def until(self, pred, what, timeout=WAIT):
        """Calls in small batches until a batch satisfies `pred`."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.calls(6)
            if pred(last):
                return last
        raise AssertionError(f"{what}: not within {timeout}s; last batch {last}")

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=WAIT) == 0


CLIENTS = {
    "grpcio": lambda: [sys.executable, str(EXAMPLES / "python" / "xds_client.py"), "web"],
    "grpc-js-xds": lambda: ["node", str(EXAMPLES / "node" / "xds-client.js"), "web"],
}


def bootstrap_file(server, path):
    out = subprocess.run([heartbeat_bin(), "xds-bootstrap", "--server", server.addr], capture_output=True, text=True,
                         timeout=WAIT, check=True)
    path.write_text(out.stdout)
    return path


def exactly(names, per):
    return lambda r: r["answered"] == {n: per for n in names} and not r["errors"]


@pytest.mark.parametrize("client", CLIENTS)
def test_xds_clients_are_routed_to_live_serving_members_only(client, tmp_path):
    server = Server("--default-interval", "200ms", "--default-timeout", "1s", "--retention", "30s")
    backends = []
    xds = None
    try:
        backends = [Backend(server, f"b{i}", tmp_path) for i in (1, 2, 3)]
        xds = XdsClient(CLIENTS[client](), bootstrap_file(server, tmp_path / "xds.json"))
        b1, b2, b3 = backends
        all3 = {"b1", "b2", "b3"}

        # Round robin over all three, once the client has them all.
        xds.until(lambda r: set(r["answered"]) == all3, "calls reach all three members")
        assert exactly(all3, 10)(xds.calls(30))

        # NOT_SERVING: out, though its backend still serves; back when SERVING.
        b1.up.unlink()
        xds.until(lambda r: "b1" not in r["answered"], "b1 (NOT_SERVING) gets no calls")
        assert exactly({"b2", "b3"}, 15)(xds.calls(30))
        b1.up.touch()
        xds.until(lambda r: "b1" in r["answered"], "b1 (SERVING again) gets calls")
        assert exactly(all3, 10)(xds.calls(30))

        # Leave: out; a new agent joins again.
        b2.agent.terminate()
        assert b2.agent.wait(timeout=WAIT) == 0
        xds.until(lambda r: "b2" not in r["answered"], "b2 (LEFT) gets no calls")
        assert exactly({"b1", "b3"}, 15)(xds.calls(30))
        b2.start_agent()
        xds.until(lambda r: "b2" in r["answered"], "b2 (joined again) gets calls")

        # Silent until DEAD (the agent frozen, the backend running): out;
        # the agent resumes, finds its session ended, joins again: back.
        b3.agent.send_signal(signal.SIGSTOP)
        xds.until(lambda r: "b3" not in r["answered"], "b3 (DEAD) gets no calls")
        assert exactly({"b1", "b2"}, 15)(xds.calls(30))
        assert b3.proc.proc.poll() is None, "b3's backend is still running"
        b3.agent.send_signal(signal.SIGCONT)
        xds.until(lambda r: "b3" in r["answered"], "b3 (rejoined) gets calls")

        # A member that advertises a host name is routed to its address.
        b4 = Backend(server, "b4", tmp_path, host="localhost")
        backends.append(b4)
        assert b4.endpoint.startswith("localhost:")
        xds.until(lambda r: "b4" in r["answered"], "b4 (localhost:PORT) gets calls")
        assert exactly(all3 | {"b4"}, 5)(xds.calls(20))

        # heartbeat gone: the client keeps the endpoints it has.
        server.stop()
        assert exactly(all3 | {"b4"}, 5)(xds.calls(20))
        xds.close()
        xds = None
    finally:
        if xds is not None:
            xds.proc.kill()
        for b in backends:
            b.stop()
        server.stop()


def test_a_bad_endpoint_is_invalid_argument_naming_the_field(server, stubs):
    pb, pb_grpc = stubs
    for bad in ["web:0", "bad host:80", "10.0.0.1", "[::1:80", "::1:80", "a..b:80"]:
        with grpc.insecure_channel(server.addr) as ch:
            join = pb.Join(service="web", instance="x", endpoint=bad)
            calls = pb_grpc.HeartbeatStub(ch).Beat(iter([pb.BeatRequest(join=join)]), timeout=WAIT)
            with pytest.raises(grpc.RpcError) as e:
                list(calls)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert "join.endpoint" in e.value.details(), (bad, e.value.details())
    # The agent refuses one before it connects, naming its flag.
    out = subprocess.run([heartbeat_bin(), "beat", "--server", server.addr, "--service", "web", "--instance", "x",
                          "--endpoint", "bad host:80"], capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 1, out
    assert "endpoint" in out.stderr, out.stderr


def test_xds_bootstrap_refuses_a_bad_server():
    out = subprocess.run([heartbeat_bin(), "xds-bootstrap", "--server", "ftp://x:1"], capture_output=True,
                         text=True, timeout=WAIT)
    assert out.returncode == 1
    assert "--server" in out.stderr, out.stderr
