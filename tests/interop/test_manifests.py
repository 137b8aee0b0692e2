"""deploy/kubernetes and the Dockerfile, checked against the real binary:
every flag in the manifests exists, the probes point at the port the
container listens on (numeric), and the health names the probes use answer
SERVING when the server and the agent run with the manifests' own arguments.
"""

import json
import os
import queue
import re
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import ROOT, Server, heartbeat_bin

DEPLOY = ROOT / "deploy" / "kubernetes"
WAIT = 10.0


def docs(name):
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def container(deployment, name):
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def flags_of(command):
    """Every long flag that `heartbeat COMMAND --help` documents."""
    out = subprocess.run([heartbeat_bin(), command, "--help"], capture_output=True, text=True, timeout=WAIT)
    return set(re.findall(r"--[a-z][a-z-]+", out.stdout))


def flag_value(args, flag):
    return args[args.index(flag) + 1]


def check(addr, service):
    with grpc.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT).status


def test_server_manifest_matches_the_real_server():
    deployment, service = docs("server.yaml")
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    c = container(deployment, "heartbeat")
    args = c["args"]
    assert args[0] == "serve"
    for flag in [a for a in args if a.startswith("--")]:
        assert flag in flags_of("serve"), f"{flag} is not a flag of heartbeat serve"
    host, port = flag_value(args, "--listen").rsplit(":", 1)
    assert host == "0.0.0.0", "bound to all interfaces inside the pod"
    http_port = int(flag_value(args, "--http-listen").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": int(port), "http": http_port}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(http_port), "metrics are on the HTTP port"

    live, ready = c["livenessProbe"]["grpc"], c["readinessProbe"]["grpc"]
    assert isinstance(live["port"], int) and live["port"] == int(port), "numeric gRPC port"
    assert isinstance(ready["port"], int) and ready["port"] == int(port)
    assert live.get("service", "") == "", "liveness checks the process, never the members"
    assert ready["service"] == "heartbeat.v1.Heartbeat"
    drain = flag_value(args, "--drain")
    assert drain.endswith("s") and 2 * int(drain[:-1]) < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert c["resources"]["requests"]["memory"] and c["resources"]["requests"]["cpu"]

    svc_ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert svc_ports == {"grpc": "grpc", "http": "http"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    # The server, run with the manifest's own flags (on loopback), answers
    # both probe names SERVING and serves the status page and metrics
    # (what `kubectl port-forward svc/heartbeat 8080:8080` reaches).
    local = [a.replace("0.0.0.0:", "127.0.0.1:") for a in args[1:]]
    local[local.index("--listen") + 1] = "127.0.0.1:0"
    local[local.index("--http-listen") + 1] = "127.0.0.1:0"
    local[local.index("--drain") + 1] = "100ms"  # checked above; keep the test quick
    s = Server(*[a for a in local if a != "--log-format" and a != "json"], listen=False)
    try:
        assert check(s.addr, live.get("service", "")) == health_pb2.HealthCheckResponse.SERVING
        assert check(s.addr, ready["service"]) == health_pb2.HealthCheckResponse.SERVING
        http = s.wait_log(lambda l: l.get("message") == "http listening")["addr"]
        for path, kind in [("/", "text/html"), (annotations["prometheus.io/path"], "application/openmetrics-text")]:
            with urllib.request.urlopen(f"http://{http}{path}", timeout=WAIT) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith(kind), path
    finally:
        s.stop()


def test_sidecar_manifest_matches_the_real_agent(server):
    (deployment,) = docs("sidecar-example.yaml")
    app, agent = container(deployment, "app"), container(deployment, "heartbeat")
    args = agent["args"]
    assert args[0] == "beat"
    for flag in [a for a in args if a.startswith("--")]:
        assert flag in flags_of("beat"), f"{flag} is not a flag of heartbeat beat"
    health_port = int(flag_value(args, "--health-listen").rsplit(":", 1)[1])
    ready = app["readinessProbe"]["grpc"]
    assert ready == {"port": health_port, "service": "heartbeat.v1.Heartbeat"}
    assert agent["livenessProbe"]["grpc"] == {"port": health_port}
    assert {p["containerPort"] for p in agent["ports"]} == {health_port}
    env = {e["name"] for e in agent["env"]}
    for ref in re.findall(r"\$\((\w+)\)", " ".join(args)):
        assert ref in env, f"$({ref}) is defined"

    # The agent, run with the manifest's flags against a real server, serves
    # both probe names.
    local = list(args[1:])
    local[local.index("--server") + 1] = server.addr
    local[local.index("--instance") + 1] = "orders-pod-1"
    local[local.index("--label") + 1] = "node=node-1"
    local[local.index("--health-listen") + 1] = "127.0.0.1:0"
    local[local.index("--check-tcp") + 1] = server.addr  # an open port stands in for the app
    local[local.index("--endpoint") + 1] = "127.0.0.1:8080"
    proc = subprocess.Popen([heartbeat_bin(), "beat", *local], stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(l)) for l in proc.stderr], daemon=True).start()
    try:
        addr = None
        while addr is None:
            line = lines.get(timeout=WAIT)
            if line.get("message") == "health endpoint listening":
                addr = line["addr"]
        assert check(addr, "") == health_pb2.HealthCheckResponse.SERVING
        while lines.get(timeout=WAIT).get("state") != "ONLINE":
            pass
        assert check(addr, ready["service"]) == health_pb2.HealthCheckResponse.SERVING
        assert check(server.addr, "orders/orders-pod-1") == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.terminate()
        assert proc.wait(timeout=WAIT) == 0


