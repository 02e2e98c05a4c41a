// Flowsight's analyst page: long-polls /v1/alerts and /v1/actions, polls /v1/health, draws charts in SVG.
"use strict";

const state = { alerts: new Map(), order: [], acked: new Map(), selected: null };
const $ = (id) => document.getElementById(id);
const fmtTime = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
const fmtNum = (v) => (Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(2) + "M" : Math.abs(v) >= 1e4 ?
  (v / 1e3).toFixed(1) + "k" : (Math.round(v * 100) / 100).toString());
const PROTOS = { 1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmp6", 132: "sctp" };
const fmtProto = (p) => PROTOS[p] || String(p);
// a port is a name, not a quantity: 25600, never 25.6k; with its protocol where it is known
const fmtPort = (port, proto) => (proto === 6 || proto === 17 || proto === 132) ? `${port}/${fmtProto(proto)}` : String(port);
const isAddr = (s) => typeof s === "string" && (/^\d+\.\d+\.\d+\.\d+$/.test(s) || /^[0-9a-f:]+$/i.test(s) && s.includes(":"));
const GLOSSARY = {
  flows: "flow records in the window (one per direction of a conversation)",
  packets: "packets in the window", bytes: "IP bytes in the window",
  failed: "TCP flows that sent SYN and never an ACK: connection attempts nobody answered, or that were reset",
  dports: "distinct destination ports (TCP and UDP) in the window",
  fanin: "flows to the busiest single destination: many sources converging on one host",
  L0: "L0: the window's value against the running mean + 3 sigma of all windows (the baseline)",
  L1: "L1: seasonal model (rate per time of day and weekday, Ihler et al.): how unlikely the value is now",
  L2: "L2: persistence (a two-state Markov filter over L1's p-values): evidence of an event sustained over windows",
  "P(event)": "L2's probability that the window is part of an event", "p-value": "L1's probability of a value this high or higher",
  entity: "a detector per entity: what one source did (scans, brute force, beacons, DNS tunnels, exfiltration, long connections)",
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// The session is an HttpOnly cookie set by POST /v1/login: this script never sees it or the token.
let loginShown = false;
function needLogin() {
  if (loginShown) return;
  loginShown = true;
  $("app").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("token").focus();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/v1/login", { method: "POST", headers: { "Content-Type": "application/json", "X-Flowsight-Page": "1" },
    body: JSON.stringify({ token: $("token").value }) });
  if (r.ok) { location.reload(); return; }
  $("login-error").textContent = (await r.json()).error;
});

// signing out ends every session of this token's name, on every worker
$("signout").addEventListener("click", async () => {
  await fetch("/v1/logout", { method: "POST", headers: { "X-Flowsight-Page": "1" } });
  location.reload();
});

async function longPoll(path, onRecords) {
  let cursor = null;
  for (;;) {
    try {
      const q = new URLSearchParams({ timeout: "25" });
      if (cursor) q.set("cursor", cursor);
      const r = await fetch(`${path}?${q}`);
      if (r.status === 401) { needLogin(); return; }
      if (!r.ok) throw new Error(`${path}: ${r.status}`);
      const body = await r.json();
      cursor = body.cursor;
      if (body.records.length) onRecords(body.records);
      setConn(true);
    } catch (e) {
      setConn(false);
      await new Promise((res) => setTimeout(res, 3000));
    }
  }
}

function setConn(ok) {
  const c = $("conn");
  c.textContent = ok ? "live" : "reconnecting…";
  c.className = "pill " + (ok ? "ok" : "bad");
}

function addAlerts(records) {
  for (const a of records) {
    if (state.alerts.has(a.id)) continue;          // a repeat after a worker crash carries the same id
    state.alerts.set(a.id, a);
    state.order.push(a.id);
  }
  state.order.sort((x, y) => state.alerts.get(y).windowStartMs - state.alerts.get(x).windowStartMs);
  renderList();
}

function addActions(records) {
  for (const act of records) if (act.action === "ack") state.acked.set(act.id, act);
  renderList();
  if (state.selected) renderState(state.alerts.get(state.selected));
}

