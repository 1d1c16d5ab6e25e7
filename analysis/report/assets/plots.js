/* meltrig plots: shared by the report and the live view. Needs uPlot (inlined before this).
 *
 * MeltrigPlots.power(el, src, marks) draws power over time from a level-of-detail pyramid and
 * re-picks the level whenever the visible range changes (drag to zoom, or the controls):
 *   src   = {rate_hz, samples, levels: [{per, windows: [{first, n, mean, min?, max?}]}]}
 *           per = samples per entry (1 = raw samples); first = entry index; mean/min/max =
 *           base64 little-endian float32 arrays (NaN = missing); raw levels carry mean only.
 *   marks = {phases: [{name, start_s, end_s}], tokens: [t_s...], lines: [{t_s, label}]}
 * The returned object has setRange(a, b), reset(), zoom(f), pan(f), phaseRange(name).
 * Every plot element gets data-drawn="1" and data-ink (saturated pixels of its data) after each
 * draw, and the power plot data-x-min, data-x-max, data-per and data-points: the page's state,
 * readable from the DOM. */
(function () {
  "use strict";
  const COLORS = ["#1f6fd1", "#d1571f", "#2a9d4b", "#8e44ad", "#c0392b", "#b8860b", "#16a3a3"];
  const PHASE_FILL = {
    load: "rgba(142,68,173,0.10)", prefill: "rgba(209,87,31,0.12)", decode: "rgba(31,111,209,0.10)",
    idle_before: "rgba(90,90,90,0.07)", idle_after: "rgba(90,90,90,0.07)", cooldown: "rgba(22,163,163,0.06)",
  };

  function decodeF32(b64) {
    if (!b64) return new Float32Array(0);
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const dv = new DataView(bytes.buffer);
    const out = new Float32Array(bytes.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }

  function width(el) { return Math.max(320, Math.min(1160, el.clientWidth || 1160)); }

  /* Counts saturated, opaque pixels inside the plotting area: series and points, not the gray
   * axes, grid or the translucent phase shading. */
  function ink(u) {
    const b = u.bbox;
    if (b.width < 1 || b.height < 1) return 0;
    const img = u.ctx.getImageData(b.left, b.top, b.width, b.height).data;
    let n = 0;
    for (let i = 0; i < img.length; i += 4) {
      const r = img[i], g = img[i + 1], bl = img[i + 2], a = img[i + 3];
      if (a > 100 && Math.max(r, g, bl) - Math.min(r, g, bl) > 60) n++;
    }
    return n;
  }

  function markDrawn(u) {
    const el = u.root.parentElement;
    el.dataset.drawn = "1";
    el.dataset.ink = String(ink(u));
  }

  /* A uPlot in `el` with hooks that record drawing; opts are uPlot options (width filled in). */
  function plot(el, opts, data) {
    el.classList.add("plot");
    opts.width = width(el);
    opts.height = opts.height || 260;
    opts.hooks = opts.hooks || {};
    opts.hooks.draw = [markDrawn].concat(opts.hooks.draw || []);
    return new uPlot(opts, data, el);
  }

  function empty(el, text) {
    el.classList.add("plot", "empty");
    el.textContent = text;
    el.dataset.drawn = "0";
    return null;
  }

  function vline(u, t, color, label) {
    const x = u.valToPos(t, "x", true);
    if (!(x >= u.bbox.left && x <= u.bbox.left + u.bbox.width)) return;
    const c = u.ctx;
    c.save();
    c.strokeStyle = color;
    c.setLineDash([6, 4]);
    c.lineWidth = 1.5;
    c.beginPath();
    c.moveTo(x, u.bbox.top);
    c.lineTo(x, u.bbox.top + u.bbox.height);
    c.stroke();
    if (label) {
      c.fillStyle = color;
      c.font = "12px sans-serif";
      c.fillText(label, x + 4, u.bbox.top + 14);
    }
    c.restore();
  }

  /* ---- the power plot ---------------------------------------------------------------- */

  function decodeLevels(src) {
    return src.levels.map((l) => ({
      per: l.per,
      windows: l.windows.map((w) => ({
        first: w.first, n: w.n, mean: decodeF32(w.mean),
        min: w.min ? decodeF32(w.min) : null, max: w.max ? decodeF32(w.max) : null,
      })),
    })).sort((a, b) => a.per - b.per);
  }

  function covers(level, rate, a, b) {
    const i0 = Math.floor(a * rate / level.per), i1 = Math.ceil(b * rate / level.per);
    let at = i0;
    for (const w of level.windows) {
      if (w.first > at) break;
      if (w.first + w.n > at) at = w.first + w.n;
      if (at >= i1) return true;
    }
    return at >= i1;
  }

  function slice(level, rate, a, b, total) {
    const x = [], mean = [], lo = [], hi = [];
    const val = (v) => (Number.isNaN(v) ? null : v);
    for (const w of level.windows) {
      const t0 = w.first * level.per / rate, t1 = (w.first + w.n) * level.per / rate;
      if (t1 < a || t0 > b) continue;
      const k0 = Math.max(0, Math.floor(a * rate / level.per) - w.first);
      const k1 = Math.min(w.n, Math.ceil(b * rate / level.per) - w.first + 1);
      if (x.length) { x.push(t0 - 1e-9); mean.push(null); lo.push(null); hi.push(null); }
      for (let k = k0; k < k1; k++) {
        const first = (w.first + k) * level.per;
        const n = Math.min(level.per, total - first);
        x.push((first + (level.per > 1 ? n / 2 : 0)) / rate);
        mean.push(val(w.mean[k]));
        lo.push(w.min ? val(w.min[k]) : null);
        hi.push(w.max ? val(w.max[k]) : null);
      }
    }
    return [x, lo, hi, mean];
  }

  function power(el, src, marks, id) {
    const rate = src.rate_hz, total = src.samples, end = total / rate;
    if (!total) return empty(el, "no samples");
    const levels = decodeLevels(src);
    const state = { a: 0, b: end, per: 0, busy: false };
    const pickLevel = (a, b) => {
      const limit = 8 * width(el);
      for (const l of levels) {
        if ((b - a) * rate / l.per <= limit && covers(l, rate, a, b)) return l;
      }
      return levels[levels.length - 1];
    };
    const drawMarks = (u) => {
      const c = u.ctx, top = u.bbox.top, h = u.bbox.height;
      c.save();
      for (const p of marks.phases || []) {
        const x0 = u.valToPos(p.start_s, "x", true), x1 = u.valToPos(p.end_s, "x", true);
        c.fillStyle = PHASE_FILL[p.name] || "rgba(0,0,0,0.05)";
        c.fillRect(x0, top, Math.max(1, x1 - x0), h);
      }
      c.restore();
    };
    const drawTokens = (u) => {
      const c = u.ctx, top = u.bbox.top;
      c.save();
      c.strokeStyle = "#444";
      c.lineWidth = 1;
      c.beginPath();
      for (const t of marks.tokens || []) {
        if (t < state.a || t > state.b) continue;
        const x = Math.round(u.valToPos(t, "x", true)) + 0.5;
        c.moveTo(x, top);
        c.lineTo(x, top + 8);
      }
      c.stroke();
      c.restore();
      for (const l of marks.lines || []) vline(u, l.t_s, "#9a4b00", l.label);
    };
    const record = (u, data) => {
      let n = 0;
      for (let i = 0; i < data[0].length; i++) {
        if (data[3][i] !== null && data[0][i] >= state.a && data[0][i] <= state.b) n++;
      }
      Object.assign(el.dataset, {
        xMin: state.a.toFixed(6), xMax: state.b.toFixed(6), per: String(state.per), points: String(n),
      });
    };
    let current = null;
    const u = plot(el, {
      scales: { x: { time: false } },
      axes: [{ label: "monitor time (s)" }, { label: "power (W)", size: 60 }],
      series: [
        {},
        { label: "min", stroke: "rgba(31,111,209,0.35)", width: 1 },
        { label: "max", stroke: "rgba(31,111,209,0.35)", width: 1 },
        { label: "power", stroke: COLORS[0], width: 1.5 },
      ],
      bands: [{ series: [2, 1], fill: "rgba(31,111,209,0.18)" }],
      cursor: { drag: { x: true, y: false } },
      hooks: {
        drawClear: [drawMarks],
        draw: [drawTokens, (uu) => record(uu, current)],
        setScale: [(uu, key) => { if (key === "x" && !state.busy) show(uu.scales.x.min, uu.scales.x.max); }],
      },
    }, [[], [], [], []]);
    function show(a, b) {
      a = Math.max(0, a); b = Math.min(end, b);
      if (!(b > a)) return;
      const l = pickLevel(a, b);
      Object.assign(state, { a: a, b: b, per: l.per, busy: true });
      const span = b - a;
      current = slice(l, rate, a - span, b + span, total);
      u.setData(current, false);
      u.setScale("x", { min: a, max: b });
      state.busy = false;
    }
    const api = {
      uplot: u,
      setRange: show,
      reset: () => show(0, end),
      zoom: (f) => { const c = (state.a + state.b) / 2, h = (state.b - state.a) * f / 2; show(c - h, c + h); },
      pan: (f) => { const d = (state.b - state.a) * f; show(state.a + d, state.b + d); },
      phaseRange: (name) => {
        const p = (marks.phases || []).find((q) => q.name === name);
        if (p) show(p.start_s, p.end_s);
      },
    };
    controls(el, api, marks, id);
    api.reset();
    return api;
  }

  function button(parent, id, text, fn) {
    const b = document.createElement("button");
    b.id = id;
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", fn);
    parent.appendChild(b);
    return b;
  }

  function controls(el, api, marks, id) {
    const bar = document.createElement("div");
    bar.className = "controls";
    el.parentElement.insertBefore(bar, el);
    button(bar, id + "-all", "whole run", api.reset);
    button(bar, id + "-zoom-in", "zoom in ×4", () => api.zoom(0.25));
    button(bar, id + "-zoom-out", "zoom out ×4", () => api.zoom(4));
    button(bar, id + "-left", "◀", () => api.pan(-0.5));
    button(bar, id + "-right", "▶", () => api.pan(0.5));
    const seen = new Set();
    for (const p of marks.phases || []) {
      if (seen.has(p.name) || p.name.startsWith("idle")) continue;
      seen.add(p.name);
      button(bar, id + "-phase-" + p.name, p.name, () => api.phaseRange(p.name));
    }
    const from = document.createElement("input"), to = document.createElement("input");
    from.id = id + "-from"; to.id = id + "-to";
    from.placeholder = "from s"; to.placeholder = "to s";
    bar.append(from, to);
    button(bar, id + "-show", "show", () => api.setRange(parseFloat(from.value), parseFloat(to.value)));
    const hint = document.createElement("span");
    hint.className = "note";
    hint.textContent = "drag across the plot to zoom; shaded: phases; ticks: tokens";
    bar.appendChild(hint);
  }

  window.MeltrigPlots = { COLORS, decodeF32, plot, empty, vline, power };
})();
