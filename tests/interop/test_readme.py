"""The README's quick start, run as written: each command line of its first
`sh` block is executed in order, with only the address changed (the test's
server listens on 127.0.0.1:0, so `localhost:50051` becomes that address and
the commands get it through HEARTBEAT_SERVER), and `cargo install` building
the debug profile into target/ (the release build the README asks for takes
minutes). What each line's comment promises is asserted."""

import json
import os
import re
import shlex
import signal
import subprocess

from conftest import ROOT

WAIT = 10.0


def quick_start():
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Quick start\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = []
    for raw in block.splitlines():
        cmd, _, comment = raw.partition("#")
        if cmd.strip():
            lines.append((cmd.strip(), comment.strip()))
    return lines


class Background:
    """A command run with `&`: its process and stderr log lines."""

    def __init__(self, cmd, env):
        argv = shlex.split(cmd.removesuffix("&"))
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def json_line(self, pred):
        for line in self.proc.stderr:
            v = json.loads(line)
            if pred(v):
                return v
        raise AssertionError("process ended first")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)


def test_the_quick_start_works_as_written(grpcurl, tmp_path):
    steps = quick_start()
    commands = [c for c, _ in steps]
    # The lines this test knows how to run are the ones the README has.
    assert commands[0] == "cargo install --locked --path ."
    assert "heartbeat serve &" in commands
    assert "heartbeat beat --service web --instance web-1 --label zone=a &" in commands
    assert "kill %2" in commands

    root = tmp_path / "root"
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target"))
    install = commands[0] + f" --debug --root {root}"
    done = subprocess.run(install, shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert (root / "bin" / "heartbeat").exists()

    env = dict(os.environ, PATH=f"{root / 'bin'}:{os.path.dirname(grpcurl)}:{os.environ['PATH']}",
               HEARTBEAT_LOG_FORMAT="json", HEARTBEAT_LISTEN="127.0.0.1:0")
    env.pop("HEARTBEAT_SERVER", None)
    jobs = []
    try:
        for cmd, comment in steps[1:]:
            if "pip install" in cmd:
                continue  # grpcurl is already there (the test's venv)
            if cmd == "heartbeat serve &":
                server = Background(cmd, env)
                jobs.append(server)
                addr = server.json_line(lambda v: v.get("message") == "listening")["addr"]
                env["HEARTBEAT_SERVER"] = addr
                continue
            cmd = cmd.replace("localhost:50051", addr)
            if cmd.endswith("&"):
                job = Background(cmd, env)
                jobs.append(job)
                job.json_line(lambda v: v.get("state") == "ONLINE")
                continue
            if cmd == "kill %2":
                assert jobs[1].stop() == 0, "the agent exits 0 on SIGTERM"
                continue
            if cmd == "heartbeat watch":
                watch = subprocess.Popen(shlex.split(cmd), env=env, stdout=subprocess.PIPE, text=True)
                try:
                    line = watch.stdout.readline()
                    assert re.match(r"\d{4}-\d\d-\d\dT\S+ \d+ SNAPSHOT web/web-1 ALIVE SERVING", line), line
                finally:
                    watch.send_signal(signal.SIGTERM)
                    assert watch.wait(timeout=WAIT) == 0
                continue
            done = subprocess.run(shlex.split(cmd), env=env, capture_output=True, text=True, timeout=WAIT)
            out = done.stdout + done.stderr
            if cmd.startswith("grpcurl"):
                assert done.returncode == 0, out
                assert json.loads(done.stdout) == {"status": "SERVING"}
            elif cmd == "heartbeat check web" and "exit 0" in comment:
                assert (done.returncode, out.strip()) == (0, "status: SERVING")
            elif cmd == "heartbeat check web":
                assert "exit 4" in comment and done.returncode == 4, out
                assert out.strip() in comment, out
            elif cmd == "heartbeat members":
                assert done.returncode == 0, out
                row = out.splitlines()[1].split()
                assert row[:4] == ["web", "web-1", "ALIVE", "SERVING"], out
                assert re.fullmatch(r"\d+(\.\d)?m?s", row[4]) and row[5] == "ago", out
            else:
                raise AssertionError(f"the test does not know the README line {cmd!r}")
    finally:
        for job in jobs:
            if job.proc.poll() is None:
                job.stop()
