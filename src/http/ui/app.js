// heartbeat's status page: the member table kept live from /api/v1/events.
//
// The event stream is the only source of states: a snapshot (SNAPSHOT rows,
// then SNAPSHOT_END) replaces the table, every later event changes one row.
// When the stream ends (a server restart, a network cut, a proxy timeout)
// the page reconnects with backoff and sends the last revision it saw as
// Last-Event-ID: the server replays what it missed, or sends a snapshot
// when its history no longer holds that revision. The stream is read with
// fetch, not EventSource, so that a bearer token can go with it.
//
// Rendering is throttled and bounded: events only mark the page dirty; a
// render at most every RENDER_MS filters the table and builds the rows of
// one page (PAGE_SIZE), so 10,000 members cost one pass over an array and
// a hundred rows, not 10,000 DOM nodes. Nothing here uses innerHTML: every
// value from the server goes into the page as text.

import { matcher, parseLabels } from "./filters.js";
import { ago, clock, el, seenCell } from "./view.js";
import { member, readEvents, short } from "./wire.js";

const PAGE_SIZE = 100;
const SERVICES_SHOWN = 100;
const EVENTS_KEPT = 200;
const RENDER_MS = 50;
// The server sends a comment at least every 15 s; silence for longer than
// this means the connection is gone even if TCP has not noticed.
const STREAM_SILENCE_MS = 35000;
const BACKOFF_MS = [250, 5000]; // first and largest reconnect delay
const STATES = ["ALIVE", "SUSPECT", "DEAD", "LEFT"];
const TOKEN_KEY = "heartbeat.token";

const $ = (sel) => document.querySelector(sel);

const page = {
  members: new Map(), // key -> member
  order: [], // keys sorted by service, instance
  orderDirty: true,
  snapshot: null, // Map while a snapshot arrives
  revision: "", // last revision seen (u64 as text)
  events: [], // recent events, oldest first
  eventsDirty: true,
  filters: { service: "", state: "", label: "", q: "" },
  labelTerms: [],
  pageIndex: 0,
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  asOf: null, // when the table was last known to be current
  renderTimer: 0,
  frame: 0,
  markRender: false,
  servicesKey: "",
};




function authHeaders(extra) {
  const headers = { ...extra };
  if (page.token) headers.Authorization = `Bearer ${page.token}`;
  return headers;
}

// ---- the event stream ------------------------------------------------------

function onEvent(data) {
  const e = JSON.parse(data);
  const type = short(e.type, "EVENT_TYPE_", "UNSPECIFIED");
  if (type === "SNAPSHOT") {
    if (!page.snapshot) page.snapshot = new Map();
    const m = member(e.member);
    page.snapshot.set(m.key, m);
    if (page.snapshot.size % 1000 === 1) setSummary();
    return;
  }
  if (type === "SNAPSHOT_END") {
    // For the browser's performance tools (and the 10k test's timings):
    // the latest snapshot's arrival and first render, one mark each.
    performance.clearMarks("heartbeat:snapshot-end");
    performance.mark("heartbeat:snapshot-end");
    page.markRender = true;
    const count = (page.snapshot || new Map()).size;
    page.members = page.snapshot || new Map();
    page.snapshot = null;
    page.orderDirty = true;
    page.revision = e.revision || page.revision;
    remember({ type: "SNAPSHOT", count });
    scheduleNow();
    return;
  }
  if (!e.member) return;
  const m = member(e.member);
  page.revision = e.revision || page.revision;
  if (type === "REMOVED") {
    page.members.delete(m.key);
    page.orderDirty = true;
  } else {
    if (!page.members.has(m.key)) page.orderDirty = true;
    page.members.set(m.key, m);
  }
  remember({ type, m });
  schedule();
}

function remember(entry) {
  entry.at = Date.now();
  page.events.push(entry);
  if (page.events.length > EVENTS_KEPT) page.events.splice(0, page.events.length - EVENTS_KEPT);
  page.eventsDirty = true;
}


function setConn(state, text) {
  const el = $("#conn");
  el.dataset.state = state;
  el.textContent = text;
  $("#main").classList.toggle("stale", state !== "live");
  setSummary();
}

