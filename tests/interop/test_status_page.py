"""The status page (SPEC §9) in a real headless Chromium driven by
Playwright, against a real `heartbeat serve --http-listen` with real
`heartbeat beat` agents as members.

What a user would check: a member that joins shows up, turns SUSPECT and
DEAD when its process is frozen (SIGSTOP), and its row goes away when it
is removed, all without a reload; the filters narrow the table; a server
restart is survived and the page resumes by itself; 10,000 members render
one page of rows and stay interactive (the times are printed and written
to target/status-page-10k.json for BENCHMARKS.md, never asserted); a
server whose reads need a token answers 401 and the page asks for one.
The page loads nothing from anywhere but the server.

Every wait is an event with a bound (Playwright's expect), never a sleep.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, Server, heartbeat_bin

CHROMIUM = os.environ.get("HEARTBEAT_CHROMIUM", "/usr/bin/chromium")
# Flags without which Chromium reaches for the network at start (and
# stalls on a machine without one).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is installed by scripts/test.sh (Debian's chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab on a server's status page that records every request
    it makes and every script error."""

    def __init__(self, browser, origin, viewport=None):
        self.origin = origin
        self.context = browser.new_context(viewport=viewport or {"width": 1400, "height": 900})
        self.tab = self.context.new_page()
        self.requests = []
        self.errors = []
        self.tab.on("request", lambda r: self.requests.append(r.url))
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path="/"):
        response = self.tab.goto(self.origin + path)
        # A marker that a reload would wipe.
        self.tab.evaluate("window.__sameDocument = true")
        return response

    def row(self, instance):
        return self.tab.locator("#members tbody tr", has_text=instance)

    def rows(self):
        return self.tab.locator("#members tbody tr")

    def conn(self):
        return self.tab.locator("#conn")

    def close(self):
        assert self.tab.evaluate("window.__sameDocument === true"), "the page reloaded"
        assert not self.errors, f"script errors: {self.errors}"
        foreign = [u for u in self.requests if not u.startswith(self.origin + "/") and not u.startswith("data:")]
        assert not foreign, f"the page reached beyond the server: {foreign}"
        self.context.close()


def http_server(*args, http="127.0.0.1:0", listen=True):
    s = Server("--http-listen", http, *args, listen=listen)
    s.http = s.wait_log(lambda l: l.get("message") == "http listening")["addr"]
    s.origin = f"http://{s.http}"
    return s


