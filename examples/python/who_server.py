#!/usr/bin/env python3
"""A tiny gRPC backend for the discovery examples: `/demo.v1.Who/Name`
answers with this backend's name, so a client sees where each call went.

    python who_server.py --name web-1 --listen 127.0.0.1:8081

Prints `listening PORT` once it serves (`--listen` may end in `:0`). Pair it
with a member that advertises the endpoint, e.g.
`heartbeat beat --service web --instance web-1 --endpoint 127.0.0.1:8081`.
Exits on SIGTERM or SIGINT.
"""

import argparse
import signal
import threading
from concurrent import futures

import grpc

METHOD = "/demo.v1.Who/Name"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="the name every answer carries")
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port to serve on")
    args = p.parse_args()

    name = args.name.encode()
    handler = grpc.method_handlers_generic_handler(
        "demo.v1.Who",
        {"Name": grpc.unary_unary_rpc_method_handler(lambda _req, _ctx: name)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(args.listen)
    if port == 0:
        p.error(f"--listen {args.listen!r}: cannot listen there")
    server.start()
    print(f"listening {port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