async function stream() {
  let delay = BACKOFF_MS[0];
  let attempt = 0;
  for (;;) {
    const ctrl = new AbortController();
    let silence = 0;
    const alive = () => {
      clearTimeout(silence);
      silence = setTimeout(() => ctrl.abort(), STREAM_SILENCE_MS);
    };
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (page.revision) headers["Last-Event-ID"] = page.revision;
      alive();
      const res = await fetch("api/v1/events", { headers, cache: "no-store", signal: ctrl.signal });
      if (res.status === 401) {
        clearTimeout(silence);
        await signIn(page.token ? "The server refused this token." : "");
        continue;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
      setConn("live", "live");
      page.asOf = null;
      attempt = 0;
      delay = BACKOFF_MS[0];
      await readEvents(res.body, onEvent, alive);
    } catch (e) {
      console.debug("event stream:", e);
    } finally {
      clearTimeout(silence);
    }
    // The table was current until now; a snapshot half received is dropped.
    page.snapshot = null;
    page.asOf = page.asOf || Date.now();
    attempt += 1;
    const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
    setConn("reconnecting", `reconnecting (attempt ${attempt}, in ${(wait / 1000).toFixed(1)} s)…`);
    await new Promise((r) => setTimeout(r, wait));
    delay = Math.min(delay * 2, BACKOFF_MS[1]);
  }
}

// Resolves when the user has entered a token.
function signIn(problem) {
  setConn("unauthorized", "sign in required");
  const form = $("#login");
  form.hidden = false;
  $("#login-error").textContent = problem;
  form.elements.token.focus();
  return new Promise((resolve) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      page.token = form.elements.token.value.trim();
      sessionStorage.setItem(TOKEN_KEY, page.token);
      form.elements.token.value = "";
      form.hidden = true;
      setConn("connecting", "connecting…");
      resolve();
    };
  });
}

// Events carry last_seen only when a member changes; the table's own read
// has every member's latest. Re-read it now and then (less often for large
// tables) and take the newer last_seen of the same session.
async function refreshLastSeen() {
  for (;;) {
    const wait = Math.max(5000, page.members.size * 2);
    await new Promise((r) => setTimeout(r, wait));
    if (document.visibilityState !== "visible" || $("#conn").dataset.state !== "live") continue;
    try {
      const res = await fetch("api/v1/members", { headers: authHeaders({}), cache: "no-store" });
      if (!res.ok) continue;
      const list = await res.json();
      for (const raw of list.members || []) {
        const fresh = member(raw);
        const known = page.members.get(fresh.key);
        if (known && known.session === fresh.session && fresh.lastSeen > (known.lastSeen || 0)) {
          known.lastSeen = fresh.lastSeen;
        }
      }
      tick();
    } catch (e) {
      console.debug("refresh:", e);
    }
  }
}

// ---- filters ---------------------------------------------------------------




function readFilters() {
  const form = $("#filters");
  const f = page.filters;
  f.service = form.elements.service.value;
  f.state = form.elements.state.value;
  f.q = form.elements.q.value;
  const input = form.elements.label;
  try {
    page.labelTerms = parseLabels(input.value);
    f.label = input.value;
    input.removeAttribute("aria-invalid");
    $("#label-error").textContent = "";
  } catch (e) {
    input.setAttribute("aria-invalid", "true");
    $("#label-error").textContent = `Labels: ${e.message}`;
  }
  page.pageIndex = 0;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) params.set(k, v);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  scheduleNow();
}

function setFilter(name, value) {
  const el = $("#filters").elements[name];
  if (name === "service") ensureOption(el, value);
  el.value = value;
  readFilters();
}

function ensureOption(select, value) {
  if (value && ![...select.options].some((o) => o.value === value)) {
    select.add(new Option(value, value));
  }
}

// ---- rendering -------------------------------------------------------------

// Events are many: renders for them are coalesced, at most one per
// RENDER_MS. What the user does shows in the next frame.
function schedule() {
  if (!page.renderTimer) page.renderTimer = setTimeout(render, RENDER_MS);
}