def agent(server_addr, service, instance, *extra):
    return subprocess.Popen(
        [heartbeat_bin(), "beat", "--server", server_addr, "--service", service, "--instance", instance,
         "--max-retries", "1000", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.terminate()
            p.wait(timeout=10)


def test_a_member_joins_turns_suspect_then_dead_and_is_removed_without_a_reload(browser):
    server = http_server("--retention", "2s")
    page = Page(browser, server.origin)
    member = None
    try:
        response = page.open()
        assert response.status == 200
        expect(page.conn()).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        expect(page.tab.locator("#shown")).to_have_text("No members.", timeout=WAIT_MS)

        member = agent(server.addr, "web", "web-1", "--interval", "500ms", "--timeout", "4s",
                       "--label", "zone=a", "--endpoint", "127.0.0.1:8080")
        row = page.row("web-1")
        expect(row).to_contain_text("ALIVE", timeout=WAIT_MS)
        expect(row).to_contain_text("web")
        expect(row).to_contain_text("SERVING")
        expect(row).to_contain_text("127.0.0.1:8080")
        expect(row).to_contain_text("zone=a")
        expect(page.tab.locator("#services tbody tr", has_text="web")).to_contain_text("SERVING")
        # Every state the row shows from now on, as the DOM changes.
        page.tab.evaluate("""() => {
            window.__states = [];
            const record = () => {
              const cell = [...document.querySelectorAll('#members tbody tr')]
                .find(tr => tr.textContent.includes('web-1'));
              const state = cell ? cell.querySelector('.state').textContent : 'gone';
              if (window.__states[window.__states.length - 1] !== state) window.__states.push(state);
            };
            record();
            new MutationObserver(record).observe(document.querySelector('#members tbody'),
              {childList: true, subtree: true, characterData: true});
        }""")

        member.send_signal(signal.SIGSTOP)
        expect(row).to_contain_text("SUSPECT", timeout=WAIT_MS)
        expect(row).to_contain_text("DEAD", timeout=WAIT_MS)
        expect(page.tab.locator("#services tbody tr", has_text="web")).to_contain_text("NOT_SERVING")
        expect(row).to_have_count(0, timeout=WAIT_MS)
        assert page.tab.evaluate("window.__states") == ["ALIVE", "SUSPECT", "DEAD", "gone"]
        # The timeline has the whole story, newest first.
        events = page.tab.locator("#events li")
        expect(events.first).to_contain_text("REMOVED")
        texts = events.all_inner_texts()
        assert any("SUSPECT" in t for t in texts) and any("DEAD" in t for t in texts), texts
        assert any("JOINED" in t and "web/web-1" in t for t in texts), texts
        page.close()
    finally:
        if member:
            stop(member)
        server.stop()


def test_filters_narrow_the_table(browser):
    server = http_server()
    page = Page(browser, server.origin)
    members = [
        agent(server.addr, "web", "web-1", "--label", "zone=a", "--label", "tier=fe"),
        agent(server.addr, "web", "web-2", "--label", "zone=b"),
        agent(server.addr, "db", "db-1", "--label", "zone=a"),
    ]
    try:
        page.open()
        expect(page.rows()).to_have_count(3, timeout=WAIT_MS)
        shown = page.tab.locator("#shown")
        expect(shown).to_have_text("Showing 1–3 of 3 members.")
        tab = page.tab
        tab.select_option("select[name=service]", "web")
        expect(page.rows()).to_have_count(2)
        expect(shown).to_have_text("Showing 1–2 of 2 matching members (of 3).")
        tab.fill("input[name=label]", "zone=a")
        expect(page.rows()).to_have_count(1)
        expect(page.rows()).to_contain_text("web-1")
        tab.select_option("select[name=service]", "")
        expect(page.rows()).to_have_count(2)
        tab.fill("input[name=label]", "zone!=a")
        expect(page.rows()).to_have_count(1)
        expect(page.rows()).to_contain_text("web-2")
        tab.fill("input[name=label]", "tier, zone=a")
        expect(page.rows()).to_have_count(1)
        expect(page.rows()).to_contain_text("web-1")
        tab.fill("input[name=label]", "")
        tab.select_option("select[name=state]", "DEAD")
        expect(page.rows()).to_have_count(0)
        expect(shown).to_have_text("No members match the filters (of 3).")
        tab.select_option("select[name=state]", "")
        tab.fill("input[name=q]", "db")
        expect(page.rows()).to_have_count(1)
        tab.fill("input[name=q]", "")
        expect(page.rows()).to_have_count(3)
        # A bad selector is named, and the table keeps the last good one.
        tab.fill("input[name=label]", "zone=a, =oops")
        expect(tab.locator("#label-error")).to_contain_text('"=oops"')
        expect(tab.locator("input[name=label]")).to_have_attribute("aria-invalid", "true")
        expect(page.rows()).to_have_count(3)
        tab.fill("input[name=label]", "")
        # A label chip and a service name are filters too.
        page.row("web-2").locator("button.chip", has_text="zone=b").click()
        expect(page.rows()).to_have_count(1)
        expect(tab.locator("input[name=label]")).to_have_value("zone=b")
        tab.fill("input[name=label]", "")
        tab.locator("#services button", has_text="db").click()
        expect(page.rows()).to_have_count(1)
        expect(page.rows()).to_contain_text("db-1")
        # The filters are in the address, so a link shows the same table.
        assert "service=db" in tab.url
        page.close()
        linked = Page(browser, server.origin)
        linked.open("/?state=ALIVE&label=zone%3Da")
        expect(linked.rows()).to_have_count(2, timeout=WAIT_MS)
        expect(linked.tab.locator("select[name=state]")).to_have_value("ALIVE")
        linked.close()
    finally:
        stop(*members)
        server.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_page_survives_a_server_restart_and_resumes(browser):
    grpc_addr, http_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    args = ("--listen", grpc_addr, "--drain", "200ms")
    server = http_server(*args, http=http_addr, listen=False)
    page = Page(browser, server.origin)
    members = [agent(grpc_addr, "web", "web-1", "--interval", "500ms", "--timeout", "3s")]
    try:
        page.open()
        expect(page.row("web-1")).to_contain_text("ALIVE", timeout=WAIT_MS)
        server.stop()
        expect(page.conn()).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        expect(page.tab.locator("#summary")).to_contain_text("as of")

        server = http_server(*args, http=http_addr, listen=False)
        expect(page.conn()).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        # The agent came back to the new run, and the page shows it.
        expect(page.row("web-1")).to_contain_text("ALIVE", timeout=WAIT_MS)
        # The page is live again: a member that joins now appears.
        members.append(agent(grpc_addr, "db", "db-1"))
        expect(page.row("db-1")).to_contain_text("ALIVE", timeout=WAIT_MS)
        snapshots = page.tab.locator("#events li.snapshot")
        expect(snapshots).to_have_count(2)
        page.close()
    finally:
        stop(*members)
        server.stop()


def test_reads_need_a_token_and_the_page_asks_for_one(browser, tmp_path):
    import hashlib
    import urllib.error
    import urllib.request

    token = "s3cret-reader"
    authz = tmp_path / "authz.json"
    authz.write_text(json.dumps({
        "read": "authenticated",
        "rules": [{"token_sha256": hashlib.sha256(token.encode()).hexdigest(), "services": ["*"]}],
    }))
    token_file = tmp_path / "token"
    token_file.write_text(token)
    server = http_server("--authz-file", str(authz))
    member = agent(server.addr, "web", "web-1", "--token-file", str(token_file))
    page = Page(browser, server.origin)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.origin + "/api/v1/members", timeout=10)
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
        # Metrics stay open.
        with urllib.request.urlopen(server.origin + "/metrics", timeout=10) as r:
            assert r.status == 200

        response = page.open()
        assert response.status == 401
        login = page.tab.locator("#login")
        expect(login).to_be_visible(timeout=WAIT_MS)
        expect(page.conn()).to_have_attribute("data-state", "unauthorized")
        expect(page.rows()).to_have_count(0)
        page.tab.fill("#login input[name=token]", "wrong")
        page.tab.click("#login button")
        expect(page.tab.locator("#login-error")).to_contain_text("refused", timeout=WAIT_MS)
        page.tab.fill("#login input[name=token]", token)
        page.tab.click("#login button")
        expect(login).to_be_hidden()
        expect(page.conn()).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        expect(page.row("web-1")).to_contain_text("ALIVE", timeout=WAIT_MS)
        # Filtering and live updates work with the token too.
        stop(member)
        expect(page.row("web-1")).to_contain_text("LEFT", timeout=WAIT_MS)
        page.close()
    finally:
        stop(member)
        server.stop()


def bench(server_addr, service, members):
    return subprocess.Popen(
        [heartbeat_bin(), "bench", "--server", server_addr, "--service", service,
         "--members", str(members), "--connections", "4", "--interval", "60s",
         "--duration", "10m", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_members(origin, n, within_s=180):
    import urllib.request

    deadline = time.monotonic() + within_s
    count = -1
    while time.monotonic() < deadline:
        with urllib.request.urlopen(origin + "/api/v1/members", timeout=30) as r:
            count = len(json.load(r).get("members", []))
        if count >= n:
            return
        time.sleep(0.5)  # polling an external condition, with a deadline
    raise AssertionError(f"{count} of {n} members joined within {within_s} s")


def test_ten_thousand_members_render_one_page_and_stay_interactive(browser):
    server = http_server()
    fleet = [bench(server.addr, f"svc-{k}", 1000) for k in range(10)]
    extra = None
    page = Page(browser, server.origin, viewport={"width": 1600, "height": 1000})
    try:
        wait_members(server.origin, 10_000)
        tab = page.tab
        page.open()
        shown = tab.locator("#shown")
        expect(shown).to_have_text("Showing 1–100 of 10,000 members.", timeout=60_000)
        mark = "name => performance.getEntriesByName(name)[0].startTime"
        snapshot_ms = tab.evaluate(mark, "heartbeat:snapshot-end")
        first_render_ms = tab.evaluate(mark, "heartbeat:snapshot-rendered")
        # One page of rows, not 10,000.
        assert page.rows().count() == 100
        expect(tab.locator("#services tbody tr")).to_have_count(10)

        # A filter and a page turn, measured in the page from the input to
        # the new rows.
        in_page = """([action, want]) => new Promise(resolve => {
            const t0 = performance.now();
            if (action === 'next') document.querySelector('#next').click();
            else {
              const select = document.querySelector('select[name=service]');
              select.value = action;
              select.dispatchEvent(new Event('change', {bubbles: true}));
            }
            const done = () => document.querySelector('#shown').textContent.includes(want)
              ? resolve(performance.now() - t0) : requestAnimationFrame(done);
            done();
        })"""
        filter_ms = tab.evaluate(in_page, ["svc-3", "1–100 of 1,000 matching"])
        expect(page.rows().first).to_contain_text("svc-3")
        next_in_page_ms = tab.evaluate(in_page, ["next", "101–200 of 1,000 matching"])
        expect(page.rows().first).to_contain_text("bench-000100")
        # The same through Playwright's real input: select, type, next page.
        t0 = time.monotonic()
        tab.select_option("select[name=service]", "svc-7")
        expect(shown).to_contain_text("of 1,000 matching")
        select_ms = (time.monotonic() - t0) * 1000
        t0 = time.monotonic()
        tab.fill("input[name=q]", "bench-00099")
        expect(page.rows()).to_have_count(10)
        type_ms = (time.monotonic() - t0) * 1000
        tab.fill("input[name=q]", "")
        t0 = time.monotonic()
        tab.click("#next")
        expect(shown).to_have_text("Showing 101–200 of 1,000 matching members (of 10,000).")
        next_ms = (time.monotonic() - t0) * 1000

        # Still live with 10,000 members: a member that joins and leaves.
        tab.select_option("select[name=service]", "")
        tab.fill("input[name=q]", "live-1")
        extra = agent(server.addr, "live", "live-1")
        expect(page.row("live-1")).to_contain_text("ALIVE", timeout=WAIT_MS)
        stop(extra)
        expect(page.row("live-1")).to_contain_text("LEFT", timeout=WAIT_MS)

        out = ROOT / "target" / "status-page-10k.json"
        timings = {
            "members": 10_000,
            "snapshot_received_ms": round(snapshot_ms),
            "first_render_ms": round(first_render_ms),
            "filter_in_page_ms": round(filter_ms, 1),
            "next_page_in_page_ms": round(next_in_page_ms, 1),
            "select_service_ms": round(select_ms),
            "type_instance_ms": round(type_ms),
            "next_page_ms": round(next_ms),
        }
        out.write_text(json.dumps(timings) + "\n")
        print("status page with 10k members:", timings)
        tab.screenshot(path=str(ROOT / "target" / "status-page-10k.png"))
        page.close()
    finally:
        if extra:
            stop(extra)
        for p in fleet:
            p.kill()
            p.wait(timeout=10)
        server.stop()