function renderList() {
  const ul = $("alerts");
  ul.replaceChildren();
  for (const id of state.order) {
    const a = state.alerts.get(id);
    const li = el("li", { "data-id": id, class: (state.acked.has(id) ? "acked " : "") + (id === state.selected ? "selected" : "") },
      el("div", { class: "what" }, finding(a)),
      el("div", { class: "muted" }, `${fmtTime(a.windowStartMs)} · ${a.sensor} · ${a.rung} · score ${fmtNum(a.score)}`));
    li.addEventListener("click", () => select(id));
    ul.append(li);
  }
  $("count").textContent = state.order.length ? `(${state.order.length})` : "";
  $("empty").hidden = state.order.length > 0;
}

function select(id) {
  state.selected = id;
  renderList();
  const a = state.alerts.get(id);
  $("detail").hidden = false;
  $("d-title").textContent = finding(a);
  $("d-when").textContent = `window ${fmtTime(a.windowStartMs)} (${a.windowLengthMs / 1000} s) · sensor ${a.sensor}`;
  const facts = $("d-facts");
  facts.replaceChildren();
  const fact = (k, v) => facts.append(el("dt", {}, k), el("dd", {}, v));
  fact("model", `${a.model} (rung ${a.rung}: ${GLOSSARY[a.rung] || ""}; fired: ${(a.firedRungs || []).join(", ") || "-"})`);
  fact("score", `${fmtNum(a.score)} (threshold ${fmtNum(a.threshold)})`);
  if (a.pValue !== undefined) fact("p-value", a.pValue.toExponential(2));
  if (a.pEvent !== undefined) fact("P(event)", a.pEvent.toFixed(3));
  // a detector per entity's evidence: its counts as facts, its lists as a table
  const lists = Object.entries(a.evidence || {}).filter(([, v]) => Array.isArray(v) && v.length);
  for (const [k, v] of Object.entries(a.evidence || {})) {
    if (Array.isArray(v)) continue;
    fact(k, typeof v === "object" && v !== null ? Object.entries(v).map(([x, y]) => `${x}: ${fmtNum(y)}`).join(", ") :
      typeof v === "number" ? fmtNum(v) : String(v));
  }
  for (const [m, v] of Object.entries(a.observed || {})) {
    fact(m, `observed ${fmtNum(v.observed)}, expected ${fmtNum(v.expected)} (band ${fmtNum(v.low)}–${fmtNum(v.high)})` +
      (GLOSSARY[m] ? ` — ${GLOSSARY[m]}` : ""));
  }
  $("glossary").replaceChildren(...Object.entries(GLOSSARY).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const charts = $("charts");
  charts.replaceChildren();
  for (const [metric, points] of Object.entries(a.series || {})) charts.append(chart(metric, points, a.windowStartMs));
  // the evidence ranked by what made the alert: failed attempts when they stood out, else bytes and fan-in
  if (a.rung === "entity") {
    const rows = (v) => v.map((x) => (typeof x === "object" ? x : { value: x }));
    const [first, second, third] = lists;
    $("h-flows").textContent = first ? first[0] : "Evidence"; table($("t-flows"), first ? Object.keys(rows(first[1])[0]) : [], first ? rows(first[1]) : []);
    $("h-src").textContent = second ? second[0] : ""; table($("t-src"), second ? Object.keys(rows(second[1])[0]) : [], second ? rows(second[1]) : []);
    $("h-dst").textContent = third ? third[0] : ""; table($("t-dst"), third ? Object.keys(rows(third[1])[0]) : [], third ? rows(third[1]) : []);
  } else if (failedLed(a)) {
    $("h-flows").textContent = "Failed attempts by destination port"; table($("t-flows"), ["port", "attempts"], a.failedPorts);
    $("h-src").textContent = "Sources of failed attempts"; table($("t-src"), ["host", "attempts"], a.failedSources);
    $("h-dst").textContent = "Targets of failed attempts"; table($("t-dst"), ["host", "attempts"], a.failedDestinations);
  } else {
    $("h-flows").textContent = "Top flows (bytes)"; table($("t-flows"), ["src", "dst", "proto", "sport", "dport", "packets", "bytes"], a.topFlows);
    $("h-src").textContent = "Top inside sources (bytes)"; table($("t-src"), ["host", "bytes"], a.topSources);
    $("h-dst").textContent = "Top destinations (flows to it)"; table($("t-dst"), ["host", "flows"], a.topDestinations);
  }
  renderState(a);
}

function renderState(a) {
  const ack = state.acked.get(a.id);
  $("ack").disabled = !!ack;
  $("d-state").textContent = ack ? `acknowledged${ack.by ? " by " + ack.by : ""}${ack.at_ms ? " at " + fmtTime(ack.at_ms) : ""}` +
    (ack.note ? `: ${ack.note}` : "") : "";
}

function hostLink(addr) {
  const a = el("a", { class: "host", title: `flows of ${addr}` }, addr);
  a.addEventListener("click", () => openHost(addr));
  return a;
}

function cell(c, r) {
  const v = r[c];
  if (c === "sport" || c === "dport") return el("td", { class: "num" }, fmtPort(v, r.proto));
  if (c === "proto") return el("td", {}, fmtProto(v));
  if (["src", "dst", "host", "key", "value"].includes(c) && isAddr(v)) return el("td", {}, hostLink(v));
  return el("td", typeof v === "number" ? { class: "num", title: String(v) } : {}, typeof v === "number" ? fmtNum(v) : v ?? "");
}

function table(t, cols, rows) {
  t.replaceChildren(el("tr", {}, ...cols.map((c) => el("th", { title: GLOSSARY[c] || "" }, c))));
  for (const r of rows || []) t.append(el("tr", {}, ...cols.map((c) => cell(c, r))));
}

function chart(metric, points, markMs) {
  // points: [t, observed, expected, low, high, L1 threshold]
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 160, L = 48, R = 8, T = 16, B = 20;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${metric} over the last windows with the expected band`);
  const ts = points.map((p) => p[0]);
  const ys = points.flatMap((p) => [p[1], p[4], p[5] || 0]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1);
  const y1 = Math.max(...ys, 1) * 1.08;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / y1) * (H - T - B);
  const path = (cls, d) => { const p = document.createElementNS(NS, "path"); p.setAttribute("class", cls); p.setAttribute("d", d); svg.append(p); };
  const line = (i) => points.map((p, k) => `${k ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[i]).toFixed(1)}`).join("");
  if (points.length) {
    const upper = points.map((p, k) => `${k ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[4]).toFixed(1)}`).join("");
    const lower = points.slice().reverse().map((p) => `L${x(p[0]).toFixed(1)},${y(p[3]).toFixed(1)}`).join("");
    path("band", upper + lower + "Z");
    path("expected", line(2));
    if (points.every((p) => p.length > 5 && p[5] > 0)) path("threshold", line(5));
    path("observed", line(1));
    const m = document.createElementNS(NS, "line");
    m.setAttribute("class", "marker");
    m.setAttribute("x1", x(markMs)); m.setAttribute("x2", x(markMs)); m.setAttribute("y1", T); m.setAttribute("y2", H - B);
    svg.append(m);
  }
  const label = (tx, ty, s, anchor) => { const e = document.createElementNS(NS, "text"); e.setAttribute("x", tx); e.setAttribute("y", ty); e.setAttribute("text-anchor", anchor || "start"); e.textContent = s; svg.append(e); };
  label(L, 11, `${metric}: observed (solid), expected (dashed) and its band, L1 threshold (dotted)`);
  label(L - 4, y(y1 / 1.08) + 3, fmtNum(y1 / 1.08), "end");
  label(L - 4, H - B + 3, "0", "end");
  timeAxis(svg, t0, t1, x, H - 4, label);
  return el("div", { class: "chart", "data-metric": metric }, svg);
}

// capture time on the x axis: the first, middle and last windows' times (dates when the span is over a day)
function timeAxis(svg, t0, t1, x, yPos, label) {
  const span = t1 - t0;
  const fmt = (t) => { const s = new Date(t).toISOString(); return span > 86400000 ? s.slice(0, 16).replace("T", " ") : s.slice(11, 16); };
  label(x(t0), yPos, fmt(t0), "start");
  if (span > 0) { label(x((t0 + t1) / 2), yPos, fmt((t0 + t1) / 2), "middle"); label(x(t1), yPos, fmt(t1) + " UTC", "end"); }
}

// failed attempts made the alert: they stood out most against their expectation
function failedLed(a) {
  const f = (a.observed || {}).failed;
  return !!(f && a.failedDestinations && a.failedDestinations.length && a.type === "traffic" &&
    Object.values(a.observed).every((v) => v.observed / Math.max(v.expected, 1) <= f.observed / Math.max(f.expected, 1)));
}

// what the alert is about, in a line: the class, the entity, what stood out most against its expectation
function finding(a) {
  if (a.title) return a.title;
  if (failedLed(a)) {
    const d = a.failedDestinations[0], p = (a.failedPorts || [])[0];
    return `SYN flood on ${d.host}${p ? ":" + p.port : ""}: ${fmtNum(d.attempts)} unanswered attempts from ` +
      `${a.failedSourcesSeen >= 256 ? "at least " : ""}${fmtNum(a.failedSourcesSeen)} sources (sensor ${a.sensor})`;
  }
  const what = { traffic: "Unusual traffic", "host-bytes": "Unusual outbound bytes" }[a.type] || a.type;
  const worst = Object.entries(a.observed || {}).sort(([, p], [, q]) =>
    q.observed / Math.max(q.expected, 1) - p.observed / Math.max(p.expected, 1))[0];
  let line = `${what} ${a.type === "host-bytes" ? "from" : "at"} ${a.entity}`;
  if (worst) line += `: ${worst[0]} ${fmtNum(worst[1].observed)} (expected about ${fmtNum(worst[1].expected)})`;
  const dst = (a.topDestinations || [])[0];
  if (a.type === "traffic" && worst && ["failed", "fanin"].includes(worst[0]) && dst) line += `, mostly to ${dst.host}`;
  return line;
}

async function act(body) {
  const note = $("note").value.trim();
  if (note) body.note = note;
  const r = await fetch("/v1/actions", { method: "POST", headers: { "Content-Type": "application/json", "X-Flowsight-Page": "1" }, body: JSON.stringify(body) });
  if (!r.ok) { alert(`the action was not accepted: ${(await r.json()).error}`); return false; }
  $("note").value = "";
  setTimeout(loadSuppressions, 500);
  return true;
}

$("ack").addEventListener("click", () => state.selected && act({ action: "ack", id: state.selected }));
$("suppress").addEventListener("click", () => {
  const a = state.alerts.get(state.selected);
  if (a) act({ action: "suppress", type: a.type, entity: a.entity, for_s: 3600 });
});
$("to-flows").addEventListener("click", () => {
  const a = state.alerts.get(state.selected);
  if (!a) return;
  // a detector per entity looked back up to hours (a beacon, slow exfiltration, a long connection): so does the search
  const ev = a.evidence || {};
  const back = a.rung === "entity" ? Math.max(ev.spanMs || 0, ev.openMs || 0, ev.runMs || 0, 3600000) : 0;
  const since = new Date(a.windowStartMs - back).toISOString(), until = new Date(a.windowStartMs + a.windowLengthMs).toISOString();
  const [who, , peer] = String(a.entity).split(" ");
  const target = a.rung === "entity" ? `sensor ${a.sensor} and src host ${who}` + (peer && peer.match(/^[0-9a-f.:]+$/i) ? ` and dst host ${peer}` : "") :
    a.type === "host-bytes" ? `src host ${a.entity}` :
    failedLed(a) ? `sensor ${a.sensor} and dst host ${a.failedDestinations[0].host}` :
      (a.topDestinations || []).length && "fanin" in (a.observed || {}) ?
        `sensor ${a.sensor} and dst host ${a.topDestinations[0].host}` : `sensor ${a.sensor}`;
  search(since, until, target);
});

// -- views
function show(view) {
  for (const [tab, id] of [["tab-alerts", "app"], ["tab-flows", "explorer"], ["tab-supp", "suppressions"]]) {
    $(id).hidden = view !== id;
    $(tab).classList.toggle("on", view === id);
  }
}
$("tab-alerts").addEventListener("click", () => show("app"));
$("tab-flows").addEventListener("click", () => show("explorer"));
$("tab-supp").addEventListener("click", () => { show("suppressions"); loadSuppressions(); });

// -- the flows explorer: a range of capture time and a filter in nfdump's syntax, the flows, top N and a chart
const FLOW_COLS = ["start", "dur", "proto", "src", "sport", "dst", "dport", "flags", "packets", "bytes", "sensor"];
const FLAGS = [[32, "U"], [16, "A"], [8, "P"], [4, "R"], [2, "S"], [1, "F"]];
function flowRow(r) {
  return { start: fmtTime(r.flowStartMilliseconds).slice(0, 19), dur: ((r.flowEndMilliseconds - r.flowStartMilliseconds) / 1000).toFixed(3),
    proto: r.protocolIdentifier, src: r.sourceIPv4Address || r.sourceIPv6Address, sport: r.sourceTransportPort,
    dst: r.destinationIPv4Address || r.destinationIPv6Address, dport: r.destinationTransportPort,
    flags: r.protocolIdentifier === 6 ? FLAGS.map(([b, c]) => (r.tcpControlBits & b ? c : ".")).join("") : "",
    packets: r.packetDeltaCount, bytes: r.octetDeltaCount, sensor: r.flowsight.sensor };
}

async function getJSON(path, params) {
  const r = await fetch(`${path}?${new URLSearchParams(params)}`);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${path}: ${r.status}`);
  return body;
}

