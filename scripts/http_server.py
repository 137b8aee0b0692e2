"""`heartbeat serve` with the HTTP port, on loopback, for the scripts that
look at the status page or its API (scripts/screenshot.py,
scripts/bench-http.py): started, its two addresses read from its JSON log,
and its log drained from then on (a line per member change; a full pipe
would block the server)."""

import json
import subprocess
import threading


def serve(binary, *args):
    """Returns (process, gRPC address, HTTP address)."""
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "json",
         *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addrs = {}
    for line in proc.stderr:
        msg = json.loads(line)
        if msg.get("message") in ("listening", "http listening"):
            addrs[msg["message"]] = msg["addr"]
        if len(addrs) == 2:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, addrs["listening"], addrs["http listening"]
    raise SystemExit("the server exited before listening")
