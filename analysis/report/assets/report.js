/* meltrig report page: every figure is read from the embedded analysis JSON of each file (the
 * object `meltrig analyze --json` prints, in <script id="meltrig-analysis-K">); the power plot and
 * the telemetry curves come from the plot data block (<script id="meltrig-plot-data">).
 * Test hook: "#click=ID,ID,..." clicks those controls in order once the page has drawn; the page
 * then sets data-actions-done on the body element (data-ready and data-plots once it is built). */
(function () {
  "use strict";
  const P = window.MeltrigPlots;
  const C = P.COLORS;

  const $ = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const fmt = (x, d) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toPrecision(d || 4));
  const ci = (c) => (c && c[0] !== null ? "[" + fmt(c[0]) + ", " + fmt(c[1]) + "]" : "–");
  // A scatter series: no line, filled points of its stroke colour.
  const scatter = (label, color, size, extra) => Object.assign({ label: label, stroke: color, paths: () => null,
    points: { show: true, size: size, fill: color } }, extra || {});

  function table(parent, head, rows) {
    const t = $("table");
    const tr = $("tr");
    for (const h of head) tr.appendChild($("th", {}, h));
    t.appendChild(tr);
    for (const r of rows) {
      const row = $("tr");
      for (const c of r) row.appendChild($("td", {}, String(c)));
      t.appendChild(row);
    }
    parent.appendChild(t);
    return t;
  }

  function section(parent, title, id) {
    parent.appendChild($("h3", {}, title));
    const d = $("div", { id: id });
    parent.appendChild(d);
    return d;
  }

  function summaryTable(parent, a) {
    const rows = a.repetitions.map((r) => [r.index, r.output_tokens, fmt(r.ttft_s), fmt(r.prefill_tok_s),
      fmt(r.decode_tok_s), fmt(r.j_per_token), fmt(r.j_per_token_net), fmt(r.melt_j_per_token), fmt(r.baseline_w)]);
    table(parent, ["repetition", "tokens", "TTFT s", "prefill tok/s", "decode tok/s", "J/token",
      "net J/token", "MELT J/token", "baseline W"], rows);
    const s = a.sync || {};
    parent.appendChild($("p", { class: "note" }, "Time map: " + (s.method || "?") + (s.note ? " (" + s.note + ")" : "") +
      ". MELT's formula (" + a.melt.formula + "): " + fmt(a.melt.melt_j_per_token) + " J/token; decode only: " +
      fmt(a.melt.decode_j_per_token) + " gross, " + fmt(a.melt.decode_j_per_token_net) + " net."));
    for (const w of a.warnings || []) parent.appendChild($("p", { class: "note warn" }, "warning: " + w));
  }

  function marks(a) {
    const phases = [];
    for (const r of a.repetitions) {
      for (const name in r.phases) phases.push({ name: name, start_s: r.phases[name].start_s, end_s: r.phases[name].end_s });
    }
    const lines = a.thermal.throttle_onset_s !== null ? [{ t_s: a.thermal.throttle_onset_s, label: "throttling" }] : [];
    return { phases: phases, tokens: a.tokens.map((t) => t.end_s), lines: lines };
  }

  function tokenPlot(el, a) {
    if (!a.tokens.length) return P.empty(el, "no tokens");
    const t = a.tokens.map((k) => k.end_s);
    const e = a.tokens.map((k) => k.energy_j), n = a.tokens.map((k) => k.net_energy_j);
    const rate = a.tokens.map((k) => (k.end_s > k.start_s ? 1 / (k.end_s - k.start_s) : null));
    const bins = a.thermal.series.filter((b) => b.tok_s !== null);
    const data = uPlot.join([[t, e, n, rate], [bins.map((b) => b.t_s), bins.map((b) => b.tok_s)]]);
    return P.plot(el, {
      scales: { x: { time: false }, J: {}, r: {} },
      axes: [{ label: "monitor time (s)" }, { scale: "J", label: "J per token", size: 60 },
        { scale: "r", side: 1, label: "tokens/s", grid: { show: false } }],
      series: [{}, scatter("J/token", C[0], 4, { scale: "J" }),
        scatter("net J/token", C[2], 4, { scale: "J" }),
        scatter("tokens/s (1 / token time)", C[1], 3, { scale: "r" }),
        { label: "tokens/s (thermal bins)", stroke: C[3], width: 2, scale: "r", spanGaps: true }],
    }, data);
  }

  function phasePlot(el, a) {
    const order = ["load", "prefill", "decode", "idle_before", "idle_after", "cooldown"];
    const names = Object.keys(a.phases).sort((p, q) => order.indexOf(p) - order.indexOf(q));
    if (!names.length) return P.empty(el, "no phases");
    const x = names.map((_, i) => i);
    const gross = names.map((k) => a.phases[k].energy_j), net = names.map((k) => a.phases[k].net_energy_j);
    const bars = (align) => uPlot.paths.bars({ size: [0.35, 80], align: align });
    P.plot(el, {
      scales: { x: { time: false, range: [-0.5, names.length - 0.5] } },
      axes: [{ splits: () => x, values: (u, s) => s.map((i) => names[i] || "") }, { label: "energy (J)", size: 60 }],
      series: [{}, { label: "gross J", stroke: C[0], fill: "rgba(31,111,209,0.7)", paths: bars(-1), points: { show: false } },
        { label: "net J (baseline subtracted)", stroke: C[2], fill: "rgba(42,157,75,0.7)", paths: bars(1), points: { show: false } }],
    }, [x, gross, net]);
    table(el.parentElement, ["phase", "start s", "duration s", "tokens", "gross J", "net J", "mean W", "peak W", "gap s"],
      names.map((k) => { const p = a.phases[k]; return [k, fmt(p.start_s), fmt(p.duration_s), p.tokens, fmt(p.energy_j), fmt(p.net_energy_j), fmt(p.mean_w), fmt(p.peak_w), fmt(p.gap_s)]; }));
  }

  function thermalPlot(el, a, telemetry) {
    const temps = telemetry.filter((s) => s.unit === "degC" || s.unit === "C");
    const bins = a.thermal.series.filter((b) => b.temp_c !== null);
    if (!temps.length && !bins.length) return P.empty(el, "no temperature series in this file");
    const tables = temps.map((s) => [s.t, s.v]);
    tables.push([bins.map((b) => b.t_s), bins.map((b) => b.temp_c)]);
    const series = [{}].concat(temps.map((s, i) => ({ label: s.name + " (°C)", stroke: C[i % C.length], width: 1.5, spanGaps: true })));
    series.push(scatter("bin means (analysis)", "#c0392b", 6));
    const th = a.thermal;
    const onset = th.throttle_onset_s;
    el.parentElement.appendChild($("p", { class: "note" }, onset !== null
      ? "Throttling from " + fmt(onset) + " s (" + th.trigger + "); cold median " + fmt(th.cold_median_tok_s) + " tokens/s."
      : "No throttling onset found; cold median " + fmt(th.cold_median_tok_s) + " tokens/s."));
    return P.plot(el, {
      scales: { x: { time: false } },
      axes: [{ label: "monitor time (s)" }, { label: "temperature (°C)", size: 60 }],
      series: series,
      hooks: { draw: [(u) => { if (onset !== null) P.vline(u, onset, "#9a4b00", "throttling onset"); }] },
    }, uPlot.join(tables));
  }

  function hlines(u, lines) {
    const c = u.ctx;
    c.save();
    for (const l of lines) {
      if (l.v === null) continue;
      const y = u.valToPos(l.v, "y", true);
      c.strokeStyle = l.color;
      c.setLineDash(l.dash || []);
      c.beginPath();
      c.moveTo(u.bbox.left, y);
      c.lineTo(u.bbox.left + u.bbox.width, y);
      c.stroke();
      c.fillStyle = l.color;
      c.font = "12px sans-serif";
      c.fillText(l.label, u.bbox.left + 4, y - 3);
    }
    c.restore();
  }

  function softwarePlots(parent, a, k) {
    if (!a.software_power.length) {
      parent.appendChild($("p", { class: "note" }, "No software power estimate (power/* telemetry) in this file."));
      return;
    }
    a.software_power.forEach((s, j) => {
      parent.appendChild($("h3", {}, s.series + " (" + s.unit + " × " + fmt(s.to_watts) + " → W)"));
      table(parent, ["readings", "bias %", "MAPE %", "RMSE W", "r", "limits of agreement %", "skipped", "USB-fed readings"],
        [[s.windows, fmt(s.bias_pct), fmt(s.mape_pct), fmt(s.rmse_w), fmt(s.r), ci([s.loa_low_pct, s.loa_high_pct]), s.skipped, s.usb.windows]]);
      if (s.note) parent.appendChild($("p", { class: "note" }, s.note));
      const pairs = (s.pairs || []).slice();
      const sc = $("div", { id: "f" + k + "-sw" + j + "-scatter" }), ba = $("div", { id: "f" + k + "-sw" + j + "-ba" });
      parent.append(sc, ba);
      if (!pairs.length) { P.empty(sc, "no readings"); P.empty(ba, "no readings"); return; }
      pairs.sort((p, q) => p[2] - q[2]);
      const ref = pairs.map((p) => p[2]);
      const est = (usb) => pairs.map((p) => (!!p[3] === usb ? p[1] : null));
      P.plot(sc, {
        scales: { x: { time: false } },
        axes: [{ label: "monitor W over the reading's interval" }, { label: "estimate (W)", size: 60 }],
        series: [{}, scatter("reading", C[0], 5),
          scatter("reading, USB-fed", C[1], 5),
          { label: "estimate = monitor", stroke: "#777", dash: [4, 4], spanGaps: true }],
      }, [ref, est(false), est(true), ref]);
      const m = pairs.filter((p) => !p[3]).map((p) => [(p[1] + p[2]) / 2, 100 * (p[1] - p[2]) / p[2]]).sort((p, q) => p[0] - q[0]);
      if (!m.length) { P.empty(ba, "only USB-fed readings"); return; }
      const mid = s.loa_low_pct !== null ? (s.loa_low_pct + s.loa_high_pct) / 2 : null;
      P.plot(ba, {
        scales: { x: { time: false } },
        axes: [{ label: "mean of estimate and monitor (W)" }, { label: "difference (% of monitor)", size: 60 }],
        series: [{}, scatter("reading (USB-free)", C[0], 5)],
        hooks: { draw: [(u) => hlines(u, [{ v: mid, label: "mean " + fmt(mid) + " %", color: "#333" },
          { v: s.loa_low_pct, label: "−1.96 s.d. " + fmt(s.loa_low_pct) + " %", color: "#9a4b00", dash: [5, 4] },
          { v: s.loa_high_pct, label: "+1.96 s.d. " + fmt(s.loa_high_pct) + " %", color: "#9a4b00", dash: [5, 4] }])] },
      }, [m.map((p) => p[0]), m.map((p) => p[1])]);
    });
  }

  const METRICS = [["decode_tok_s", "decode tokens/s"], ["prefill_tok_s", "prefill tokens/s"], ["ttft_s", "TTFT s"],
    ["j_per_token", "J/token"], ["j_per_token_net", "net J/token"], ["melt_j_per_token", "MELT J/token"], ["baseline_w", "baseline W"]];

  function ciPlot(el, labels, metrics, analyses, axis) {
    const x = labels.map((_, i) => i);
    const series = [{}], data = [x];
    metrics.forEach((m, i) => {
      series.push(scatter(m[1] + " (mean, 95% t interval)", C[i], 10));
      data.push(analyses.map((a) => (a.statistics.repetitions[m[0]] || {}).mean ?? null));
    });
    const bars = (u) => {
      const c = u.ctx;
      c.save();
      metrics.forEach((m, i) => {
        c.strokeStyle = C[i];
        c.lineWidth = 2;
        analyses.forEach((a, k) => {
          const s = a.statistics.repetitions[m[0]];
          if (!s || s.t_ci95[0] === null) return;
          const px = u.valToPos(k, "x", true);
          const y0 = u.valToPos(s.t_ci95[0], "y", true), y1 = u.valToPos(s.t_ci95[1], "y", true);
          c.beginPath(); c.moveTo(px, y0); c.lineTo(px, y1);
          c.moveTo(px - 5, y0); c.lineTo(px + 5, y0); c.moveTo(px - 5, y1); c.lineTo(px + 5, y1);
          c.stroke();
        });
      });
      c.restore();
    };
    const ys = [];
    analyses.forEach((a) => metrics.forEach((m) => { const s = a.statistics.repetitions[m[0]]; if (s) ys.push(s.mean, s.t_ci95[0], s.t_ci95[1]); }));
    const ok = ys.filter((v) => v !== null);
    const lo = Math.min.apply(null, ok), hi = Math.max.apply(null, ok), pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 1;
    return P.plot(el, {
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: [lo - pad, hi + pad] } },
      axes: [{ splits: () => x, values: (u, s) => s.map((i) => labels[i] || "") }, { label: axis, size: 60 }],
      series: series, hooks: { draw: [bars] },
    }, data);
  }

  function comparison(root, labels, analyses) {
    root.appendChild($("h2", {}, "Comparison across configurations"));
    root.appendChild($("p", { class: "note" }, "One configuration per file: mean over its repetitions, 95% Student t interval [low, high] and bootstrap interval, n repetitions (statistics.repetitions of each file's analysis)."));
    const rows = METRICS.map((m) => [m[1]].concat(analyses.map((a) => {
      const s = a.statistics.repetitions[m[0]];
      return s ? fmt(s.mean) + " t" + ci(s.t_ci95) + " boot" + ci(s.bootstrap_ci95) + " n=" + s.n : "–";
    })));
    table(root, ["metric"].concat(labels), rows);
    ciPlot(section(root, "Energy per token", "cmp-jpt"), labels, [METRICS[3], METRICS[4], METRICS[5]], analyses, "J per token");
    ciPlot(section(root, "Decode speed", "cmp-toks"), labels, [METRICS[0]], analyses, "tokens/s");
  }

  function fileSection(root, k, a, plotData) {
    const s = $("section", { id: "file-" + k });
    root.appendChild(s);
    s.appendChild($("h2", {}, plotData.label));
    s.appendChild($("p", { class: "note" }, a.file + ": " + a.samples + " samples at " + a.rate_hz + " Hz; " +
      a.repetitions.length + " repetitions, " + a.tokens.length + " tokens, baseline " + fmt(a.baseline_w) + " W."));
    summaryTable(s, a);
    const pw = section(s, "Power over time", "p" + k);
    s.appendChild($("p", { class: "note" }, plotData.power.note));
    P.power(pw, plotData.power, marks(a), "p" + k);
    tokenPlot(section(s, "Energy per token and tokens per second", "f" + k + "-tokens"), a);
    phasePlot(section(s, "Phases (summed over repetitions)", "f" + k + "-phases"), a);
    thermalPlot(section(s, "Thermal", "f" + k + "-thermal"), a, plotData.telemetry);
    s.appendChild($("h3", {}, "Software estimate versus monitor"));
    softwarePlots(s, a, k);
  }

  /* The test hook: "#click=ID,ID" clicks the page's own controls in order; "scroll=ID" brings an
   * element into view (for screenshots). Runs once the first drawing is done. */
  function runActions() {
    document.querySelectorAll(".plot[data-x-min]").forEach((e) => {
      e.dataset.initial = e.dataset.xMin + "," + e.dataset.xMax;
      e.dataset.initialPer = e.dataset.per;
    });
    const click = /click=([^&]*)/.exec(location.hash), scroll = /scroll=([^&]*)/.exec(location.hash);
    if (click) {
      for (const id of decodeURIComponent(click[1]).split(",")) {
        const b = document.getElementById(id);
        if (b) b.click(); else document.body.dataset.actionError = "no control " + id;
      }
    }
    if (scroll) {
      const e = document.getElementById(decodeURIComponent(scroll[1]));
      // Hides what comes before the element's part of the page (a headless screenshot shows the
      // top of the page whatever the scroll position).
      const root = document.getElementById("report");
      const kids = Array.from(root.children);
      const at = e ? kids.findIndex((k) => k === e || k.contains(e)) : -1;
      if (at < 0) document.body.dataset.actionError = "no element " + scroll[1];
      for (let i = 0; i < at - 1; i++) kids[i].style.display = "none";
    }
    setTimeout(() => {
      document.body.dataset.resources = String(performance.getEntriesByType("resource").length);
      document.body.dataset.actionsDone = "1";
    }, 50);
  }

  function main() {
    const data = JSON.parse(document.getElementById("meltrig-plot-data").textContent);
    const root = document.getElementById("report");
    const analyses = data.files.map((_, k) => JSON.parse(document.getElementById("meltrig-analysis-" + k).textContent));
    analyses.forEach((a, k) => fileSection(root, k, a, data.files[k]));
    if (analyses.length > 1) comparison(root, data.files.map((f) => f.label), analyses);
    document.body.dataset.plots = String(document.querySelectorAll(".plot").length);
    document.body.dataset.ready = "1";
    setTimeout(runActions, 50);
  }

  let violations = 0;
  document.addEventListener("securitypolicyviolation", () => { document.body.dataset.cspViolations = String(++violations); });
  try { main(); } catch (e) { document.body.dataset.error = String(e && e.stack || e); throw e; }
})();
