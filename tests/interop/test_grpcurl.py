"""A real grpcurl (1.8.6, reflection v1alpha only) against `heartbeat serve`:
list, describe, Check, Watch, ListMembers, and a Beat stream fed from stdin."""

import json
import subprocess
import threading
import queue

WAIT = 10.0


def run(grpcurl, *args, data=None):
    cmd = [grpcurl, "-plaintext", *args]
    if data is not None:
        cmd[2:2] = ["-d", data]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT)


class JsonStream:
    """Reads grpcurl's pretty-printed JSON messages one object at a time."""

    def __init__(self, proc):
        self.proc = proc
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = []
        for line in self.proc.stdout:
            buf.append(line)
            if line.rstrip("\n") == "}":
                self.q.put(json.loads("".join(buf)))
                buf = []
        self.q.put(None)

    def next(self):
        return self.q.get(timeout=WAIT)


def test_list_shows_every_service_once(server, grpcurl):
    out = run(grpcurl, server.addr, "list")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "heartbeat.v1.Heartbeat",
    ]


def test_describe_shows_docs(server, grpcurl):
    out = run(grpcurl, server.addr, "describe", "heartbeat.v1.Heartbeat")
    assert out.returncode == 0, out.stderr
    assert "rpc Beat ( stream .heartbeat.v1.BeatRequest ) returns ( stream .heartbeat.v1.BeatResponse )" in out.stdout
    out = run(grpcurl, server.addr, "describe", "heartbeat.v1.Ping")
    assert "echoed back in Pong.sent_at" in out.stdout
    out = run(grpcurl, server.addr, "describe", "grpc.health.v1.Health")
    assert "rpc List" in out.stdout


def test_check_known_and_unknown(server, grpcurl):
    out = run(grpcurl, server.addr, "grpc.health.v1.Health/Check")
    assert json.loads(out.stdout) == {"status": "SERVING"}
    out = run(grpcurl, server.addr, "grpc.health.v1.Health/Check", data='{"service":"heartbeat.v1.Heartbeat"}')
    assert json.loads(out.stdout) == {"status": "SERVING"}
    out = run(grpcurl, server.addr, "grpc.health.v1.Health/Check", data='{"service":"nope"}')
    assert out.returncode != 0
    assert "NotFound" in out.stderr and "nope" in out.stderr


def test_beat_from_stdin_then_watch_and_list(server, grpcurl):
    watch = subprocess.Popen(
        [grpcurl, "-plaintext", "-d", '{"service":"web/a"}', server.addr, "grpc.health.v1.Health/Watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watched = JsonStream(watch)
    beat = subprocess.Popen(
        [grpcurl, "-plaintext", "-d", "@", server.addr, "heartbeat.v1.Heartbeat/Beat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    replies = JsonStream(beat)
    try:
        assert watched.next() == {"status": "SERVICE_UNKNOWN"}
        beat.stdin.write('{"join":{"service":"web","instance":"a","labels":{"zone":"z1"}}}\n')
        beat.stdin.flush()
        welcome = replies.next()["welcome"]
        assert welcome["interval"] == "0.200s" and welcome["timeout"] == "1s"
        assert watched.next() == {"status": "SERVING"}
        beat.stdin.write('{"ping":{"seq":"1","sentAt":"2026-01-01T00:00:00Z"}}\n')
        beat.stdin.flush()
        pong = replies.next()["pong"]
        assert pong["seq"] == "1" and pong["sentAt"] == "2026-01-01T00:00:00Z"
        beat.stdin.write('{"ping":{"seq":"2","status":"MEMBER_STATUS_NOT_SERVING"}}\n')
        beat.stdin.flush()
        assert replies.next()["pong"]["seq"] == "2"
        assert watched.next() == {"status": "NOT_SERVING"}

        out = run(grpcurl, server.addr, "heartbeat.v1.Heartbeat/ListMembers")
        members = json.loads(out.stdout)["members"]
        assert [(m["service"], m["instance"], m["state"], m["status"]) for m in members] == [
            ("web", "a", "MEMBER_STATE_ALIVE", "MEMBER_STATUS_NOT_SERVING")
        ]
        assert members[0]["labels"] == {"zone": "z1"}

        beat.stdin.write('{"leave":{"reason":"done"}}\n')
        beat.stdin.close()
        assert replies.next() is None
        assert beat.wait(timeout=WAIT) == 0, beat.stderr.read()
        out = run(grpcurl, server.addr, "heartbeat.v1.Heartbeat/ListMembers", data='{"service":"web"}')
        assert json.loads(out.stdout)["members"][0]["state"] == "MEMBER_STATE_LEFT"
    finally:
        beat.kill()
        watch.kill()


def test_invalid_join_is_reported_by_grpcurl(server, grpcurl):
    out = run(grpcurl, server.addr, "heartbeat.v1.Heartbeat/Beat", data='{"join":{"service":"bad name","instance":"a"}}')
    assert out.returncode != 0
    assert "InvalidArgument" in out.stderr and "join.service" in out.stderr
