"""The /metrics exposition parsed by the official Prometheus Python parser
(OpenMetrics, as the Content-Type says), with a member joined."""

import urllib.request

import grpc
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import Server

WAIT = 10.0


def test_exposition_parses_as_openmetrics(stubs):
    pb, pb_grpc = stubs
    s = Server("--metrics-listen", "127.0.0.1:0")
    try:
        metrics = s.wait_log(lambda l: l.get("message") == "metrics listening")["addr"]
        with grpc.insecure_channel(s.addr) as ch:
            stub = pb_grpc.HeartbeatStub(ch)
            requests = iter([pb.BeatRequest(join=pb.Join(service="web", instance="a"))])
            call = stub.Beat(requests, timeout=WAIT)
            assert next(call).HasField("welcome")
            with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=WAIT) as resp:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                text = resp.read().decode()
            call.cancel()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        members = {(x.labels["service"], x.labels["state"]): x.value for x in families["heartbeat_members"].samples}
        assert members[("web", "alive")] == 1
        assert families["heartbeat_joins"].type == "counter"
        assert families["heartbeat_detection_lateness_seconds"].type == "histogram"
        assert all(name.startswith(("heartbeat_", "process_")) for name in families)
        # The standard process metrics, as every Prometheus client library has them.
        assert families["process_cpu_seconds"].type == "counter"
        assert families["process_resident_memory_bytes"].samples[0].value > 1e6
        assert families["process_open_fds"].samples[0].value >= 3
    finally:
        s.stop()
