// Flowsight's analyst page: long-polls /v1/alerts and /v1/actions, polls /v1/health, draws charts in SVG.
"use strict";

const state = { alerts: new Map(), order: [], acked: new Map(), selected: null };
const $ = (id) => document.getElementById(id);
const fmtTime = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
const fmtNum = (v) => (Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(2) + "M" : Math.abs(v) >= 1e4 ?
  (v / 1e3).toFixed(1) + "k" : (Math.round(v * 100) / 100).toString());

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
      el("div", { class: "what" }, `${a.type} · ${a.entity}`),
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
  $("d-title").textContent = `${a.type} anomaly · ${a.entity}`;
  $("d-when").textContent = `window ${fmtTime(a.windowStartMs)} (${a.windowLengthMs / 1000} s) · sensor ${a.sensor}`;
  const facts = $("d-facts");
  facts.replaceChildren();
  const fact = (k, v) => facts.append(el("dt", {}, k), el("dd", {}, v));
  fact("model", `${a.model} (rung ${a.rung}; fired: ${a.firedRungs.join(", ") || "-"})`);
  fact("score", `${fmtNum(a.score)} (threshold ${fmtNum(a.threshold)})`);
  fact("p-value", a.pValue.toExponential(2));
  fact("P(event)", a.pEvent.toFixed(3));
  for (const [m, v] of Object.entries(a.observed)) {
    fact(m, `observed ${fmtNum(v.observed)}, expected ${fmtNum(v.expected)} (band ${fmtNum(v.low)}–${fmtNum(v.high)})`);
  }
  const charts = $("charts");
  charts.replaceChildren();
  for (const [metric, points] of Object.entries(a.series || {})) charts.append(chart(metric, points, a.windowStartMs));
  table($("t-flows"), ["src", "dst", "proto", "sport", "dport", "packets", "bytes"], a.topFlows);
  table($("t-src"), ["host", "bytes"], a.topSources);
  table($("t-dst"), ["host", "flows"], a.topDestinations);
  renderState(a);
}

function renderState(a) {
  const ack = state.acked.get(a.id);
  $("ack").disabled = !!ack;
  $("d-state").textContent = ack ? `acknowledged` : "";
}

function table(t, cols, rows) {
  t.replaceChildren(el("tr", {}, ...cols.map((c) => el("th", {}, c))));
  for (const r of rows || []) t.append(el("tr", {}, ...cols.map((c) => el("td", {}, typeof r[c] === "number" ? fmtNum(r[c]) : r[c]))));
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
  return el("div", { class: "chart", "data-metric": metric }, svg);
}

async function act(body) {
  const r = await fetch("/v1/actions", { method: "POST", headers: { "Content-Type": "application/json", "X-Flowsight-Page": "1" }, body: JSON.stringify(body) });
  if (!r.ok) alert(`the action was not accepted: ${(await r.json()).error}`);
}

$("ack").addEventListener("click", () => state.selected && act({ action: "ack", id: state.selected }));
$("suppress").addEventListener("click", () => {
  const a = state.alerts.get(state.selected);
  if (a) act({ action: "suppress", type: a.type, entity: a.entity, for_s: 3600 });
});

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
  setInterval(health, 5000);
}
