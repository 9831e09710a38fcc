// steer view: the unit table, the unit panel and the steering panel, built from the page's embedded JSON.
// Every text of the data goes on the page through textContent (never as markup); no request of any kind.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("view-data").textContent);
  var SVGNS = "http://www.w3.org/2000/svg";
  var byId = {};
  DATA.units.forEach(function (u) { byId[u.id] = u; });

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    var a = Math.abs(v);
    return a !== 0 && (a < 0.001 || a >= 1e5) ? v.toExponential(2) : v.toFixed(a >= 100 ? 1 : 3);
  }
  // orange for positive values, blue for negative (gated MLPs have both), strength by |v| / scale
  function shade(v, scale) {
    var t = Math.max(-1, Math.min(1, (v || 0) / (scale || 1)));
    return t >= 0 ? "rgba(245,124,0," + (0.85 * t).toFixed(3) + ")" : "rgba(30,110,220," + (-0.85 * t).toFixed(3) + ")";
  }
  function vocab(id) { var s = DATA.vocab[String(id)]; return s === undefined ? "#" + id : s; }

  // ---------------------------------------------------------------------------------------------- table
  var COLS = [
    ["side", "side"], ["rank", "#"], ["layer", "layer"], ["index", "unit"], ["score", DATA.meta.score],
    ["lo", "interval"], ["freq", "top-k freq"], ["mean_a", "mean A"], ["mean_c", "mean not A"], ["mean", "mean"],
    ["std", "std"]
  ].filter(function (c) { return DATA.meta.has_stability || (c[0] !== "lo" && c[0] !== "freq"); });
  var sortKey = null, sortDir = 1, selected = null;
  var filt = { text: "", side: "all", detail: false };

  function buildFilters() {
    var box = document.getElementById("filters");
    var q = el("input", { type: "search", id: "unit-filter", placeholder: "filter: layer 12, unit 345, L12:345" });
    q.addEventListener("input", function () { filt.text = q.value.trim(); renderTable(); });
    var side = el("select", { id: "side-filter" });
    ["all", "for", "against"].forEach(function (s) { side.appendChild(el("option", { value: s }, s)); });
    side.addEventListener("change", function () { filt.side = side.value; renderTable(); });
    var det = el("input", { type: "checkbox", id: "detail-filter" });
    det.addEventListener("change", function () { filt.detail = det.checked; renderTable(); });
    var lab = el("label", null, " with per-token detail only");
    lab.prepend(det);
    box.append(q, side, lab, el("span", { id: "row-count", class: "note" }));
  }
  function matches(u) {
    if (filt.side !== "all" && u.side !== filt.side) return false;
    if (filt.detail && !u.detail) return false;
    if (!filt.text) return true;
    var t = filt.text.toLowerCase().replace(/^l/, "");
    var m = t.match(/^(\d+)\s*[:.]\s*(\d+)$/);
    if (m) return u.layer === +m[1] && u.index === +m[2];
    if (/^layer\s+\d+$/.test(t)) return u.layer === +t.split(/\s+/)[1];
    if (/^unit\s+\d+$/.test(t)) return u.index === +t.split(/\s+/)[1];
    return (u.side + " " + u.layer + ":" + u.index).indexOf(t) >= 0;
  }
  function renderTable() {
    var table = document.getElementById("unit-table");
    table.textContent = "";
    var head = el("tr");
    COLS.forEach(function (c) {
      var th = el("th", { "data-key": c[0] }, c[1] + (sortKey === c[0] ? (sortDir > 0 ? " ▲" : " ▼") : ""));
      th.addEventListener("click", function () {
        sortDir = sortKey === c[0] ? -sortDir : 1;
        sortKey = c[0];
        renderTable();
      });
      head.appendChild(th);
    });
    var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    var rows = DATA.units.filter(matches);
    if (sortKey) {
      rows = rows.slice().sort(function (a, b) {
        var x = a[sortKey], y = b[sortKey];
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * sortDir;
      });
    }
    var tbody = el("tbody");
    rows.forEach(function (u) {
      var tr = el("tr", { class: "unit" + (u.id === selected ? " sel" : ""), "data-uid": u.id });
      COLS.forEach(function (c) {
        var v = u[c[0]], text;
        if (c[0] === "lo") text = "[" + fmt(u.lo) + ", " + fmt(u.hi) + "]";
        else if (typeof v === "number" && c[0] !== "layer" && c[0] !== "index" && c[0] !== "rank") text = fmt(v);
        else text = v;
        tr.appendChild(el("td", c[0] === "side" ? { class: "side-" + u.side } : null, text));
      });
      tr.addEventListener("click", function () { openUnit(u.id); });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    document.getElementById("row-count").textContent = rows.length + " of " + DATA.units.length + " units";
  }

  // ---------------------------------------------------------------------------------------------- panel
  function world(i) { return DATA.worlds[i]; }
  function drawImage(img) {
    var c = el("canvas", { width: img.w, height: img.h, class: "digit" });
    var ctx = c.getContext("2d"), d = ctx.createImageData(img.w, img.h);
    for (var p = 0; p < img.pixels.length; p++) {
      d.data[4 * p] = d.data[4 * p + 1] = d.data[4 * p + 2] = img.pixels[p]; d.data[4 * p + 3] = 255;
    }
    ctx.putImageData(d, 0, 0);
    return c;
  }
  function example(det, pair, scale) {
    var w = world(pair[0]), box = el("div", { class: "ex" + (w.a ? " in-a" : "") });
    box.appendChild(el("span", { class: "val", title: w.a ? "in A" : "not in A" }, fmt(pair[1])));
    var vals = det.tokens ? det.tokens[String(pair[0])] : null;
    if (w.image) box.appendChild(drawImage(w.image));
    if (vals && w.tokens) {
      w.tokens.forEach(function (t, k) {
        var s = el("span", { class: "tok" }, vocab(t));
        s.style.backgroundColor = shade(vals[k], scale);
        s.title = "activation " + fmt(vals[k]) + " (token " + JSON.stringify(vocab(t)) + ")";
        box.appendChild(s);
      });
    } else if (w.text !== null && w.text !== undefined) {
      box.appendChild(el("span", null, w.text));
    }
    var f = Object.keys(w.fields).map(function (k) { return k + "=" + w.fields[k]; }).join(", ");
    if (f) box.appendChild(el("span", { class: "note" }, "  (" + f + ")"));
    return box;
  }
  function tokenScale(det) {
    var m = 0;
    if (det.tokens) Object.keys(det.tokens).forEach(function (k) {
      det.tokens[k].forEach(function (v) { m = Math.max(m, Math.abs(v || 0)); });
    });
    return m || 1;
  }
  function histogram(det) {
    var h = det.hist, W = 360, H = 120, n = h.a.length, bw = W / n;
    var top = Math.max.apply(null, h.a.concat(h.c).concat([1]));
    var s = svg("svg", { width: W + 40, height: H + 34, class: "hist" });
    for (var i = 0; i < n; i++) {
      var ha = h.a[i] / top * H, hc = h.c[i] / top * H;
      s.appendChild(svg("rect", { x: 30 + i * bw, y: H - hc + 4, width: bw / 2, height: hc, fill: "rgb(33,102,172)" }));
      s.appendChild(svg("rect", { x: 30 + i * bw + bw / 2, y: H - ha + 4, width: bw / 2, height: ha, fill: "rgb(178,24,43)" }));
    }
    s.appendChild(svg("text", { x: 30, y: H + 18, class: "ax" }, fmt(h.lo)));
    s.appendChild(svg("text", { x: 30 + W, y: H + 18, class: "ax", "text-anchor": "end" }, fmt(h.hi)));
    s.appendChild(svg("text", { x: 30 + W / 2, y: H + 30, class: "ax", "text-anchor": "middle" },
      "activation: red A, blue not A (worlds per bin)"));
    s.appendChild(svg("text", { x: 26, y: 12, class: "ax", "text-anchor": "end" }, top));
    return s;
  }
  function ruleMap(det) {
    var W = 260, H = 160, lo = det.range[0], hi = det.range[1];
    if (hi <= lo) hi = lo + 1;
    var ys = [lo, hi], lines = [];
    ["toward", "away"].forEach(function (d) {
      if (!det.map[d]) return;
      var f = function (a) { return det.map[d][0] * a + det.map[d][1]; };
      lines.push([d, f]); ys.push(f(lo), f(hi));
    });
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (y1 <= y0) y1 = y0 + 1;
    var X = function (a) { return 36 + (a - lo) / (hi - lo) * W; };
    var Y = function (b) { return 6 + (y1 - b) / (y1 - y0) * H; };
    var s = svg("svg", { width: W + 50, height: H + 36, class: "map" });
    s.appendChild(svg("line", { x1: X(lo), y1: Y(lo), x2: X(hi), y2: Y(hi), stroke: "#999", "stroke-dasharray": "4 3" }));
    var colours = { toward: "rgb(178,24,43)", away: "rgb(33,102,172)" };
    lines.forEach(function (l) {
      s.appendChild(svg("line", { x1: X(lo), y1: Y(l[1](lo)), x2: X(hi), y2: Y(l[1](hi)), stroke: colours[l[0]], "stroke-width": 2 }));
    });
    s.appendChild(svg("text", { x: 36, y: H + 20, class: "ax" }, fmt(lo)));
    s.appendChild(svg("text", { x: 36 + W, y: H + 20, class: "ax", "text-anchor": "end" }, fmt(hi)));
    s.appendChild(svg("text", { x: 32, y: 12, class: "ax", "text-anchor": "end" }, fmt(y1)));
    s.appendChild(svg("text", { x: 32, y: H + 6, class: "ax", "text-anchor": "end" }, fmt(y0)));
    s.appendChild(svg("text", { x: 36 + W / 2, y: H + 32, class: "ax", "text-anchor": "middle" },
      "a -> a': red toward, blue away, dashed identity"));
    return s;
  }
  function chips(list, cls) {
    var box = el("div", { class: "chips" });
    (list || []).forEach(function (p) {
      var c = el("span", { class: "chip " + cls, title: fmt(p[1]) }, vocab(p[0]));
      box.appendChild(c);
    });
    return box;
  }
  function openUnit(uid) {
    var u = byId[uid], det = DATA.details[uid];
    if (!u || !det) return;
    selected = uid;
    document.querySelectorAll("#unit-table tr.sel, svg .mk.sel").forEach(function (e) { e.classList.remove("sel"); });
    document.querySelectorAll('[data-uid="' + uid + '"]').forEach(function (e) { e.classList.add("sel"); });
    try { if (location.hash !== "#unit=" + uid) history.replaceState(null, "", "#unit=" + uid); } catch (e) { /* srcdoc */ }
    var p = document.getElementById("panel");
    p.textContent = "";
    p.appendChild(el("h3", { id: "panel-title" }, "unit " + u.side + " #" + u.rank + ": layer " + u.layer + ", index " +
      u.index + "; " + DATA.meta.score + " " + fmt(u.score) +
      (u.lo !== undefined ? " [" + fmt(u.lo) + ", " + fmt(u.hi) + "], top-k freq " + fmt(u.freq) : "")));
    p.appendChild(el("p", { class: "note" }, "mean on A " + fmt(u.mean_a) + ", on not A " + fmt(u.mean_c) +
      ", mean " + fmt(u.mean) + ", std " + fmt(u.std) + ". Values left of each example: the unit's recorded value (" +
      DATA.meta.reduce + " over the tokens)." + (det.tokens ? " Token colour: the activation at that token " +
      "(orange positive, blue negative; hover for the value)." : " Per-token colours are computed for the " +
      DATA.meta.detail + " strongest units of each side.")));
    var scale = tokenScale(det);
    [["top", "activate it most"], ["bottom", "activate it least"], ["quantile", "samples from quantile bins, low to high"]].forEach(function (k) {
      p.appendChild(el("h3", null, "Worlds that " + (k[0] === "quantile" ? "are " : "") + k[1]));
      var box = el("div", { class: "examples", "data-kind": k[0] });
      det[k[0]].forEach(function (pair) { box.appendChild(example(det, pair, scale)); });
      p.appendChild(box);
    });
    var cols = el("div", { class: "cols" }), a = el("div"), b = el("div");
    a.append(el("h3", null, "Activation over the worlds"), histogram(det));
    cols.appendChild(a);
    if (det.map) { b.append(el("h3", null, "The rule's map (" + DATA.meta.intervention.rule + ", coeff " +
      DATA.meta.intervention.coeff + ")"), ruleMap(det)); cols.appendChild(b); }
    p.appendChild(cols);
    if (det.promotes) {
      p.appendChild(el("h3", null, "What it writes"));
      p.appendChild(el("p", { class: "note" }, "W_down column times the final norm's weight, through the unembedding " +
        "(a linear approximation: the norm's scale and later layers are ignored)."));
      p.append(el("div", null, "promotes"), chips(det.promotes, "pos"), el("div", null, "suppresses"), chips(det.suppresses, "neg"));
      p.appendChild(el("h3", null, "What it reads"));
      p.appendChild(el("p", { class: "note" }, "silu(gate) * up of each token's normalised embedding (direct path only)."));
      p.append(el("div", null, "most positive"), chips(det.reads, "pos"), el("div", null, "most negative"), chips(det.reads_neg, "neg"));
    }
    if (det.explain) {
      p.appendChild(el("h3", null, "Best candidate propositions (explain_unit, by D with 90% bootstrap interval)"));
      var t = el("table", { class: "small" });
      t.appendChild(el("tr")).append(el("th", null, "proposition"), el("th", null, "D"), el("th", null, "interval"));
      det.explain.forEach(function (r) {
        t.appendChild(el("tr")).append(el("td", null, r.name), el("td", null, fmt(r.D)), el("td", null, "[" + fmt(r.D_lo) + ", " + fmt(r.D_hi) + "]"));
      });
      p.appendChild(t);
    }
  }

  // ---------------------------------------------------------------------------------------------- steering
  function steered(list) {
    var box = el("div", { class: "toks" }), m = 0;
    list.forEach(function (p) { m = Math.max(m, Math.abs(p[1] || 0)); });
    list.forEach(function (p) {
      var s = el("span", { class: "tok" }, vocab(p[0]));
      s.style.backgroundColor = shade(p[1], m);
      s.title = "log p change " + fmt(p[1]);
      box.appendChild(s);
    });
    return box;
  }
  function benchPlot(b) {
    var scorer = b.scorers[0], W = 420, H = 220, pts = [];
    Object.keys(b.curves).forEach(function (k) { b.curves[k].forEach(function (p) { pts.push(p); }); });
    b.matched.forEach(function (p) { pts.push(p); });
    var xs = pts.map(function (p) { return p.ratio; }), x0 = Math.min.apply(null, xs.concat([1])), x1 = Math.max.apply(null, xs.concat([1.6]));
    var X = function (r) { return 40 + (r - x0) / (x1 - x0) * W; }, Y = function (v) { return 8 + (1 - v) * H; };
    var s = svg("svg", { width: W + 220, height: H + 40, id: "bench-plot" });
    s.appendChild(svg("line", { x1: 40, y1: Y(0), x2: 40 + W, y2: Y(0), stroke: "#999" }));
    s.appendChild(svg("line", { x1: 40, y1: Y(0), x2: 40, y2: Y(1), stroke: "#999" }));
    var palette = ["#b2182b", "#2166ac", "#1b7837", "#762a83", "#e08214", "#555"], n = 0;
    Object.keys(b.curves).forEach(function (k) {
      var c = palette[n % palette.length], pl = b.curves[k].slice().sort(function (p, q) { return p.ratio - q.ratio; });
      s.appendChild(svg("polyline", { fill: "none", stroke: c, points: pl.map(function (p) { return X(p.ratio) + "," + Y(p[scorer] || 0); }).join(" ") }));
      s.appendChild(svg("text", { x: 50 + W, y: 16 + 14 * n, class: "ax", fill: c }, k));
      n++;
    });
    b.matched.forEach(function (p) {
      var dot = svg("circle", { cx: X(p.ratio), cy: Y(p[scorer] || 0), r: 5, fill: "none", stroke: "#000", "stroke-width": 2 });
      dot.appendChild(svg("title", null, p.method + " at " + p.budget + "x (read on " + (p.split || "dev") + "): ppl ratio " + fmt(p.ratio) + ", success " + fmt(p[scorer])));
      s.appendChild(dot);
    });
    s.appendChild(svg("text", { x: 40 + W / 2, y: H + 30, class: "ax", "text-anchor": "middle" }, "perplexity / unsteered (dev)"));
    s.appendChild(svg("text", { x: 36, y: 14, class: "ax", "text-anchor": "end" }, "1"));
    s.appendChild(svg("text", { x: 36, y: H + 8, class: "ax", "text-anchor": "end" }, "0"));
    s.appendChild(svg("text", { x: 50 + W, y: H, class: "ax" }, "success (" + scorer + "); lines: dev runs; circles: matched points"));
    return s;
  }
  function renderSteering() {
    var box = document.getElementById("steer-body"), st = DATA.steering;
    if (!st) {
      box.appendChild(el("p", { class: "note" }, "No steering panel for this set (" + (DATA.meta.notes.join("; ") || "none asked for") + ")."));
    } else {
      box.appendChild(el("p", { class: "note" }, "Rule " + st.rule + ", coeff " + st.coeff + ", positions " + st.apply_to +
        "; " + st.max_new_tokens + " new tokens, seed " + st.seed + ". Steered tokens are coloured by how much steering changed " +
        "their log-probability (orange: more likely, blue: less; hover for the value)."));
      st.prompts.forEach(function (row) {
        box.appendChild(el("h3", null, row.prompt));
        var g = el("div", { class: "gen" });
        var a = el("div"); a.append(el("span", { class: "lbl" }, "unsteered"), el("span", null, row.unsteered));
        var b = el("div"); b.append(el("span", { class: "lbl" }, "toward " + DATA.meta.proposition.name), steered(row.toward));
        var c = el("div"); c.append(el("span", { class: "lbl" }, "away from " + DATA.meta.proposition.name), steered(row.away));
        g.append(a, b, c);
        box.appendChild(g);
      });
    }
    if (DATA.bench) {
      box.appendChild(el("h3", null, "Benchmark: success against perplexity toward " + DATA.bench.target));
      box.appendChild(benchPlot(DATA.bench));
    }
  }

  buildFilters();
  renderTable();
  renderSteering();
  document.querySelectorAll("svg .mk").forEach(function (m) {
    m.addEventListener("click", function () { openUnit(m.getAttribute("data-uid")); });
  });
  var h = location.hash.match(/^#unit=(\w+)$/);
  if (h) openUnit(h[1]);
  document.body.setAttribute("data-ready", "1");
})();