function scheduleNow() {
  if (page.frame) return;
  page.frame = requestAnimationFrame(() => {
    page.frame = 0;
    render();
  });
}

function render() {
  clearTimeout(page.renderTimer);
  page.renderTimer = 0;
  if (page.orderDirty) {
    page.order = [...page.members.keys()].sort();
    page.orderDirty = false;
  }
  const services = countServices();
  renderServices(services);
  renderServiceOptions(services);
  renderMembers();
  if (page.eventsDirty) renderEvents();
  setSummary(services.size);
  if (page.markRender) {
    page.markRender = false;
    performance.clearMarks("heartbeat:snapshot-rendered");
    performance.mark("heartbeat:snapshot-rendered");
  }
}

function countServices() {
  const services = new Map();
  for (const key of page.order) {
    const m = page.members.get(key);
    let s = services.get(m.service);
    if (!s) {
      s = { ALIVE: 0, SUSPECT: 0, DEAD: 0, LEFT: 0, total: 0, serving: false };
      services.set(m.service, s);
    }
    s.total += 1;
    if (m.state in s) s[m.state] += 1;
    // SPEC §4: SERVING while one member is ALIVE or SUSPECT and SERVING.
    if ((m.state === "ALIVE" || m.state === "SUSPECT") && m.status === "SERVING") s.serving = true;
  }
  return services;
}


function renderServices(services) {
  const rows = [];
  let shown = 0;
  for (const [name, s] of services) {
    if (shown++ >= SERVICES_SHOWN) break;
    const health = s.serving ? "SERVING" : "NOT_SERVING";
    rows.push(
      el(
        "tr",
        { "data-service": name },
        el("td", {}, el("button", { type: "button", class: "link", "data-service": name }, name)),
        el("td", {}, el("span", { class: `health ${health}` }, health)),
        ...STATES.map((st) => el("td", { class: "num" }, String(s[st]))),
        el("td", { class: "num" }, String(s.total)),
      ),
    );
  }
  $("#services tbody").replaceChildren(...rows);
  const more = $("#services-more");
  more.hidden = services.size <= SERVICES_SHOWN;
  more.textContent = `…and ${services.size - SERVICES_SHOWN} more services: pick one in the filter below.`;
}

function renderServiceOptions(services) {
  const key = [...services.keys()].join("\n");
  if (key === page.servicesKey) return;
  page.servicesKey = key;
  const select = $("#filters").elements.service;
  const current = select.value;
  const options = [new Option("all services", "")];
  for (const name of services.keys()) options.push(new Option(name, name));
  select.replaceChildren(...options);
  ensureOption(select, current);
  select.value = current;
}

function renderMembers() {
  const match = matcher(page.filters, page.labelTerms);
  const view = [];
  let replicas = false;
  for (const key of page.order) {
    const m = page.members.get(key);
    if (m.replica) replicas = true;
    if (match(m)) view.push(m);
  }
  const pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
  page.pageIndex = Math.min(page.pageIndex, pages - 1);
  const from = page.pageIndex * PAGE_SIZE;
  const visible = view.slice(from, from + PAGE_SIZE);
  const now = Date.now();
  $("#members").classList.toggle("no-replica", !replicas);
  $("#members tbody").replaceChildren(...visible.map((m) => memberRow(m, now)));
  const total = page.members.size;
  const fmt = (n) => n.toLocaleString("en-US");
  $("#shown").textContent =
    view.length === 0
      ? total === 0
        ? "No members."
        : `No members match the filters (of ${fmt(total)}).`
      : `Showing ${fmt(from + 1)}–${fmt(from + visible.length)} of ${fmt(view.length)}` +
        (view.length === total ? " members." : ` matching members (of ${fmt(total)}).`);
  $("#page").textContent = `page ${page.pageIndex + 1} of ${pages}`;
  $("#prev").disabled = page.pageIndex === 0;
  $("#next").disabled = page.pageIndex >= pages - 1;
}

