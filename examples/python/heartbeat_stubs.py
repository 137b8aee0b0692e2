"""Generates the heartbeat.v1 Python stubs from proto/ with grpcio-tools at
import time (into a cache folder beside this file), so no generated code is
committed and the stubs always match the proto."""

import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO = HERE.parents[1] / "proto"
OUT = HERE / ".stubs"


def _generate():
    OUT.mkdir(exist_ok=True)
    source = PROTO / "heartbeat" / "v1" / "heartbeat.proto"
    target = OUT / "heartbeat" / "v1" / "heartbeat_pb2.py"
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return
    rc = protoc.main([
        "protoc",
        f"-I{PROTO}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        str(source),
    ])
    if rc != 0:
        raise RuntimeError("protoc failed to compile heartbeat.proto")


_generate()
sys.path.insert(0, str(OUT))
from heartbeat.v1 import heartbeat_pb2 as pb  # noqa: E402
from heartbeat.v1 import heartbeat_pb2_grpc as pb_grpc  # noqa: E402

__all__ = ["pb", "pb_grpc"]
