"""The report page: one self-contained HTML file (inline CSS, tables, PNGs embedded as base64).

Rendered from the report's JSON dict only, so the JSON holds every number the page shows.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape

CSS = """
body { font-family: "NanumGothic", "Apple SD Gothic Neo", "Malgun Gothic", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; vertical-align: top; }
th { background: #f0f0f0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #666; font-size: 0.9em; } code, .text { font-family: monospace; white-space: pre-wrap; }
.text { background: #f7f7f7; display: block; padding: 4px; max-width: 520px; }
"""

STAT_COLUMNS = ("count", "mean", "std", "min", "p25", "median", "p75", "p95", "p99", "max")
PLURAL = {"dialogue": "dialogues", "summary": "summaries"}
MEASURE_NAMES = {"chars": "characters", "turns": "turns", "speakers": "speakers", "tokens": "tokens"}


def render_html(report: Mapping, images: Mapping[str, bytes]) -> str:
    """The page for `report` (the eda.json dict); `images` maps file name to PNG bytes."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="ko"><head><meta charset="utf-8">',
        f"<title>{escape(report['title'])}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(report['title'])}</h1>",
        _overview(report),
        _sizes(report),
        _lengths(report, images),
        _truncation(report, images),
        _shift(report, images),
        _topics(report, images),
        _special_tokens(report, images),
        _tfidf(report),
        _word_clouds(report, images),
        _cleanup(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# Building blocks


def _num(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == int(value) and abs(value) >= 1:
            return f"{int(value):,}"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return escape(str(value))


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _table(header: Sequence[str], rows: Iterable[Sequence], numeric_from: int = 1) -> str:
    """A table; cells are escaped unless given as ("html", text); columns from `numeric_from` are
    right-aligned numbers."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for k, cell in enumerate(row):
            if isinstance(cell, tuple) and cell and cell[0] == "html":
                text = cell[1]
            elif isinstance(cell, (int, float)) or cell is None:
                text = _num(cell)
            else:
                text = escape(str(cell))
            cls = ' class="n"' if k >= numeric_from and not isinstance(cell, tuple) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(images: Mapping[str, bytes], report: Mapping, key: str, alt: str) -> str:
    name = report["images"].get(key)
    if name is None or name not in images:
        return ""
    data = base64.b64encode(images[name]).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" title="{escape(name)}">'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _list(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------
# Sections


def _overview(report: Mapping) -> str:
    files = [(split, ", ".join(paths)) for split, paths in report["files"].items()]
    if report["sample_submission"]:
        files.append(("sample submission", report["sample_submission"]))
    tok = report["tokenizer"]
    cleanup = "applied (lengths are counted on the cleaned text)" if report["cleanup"]["applied"] else \
        "off in this config (lengths are counted on the raw text)"
    return "\n".join([
        f"<p>Config: <code>{escape(str(report['config']))}</code> · generated {escape(report['generated_at'])} · "
        f"built in {report['seconds']:.1f} s · font {escape(report['font']['family'])}</p>",
        _table(("split", "file(s)"), files, numeric_from=9),
        f"<p>Tokenizer: <code>{escape(tok['name'])}</code> — {escape(tok['note'])}. Clean-up rules: {cleanup}.</p>",
    ])


def _sizes(report: Mapping) -> str:
    rows = []
    for split, s in report["sizes"].items():
        missing = s["missing_numbered_ids"]
        rows.append((split, s["rows"], s["with_summary"], s["with_topic"], s["empty_ids"],
                     s["duplicate_rows"], ("html", escape(_list(s["duplicate_ids"])) or "–"),
                     None if missing is None else len(missing),
                     ("html", escape(_list(missing)) if missing else "–")))
    out = ["<h2>Sizes and ids</h2>", _table(
        ("split", "rows", "with summary", "with topic", "empty ids", "duplicate rows", "duplicate ids",
         "missing numbered ids", "which"), rows)]
    out.append(_note("Missing numbered ids: gaps in a sequence such as dev_0 … dev_498 (– when the ids are not one sequence)."))
    shared = [(f"{r['a']} ∩ {r['b']}", r["count"], ("html", escape(_list(r["examples"])) or "–")) for r in report["shared_ids"]]
    out.append(_table(("ids in two splits", "count", "examples"), shared))
    sub = report["submission_ids"]
    if sub is not None:
        out.append(_table(("test vs sample submission", "count", "ids"), [
            ("test ids missing from the sample submission", len(sub["missing_in_submission"]),
             ("html", escape(_list(sub["missing_in_submission"])) or "–")),
            ("sample submission ids not in test", len(sub["extra_in_submission"]),
             ("html", escape(_list(sub["extra_in_submission"])) or "–")),
        ]))
    return "\n".join(out)


def _stat_rows(report: Mapping, text: str) -> list[tuple]:
    rows = []
    for split, lengths in report["lengths"].items():
        by_measure = lengths[text]
        if by_measure is None:
            continue
        for measure, stats in by_measure.items():
            if stats is not None:
                rows.append((split, MEASURE_NAMES[measure], *(stats[c] for c in STAT_COLUMNS)))
    return rows


def _lengths(report: Mapping, images: Mapping[str, bytes]) -> str:
    out = ["<h2>Lengths</h2>", "<h3>Dialogues</h3>",
           _table(("split", "measure", *STAT_COLUMNS), _stat_rows(report, "dialogue"), numeric_from=2),
           _img(images, report, "dialogue_lengths", "dialogue length histograms"),
           "<h3>Summaries</h3>"]
    rows = _stat_rows(report, "summary")
    if rows:
        out.append(_table(("split", "measure", *STAT_COLUMNS), rows, numeric_from=2))
    without = [split for split, lengths in report["lengths"].items() if lengths["summary"] is None]
    if without:
        out.append(_note(f"No summaries in: {', '.join(without)}."))
    ratios = [(split, *(lengths["compression"][c] for c in STAT_COLUMNS))
              for split, lengths in report["lengths"].items() if lengths["compression"]]
    if ratios:
        out += ["<h3>Compression: summary characters / dialogue characters</h3>",
                _table(("split", *STAT_COLUMNS), ratios)]
    out.append(_img(images, report, "summary_lengths", "summary length histograms"))
    return "\n".join(out)


def _truncation(report: Mapping, images: Mapping[str, bytes]) -> str:
    out = ["<h2>Truncation at the model's max lengths</h2>"]
    rows = []
    for split, by_text in report["truncation"].items():
        for text, t in by_text.items():
            if t is not None:
                rows.append((split, text, t["max_length"], t["cut"], ("html", _share(t["cut_share"])), t["keep_95"], t["keep_99"]))
    if not rows:
        out.append(_note(f"Token lengths unavailable: {report['tokenizer']['note']}."))
        return "\n".join(out)
    out.append(_table(("split", "text", "max length (tokens)", "examples cut", "share cut",
                       "length keeping 95%", "length keeping 99%"), rows, numeric_from=2))
    out.append(_note("model.max_source_length applies to dialogues, model.max_target_length to summaries; "
                     "token counts include the tokens the model adds (<s>, </s>)."))
    out.append(_img(images, report, "truncation", "cumulative token lengths with the max lengths"))
    return "\n".join(out)


def _shift(report: Mapping, images: Mapping[str, bytes]) -> str:
    rows = [(f"{r['a']} vs {r['b']}", r["text"], MEASURE_NAMES[r["measure"]], r["n_a"], r["n_b"],
             r["ks_statistic"], ("html", f"{r['p_value']:.3g}")) for r in report["shift"]]
    return "\n".join([
        "<h2>Length shift between splits (two-sample Kolmogorov–Smirnov)</h2>",
        _note("The public/private halves of the test set are split by topic: a large statistic with a small "
              "p-value means the lengths of the two splits differ."),
        _table(("splits", "text", "measure", "n a", "n b", "KS statistic", "p-value"), rows, numeric_from=3),
        _img(images, report, "shift", "cumulative length distributions per split"),
    ])


def _topics(report: Mapping, images: Mapping[str, bytes]) -> str:
    topics = report["topics"]
    out = ["<h2>Topics</h2>"]
    counts = topics["counts"]
    if not counts:
        out.append(_note("No split has a topic column."))
        return "\n".join(out)
    out.append(_table(("split", "rows with a topic", "distinct topics"),
                      [(split, c["rows_with_topic"], c["unique"]) for split, c in counts.items()]))
    if topics["without_topic"]:
        out.append(_note(f"No topic column in: {', '.join(topics['without_topic'])}."))
    if topics["overlap"]:
        out.append(_table(("splits", "topics in a", "topics in b", "shared topics", "Jaccard", "rows of b whose topic a has"),
                          [(f"{o['a']} vs {o['b']}", o["topics_a"], o["topics_b"], o["shared_topics"], o["jaccard"],
                            ("html", _share(o["b_rows_with_topic_in_a"]))) for o in topics["overlap"]]))
    for split, c in counts.items():
        out.append(f"<h3>Most frequent topics: {escape(split)}</h3>")
        out.append(_table(("topic", "rows"), c["top"]))
    out.append(_img(images, report, "topics", "most frequent topics per split"))
    return "\n".join(out)


def _special_tokens(report: Mapping, images: Mapping[str, bytes]) -> str:
    columns = [(split, text) for split, by_text in report["special_tokens"].items() for text in by_text]
    tokens = sorted({t for split, text in columns for t in report["special_tokens"][split][text]},
                    key=lambda t: (-sum(report["special_tokens"][s][x].get(t, 0) for s, x in columns), t))
    rows = [(t, *(report["special_tokens"][s][x].get(t, 0) for s, x in columns)) for t in tokens]
    return "\n".join([
        "<h2>Special tokens (#...#)</h2>",
        _table(("token", *(f"{s} {PLURAL[x]}" for s, x in columns)), rows),
        _img(images, report, "special_tokens", "special tokens per 100 dialogues"),
    ])


def _tfidf(report: Mapping) -> str:
    tfidf = report["tfidf"]
    out = ["<h2>TF-IDF top terms per topic</h2>"]
    if tfidf is None:
        out.append(_note("No topic column in train or dev."))
        return "\n".join(out)
    out.append(_note(f"Each topic of {tfidf['split']} ({tfidf['topics_total']} topics) is one document of content words "
                     "(mecab-ko tags NNG, NNP, VV, VA; verbs and adjectives as 다-forms) from its dialogues and summaries; "
                     f"the {len(tfidf['topics'])} topics with the most rows are shown."))
    rows = [(t["topic"], t["rows"], ("html", escape(", ".join(f"{term} ({score:.2f})" for term, score in t["terms"]))))
            for t in tfidf["topics"]]
    out.append(_table(("topic", "rows", "top terms (TF-IDF)"), rows))
    return "\n".join(out)


def _word_clouds(report: Mapping, images: Mapping[str, bytes]) -> str:
    out = ["<h2>Word clouds</h2>"]
    for column, title in (("dialogue", "Dialogues"), ("summary", "Summaries")):
        cloud = report["word_clouds"][column]
        out.append(f"<h3>{title} ({_num(cloud['texts'])} texts: {escape(', '.join(cloud['splits']))})</h3>")
        out.append(_img(images, report, f"wordcloud_{column}", f"word cloud of {column}s"))
        if cloud["top_words"]:
            out.append(_note("Most frequent content words: " + ", ".join(f"{w} {n:,}" for w, n in cloud["top_words"])))
    return "\n".join(out)


def _cleanup(report: Mapping) -> str:
    cleanup = report["cleanup"]
    columns = [(split, text) for split, by_text in cleanup["counts"].items() for text in by_text]
    rows = []
    for rule in cleanup["rules"]:
        values = [cleanup["counts"][s][x][rule] for s, x in columns]
        rows.append((rule, *values, sum(values)))
    out = ["<h2>What the clean-up rules change</h2>",
           _note(("Applied to the data of this report. " if cleanup["applied"] else "Off in this config; shown as they would apply. ")
                 + "Counts are texts changed per rule."),
           _table(("rule", *(f"{s} {PLURAL[x]}" for s, x in columns), "total"), rows)]
    if cleanup["examples"]:
        rows = [(f"{e['split']} {e['column']} {e['fname']}", ", ".join(e["rules"]),
                 ("html", f'<span class="text">{_visible(e["before"], e["clipped_start"])}</span>'),
                 ("html", f'<span class="text">{_visible(e["after"], e["clipped_start"])}</span>'))
                for e in cleanup["examples"]]
        out.append(_table(("text", "rules", "before", "after"), rows, numeric_from=9))
        out.append(_note("Spaces are shown as ·, line breaks as ↵."))
    return "\n".join(out)


def _visible(text: str, clipped_start: bool) -> str:
    shown = text.replace(" ", "·").replace("\t", "⇥").replace("\n", "↵\n")
    return escape(("…" if clipped_start else "") + shown + "…")
