// Filters of the members table. A label selector is written as in
// Kubernetes: `k=v`, `k==v`, `k!=v`, `k` (has the label), `!k` (has not),
// joined by commas; every term must hold.

// The terms of a label selector; throws naming the term that is neither.
export function parseLabels(text) {
  const terms = [];
  for (const raw of text.split(",")) {
    const t = raw.trim();
    if (!t) continue;
    let m = /^([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*(.*)$/.exec(t);
    if (m) {
      terms.push({ key: m[1], op: m[2] === "!=" ? "ne" : "eq", value: m[3].trim() });
      continue;
    }
    m = /^(!?)([A-Za-z0-9._/-]+)$/.exec(t);
    if (m) {
      terms.push({ key: m[2], op: m[1] ? "absent" : "present" });
      continue;
    }
    throw new Error(`"${t}" is not k=v, k!=v, k or !k`);
  }
  return terms;
}

// Whether `labels` (an object) satisfies every term.
export function labelsMatch(labels, terms) {
  for (const t of terms) {
    const has = Object.prototype.hasOwnProperty.call(labels, t.key);
    if (t.op === "present" && !has) return false;
    if (t.op === "absent" && has) return false;
    if (t.op === "eq" && (!has || labels[t.key] !== t.value)) return false;
    if (t.op === "ne" && has && labels[t.key] === t.value) return false;
  }
  return true;
}

// Whether member `m` passes `filters` ({service, state, q}) and the parsed
// label `terms`. State "problem" is anything but ALIVE and SERVING.
export function matcher(filters, terms) {
  const { service, state } = filters;
  const q = filters.q.trim().toLowerCase();
  return (m) =>
    (!service || m.service === service) &&
    (!state ||
      (state === "problem" ? m.state !== "ALIVE" || m.status !== "SERVING" : m.state === state)) &&
    (!terms.length || labelsMatch(m.labels, terms)) &&
    (!q || m.instance.toLowerCase().includes(q) || m.endpoint.toLowerCase().includes(q));
}
