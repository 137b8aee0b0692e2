"""Python clients: stubs generated from proto/ with grpcio-tools drive a Beat
stream; grpcio-health-checking's stubs call Check, Watch and List."""

import queue
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

WAIT = 10.0


class Member:
    """A Beat stream fed from a queue, answers read one by one."""

    def __init__(self, stub, pb):
        self.pb = pb
        self.requests = queue.Queue()
        self.responses = stub.Beat(iter(self.requests.get, None), timeout=30)

    def send(self, **kind):
        self.requests.put(self.pb.BeatRequest(**kind))

    def recv(self):
        return next(self.responses)

    def close(self):
        self.requests.put(None)


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.addr) as ch:
        grpc.channel_ready_future(ch).result(timeout=WAIT)
        yield ch


def test_join_ping_leave(channel, stubs):
    pb, pb_grpc = stubs
    stub = pb_grpc.HeartbeatStub(channel)
    m = Member(stub, pb)
    m.send(join=pb.Join(service="py", instance="w-1", labels={"lang": "python"}))
    welcome = m.recv().welcome
    assert welcome.session > 0 and welcome.timeout.ToMilliseconds() == 1000
    for seq in range(1, 4):
        sent = pb.Ping(seq=seq, status=pb.MEMBER_STATUS_SERVING)
        sent.sent_at.GetCurrentTime()
        m.send(ping=sent)
        pong = m.recv().pong
        assert pong.seq == seq and pong.sent_at == sent.sent_at
    listed = stub.ListMembers(pb.ListMembersRequest(service="py"), timeout=WAIT)
    assert [(x.instance, x.state) for x in listed.members] == [("w-1", pb.MEMBER_STATE_ALIVE)]
    m.send(leave=pb.Leave(reason="bye"))
    with pytest.raises(StopIteration):
        m.recv()
    m.close()
    listed = stub.ListMembers(pb.ListMembersRequest(), timeout=WAIT)
    assert listed.members[0].state == pb.MEMBER_STATE_LEFT


def test_non_increasing_seq_is_invalid_argument(channel, stubs):
    pb, pb_grpc = stubs
    m = Member(pb_grpc.HeartbeatStub(channel), pb)
    m.send(join=pb.Join(service="py", instance="w-2"))
    m.recv()
    m.send(ping=pb.Ping(seq=5))
    m.recv()
    m.send(ping=pb.Ping(seq=5))
    with pytest.raises(grpc.RpcError) as err:
        m.recv()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ping.seq" in err.value.details()
    m.close()


def test_health_check_watch_list(channel, stubs):
    pb, pb_grpc = stubs
    health = health_pb2_grpc.HealthStub(channel)
    req = health_pb2.HealthCheckRequest
    assert health.Check(req(service=""), timeout=WAIT).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        health.Check(req(service="py"), timeout=WAIT)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    watch = health.Watch(req(service="py"), timeout=30)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    m = Member(pb_grpc.HeartbeatStub(channel), pb)
    m.send(join=pb.Join(service="py", instance="w-3"))
    m.recv()
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

    listed = health.List(health_pb2.HealthListRequest(), timeout=WAIT).statuses
    assert sorted(listed) == ["", "heartbeat.v1.Heartbeat", "py", "py/w-3"]
    assert listed["py/w-3"].status == health_pb2.HealthCheckResponse.SERVING

    # Stop pinging: the member dies after its 1 s timeout, health follows.
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as err:
        m.recv()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    m.close()
    watch.cancel()
