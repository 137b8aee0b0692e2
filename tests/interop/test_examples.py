"""examples/python and examples/node against a real server: what the members
do is asserted through what the server then reports."""

import os
import shutil
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import ROOT, Lines, Server

WAIT = 10.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def session_of(line):
    return int(line.split("session=")[1].split()[0])


def member_state(addr, stubs, service):
    pb, pb_grpc = stubs
    with grpc.insecure_channel(addr) as ch:
        members = pb_grpc.HeartbeatStub(ch).ListMembers(pb.ListMembersRequest(service=service), timeout=WAIT).members
    return [(m.instance, pb.MemberState.Name(m.state), m.session) for m in members]


def timeouts(addr, stubs, service):
    pb, pb_grpc = stubs
    with grpc.insecure_channel(addr) as ch:
        members = pb_grpc.HeartbeatStub(ch).ListMembers(pb.ListMembersRequest(service=service), timeout=WAIT).members
    return [m.timeout.ToTimedelta().total_seconds() for m in members]


def health(addr, name):
    with grpc.insecure_channel(addr) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=name), timeout=WAIT).status


def test_python_member_joins_survives_a_paused_server_and_leaves(server, stubs):
    member = Lines(sys.executable, str(ROOT / "examples" / "python" / "member.py"),
                   "--server", server.addr, "--service", "py", "--instance", "w-1", "--interval", "200ms",
                   "--timeout", "1s")
    try:
        first = session_of(member.expect("joined"))
        assert member_state(server.addr, stubs, "py") == [("w-1", "MEMBER_STATE_ALIVE", first)]
        # --timeout is the requested liveness timeout, as for `heartbeat beat`.
        assert timeouts(server.addr, stubs, "py") == [1.0]
        assert health(server.addr, "py/w-1") == SERVING

        # Freeze the server: the member's own deadline (1 s) notices.
        server.proc.send_signal(signal.SIGSTOP)
        try:
            member.expect("server lost")
        finally:
            server.proc.send_signal(signal.SIGCONT)
        again = session_of(member.expect("joined"))
        assert again > first
        assert ("w-1", "MEMBER_STATE_ALIVE", again) in member_state(server.addr, stubs, "py")

        assert member.stop() == 0
        member.expect("left")
        assert member_state(server.addr, stubs, "py") == [("w-1", "MEMBER_STATE_LEFT", again)]
    finally:
        member.proc.kill()


@pytest.fixture(scope="session")
def node():
    path = shutil.which("node")
    assert path, "Node.js is needed for examples/node"
    assert (ROOT / "examples" / "node" / "node_modules").exists(), "scripts/test.sh runs npm ci"
    return path


def test_node_member_and_health_watcher(server, stubs, node):
    d = ROOT / "examples" / "node"
    watcher = Lines(node, str(d / "health-watch.js"), "--server", server.addr, "--service", "nd")
    member = None
    try:
        assert watcher.expect("{") == '{"service":"nd","status":"SERVICE_UNKNOWN"}'
        member = Lines(node, str(d / "member.js"), "--server", server.addr, "--service", "nd", "--instance", "n-1")
        session = session_of(member.expect("joined"))
        assert watcher.expect("{") == '{"service":"nd","status":"SERVING"}'
        assert member_state(server.addr, stubs, "nd") == [("n-1", "MEMBER_STATE_ALIVE", session)]
        assert member.stop() == 0
        member.expect("left")
        assert watcher.expect("{") == '{"service":"nd","status":"NOT_SERVING"}'
        assert member_state(server.addr, stubs, "nd") == [("n-1", "MEMBER_STATE_LEFT", session)]
        assert health(server.addr, "nd/n-1") == NOT_SERVING
    finally:
        watcher.proc.kill()
        if member:
            member.proc.kill()


def test_node_and_python_members_adopt_the_interval_the_server_tells_them(node):
    """Past --max-ping-rate the server stretches intervals through
    Pong.interval; both example clients adopt it, and get the fast one back."""
    server = Server("--max-ping-rate", "5", "--default-interval", "200ms", "--default-timeout", "2s")
    d = ROOT / "examples" / "node"
    node_member = py_member = None
    try:
        # 200 ms = 5 pings/s: exactly the budget.
        node_member = Lines(node, str(d / "member.js"), "--server", server.addr, "--service", "ov", "--instance", "n")
        assert "interval=0.2 " in node_member.expect("joined")
        # A second member doubles the offered rate: everybody goes to 400 ms.
        py_member = Lines(sys.executable, str(ROOT / "examples" / "python" / "member.py"),
                          "--server", server.addr, "--service", "ov", "--instance", "p", "--interval", "200ms")
        assert "interval=0.4 " in py_member.expect("joined")
        assert node_member.expect("interval=") == "interval=0.4"
        # The Python member leaves: back under the budget, back to 200 ms.
        assert py_member.stop() == 0
        py_member.expect("left")
        assert node_member.expect("interval=") == "interval=0.2"
        assert node_member.stop() == 0
        node_member.expect("left")
    finally:
        for m in (node_member, py_member):
            if m:
                m.proc.kill()
        server.stop()


BAD_ARGUMENTS = [
    (["--instance", "i-1"], "--service"),
    (["--service", "bad name", "--instance", "i-1"], "service name"),
    (["--service", "heartbeat.x", "--instance", "i-1"], "reserved"),
    (["--service", "s", "--instance", "i 1"], "instance name"),
    (["--service", "s", "--instance", "i-1", "--interval", "0.2"], "duration"),
    (["--service", "s", "--instance", "i-1", "--timeout", "soon"], "duration"),
    (["--service", "s", "--instance", "i-1", "--server", "localhost"], "host:port"),
    (["--service", "s", "--instance", "i-1", "--max-retries", "0"], "at least 1"),
    (["--service", "s", "--instance", "i-1", "--bogus", "1"], "--bogus"),
]


@pytest.mark.parametrize("argv,names", BAD_ARGUMENTS)
def test_examples_refuse_bad_arguments_with_a_usage_line(node, argv, names):
    """Exit 2 with a usage line and the reason, at once: no retry loop that
    would report a typo as "server lost"."""
    for cmd in ([sys.executable, str(ROOT / "examples" / "python" / "member.py")],
                [node, str(ROOT / "examples" / "node" / "member.js")]):
        done = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=WAIT)
        assert done.returncode == 2, (cmd, argv, done.stderr)
        assert done.stderr.startswith("usage:") and names in done.stderr, done.stderr
        assert "server lost" not in done.stdout + done.stderr


def test_node_examples_print_help(node):
    for script in ("member.js", "health-watch.js"):
        done = subprocess.run([node, str(ROOT / "examples" / "node" / script), "--help"],
                              capture_output=True, text=True, timeout=WAIT)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: node {script}") and "--server" in done.stdout