async function search(since, until, filter) {
  show("explorer");
  $("q-since").value = since || ""; $("q-until").value = until || ""; $("q-filter").value = filter || "";
  await runSearch();
}

async function runSearch() {
  const params = {};
  for (const [k, id] of [["since", "q-since"], ["until", "q-until"], ["filter", "q-filter"]]) if ($(id).value.trim()) params[k] = $(id).value.trim();
  if (!params.until) params.until = new Date().toISOString();   // a range that ends: the answer is complete
  $("q-status").textContent = "searching…";
  try {
    const since = params.since ? Date.parse(params.since) || Number(params.since) : null;
    const span = since ? Math.max(Date.parse(params.until) - since, 60000) : 3600000;
    const bucket = Math.max(1, Math.round(span / 1000 / 60));   // about 60 points on the chart
    const [flows, src, dst, port, proto] = await Promise.all([
      getJSON("/v1/flows", { ...params, limit: "500", timeout: "30" }),
      getJSON("/v1/top", { ...params, by: "srcip", metric: "bytes", n: "10", bucket: String(bucket) }),
      getJSON("/v1/top", { ...params, by: "dstip", metric: "bytes", n: "10" }),
      getJSON("/v1/top", { ...params, by: "dstport", metric: "flows", n: "10" }),
      getJSON("/v1/top", { ...params, by: "proto", metric: "bytes", n: "10" })]);
    const rows = flows.records.map(flowRow);
    table($("q-flows"), FLOW_COLS, rows);
    $("q-count").textContent = `(${rows.length}${flows.complete ? "" : "+, the first ones"})`;
    table($("q-top-src"), ["key", "flows", "bytes"], src.top);
    table($("q-top-dst"), ["key", "flows", "bytes"], dst.top);
    table($("q-top-port"), ["key", "flows", "bytes"], port.top);
    table($("q-top-proto"), ["key", "flows", "bytes"], proto.top);
    $("q-chart").replaceChildren(trafficChart(src.series));
    $("q-status").textContent = `${src.records} flows in the range${src.complete ? "" : " (partial: the range was not read to its end in time)"}`;
    hostPanel(params.filter || "");
  } catch (e) {
    $("q-status").textContent = String(e.message || e);
  }
}
$("search").addEventListener("submit", (ev) => { ev.preventDefault(); runSearch(); });

