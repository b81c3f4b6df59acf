"""The `dsum inspect` page: one self-contained HTML file drawn from inspect.json's dict alone.

The summary sections (scores, buckets, flags, morphemes, charts as inline SVG) are written here; the
table of rows and the opened row are drawn in the browser by inspect.js from the same dict, embedded
as JSON in a <script type="application/json"> element. Every "<", ">" and "&" of that JSON is
written as a \\u escape, so a text holding "</script>" or HTML cannot end the element or run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from importlib.resources import files
from urllib.parse import quote

from dsum.report.html import CSS, _num, _table

LETTERS = ("A", "B")


def embed_json(data: Mapping) -> str:
    """JSON that is safe inside a <script> element (no "<", ">", "&", U+2028/2029 left as such)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def render_inspect(data: Mapping) -> str:
    resources = files("dsum.report")
    script = resources.joinpath("inspect.js").read_text(encoding="utf-8")
    style = resources.joinpath("inspect.css").read_text(encoding="utf-8")
    two = data["comparison"] is not None
    parts = [
        "<!DOCTYPE html>",
        '<html lang="ko"><head><meta charset="utf-8">',
        f"<title>{escape(data['title'])}</title><style>{CSS}{style}</style></head><body>",
        f"<h1>{escape(data['title'])}</h1>",
        _overview(data),
        _comparison(data) if two else "",
        _distribution(data),
        _buckets(data),
        _flags(data),
        _morphemes(data),
        _listed(data),
        '<h2 id="rows">All rows</h2><div id="table-view"><p class="note">The table needs JavaScript.</p></div>',
        '<div id="row-view" hidden></div>',
        f'<script type="application/json" id="inspect-data">{embed_json(data)}</script>',
        f"<script>{script}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _letters(data: Mapping) -> list[str]:
    if len(data["systems"]) == 1:
        return [""]
    return [f"{letter} " for letter in LETTERS]


def _row_link(fname: str) -> str:
    return f'<a href="#row={quote(fname, safe="")}" class="rowlink">{escape(fname)}</a>'


def _interval(entry: Mapping | None) -> str:
    if entry is None:
        return "–"
    return f"{entry['score']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def _overview(data: Mapping) -> str:
    rows = []
    for letter, s in zip(_letters(data), data["systems"]):
        halves = s["halves"]
        rows.append((f"{letter}{s['label']}", s["source"], s["kind"], ("html", _interval(s["interval"])),
                     s["rouge1"], s["rouge2"], s["rougeL"],
                     ("html", "–" if halves is None else f"{halves['mean_gap']:.2f} ({halves['low']:+.2f} .. {halves['high']:+.2f})")))
    out = [
        f"<p>{_num(data['rows_total'])} dev rows · analyser {escape(data['analyser'])} · generated "
        f"{escape(data['generated_at'])} in {data['seconds']:.1f} s</p>",
        _table(("system", "source", "kind", "board score [95% interval]", "ROUGE-1 F1", "ROUGE-2 F1", "ROUGE-L F1",
                "topic halves: mean |gap| (95% range)"), rows, numeric_from=3),
        '<p class="note">Board score: (R1 + R2 + RL) / 3 × 100 on mecab morphemes, the mean over rows of each row\'s '
        "score (dsum score). Interval: 1,000 bootstrap resamples of the rows (seed 0). Topic halves: how far the "
        "scores of two random halves of the topics fall apart, the public/private gap to expect from the split alone.</p>",
    ]
    if data["details_note"]:
        out.append(f'<p class="note">{escape(data["details_note"])}.</p>')
    return "\n".join(out)


def _comparison(data: Mapping) -> str:
    c, (a, b) = data["comparison"], data["systems"]
    boot = c["bootstrap"]
    return "\n".join([
        "<h2>B − A</h2>",
        f'<p class="big">B {escape(b["label"])} − A {escape(a["label"])}: <b>{boot["diff"]:+.2f}</b> '
        f"(95% interval {boot['low']:+.2f} .. {boot['high']:+.2f}); B higher in {boot['b_wins']:.1%} of "
        f"{boot['resamples']:,} resamples of {boot['rows']:,} rows · rows B wins <b>{c['wins']:,}</b>, ties "
        f"<b>{c['ties']:,}</b>, loses <b>{c['losses']:,}</b></p>",
        '<p class="note">Paired bootstrap of the per-row difference, as dsum runs compare: an interval that holds 0 is '
        "no evidence that B is better.</p>",
        '<div class="charts">', _bars(c["diff_histogram"]["counts"], c["diff_histogram"]["edges"], "per-row B − A", "#7a5195"),
        "</div>",
    ])


def _distribution(data: Mapping) -> str:
    out = ["<h2>Per-row scores and lengths</h2>", '<div class="charts">']
    edges = list(range(0, 101, 5))
    colours = ("#2f6eb5", "#d9822b")
    for letter, s, colour in zip(_letters(data), data["systems"], colours):
        out.append(_bars(s["histogram"], edges, f"{letter}per-row board score", colour))
    columns = data["table"]["columns"]
    ref = columns.index("reference_chars")
    for k, (letter, colour) in enumerate(zip(_letters(data), colours)):
        chars = columns.index(f"chars{k}")
        points = [(r[ref], r[chars]) for r in data["table"]["rows"]]
        out.append(_scatter(points, f"{letter}prediction vs reference characters", colour))
    out.append("</div>")
    return "\n".join(out)


def _bars(counts: Sequence[int], edges: Sequence[float], title: str, colour: str) -> str:
    width, height, pad = 360, 170, 24
    top = max(counts) or 1
    step = (width - 2 * pad) / len(counts)
    bars = []
    for k, n in enumerate(counts):
        h = (height - 2 * pad) * n / top
        bars.append(f'<rect x="{pad + k * step:.1f}" y="{height - pad - h:.1f}" width="{step - 1:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{edges[k]:g} – {edges[k + 1]:g}: {n}</title></rect>')
    return (f'<figure><svg width="{width}" height="{height}" role="img"><text x="{pad}" y="14" class="t">{escape(title)}</text>'
            f'{"".join(bars)}<text x="{pad}" y="{height - 6}" class="a">{edges[0]:g}</text>'
            f'<text x="{width - pad}" y="{height - 6}" class="a" text-anchor="end">{edges[-1]:g}</text>'
            f'<text x="{width - pad}" y="14" class="a" text-anchor="end">max {top:,} rows</text></svg></figure>')


def _scatter(points: Sequence[tuple[float, float]], title: str, colour: str, limit: int = 2000) -> str:
    """Up to `limit` points (every k-th row beyond), the line y = x."""
    width, height, pad = 360, 170, 24
    every = max(1, -(-len(points) // limit))
    shown = points[::every]
    top = max([max(x, y) for x, y in shown] + [1])
    scale = min(width, height) - 2 * pad
    dots = "".join(f'<circle cx="{pad + scale * x / top:.1f}" cy="{height - pad - scale * y / top:.1f}" r="2" fill="{colour}" '
                   'fill-opacity="0.5"/>' for x, y in shown)
    note = f" (every {every}th row)" if every > 1 else ""
    return (f'<figure><svg width="{width}" height="{height}" role="img"><text x="{pad}" y="14" class="t">{escape(title + note)}</text>'
            f'<line x1="{pad}" y1="{height - pad}" x2="{pad + scale}" y2="{height - pad - scale}" stroke="#999" stroke-dasharray="3"/>'
            f'{dots}<text x="{pad}" y="{height - 6}" class="a">reference → {top:,.0f}</text></svg></figure>')


def _buckets(data: Mapping) -> str:
    two = data["comparison"] is not None
    header = ["by", "bucket", "rows", *(f"{x}score [95%]" for x in _letters(data))] + (["B − A [95%]"] if two else [])
    rows = []
    for b in data["buckets"]:
        cells = [b["by"], b["label"], b["rows"], *(("html", _interval(s)) for s in b["systems"])]
        if two:
            d = b.get("diff")
            cells.append(("html", "–" if d is None else _diff_cell(d)))
        rows.append(cells)
    return "\n".join([
        "<h2>Scores by bucket</h2>",
        '<p class="note">Each bucket\'s score is dsum score on its rows; quartiles of the lengths, the speakers in '
        "the dialogue, the topics with the most rows. The prediction/reference length ratio is each system's own.</p>",
        _table(header, rows, numeric_from=2),
    ])


def _diff_cell(d: Mapping) -> str:
    sure = d["low"] > 0 or d["high"] < 0
    text = f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
    return f"<b>{text}</b>" if sure else text


def _flags(data: Mapping) -> str:
    letters = _letters(data)
    header = ["flag", "what it means", *(f"{x}rows" for x in letters), *(f"{x}mean score" for x in letters)]
    rows = [(("html", f'<a href="#flag={f["flag"]}" class="flaglink">{escape(f["flag"])}</a>'), f["description"],
             *f["counts"], *f["mean_score"]) for f in data["flags"]]
    return "\n".join(["<h2>Error flags</h2>",
                      '<p class="note">Click a flag to list its rows in the table below.</p>',
                      _table(header, rows, numeric_from=2)])


def _morphemes(data: Mapping) -> str:
    out = ["<h2>Morphemes missed and over-produced</h2>",
           '<p class="note">Counted in rows: a morpheme of the reference(s) that the prediction lacks (missed), one of '
           "the prediction that no reference has (over-produced); punctuation left out.</p>", '<div class="charts">']
    for letter, s in zip(_letters(data), data["systems"]):
        for key, title in (("missed", "missed"), ("over", "over-produced")):
            out.append(f"<div><h3>{escape(letter)}{title}</h3>"
                       + _table(("morpheme", "rows"), [tuple(p) for p in s["morphemes"][key][:20]]) + "</div>")
    out.append("</div>")
    return "\n".join(out)


def _listed(data: Mapping) -> str:
    columns = data["table"]["columns"]
    rows = {r[0]: r for r in data["table"]["rows"]}
    out = []

    def listing(title: str, fnames: Sequence[str]) -> str:
        body = []
        for f in fnames:
            r = rows[f]
            cells = [("html", _row_link(f)), r[1]]
            for k in range(len(data["systems"])):
                cells += [r[columns.index(f"score{k}")], ("html", f'<span class="pred">{escape(_short(r[columns.index(f"prediction{k}")]))}</span>')]
            body.append(cells)
        header = ["row", "topic"]
        for x in _letters(data):
            header += [f"{x}score", f"{x}prediction"]
        return f"<div><h3>{escape(title)}</h3>{_table(header, body, numeric_from=2)}</div>"

    if data["comparison"] is not None:
        out += ["<h2>Rows that changed most</h2>",
                listing("B beats A most", data["comparison"]["b_beats_a"]),
                listing("A beats B most", data["comparison"]["a_beats_b"])]
    out.append("<h2>Worst and best rows</h2>")
    for letter, s in zip(_letters(data), data["systems"]):
        out += [listing(f"{letter}worst", s["worst"]), listing(f"{letter}best", s["best"])]
    return "\n".join(out)


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