def test_dockerfile_is_multistage_and_non_root():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    final = text[text.rindex("\nFROM"):]
    user = re.search(r"^USER\s+(\S+)", final, re.M)
    assert user and user.group(1).split(":")[0] not in ("root", "0"), "runs as non-root"
    entry = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])", final, re.M).group(1))
    copied = re.search(r"^COPY --from=\S+ \S+ (\S+)", final, re.M).group(1)
    assert entry[0] == copied
    assert "--bin heartbeat" in text and "--locked" in text
    # Base images pinned by digest; the dependency layer comes before the
    # sources; the binary is stripped.
    for image, _ in stages:
        assert re.fullmatch(r"\S+@sha256:[0-9a-f]{64}", image), f"{image} is pinned by digest"
    assert text.index("COPY Cargo.toml Cargo.lock") < text.index("COPY . .")
    deps_build = text.index("cargo build", text.index("COPY Cargo.toml Cargo.lock"))
    assert deps_build < text.index("COPY . ."), "dependencies build in their own layer"
    assert "strip target/release/heartbeat" in text
    cmd = json.loads(re.search(r"^CMD\s+(\[.*\])", final, re.M).group(1))
    assert cmd[0] == "serve" and set(a for a in cmd if a.startswith("--")) <= flags_of("serve")


def etcd_bin():
    """Debian's etcd, as scripts/etcd.sh put it (the test command runs it)."""
    bin_dir = os.environ.get("HEARTBEAT_ETCD_BIN", str(ROOT / "target" / "etcd" / "usr" / "bin"))
    path = Path(bin_dir) / "etcd"
    assert path.exists(), f"etcd is missing: run scripts/etcd.sh ({path})"
    return str(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cluster_manifests_match_the_real_server(tmp_path):
    etcd_svc, etcd_set = docs("cluster/etcd.yaml")
    deployment, pdb, service = docs("cluster/heartbeat.yaml")
    assert (etcd_set["kind"], etcd_set["spec"]["replicas"]) == ("StatefulSet", 3)
    assert etcd_svc["spec"]["clusterIP"] == "None", "stable etcd-N.etcd names"
    assert deployment["spec"]["replicas"] == 3 and pdb["kind"] == "PodDisruptionBudget"
    c = container(deployment, "heartbeat")
    args = c["args"]
    for flag in [a for a in args if a.startswith("--")]:
        assert flag in flags_of("serve"), f"{flag} is not a flag of heartbeat serve"
    endpoints = flag_value(args, "--etcd-endpoints").split(",")
    assert endpoints == [f"http://etcd-{i}.etcd:2379" for i in range(3)]
    assert flag_value(args, "--advertise") == "$(POD_IP):50051"
    assert {e["name"] for e in c["env"]} == {"POD_IP"}
    ready = c["readinessProbe"]["grpc"]
    assert ready["service"] == "heartbeat.v1.Heartbeat" and c["livenessProbe"]["grpc"].get("service", "") == ""
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    # Three replicas run with the manifest's flags (etcd on loopback) and
    # all become ready: registered in etcd, serving Beat streams.
    client, peer = free_port(), free_port()
    etcd = subprocess.Popen(
        [etcd_bin(), "--name", "m0", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"m0=http://127.0.0.1:{peer}",
         "--log-level", "error", "--logger", "zap"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    replicas = []
    try:
        local = [a.replace("0.0.0.0:", "127.0.0.1:") for a in args[1:]]
        local[local.index("--listen") + 1] = "127.0.0.1:0"
        local[local.index("--http-listen") + 1] = "127.0.0.1:0"
        local[local.index("--drain") + 1] = "100ms"
        local[local.index("--etcd-endpoints") + 1] = f"127.0.0.1:{client}"
        i = local.index("--advertise")
        del local[i:i + 2]  # the bound address, on loopback
        local = [a for a in local if a not in ("--log-format", "json")]
        for _ in range(3):
            replicas.append(Server(*local, listen=False))
        for r in replicas:
            r.http = r.wait_log(lambda l: l.get("message") == "http listening")["addr"]
            r.wait_log(lambda l: l.get("message") == "registered this replica in etcd")
            deadline = time.monotonic() + 2 * WAIT
            while check(r.addr, ready["service"]) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, f"{r.addr} never ready"
                time.sleep(0.05)
        # Any replica's page shows the whole cluster: a member held by the
        # first is listed by the last, with the replica that holds it.
        member = subprocess.Popen(
            [heartbeat_bin(), "beat", "--server", replicas[0].addr, "--service", "web", "--instance", "web-1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 2 * WAIT
            while True:
                with urllib.request.urlopen(f"http://{replicas[2].http}/api/v1/members", timeout=WAIT) as r:
                    listed = json.load(r).get("members", [])
                if listed:
                    break
                assert time.monotonic() < deadline, "the member never reached the last replica's API"
                time.sleep(0.05)
            assert [(m["instance"], m["state"]) for m in listed] == [("web-1", "MEMBER_STATE_ALIVE")]
            assert listed[0]["replica"].startswith("heartbeat-"), listed[0]
        finally:
            member.terminate()
            member.wait(timeout=WAIT)
    finally:
        for r in replicas:
            r.stop()
        etcd.terminate()
        etcd.wait(timeout=WAIT)