function trafficChart(series) {
  const rows = (series && series.rows) || [];
  const pts = rows.map((r) => [r[0], r[3], 0, 0, 0]);
  const NS = "http://www.w3.org/2000/svg";
  const W = 900, H = 140, L = 48, R = 8, T = 16, B = 20;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "bytes over capture time");
  const label = (tx, ty, s, anchor) => { const e = document.createElementNS(NS, "text"); e.setAttribute("x", tx); e.setAttribute("y", ty); e.setAttribute("text-anchor", anchor || "start"); e.textContent = s; svg.append(e); };
  if (pts.length) {
    const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1), y1 = Math.max(...pts.map((p) => p[1]), 1);
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R), y = (v) => H - B - (v / y1) * (H - T - B);
    const p = document.createElementNS(NS, "path");
    p.setAttribute("class", "observed");
    p.setAttribute("d", pts.map((q, k) => `${k ? "L" : "M"}${x(q[0]).toFixed(1)},${y(q[1]).toFixed(1)}`).join(""));
    svg.append(p);
    label(L - 4, T + 3, fmtNum(y1), "end"); label(L - 4, H - B + 3, "0", "end");
    timeAxis(svg, t0, t1, x, H - 4, label);
  }
  label(L, 11, `bytes per ${series ? series.bucketMs / 1000 : "?"} s of capture time`);
  return el("div", { class: "chart", "data-metric": "traffic" }, svg);
}

