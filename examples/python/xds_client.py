#!/usr/bin/env python3
"""A gRPC client routed by heartbeat, with no heartbeat code: stock grpcio
resolves `xds:///SERVICE` through the xDS bootstrap that
`heartbeat xds-bootstrap` prints, and balances round robin over the
service's live, SERVING members only.

    heartbeat xds-bootstrap --server 127.0.0.1:50051 > xds.json
    GRPC_XDS_BOOTSTRAP=xds.json python xds_client.py web 10

Calls `/demo.v1.Who/Name` (see who_server.py) COUNT times and prints one JSON
line: how many calls each backend answered, and the errors by status code.
Without COUNT it reads counts from standard input, one per line, and answers
each with such a line, on one channel (one xDS client) for its whole life.
If heartbeat goes away, the channel keeps the endpoints it last got.
"""

import json
import sys
from collections import Counter

import grpc

METHOD = "/demo.v1.Who/Name"


def calls(call, count):
    answered, errors = Counter(), Counter()
    for _ in range(count):
        try:
            answered[call(b"", timeout=5).decode()] += 1
        except grpc.RpcError as e:
            errors[e.code().name] += 1
    return {"answered": dict(answered), "errors": dict(errors)}


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and not sys.argv[2].isdigit()):
        sys.exit(f"usage: {sys.argv[0]} SERVICE [COUNT]")
    service = sys.argv[1]
    with grpc.insecure_channel(f"xds:///{service}") as channel:
        call = channel.unary_unary(METHOD)
        if len(sys.argv) == 3:
            print(json.dumps(calls(call, int(sys.argv[2]))), flush=True)
            return
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(calls(call, int(line))), flush=True)


if __name__ == "__main__":
    main()
