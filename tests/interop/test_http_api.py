"""The HTTP API of SPEC §9 read by another protobuf implementation: the
official Python protobuf's json_format parses `/api/v1/members` strictly
as a ListMembersResponse (unknown fields are errors) and every
`/api/v1/events` event as a MemberEvent, and what they say matches what
grpcio's ListMembers says. The event stream resumes from `Last-Event-ID`
with the changes after it, no snapshot, as an EventSource would ask.
"""

import http.client
import queue
import socket
import threading

import grpc
from google.protobuf import json_format

from conftest import Server

WAIT = 10.0


class Events:
    """`GET /api/v1/events` with http.client: one parsed MemberEvent (and its
    SSE id) at a time, from a reader thread, every wait bounded."""

    def __init__(self, http_addr, pb, headers=None, path="/api/v1/events"):
        host, port = http_addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type") == "text/event-stream"
        self.pb = pb
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        event_id, data = None, []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        msg = json_format.Parse("\n".join(data), self.pb.MemberEvent())
                        self.q.put((event_id, msg))
                    event_id, data = None, []
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.startswith("id:"):
                    event_id = line[3:].removeprefix(" ")
        except Exception:  # noqa: BLE001 - closed by the test, or broken: the stream ended
            pass
        self.q.put(None)

    def next(self):
        item = self.q.get(timeout=WAIT)
        assert item is not None, "the event stream ended"
        return item

    def close(self):
        # Unblocks the reader thread first (closing the buffered response
        # would wait for its read: up to the next keep-alive comment).
        self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def join(pb, stub, service, instance, **extra):
    """A member that joined and pinged once; returns its request queue."""
    requests = queue.Queue()
    responses = stub.Beat(iter(requests.get, None), timeout=30)
    # Slow pings: no member turns SUSPECT while the test runs.
    join = pb.Join(service=service, instance=instance, **extra)
    join.interval.FromSeconds(10)
    requests.put(pb.BeatRequest(join=join))
    next(responses)
    requests.put(pb.BeatRequest(ping=pb.Ping(seq=1)))
    next(responses)
    return requests, responses


def test_members_and_events_parse_as_proto3_json_and_resume(stubs):
    pb, pb_grpc = stubs
    server = Server("--http-listen", "127.0.0.1:0")
    http_addr = server.wait_log(lambda l: l.get("message") == "http listening")["addr"]
    try:
        with grpc.insecure_channel(server.addr) as ch:
            stub = pb_grpc.HeartbeatStub(ch)
            web = join(pb, stub, "web", "web-1", labels={"zone": "a"}, endpoint="127.0.0.1:8080")
            db = join(pb, stub, "db", "db-1", status=pb.MEMBER_STATUS_NOT_SERVING)

            host, port = http_addr.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
            conn.request("GET", "/api/v1/members")
            reply = conn.getresponse()
            assert reply.status == 200 and reply.getheader("Content-Type") == "application/json"
            listed = json_format.Parse(reply.read(), pb.ListMembersResponse())
            by_grpc = stub.ListMembers(pb.ListMembersRequest(), timeout=WAIT)
            assert listed.revision == by_grpc.revision
            key = lambda m: (m.service, m.instance)  # noqa: E731
            for got, want in zip(sorted(listed.members, key=key), sorted(by_grpc.members, key=key)):
                assert (got.service, got.instance, got.state, got.status, got.session) == \
                    (want.service, want.instance, want.state, want.status, want.session)
                assert (dict(got.labels), got.endpoint, got.interval, got.timeout, got.joined_at) == \
                    (dict(want.labels), want.endpoint, want.interval, want.timeout, want.joined_at)
            assert len(listed.members) == 2

            events = Events(http_addr, pb)
            rows = []
            while True:
                event_id, e = events.next()
                if e.type == pb.EVENT_TYPE_SNAPSHOT_END:
                    assert event_id == str(e.revision)
                    break
                assert e.type == pb.EVENT_TYPE_SNAPSHOT and event_id is None
                rows.append(e.member.instance)
            assert sorted(rows) == ["db-1", "web-1"]
            web2 = join(pb, stub, "web", "web-2")
            event_id, joined = events.next()
            assert joined.type == pb.EVENT_TYPE_JOINED and joined.member.instance == "web-2"
            assert event_id == str(joined.revision)
            events.close()

            # While nobody watches: web-1 leaves.
            requests, responses = web
            requests.put(pb.BeatRequest(leave=pb.Leave(reason="done")))
            for _ in responses:
                pass
            resumed = Events(http_addr, pb, headers={"Last-Event-ID": event_id})
            _, left = resumed.next()
            assert left.type == pb.EVENT_TYPE_LEFT and left.member.instance == "web-1"
            assert left.member.state == pb.MEMBER_STATE_LEFT
            resumed.close()
            for requests, _ in (db, web2):
                requests.put(None)
    finally:
        server.stop()
