// dsum inspect: the table of rows and the opened row, drawn from the embedded JSON (inspect.json's dict).
// Every text from the data goes into the page as a text node (never as HTML). The view lives in the
// URL's hash (#row=dev_3&q=...&flag=...&topic=...&min=..&max=..&on=score0&sort=score0&desc=1&page=2&hl=u&per=50),
// so a link or a test opens a given view.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("inspect-data").textContent);
  const COLS = DATA.table.columns;
  const IDX = Object.fromEntries(COLS.map((c, i) => [c, i]));
  const ROWS = DATA.table.rows;
  const N = DATA.systems.length;
  const FLAGS = DATA.flag_names.map((f) => f.flag);
  const LETTER = N === 2 ? ["A ", "B "] : [""];
  const BITS = { u: 1, b: 2, l: 4, n: 8 };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function state() {
    const p = new URLSearchParams(location.hash.slice(1));
    return {
      row: p.get("row"), q: p.get("q") || "", flag: p.get("flag") || "", topic: p.get("topic") || "",
      min: p.get("min") || "", max: p.get("max") || "", on: p.get("on") || "score0",
      sort: p.get("sort") || "", desc: p.get("desc") === "1", page: Math.max(1, parseInt(p.get("page") || "1", 10) || 1),
      hl: p.get("hl") || "u", hall: p.get("hall") !== "0", per: Math.max(1, parseInt(p.get("per") || "50", 10) || 50),
    };
  }

  function setState(patch) {
    location.hash = hashWith(patch);
  }

  // The hash of the current view changed by `patch` (defaults left out).
  function hashWith(patch) {
    const s = Object.assign(state(), patch);
    const p = new URLSearchParams();
    const defaults = { on: "score0", page: 1, hl: "u", hall: true, desc: false, per: 50 };
    for (const [k, v] of Object.entries(s)) {
      if (v === null || v === "" || defaults[k] === v) continue;
      p.set(k, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
    }
    return p.toString();
  }

  // ------------------------------------------------------------------------------------------
  // Filtering and sorting

  function flagsOf(r) {
    const out = [];
    for (let k = 0; k < N; k++) out.push(r[IDX["flags" + k]]);
    return out;
  }

  function matches(r, s) {
    if (s.q) {
      const q = s.q.toLowerCase();
      const d = DATA.details[r[0]];
      const hay = [r[0], r[1]].concat(Array.from({ length: N }, (_, k) => r[IDX["prediction" + k]]));
      if (d) hay.push(d.dialogue, ...d.references);
      if (!hay.some((t) => t && t.toLowerCase().includes(q))) return false;
    }
    if (s.flag) {
      const all = flagsOf(r).flat();
      if (s.flag === "any" ? all.length === 0 : s.flag === "none" ? all.length > 0 : !all.includes(FLAGS.indexOf(s.flag))) return false;
    }
    if (s.topic && r[1] !== s.topic) return false;
    const v = r[IDX[s.on] ?? IDX.score0];
    if (s.min !== "" && v < parseFloat(s.min)) return false;
    if (s.max !== "" && v > parseFloat(s.max)) return false;
    return true;
  }

  function view(s) {
    const rows = ROWS.filter((r) => matches(r, s));
    if (s.sort && s.sort in IDX) {
      const i = IDX[s.sort];
      const key = (r) => (Array.isArray(r[i]) ? r[i].length : r[i]);
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return s.desc ? -c : c;
      });
    }
    return rows;
  }

  // ------------------------------------------------------------------------------------------
  // The table

  const tableCols = [["fname", "row"], ["topic", "topic"]];
  for (let k = 0; k < N; k++) tableCols.push(["score" + k, LETTER[k] + "score"]);
  if (N === 2) tableCols.push(["diff", "B − A"]);
  if (N === 1) tableCols.push(["rouge10", "R1"], ["rouge20", "R2"], ["rougeL0", "RL"]);
  for (let k = 0; k < N; k++) tableCols.push(["chars" + k, LETTER[k] + "chars"]);
  tableCols.push(["reference_chars", "ref chars"]);
  for (let k = 0; k < N; k++) tableCols.push(["flags" + k, LETTER[k] + "flags"]);
  for (let k = 0; k < N; k++) tableCols.push(["prediction" + k, LETTER[k] + "prediction"]);

  const controls = {};
  function buildControls(root) {
    const bar = el("div", { class: "controls" });
    controls.q = el("input", { type: "search", id: "f-q", placeholder: "text in row, topic, texts", oninput: (e) => setState({ q: e.target.value, page: 1 }) });
    controls.flag = el("select", { id: "f-flag", onchange: (e) => setState({ flag: e.target.value, page: 1 }) },
      el("option", { value: "", text: "any or no flag" }), el("option", { value: "any", text: "some flag" }),
      el("option", { value: "none", text: "no flag" }), ...FLAGS.map((f) => el("option", { value: f, text: f })));
    const topics = [...new Set(ROWS.map((r) => r[1]).filter((t) => t))].sort();
    controls.topic = el("select", { id: "f-topic", onchange: (e) => setState({ topic: e.target.value, page: 1 }) },
      el("option", { value: "", text: "every topic" }), ...topics.map((t) => el("option", { value: t, text: t })));
    const ranges = Array.from({ length: N }, (_, k) => el("option", { value: "score" + k, text: LETTER[k] + "score" }));
    if (N === 2) ranges.push(el("option", { value: "diff", text: "B − A" }));
    controls.on = el("select", { id: "f-on", onchange: (e) => setState({ on: e.target.value, page: 1 }) }, ...ranges);
    controls.min = el("input", { type: "number", id: "f-min", step: "any", placeholder: "min", oninput: (e) => setState({ min: e.target.value, page: 1 }) });
    controls.max = el("input", { type: "number", id: "f-max", step: "any", placeholder: "max", oninput: (e) => setState({ max: e.target.value, page: 1 }) });
    bar.append("Filter: ", controls.q, controls.flag, controls.topic, controls.on, controls.min, "–", controls.max,
      el("button", { id: "f-clear", onclick: () => { location.hash = ""; } }, "clear"));
    controls.count = el("span", { id: "row-count" });
    controls.pager = el("div", { class: "pager" });
    controls.table = el("table", { id: "rows-table" });
    root.replaceChildren(bar, el("p", {}, controls.count), controls.table, controls.pager);
  }

  function flagBadges(list, k) {
    return list.map((i) => el("span", { class: k === 1 ? "flag b" : "flag", title: DATA.flag_names[i].description }, FLAGS[i]));
  }

  function cell(r, key) {
    const v = r[IDX[key]];
    if (key === "fname") return el("td", {}, el("a", { href: "#" + hashWith({ row: v }), class: "rowlink" }, v));
    if (key.startsWith("flags")) return el("td", {}, ...flagBadges(v, Number(key.slice(5))));
    if (key.startsWith("prediction")) return el("td", { class: "p" }, v.length > 120 ? v.slice(0, 120) + "…" : v);
    if (typeof v === "number") return el("td", { class: "n" }, key.startsWith("rouge") ? v.toFixed(4) : Number.isInteger(v) ? String(v) : v.toFixed(2));
    return el("td", {}, v);
  }

  function renderTable(s) {
    for (const k of ["q", "flag", "topic", "on", "min", "max"]) if (document.activeElement !== controls[k]) controls[k].value = s[k];
    const rows = view(s);
    const PAGE = s.per;
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    const page = Math.min(s.page, pages);
    controls.count.textContent = `${rows.length} of ${ROWS.length} rows · page ${page} of ${pages}`;
    const head = el("tr", {}, ...tableCols.map(([key, label]) => el("th", {
      class: s.sort === key ? "sorted" : "", "data-key": key,
      onclick: () => setState({ sort: key, desc: s.sort === key ? !s.desc : false, page: 1 }),
    }, label + (s.sort === key ? (s.desc ? " ▼" : " ▲") : ""))));
    const body = rows.slice((page - 1) * PAGE, page * PAGE).map((r) => el("tr", { "data-fname": r[0] }, ...tableCols.map(([key]) => cell(r, key))));
    controls.table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
    controls.pager.replaceChildren(
      el("button", { id: "prev-page", onclick: () => setState({ page: page - 1 }), ...(page <= 1 ? { disabled: "" } : {}) }, "‹ previous"),
      `page ${page} / ${pages}`,
      el("button", { id: "next-page", onclick: () => setState({ page: page + 1 }), ...(page >= pages ? { disabled: "" } : {}) }, "next ›"));
  }

  // ------------------------------------------------------------------------------------------
  // The opened row

  // The text with its scorer words wrapped in spans (class m-u, m-b, m-l, m-n by bit); #...# tags boxed.
  function highlighted(text, marks) {
    const root = el("div", { class: "hl" });
    const tags = [];
    for (const m of text.matchAll(/#[A-Za-z][A-Za-z0-9]*#/g)) tags.push([m.index, m.index + m[0].length]);
    const cuts = new Set([0, text.length]);
    for (const [a, b] of marks) { cuts.add(a); cuts.add(b); }
    for (const [a, b] of tags) { cuts.add(a); cuts.add(b); }
    const points = [...cuts].sort((x, y) => x - y);
    let box = null;
    for (let i = 0; i + 1 < points.length; i++) {
      const [a, b] = [points[i], points[i + 1]];
      const tag = tags.find(([x, y]) => x <= a && b <= y);
      if (!tag) box = null;
      else if (!box || box.dataset.start !== String(tag[0])) {
        box = el("span", { class: "tag", "data-start": String(tag[0]) });
        root.append(box);
      }
      const mark = marks.find(([x, y]) => x <= a && b <= y);
      let piece = document.createTextNode(text.slice(a, b));
      if (mark) {
        const classes = Object.entries(BITS).filter(([, bit]) => mark[2] & bit).map(([k]) => "m-" + k);
        piece = el("span", { class: ["w", ...classes].join(" ") }, text.slice(a, b));
      }
      (box || root).append(piece);
    }
    return root;
  }

  function dialogue(text) {
    const out = el("div", { class: "dialogue" });
    for (const line of text.split(/\r?\n/)) {
      const m = line.match(/^\s*#Person(\d+)#\s*:\s*(.*)$/);
      if (m) out.append(el("div", { class: "turn" }, el("span", { class: "spk s" + (Number(m[1]) % 6) }, `#Person${m[1]}#`), m[2]));
      else if (line.trim()) out.append(el("div", { class: "turn" }, line));
    }
    return out;
  }

  function rowSummary(r, d) {
    const t = el("table", {}, el("tr", {}, ...["system", "score", "ROUGE-1", "ROUGE-2", "ROUGE-L", "characters", "flags"].map((h) => el("th", {}, h))));
    for (let k = 0; k < N; k++) {
      const flags = d ? Object.entries(d.systems[k].flags).map(([f, why]) => el("span", { class: k ? "flag b" : "flag", title: why }, `${f}: ${why}`))
        : flagBadges(r[IDX["flags" + k]], k);
      t.append(el("tr", {}, el("td", {}, LETTER[k] + DATA.systems[k].label), el("td", { class: "n" }, r[IDX["score" + k]].toFixed(2)),
        ...["rouge1", "rouge2", "rougeL"].map((m) => el("td", { class: "n" }, r[IDX[m + k]].toFixed(4))),
        el("td", { class: "n" }, String(r[IDX["chars" + k]])), el("td", {}, ...flags)));
    }
    return t;
  }

  function layerControls(s) {
    const radios = [["u", "unigram matches (ROUGE-1)"], ["b", "bigram matches (ROUGE-2)"], ["l", "longest common subsequence (ROUGE-L)"]]
      .map(([v, label]) => el("label", {}, el("input", { type: "radio", name: "hl", value: v, id: "hl-" + v, ...(s.hl === v ? { checked: "" } : {}),
        onchange: () => setState({ hl: v }) }), " " + label));
    const hall = el("label", {}, el("input", { type: "checkbox", id: "hall", ...(s.hall ? { checked: "" } : {}), onchange: (e) => setState({ hall: e.target.checked }) }),
      " words not in the dialogue (possible hallucinations)");
    return el("p", { class: "legend" }, el("span", { class: "sw", style: "background:#a9e3a0" }), " highlighted: ", ...radios, " · ", hall,
      el("br"), el("span", { class: "note" }, "Words are the scorer's (mecab morphemes, cut at “.”); a boxed #...# token is one tag of several morphemes. Matches are against the first reference."));
  }

  function renderRow(s) {
    const viewEl = document.getElementById("row-view");
    if (!s.row) { viewEl.hidden = true; viewEl.replaceChildren(); document.body.style.overflow = ""; return; }
    const r = ROWS.find((x) => x[0] === s.row);
    viewEl.hidden = false;
    document.body.style.overflow = "hidden";
    const back = el("a", { href: "#", id: "close-row", onclick: (e) => { e.preventDefault(); setState({ row: null }); } }, "← back to the page");
    if (!r) { viewEl.replaceChildren(el("div", { class: "panel" }, back, el("p", {}, `no row ${s.row} in this page`))); return; }
    const order = view(s).map((x) => x[0]);
    const at = order.indexOf(s.row);
    const nav = [];
    if (at > 0) nav.push(el("a", { href: "#", id: "prev-row", onclick: (e) => { e.preventDefault(); setState({ row: order[at - 1] }); } }, "‹ previous row"));
    if (at >= 0 && at + 1 < order.length) nav.push(el("a", { href: "#", id: "next-row", onclick: (e) => { e.preventDefault(); setState({ row: order[at + 1] }); } }, "next row ›"));
    const d = DATA.details[s.row];
    const panel = el("div", { class: `panel layer-${s.hl}${s.hall ? " hall" : ""}`, id: "row-panel", "data-fname": s.row });
    panel.append(el("p", {}, back, " · ", ...nav.flatMap((a) => [a, " "])),
      el("h2", {}, el("span", { id: "row-title" }, s.row), r[1] ? ` · ${r[1]}` : ""), rowSummary(r, d));
    if (!d) {
      panel.append(el("p", { class: "note" }, DATA.details_note + "; this row's texts are not embedded."),
        ...Array.from({ length: N }, (_, k) => el("div", { class: "hl" }, r[IDX["prediction" + k]])));
    } else {
      panel.append(layerControls(s), el("h3", {}, "Dialogue"), dialogue(d.dialogue));
      const side = el("div", { class: "side" });
      d.systems.forEach((p, k) => {
        const col = el("div", { class: "system", "data-system": String(k) });
        col.append(el("h3", {}, `${LETTER[k]}${DATA.systems[k].label}: prediction`), Object.assign(highlighted(p.scored, p.marks), { id: "pred-" + k }));
        if (p.raw.trim() !== p.scored) col.append(el("p", { class: "note" }, "as written (the scorer strips <usr>, <s>, </s>, <pad>):"), el("div", { class: "hl raw" }, p.raw));
        col.append(el("h3", {}, N === 2 ? `reference (matches with ${LETTER[k].trim()})` : "reference"),
          Object.assign(highlighted(d.references[0] || "", p.reference_marks), { id: "ref-" + k }));
        side.append(col);
      });
      panel.append(side);
      d.references.slice(1).forEach((ref, i) => panel.append(el("h3", {}, `reference ${i + 2}`), el("div", { class: "hl" }, ref)));
    }
    viewEl.replaceChildren(panel);
  }

  function render() {
    const s = state();
    renderTable(s);
    renderRow(s);
  }

  buildControls(document.getElementById("table-view"));
  // A filtered view shows the table (also when the page opens on one).
  function showTable() {
    const s = state();
    if (!s.row && (s.flag || s.q || s.topic || s.sort)) document.getElementById("rows").scrollIntoView();
  }
  window.addEventListener("hashchange", () => { render(); showTable(); });
  render();
  showTable();
  document.body.dataset.ready = "1";
  document.body.dataset.readyMs = String(Math.round(performance.now()));  // navigation start to a drawn table
})();
