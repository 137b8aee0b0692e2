#!/usr/bin/env python3
"""Takes the README's screenshot of the status page (docs/status-page.png):
a real `heartbeat serve --http-listen` on loopback, real `heartbeat beat`
agents in every state (ALIVE, SUSPECT and DEAD by SIGSTOP, LEFT by
SIGTERM, NOT_SERVING by a failing check), and Debian's Chromium driven by
Playwright, waiting for each state to show before the picture is taken.

    scripts/test.sh                      # once: builds, and installs Chromium and Playwright
    target/interop-venv/bin/python scripts/screenshot.py [OUT.png]

HEARTBEAT_BIN picks the binary (default target/debug/heartbeat) and
HEARTBEAT_CHROMIUM the browser (default /usr/bin/chromium).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from http_server import serve

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("HEARTBEAT_BIN", str(ROOT / "target" / "debug" / "heartbeat"))
CHROMIUM = os.environ.get("HEARTBEAT_CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 30_000


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "status-page.png"
    server, grpc_addr, http_addr = serve(BIN, "--retention", "5m")
    agents = {}

    def agent(service, instance, *extra):
        agents[instance] = subprocess.Popen(
            [BIN, "beat", "--server", grpc_addr, "--service", service, "--instance", instance, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        for i, zone in enumerate("abc", start=1):
            agent("checkout", f"checkout-{i}", "--label", f"zone=eu-west-1{zone}", "--label", "tier=web",
                  "--endpoint", f"10.0.1.{10 + i}:8080")
        agent("payments", "payments-1", "--label", "zone=eu-west-1a", "--endpoint", "10.0.2.11:9000")
        agent("payments", "payments-2", "--label", "zone=eu-west-1b", "--endpoint", "10.0.2.12:9000",
              "--check-exec", "false")
        agent("search", "search-1", "--label", "zone=eu-west-1a", "--endpoint", "10.0.3.11:7000")
        agent("search", "search-2", "--label", "zone=eu-west-1c", "--endpoint", "10.0.3.12:7000",
              "--interval", "1s", "--timeout", "30s")
        agent("inventory", "inventory-1", "--label", "zone=eu-west-1b", "--interval", "500ms", "--timeout", "2s")
        agent("inventory", "inventory-2", "--label", "zone=eu-west-1c", "--interval", "500ms", "--timeout", "2s")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 820}, color_scheme="light")
            page.goto(f"http://{http_addr}/")
            row = lambda name: page.locator("#members tbody tr", has_text=name)  # noqa: E731
            for name in agents:
                expect(row(name)).to_contain_text("ALIVE", timeout=WAIT_MS)
            expect(row("payments-2")).to_contain_text("NOT_SERVING", timeout=WAIT_MS)
            agents["inventory-1"].send_signal(signal.SIGSTOP)
            agents["inventory-2"].terminate()
            agents["search-2"].send_signal(signal.SIGSTOP)
            expect(row("inventory-1")).to_contain_text("DEAD", timeout=WAIT_MS)
            expect(row("inventory-2")).to_contain_text("LEFT", timeout=WAIT_MS)
            expect(row("search-2")).to_contain_text("SUSPECT", timeout=WAIT_MS)
            page.screenshot(path=str(out))
            browser.close()
        print(f"wrote {out}")
    finally:
        for a in agents.values():
            if a.poll() is None:
                a.send_signal(signal.SIGCONT)
                a.terminate()
                a.wait(timeout=10)
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
