// meltrig view: follows the server's JSON updates over a WebSocket (protocol: docs/view.md).
"use strict";
const $ = (id) => document.getElementById(id);
let bucket = 0, t = [], mean = [], lo = [], hi = [], plot = null, ws = null;

function makePlot(unit) {
  const opts = {
    width: Math.max(400, window.innerWidth - 40), height: 360,
    scales: { x: { time: false } },
    axes: [{ label: "time (s, monitor clock)" }, { label: unit }],
    series: [
      { label: "t (s)" },
      { label: "mean", stroke: "#1f5fbf", width: 1 },
      { label: "min", stroke: "#9db8e6", width: 1 },
      { label: "max", stroke: "#9db8e6", width: 1 },
    ],
  };
  plot = new uPlot(opts, [t, mean, lo, hi], $("plot"));
}

// Splices msg.points into the arrays: replace everything from bucket `first` on.
function takePoints(p) {
  if (p.bucket !== bucket && p.first !== 0) { ws.send(JSON.stringify({ since: 0 })); return; }
  if (p.first > t.length) { ws.send(JSON.stringify({ since: t.length * bucket })); return; }
  bucket = p.bucket;
  for (const [arr, add] of [[t, p.t], [mean, p.mean], [lo, p.min], [hi, p.max]]) {
    arr.length = p.first;
    for (const v of add) arr.push(v);
  }
  plot.setData([t, mean, lo, hi], $("follow").checked);
  $("bucket").textContent = `${t.length} points of ${bucket} sample(s)`;
}

function rows(table, pairs) {
  table.innerHTML = "";
  for (const [k, v, hot] of pairs) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    const c = tr.insertCell(); c.textContent = v; c.className = "n" + (hot ? " hot" : "");
  }
}

function takeStatus(m) {
  $("file").textContent = m.file;
  rows($("counts"), [
    ["state", m.state + (m.end_reason ? ` (${m.end_reason})` : ""), m.state !== "running" && m.state !== "complete"],
    ["samples", m.samples_written.toLocaleString()],
    ["duration", m.duration_s.toFixed(3) + " s"],
    ["rate", m.sample_rate_hz + " Hz"],
    ["gap rows", m.gaps.rows, m.gaps.rows > 0],
    ["missing samples", m.gaps.missing_samples, m.gaps.missing_samples > 0],
  ]);
  rows($("losses"), Object.entries(m.counters).map(([k, v]) => [k, v, v > 0]));
  const tk = m.tokens;
  $("tokinfo").textContent = tk.source ? `${tk.count} tokens, last event ${tk.last_event} (device clock)` : (tk.note || "no markers");
  rows($("tokens"), tk.latest.slice().reverse().map((x) => ["#" + x.index, x.t_s.toFixed(3) + " s"]));
}

function connect() {
  ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "ok"; };
  ws.onclose = () => { $("conn").textContent = "disconnected, retrying"; $("conn").className = "bad"; setTimeout(connect, 2000); };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "error") { $("conn").textContent = m.message; $("conn").className = "bad"; return; }
    if (!plot) makePlot(`${m.series} (${m.unit})`);
    takeStatus(m);
    if (m.points) takePoints(m.points);
  };
}

$("reset").onclick = () => { $("follow").checked = true; plot && plot.setData([t, mean, lo, hi], true); };
connect();