// a host's page: its flows (the search), its peers and ports (the top N), and the alerts about it
function hostPanel(filter) {
  const m = /^host (\S+)$/.exec(filter.trim());
  if (!m) { $("q-host").replaceChildren(); return; }
  const about = state.order.map((id) => state.alerts.get(id)).filter((a) => a.entity === m[1] ||
    (a.topDestinations || []).some((d) => d.host === m[1]) || (a.topSources || []).some((d) => d.host === m[1]));
  $("q-host").replaceChildren(el("h2", {}, `Host ${m[1]}`),
    el("p", { class: "muted" }, about.length ? `${about.length} alert(s) about it:` : "No alert about it."),
    ...about.map((a) => { const b = el("button", { type: "button" }, `${fmtTime(a.windowStartMs)} ${finding(a)}`);
      b.addEventListener("click", () => { show("app"); select(a.id); }); return b; }));
}

function openHost(addr) {
  search($("q-since").value || "", $("q-until").value || "", `host ${addr}`);
}

// -- suppressions: listed with who, when, why and until when; lifted in one click
async function loadSuppressions() {
  try {
    const body = await getJSON("/v1/suppressions", {});
    $("supp-count").textContent = body.suppressions.length ? `(${body.suppressions.length})` : "";
    const t = $("supp");
    t.replaceChildren(el("tr", {}, ...["type", "entity", "until", "by", "at", "note", ""].map((c) => el("th", {}, c))));
    for (const s of body.suppressions) {
      const lift = el("button", { type: "button", class: "lift" }, "Lift");
      lift.addEventListener("click", async () => { if (await act({ action: "lift", type: s.type, entity: s.entity })) setTimeout(loadSuppressions, 800); });
      t.append(el("tr", { "data-entity": s.entity }, el("td", {}, s.type), el("td", {}, s.entity), el("td", {}, fmtTime(s.until_ms)),
        el("td", {}, s.by || ""), el("td", {}, s.at_ms ? fmtTime(s.at_ms) : ""), el("td", {}, s.note || ""), el("td", {}, lift)));
    }
  } catch (e) { /* the long polls report the connection */ }
}

