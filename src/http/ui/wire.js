// The wire: the proto3 JSON of heartbeat.v1 messages, and the
// text/event-stream format /api/v1/events is sent in.

// An enum value's name without its prefix (`MEMBER_STATE_DEAD` → `DEAD`);
// `unset` for the zero value, which proto3 JSON leaves out.
export function short(value, prefix, unset) {
  if (!value || value.endsWith("_UNSPECIFIED")) return unset;
  return value.startsWith(prefix) ? value.slice(prefix.length) : value;
}

// A Timestamp's RFC 3339 text as milliseconds since the epoch.
function millis(ts) {
  if (!ts) return null;
  // RFC 3339 with up to 9 fractional digits; Date takes 3.
  const t = Date.parse(ts.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(t) ? null : t;
}

// A Member as the page keeps it: short names, defaults filled in.
export function member(m) {
  return {
    key: `${m.service}\u0000${m.instance}`,
    service: m.service,
    instance: m.instance,
    state: short(m.state, "MEMBER_STATE_", "UNKNOWN"),
    // An unset status means SERVING (SPEC §2).
    status: short(m.status, "MEMBER_STATUS_", "SERVING"),
    session: m.session || "0",
    endpoint: m.endpoint || "",
    replica: m.replica || "",
    labels: m.labels || {},
    lastSeen: millis(m.lastSeen),
  };
}

// Reads a text/event-stream body, calling onData for every event with data.
// Lines end in LF or CRLF (the server's; a lone CR, which the format also
// allows, is not looked for). A chunk is scanned once, not sliced per line:
// a snapshot of 10,000 members is megabytes.
export async function readEvents(body, onData, onActivity) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onActivity();
    buf += value;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf("\n", start);
      if (nl < 0) break;
      const end = nl > start && buf[nl - 1] === "\r" ? nl - 1 : nl;
      if (end === start) {
        if (data.length) onData(data.join("\n"));
        data = [];
      } else if (buf.startsWith("data:", start)) {
        data.push(buf.slice(start + (buf[start + 5] === " " ? 6 : 5), end));
      }
      // id, retry and comments: the revision is in the data itself, and
      // the reconnect delay is ours.
      start = nl + 1;
    }
    buf = buf.slice(start);
  }
}
