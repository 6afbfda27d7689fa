// The knob explorer of awbench (loaded by awbench/apps/knobs/explorer_view.py; its data is
// explorer.py's): notebook 08, present mode and the report run this same script. The grid arrives once (D, explorer_payload); a slider move is
// a lookup (or a precomputed snap), and every panel, the texts and the data attributes are
// updated in one synchronous handler, so no frame shows two settings at once. Every sentence
// is Python's, looked up here.
var awbenchExplorer = (function () {
  "use strict";
  var PANELS = ["plane", "gap", "sigma_g", "sigma_w"];

  function css(D) {
    var C = D.colors, f = D.font;
    return (
      ".awbench-explorer{font-size:" + f + "px;line-height:1.3;color:#111;display:flex;" +
      "flex-wrap:wrap;gap:6px;align-items:flex-start;font-family:system-ui,-apple-system," +
      "'Segoe UI',Roboto,sans-serif}" +
      ".awbench-explorer .aw-header{flex-basis:100%}" +
      ".awbench-explorer .aw-header b{font-size:" + (f + 4) + "px}" +
      ".awbench-explorer .aw-controls{width:360px;display:flex;flex-direction:column;gap:2px}" +
      ".awbench-explorer .aw-knob label{display:flex;justify-content:space-between;gap:6px}" +
      ".awbench-explorer .aw-knob output{font-weight:bold;font-variant-numeric:tabular-nums}" +
      ".awbench-explorer .aw-knob input{width:100%;margin:0 0 2px 0;accent-color:" + C["default"] + "}" +
      ".awbench-explorer .aw-knob.aw-moved input{accent-color:" + C.here + "}" +
      ".awbench-explorer .aw-knob.aw-moved output{color:" + C.here + "}" +
      ".awbench-explorer input:focus-visible,.awbench-explorer button:focus-visible{outline:3px solid " +
      C.focus + ";outline-offset:2px}" +
      ".awbench-explorer button{font-size:" + f + "px;align-self:flex-start;padding:2px 12px;margin:2px 0}" +
      ".awbench-explorer .aw-note{background:#fff4d6;border-left:5px solid " + C.note + ";padding:2px 6px}" +
      ".awbench-explorer .aw-note.aw-empty{display:none}" +
      ".awbench-explorer .aw-takeaway{border-left:5px solid " + C.focus + ";padding:2px 6px}" +
      ".awbench-explorer .aw-panels{display:flex;flex-wrap:wrap;gap:4px 6px;flex:1 1 " + D.size[0] +
      "px;max-width:" + (2 * D.size[0] + 6) + "px}" +
      ".awbench-explorer .aw-panel{width:" + D.size[0] + "px;height:" + D.size[1] + "px}" +
      ".awbench-explorer .aw-glossary{flex-basis:100%}"
    );
  }

  function el(tag, cls, parent) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (parent) parent.appendChild(e);
    return e;
  }

  function mount(root, D, Plotly, onChange, state) {
    var S = {}; // what is on screen
    var seq = 0;
    var nodes = {};

    function build() {
      root.innerHTML = "";
      root.classList.add("awbench-explorer");
      el("style", "", root).textContent = css(D);
      if (D.header) el("div", "aw-header", root).innerHTML = D.header;
      var controls = el("div", "aw-controls", root);
      nodes.sliders = [];
      nodes.outputs = [];
      nodes.rows = [];
      D.knobs.forEach(function (k, j) {
        var row = el("div", "aw-knob awbench-knob awbench-knob-" + k, controls);
        var id = (root.id || "awbench-explorer") + "-knob-" + k;
        var label = el("label", "", row);
        label.htmlFor = id;
        label.title = D.hints[k];
        el("span", "aw-name", label).textContent = D.labels[k];
        var out = el("output", "", label);
        out.htmlFor = id;
        var input = el("input", "", row);
        input.type = "range";
        input.id = id;
        input.min = "0";
        input.max = String(D.options[k].length - 1);
        input.step = "1";
        input.title = D.hints[k];
        input.setAttribute("aria-label", D.labels[k]);
        input.dataset.knob = k;
        input.addEventListener("input", function () {
          move(j, +input.value);
        });
        // the arrow keys are the slider's: not JupyterLab's or Voila's shortcuts
        input.addEventListener("keydown", function (e) {
          e.stopPropagation();
        });
        nodes.sliders.push(input);
        nodes.outputs.push(out);
        nodes.rows.push(row);
      });
      var reset = el("button", "aw-reset awbench-reset", controls);
      reset.type = "button";
      reset.textContent = "reset";
      reset.title = "every knob back to the default";
      reset.addEventListener("click", function () {
        render(D.ref, S.knob === undefined ? D.knob : S.knob, "", null, true);
      });
      nodes.note = el("div", "aw-note awbench-note aw-empty", controls);
      nodes.note.setAttribute("aria-live", "polite");
      nodes.training = el("div", "aw-training awbench-training", controls);
      nodes.takeaway = el("div", "aw-takeaway awbench-takeaway", controls);
      var panels = el("div", "aw-panels", root);
      nodes.panels = {};
      PANELS.forEach(function (name) {
        nodes.panels[name] = el("div", "aw-panel awbench-present-panel awbench-present-" + name, panels);
      });
      if (D.glossary) el("div", "aw-glossary", root).innerHTML = D.glossary;
      var P = D.points;
      nodes.context = {
        x: P.map(function (p) { return p.x; }),
        y: P.map(function (p) { return p.y; }),
        symbol: P.map(function (p) { return p.conv ? "circle" : "x"; }),
        text: P.map(function (p) { return p.label; }),
      };
    }

    function layout(name, title) {
      var L = JSON.parse(JSON.stringify(D.layouts[name]));
      L.template = D.template;
      if (title) L.title = Object.assign({}, L.title, { text: title });
      L.datarevision = seq;
      return L;
    }

    function traces(name, r, ref, j) {
      var C = D.colors;
      if (name === "plane") {
        var line = D.lines[r.L[j]], label = D.labels[D.knobs[j]];
        var p = D.points[r.p], pref = D.points[ref.p], cx = nodes.context;
        return [
          { type: "scatter", mode: "markers", x: cx.x, y: cx.y, hovertext: cx.text,
            marker: { color: C.context, size: 9, symbol: cx.symbol },
            hovertemplate: "%{hovertext}<br>size %{x:.3g}, sharpness %{y:.3g}<extra>grid point</extra>" },
          { type: "scatter", mode: "lines+markers", x: line.x, y: line.y, text: line.text,
            line: { color: C.line, width: 3 }, marker: { size: 8, color: C.line },
            hovertemplate: label + " %{text}<extra>along " + label + "</extra>" },
          { type: "scatter", mode: "markers", x: [pref.x], y: [pref.y],
            marker: { size: 16, symbol: "circle-open", color: C["default"], line: { width: 3 } },
            hovertemplate: "the default setting<extra></extra>" },
          { type: "scatter", mode: "markers", x: [r.own[0]], y: [r.own[1]],
            marker: { size: 11, symbol: "x-thin-open", color: C.here, line: { color: C.here, width: 2.5 } },
            hovertemplate: "this seed's run<br>size %{x:.3g}, sharpness %{y:.3g}<extra></extra>" },
          { type: "scatter", mode: "markers", x: [p.x], y: [p.y],
            marker: { size: 24, symbol: "star", color: C.here, line: { color: "black", width: 1.5 } },
            hovertemplate: "you are here (seed mean)<br>size %{x:.3g}, sharpness %{y:.3g}<extra></extra>" },
        ];
      }
      if (name === "gap") {
        return [
          { type: "bar", x: D.gapBars, y: ref.gap, offsetgroup: "ref",
            marker: { color: "#dddddd", line: { color: C["default"], width: 2 } },
            hovertemplate: "default: %{x} %{y:.3g} nats<extra></extra>" },
          { type: "bar", x: D.gapBars, y: r.gap, text: r.gapText, textposition: "outside",
            textfont: { size: D.font }, offsetgroup: "cur", marker: { color: C.gap },
            hovertemplate: "this setting: %{x} %{y:.3g} nats<extra></extra>" },
        ];
      }
      var sym = name === "sigma_g" ? "σg" : "σw", ys = name === "sigma_g" ? "g" : "w";
      return [
        { type: "scatter", mode: "lines", x: ref.r, y: ref[ys],
          line: { color: C["default"], dash: "dot", width: 2.5 },
          hovertemplate: "rank %{x}: " + sym + " %{y:.3g}<extra>default</extra>" },
        { type: "scatter", mode: "lines", x: r.r, y: r[ys], line: { color: C[name], width: 3.5 },
          hovertemplate: "rank %{x}: " + sym + " %{y:.3g}<extra>this setting</extra>" },
      ];
    }

    function takeaway(r, j) {
      var tail = r.moved && D.knobs[j] !== "seed" ? D.lines[r.L[j]].verdicts : "";
      return r.head + tail;
    }

    // One synchronous update of everything on screen: sliders, texts, the four panels.
    function render(i, j, note, wanted, fromUser) {
      seq += 1;
      var r = D.runs[i], ref = D.runs[D.ref];
      D.knobs.forEach(function (k, m) {
        var v = r.k[m];
        if (+nodes.sliders[m].value !== v) nodes.sliders[m].value = String(v);
        nodes.sliders[m].setAttribute("aria-valuetext", D.optionLabels[k][v]);
        nodes.outputs[m].textContent = D.optionLabels[k][v];
        nodes.rows[m].classList.toggle("aw-moved", !!D.moved[k][v]);
      });
      nodes.note.innerHTML = note || "";
      nodes.note.classList.toggle("aw-empty", !note);
      nodes.training.innerHTML = r.training;
      nodes.takeaway.innerHTML = takeaway(r, j);
      PANELS.forEach(function (name) {
        var title = name === "plane" ? D.planeTitles[j] : r.titles[name];
        Plotly.react(nodes.panels[name], traces(name, r, ref, j), layout(name, title),
          { displaylogo: false, responsive: false, displayModeBar: false });
        nodes.panels[name].dataset.run = r.key;
      });
      nodes.note.dataset.run = nodes.training.dataset.run = nodes.takeaway.dataset.run = r.key;
      S = { run: i, knob: j, note: note || "", key: r.key };
      root.dataset.run = r.key;
      root.dataset.knob = D.knobs[j];
      root.dataset.snapped = note ? "1" : "0";
      root.dataset.seq = String(seq);
      if (fromUser && onChange) {
        var st = { run: i, knob: D.knobs[j], note: note || "", key: r.key, seq: seq, origin: "browser" };
        if (wanted) st.wanted = wanted;
        lastSeq = st;
        onChange(st);
      }
    }
    var lastSeq = null;

    function move(j, v) {
      var wanted = D.runs[S.run].k.slice();
      wanted[j] = v;
      var key = wanted.join(",");
      var hit = D.index[key];
      if (hit !== undefined) return render(hit, j, "", null, true);
      var snap = D.snap[key + "|" + j];
      if (snap) return render(snap[0], j, D.notes[snap[1]], wanted, true);
      render(D.ref, j, "", null, true); // not reachable with a complete snap table
    }

    function show(st) {
      if (!st || st === lastSeq || st.origin === "browser") return;
      var j = D.knobs.indexOf(st.knob);
      render(st.run === undefined ? D.ref : st.run, j < 0 ? D.knob : j, st.note || "", null, false);
    }

    build();
    var first = state && state.run !== undefined ? state : null;
    if (first) {
      var j0 = D.knobs.indexOf(first.knob);
      render(first.run, j0 < 0 ? D.knob : j0, first.note || "", null, false);
    } else {
      render(D.ref, D.knob, "", null, false);
    }

    return {
      show: show,
      reload: function (D2, st) {
        PANELS.forEach(function (name) { Plotly.purge(nodes.panels[name]); });
        D = D2;
        build();
        var j = D.knobs.indexOf(st && st.knob);
        render(st && st.run !== undefined ? st.run : D.ref, j < 0 ? D.knob : j, (st && st.note) || "", null, false);
      },
      state: function () { return S; },
      destroy: function () {
        PANELS.forEach(function (name) { Plotly.purge(nodes.panels[name]); });
      },
    };
  }

  return { mount: mount };
})();