async function health() {
  try {
    const h = await (await fetch("/v1/health")).json();
    const pills = [el("span", { class: "pill " + (h.status === "ok" ? "ok" : "bad") }, `worker ${h.status}`)];
    if (h.placebo && h.placebo.passing !== null) {
      pills.push(el("span", { class: "pill " + (h.placebo.passing ? "ok" : "bad") }, `placebo ${h.placebo.passing ? "passing" : "failing"}`));
    } else if (h.placebo) {   // no evidence either way: never a green light
      pills.push(el("span", { class: "pill" }, h.placebo.source ? "placebo: nothing due yet here" : "placebo source off"));
    }
    if (h.kafka && h.kafka.reachable === false) {
      pills.push(el("span", { class: "pill bad" }, `Kafka not answering (${h.kafka.last_answer_s_ago ?? "never"} s)`));
    }
    $("status").replaceChildren($("conn"), ...pills);
    const progress = Object.entries(h.progress || {});
    const sensors = progress.filter(([k]) => k.startsWith("sensor:"));
    const stages = progress.filter(([k]) => ["ingest", "decode", "merge", "emit", "score"].includes(k));
    $("sensors").replaceChildren(
      el("div", {}, sensors.length ? "Sensors: " + sensors.map(([k, v]) =>
        `${k.slice(7)} ${fmtNum(v.packets || 0)} packets in ${v.uploads || 0} uploads, last ${v.last_progress_s_ago}s ago`).join(" · ") : ""),
      el("div", { id: "stages" }, stages.length ? "Last progress: " + stages.map(([k, v]) =>
        `${k} ${v.last_progress_s_ago}s ago`).join(" · ") : ""),
      // records that missed their window's score: said per sensor, never silently
      ...Object.entries((h.scoring && h.scoring.models) || {})
        .filter(([, m]) => m.late_records || m.ahead_records)
        .map(([s, m]) => el("div", { class: "late" }, [
          m.late_records ? `${fmtNum(m.late_records)} records of sensor ${s} came after their window was scored` : "",
          m.ahead_records ? `${fmtNum(m.ahead_records)} records of sensor ${s} lay far ahead of its clock and were not scored` : "",
        ].filter(Boolean).join("; "))));
  } catch (e) { /* the long polls report the connection */ }
}

if (document.body.dataset.signedIn === "no") {
  needLogin();
} else {
  longPoll("/v1/alerts", addAlerts);
  longPoll("/v1/actions", addActions);
  health();
  loadSuppressions();
  setInterval(loadSuppressions, 15000);
  setInterval(health, 5000);
}
