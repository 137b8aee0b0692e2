// DOM builders. Every value from the server goes in as text (append,
// textContent, properties), never as HTML.

// An element with attributes (`class`, `data-*`, else properties) and
// children (nodes or text).
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

// The "last seen" cell: how long ago, counted up by the page's tick.
export function seenCell(at, now) {
  if (at === null) return "—";
  const t = el("time", { dateTime: new Date(at).toISOString(), title: new Date(at).toISOString() });
  t.dataset.at = String(at);
  t.textContent = ago(now - at);
  return t;
}

// 24-hour local time, HH:MM:SS.
export function clock(at) {
  return new Date(at).toLocaleTimeString("en-GB", { hour12: false });
}

// A duration as "12s ago", "3m 4s ago", "2h 5m ago", "3d ago".
export function ago(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