function memberRow(m, now) {
  const labels = Object.keys(m.labels)
    .sort()
    .map((k) =>
      el("button", { type: "button", class: "chip", "data-label": `${k}=${m.labels[k]}` }, `${k}=${m.labels[k]}`),
    );
  return el(
    "tr",
    { "data-key": m.key },
    el("td", {}, el("button", { type: "button", class: "link", "data-service": m.service }, m.service)),
    el("td", { class: "mono" }, m.instance),
    el("td", {}, el("span", { class: `state ${m.state}` }, m.state)),
    el("td", {}, el("span", { class: `status ${m.status}` }, m.status)),
    el("td", { class: "mono" }, m.endpoint || "—"),
    el("td", { class: "mono replica" }, m.replica || "—"),
    el("td", {}, seenCell(m.lastSeen, now)),
    el("td", { class: "labels" }, ...labels),
  );
}




// Every second: the visible "last seen" cells count up.
function tick() {
  const now = Date.now();
  for (const t of document.querySelectorAll("#members tbody time[data-at]")) {
    const key = t.closest("tr").dataset.key;
    const m = page.members.get(key);
    if (m && m.lastSeen !== null) t.dataset.at = String(m.lastSeen);
    t.textContent = ago(now - Number(t.dataset.at));
  }
}

function renderEvents() {
  page.eventsDirty = false;
  const items = [];
  for (let i = page.events.length - 1; i >= 0; i--) {
    const e = page.events[i];
    const time = el("time", { dateTime: new Date(e.at).toISOString() }, clock(e.at));
    if (e.type === "SNAPSHOT") {
      items.push(el("li", { class: "snapshot" }, time, el("span", { class: "what" }, "snapshot"),
        el("span", { class: "who" }, `${e.count.toLocaleString("en-US")} members`)));
      continue;
    }
    const m = e.m;
    const serving = m.status === "SERVING" ? "" : `, ${m.status}`;
    const what = e.type === "UPDATED" || e.type === "JOINED" ? `${e.type} → ${m.state}${serving}` : e.type;
    items.push(
      el("li", { "data-type": e.type }, time, el("span", { class: "what" }, what),
        el("span", { class: "who mono" }, `${m.service}/${m.instance}`)),
    );
  }
  $("#events").replaceChildren(...items);
}

function setSummary(serviceCount) {
  const fmt = (n) => n.toLocaleString("en-US");
  const parts = [];
  if (page.snapshot) parts.push(`loading… ${fmt(page.snapshot.size)} members`);
  else {
    parts.push(`${fmt(page.members.size)} members`);
    if (serviceCount !== undefined) parts.push(`${fmt(serviceCount)} services`);
  }
  if (page.revision) parts.push(`revision ${page.revision}`);
  if (page.asOf) parts.push(`as of ${clock(page.asOf)}`);
  $("#summary").textContent = parts.join(" · ");
}

// ---- wiring ----------------------------------------------------------------

function start() {
  const form = $("#filters");
  const params = new URLSearchParams(location.search);
  for (const name of ["service", "state", "label", "q"]) {
    const v = params.get(name);
    if (v === null) continue;
    if (name === "service") ensureOption(form.elements.service, v);
    form.elements[name].value = v;
  }
  form.addEventListener("input", readFilters);
  form.addEventListener("change", readFilters);
  form.addEventListener("submit", (ev) => ev.preventDefault());
  document.addEventListener("click", (ev) => {
    const target = ev.target.closest("button[data-service], button[data-label]");
    if (!target) return;
    if (target.dataset.service) setFilter("service", target.dataset.service);
    else {
      const input = form.elements.label;
      const terms = input.value.split(",").map((t) => t.trim()).filter(Boolean);
      if (!terms.includes(target.dataset.label)) terms.push(target.dataset.label);
      setFilter("label", terms.join(", "));
    }
  });
  $("#prev").addEventListener("click", () => {
    page.pageIndex = Math.max(0, page.pageIndex - 1);
    scheduleNow();
  });
  $("#next").addEventListener("click", () => {
    page.pageIndex += 1;
    scheduleNow();
  });
  readFilters();
  setInterval(tick, 1000);
  stream();
  refreshLastSeen();
}

start();
