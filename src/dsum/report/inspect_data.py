"""The numbers of `dsum inspect`: scores with intervals, buckets, error flags, morphemes, rows.

One or two Systems (dsum.report.inspect_load) become one JSON-ready dict, from which the page is
drawn (dsum.report.inspect_page), so every number shown is in inspect.json. Scores are the board's
(dsum.metric.rouge.Analysed.row, as `dsum score`); intervals and differences are the paired
bootstrap of `dsum runs compare` (dsum.metric.bootstrap.paired_bootstrap, seeded): a bucket's score
is `dsum score` on the bucket's rows, and one system's interval is the bootstrap of B − 0.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from dsum.data.text import TOKEN_PATTERN
from dsum.metric.bootstrap import paired_bootstrap, topic_halves
from dsum.metric.rouge import Analysed, strip_special
from dsum.report import inspect_align as align
from dsum.report.inspect_flags import FLAG_NAMES, FLAGS, pii_of, row_flags
from dsum.report.inspect_load import System, same_rows
from dsum.report.stats import speaker_count, turn_count

DETAIL_ALL = 2000  # up to this many rows, every row's texts and highlights are embedded
DETAIL_WORST, DETAIL_BEST, DETAIL_FLAGGED, DETAIL_DIFF = 300, 100, 1000, 100  # beyond it, these rows
LISTED = 10  # worst / best / most-changed rows listed
TOP_MORPHEMES = 30
TOP_TOPICS = 15
MIN_TOPIC_ROWS = 5  # a topic bucket needs this many rows
RATIO_EDGES = (0.5, 0.8, 1.25, 2.0)
PUNCTUATION = set(".,!?…~·'\"()[]-:;/")


def inspect_data(systems: Sequence[System], analyser: str = "mecab") -> dict:
    """The page's data for one system, or two compared row by row (B − A)."""
    started = time.perf_counter()
    if len(systems) == 2:
        same_rows(*systems)
    first = systems[0]
    order = first.fnames
    examples = {ex.fname: ex for ex in first.examples}
    analysed = Analysed(analyser)
    scored = [_score_system(s, order, analysed) for s in systems]
    rows = _row_facts(order, examples)
    per_system = [{**_summary(s, sc, order, rows), "flags_by_row": sc["flags"]} for s, sc in zip(systems, scored)]
    data = {
        "title": "dsum inspect: " + " vs ".join(s.label for s in systems),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "analyser": analyser,
        "rows_total": len(order),
        "flag_names": [{"flag": f, "description": d} for f, d in FLAGS],
        "systems": [{k: v for k, v in p.items() if k != "flags_by_row"} for p in per_system],
        "buckets": _buckets(rows, scored, order),
        "flags": _flag_table(scored, order),
        "comparison": _comparison(scored, order) if len(systems) == 2 else None,
        "table": _table(order, rows, systems, scored),
    }
    data["details"], data["details_note"] = _details(order, examples, systems, scored, data, analysed)
    data["seconds"] = round(time.perf_counter() - started, 3)
    return data


# ---------------------------------------------------------------------------------------------
# Per-row scores and flags


def _score_system(system: System, order: list[str], analysed: Analysed) -> dict:
    examples = {ex.fname: ex for ex in system.examples}
    scores, parts, flags, scored_text, words = {}, {}, {}, {}, {}
    for fname in order:
        ex, prediction = examples[fname], system.predictions[fname]
        text = strip_special(prediction)  # what the board scores, as `dsum score`
        row = analysed.row(fname, text, ex.summaries)
        scores[fname] = row.score
        parts[fname] = (row.rouge1, row.rouge2, row.rougeL)
        scored_text[fname] = text
        flags[fname] = row_flags(prediction, ex.summaries, ex.dialogue, system.token_counts.get(fname), system.max_new_tokens)
        words[fname] = (set().union(*(_content(analysed, r) for r in ex.summaries)), _content(analysed, text))
    return {"scores": scores, "parts": parts, "flags": flags, "text": scored_text, "words": words}


def _row_facts(order: list[str], examples: dict) -> dict[str, dict]:
    facts = {}
    for fname in order:
        ex = examples[fname]
        refs = ex.summaries
        facts[fname] = {
            "topic": ex.topic or "",
            "dialogue_chars": len(ex.dialogue),
            "turns": turn_count(ex.dialogue),
            "speakers": speaker_count(ex.dialogue),
            "pii": bool(pii_of(ex.dialogue)),
            "reference_chars": round(sum(len(r) for r in refs) / len(refs), 1) if refs else 0,
        }
    return facts


def interval(scores: dict[str, float]) -> dict:
    """The mean score of these rows and its 95% bootstrap interval (paired_bootstrap of the scores against 0)."""
    boot = paired_bootstrap({f: 0.0 for f in scores}, scores)
    return {"rows": boot.rows, "score": boot.b, "low": boot.low, "high": boot.high}


def _summary(system: System, sc: dict, order: list[str], rows: dict) -> dict:
    parts = np.array([sc["parts"][f] for f in order], dtype=float)
    scores = [sc["scores"][f] for f in order]
    topics = {f: rows[f]["topic"] or None for f in order}
    halves = None
    if len({t for t in topics.values() if t}) >= 2:
        halves = topic_halves(sc["scores"], topics).to_dict()
    ordered = sorted(order, key=lambda f: sc["scores"][f])  # stable: ties keep dev order
    return {
        "label": system.label, "source": system.source, "kind": system.kind,
        "max_new_tokens": system.max_new_tokens, "token_counts": bool(system.token_counts),
        "score": float(np.mean(scores)), "rouge1": float(parts[:, 0].mean()), "rouge2": float(parts[:, 1].mean()),
        "rougeL": float(parts[:, 2].mean()), "interval": interval(sc["scores"]), "halves": halves,
        "histogram": np.histogram(scores, bins=20, range=(0, 100))[0].tolist(),
        "worst": ordered[:LISTED], "best": ordered[::-1][:LISTED],
        "morphemes": _morphemes(sc, order),
    }


def _morphemes(sc: dict, order: list[str]) -> dict:
    """Reference morphemes most often missing from the prediction, and prediction morphemes in no
    reference: counted in rows (each morpheme once per row), punctuation left out."""
    missed, over = Counter(), Counter()
    for fname in order:
        refs, hyp = sc["words"][fname]
        missed.update(refs - hyp)
        over.update(hyp - refs)
    return {"missed": [[m, n] for m, n in missed.most_common(TOP_MORPHEMES)],
            "over": [[m, n] for m, n in over.most_common(TOP_MORPHEMES)]}


# ---------------------------------------------------------------------------------------------
# Buckets


def _quartile_buckets(values: dict[str, float]) -> list[tuple[str, list[str]]]:
    edges = sorted(set(float(e) for e in np.quantile(list(values.values()), [0.25, 0.5, 0.75], method="lower")))
    buckets, low = [], None
    for edge in [*edges, None]:
        members = [f for f, v in values.items() if (low is None or v > low) and (edge is None or v <= edge)]
        label = (f"≤ {edge:g}" if low is None else f"> {low:g}" if edge is None else f"{low:g} – {edge:g}")
        if members:
            buckets.append((label, members))
        low = edge
    return buckets


def _ratio_buckets(ratio: dict[str, float]) -> list[tuple[str, list[str]]]:
    bounds = [None, *RATIO_EDGES, None]
    out = []
    for low, high in zip(bounds, bounds[1:]):
        members = [f for f, v in ratio.items() if (low is None or v >= low) and (high is None or v < high)]
        label = f"< {high:g}" if low is None else f"≥ {low:g}" if high is None else f"{low:g} – {high:g}"
        if members:
            out.append((label, members))
    return out


def _row_buckets(rows: dict, order: list[str]) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """(what, [(label, fnames)]) of the buckets that depend on the row only (the same for A and B)."""
    out = [
        ("dialogue characters", _quartile_buckets({f: rows[f]["dialogue_chars"] for f in order})),
        ("turns", _quartile_buckets({f: rows[f]["turns"] for f in order})),
        ("speakers", [(label, members) for label, members in (
            (str(k), [f for f in order if rows[f]["speakers"] == k]) for k in (1, 2, 3)) if members]
         + [(label, members) for label, members in (("4+", [f for f in order if rows[f]["speakers"] >= 4]),) if members]),
        ("reference characters", _quartile_buckets({f: rows[f]["reference_chars"] for f in order})),
        ("PII tokens in the dialogue", [(label, members) for label, members in (
            ("with", [f for f in order if rows[f]["pii"]]), ("without", [f for f in order if not rows[f]["pii"]])) if members]),
    ]
    topics = Counter(rows[f]["topic"] for f in order if rows[f]["topic"])
    top = [t for t, n in sorted(topics.items(), key=lambda p: (-p[1], p[0]))[:TOP_TOPICS] if n >= MIN_TOPIC_ROWS]
    if top:
        buckets = [(t, [f for f in order if rows[f]["topic"] == t]) for t in top]
        rest = [f for f in order if rows[f]["topic"] not in top]
        if rest:
            buckets.append((f"other topics ({len(topics) - len(top)})" if len(topics) > len(top) else "no topic", rest))
        out.append(("topic", buckets))
    return out


def _buckets(rows: dict, scored: list[dict], order: list[str]) -> list[dict]:
    out = []
    for what, buckets in _row_buckets(rows, order):
        for label, members in buckets:
            entry = {"by": what, "label": label, "rows": len(members),
                     "systems": [interval({f: sc["scores"][f] for f in members}) for sc in scored]}
            if len(scored) == 2:
                entry["diff"] = _boot({f: scored[0]["scores"][f] for f in members}, {f: scored[1]["scores"][f] for f in members})
            out.append(entry)
    # The prediction/reference length ratio is the system's own: each system its own buckets.
    for k, sc in enumerate(scored):
        ratio = {f: len(sc["text"][f]) / rows[f]["reference_chars"] if rows[f]["reference_chars"] else 0.0 for f in order}
        for label, members in _ratio_buckets(ratio):
            systems: list = [None] * len(scored)
            systems[k] = interval({f: sc["scores"][f] for f in members})
            out.append({"by": f"prediction / reference characters ({'AB'[k]})" if len(scored) == 2
                        else "prediction / reference characters", "label": label, "rows": len(members), "systems": systems})
    return out


def _boot(a: dict, b: dict) -> dict:
    boot = paired_bootstrap(a, b)
    return {"diff": boot.diff, "low": boot.low, "high": boot.high, "b_wins": boot.b_wins}


# ---------------------------------------------------------------------------------------------
# Flags, the comparison, the table


def _flag_table(scored: list[dict], order: list[str]) -> list[dict]:
    out = []
    for flag, description in FLAGS:
        counts, means = [], []
        for sc in scored:
            hit = [f for f in order if flag in sc["flags"][f]]
            counts.append(len(hit))
            means.append(float(np.mean([sc["scores"][f] for f in hit])) if hit else None)
        out.append({"flag": flag, "description": description, "counts": counts, "mean_score": means})
    return out


def _comparison(scored: list[dict], order: list[str]) -> dict:
    a, b = scored[0]["scores"], scored[1]["scores"]
    diff = {f: b[f] - a[f] for f in order}
    boot = paired_bootstrap(a, b)
    ranked = sorted(order, key=lambda f: diff[f])
    return {
        "bootstrap": boot.to_dict(),
        "wins": sum(1 for f in order if diff[f] > 0), "ties": sum(1 for f in order if diff[f] == 0),
        "losses": sum(1 for f in order if diff[f] < 0),
        "diff_histogram": {"edges": list(range(-100, 101, 10)),
                           "counts": np.histogram(list(diff.values()), bins=20, range=(-100, 100))[0].tolist()},
        "b_beats_a": [f for f in ranked[::-1][:LISTED] if diff[f] > 0],
        "a_beats_b": [f for f in ranked[:LISTED] if diff[f] < 0],
    }


def _table(order: list[str], rows: dict, systems: Sequence[System], scored: list[dict]) -> dict:
    """Every row, as columns + lists (the page's table sorts, filters and pages these)."""
    columns = ["fname", "topic", "dialogue_chars", "turns", "speakers", "reference_chars"]
    for k in range(len(systems)):
        columns += [f"{p}{k}" for p in ("prediction", "chars", "score", "rouge1", "rouge2", "rougeL", "flags")]
    if len(systems) == 2:
        columns.append("diff")
    flag_index = {f: i for i, f in enumerate(FLAG_NAMES)}
    values = []
    for f in order:
        r = rows[f]
        row = [f, r["topic"], r["dialogue_chars"], r["turns"], r["speakers"], r["reference_chars"]]
        for system, sc in zip(systems, scored):
            row += [system.predictions[f], len(sc["text"][f]), round(sc["scores"][f], 4),
                    *(round(p, 5) for p in sc["parts"][f]), [flag_index[x] for x in sc["flags"][f]]]
        if len(systems) == 2:
            row.append(round(scored[1]["scores"][f] - scored[0]["scores"][f], 4))
        values.append(row)
    return {"columns": columns, "rows": values}


# ---------------------------------------------------------------------------------------------
# Texts and highlights of the rows a reader opens


def _detail_rows(order: list[str], scored: list[dict], data: dict) -> list[str]:
    if len(order) <= DETAIL_ALL:
        return order
    chosen: dict[str, None] = {}
    for sc, s in zip(scored, data["systems"]):
        ranked = sorted(order, key=lambda f: sc["scores"][f])
        chosen.update(dict.fromkeys(ranked[:DETAIL_WORST]))
        chosen.update(dict.fromkeys(ranked[::-1][:DETAIL_BEST]))
        flagged = [f for f in ranked if sc["flags"][f]]
        chosen.update(dict.fromkeys(flagged[:DETAIL_FLAGGED]))
    if data["comparison"]:
        a, b = scored[0]["scores"], scored[1]["scores"]
        ranked = sorted(order, key=lambda f: b[f] - a[f])
        chosen.update(dict.fromkeys(ranked[:DETAIL_DIFF] + ranked[::-1][:DETAIL_DIFF]))
    return [f for f in order if f in chosen]


def _details(order, examples, systems, scored, data, analysed: Analysed) -> tuple[dict, str]:
    chosen = _detail_rows(order, scored, data)
    morphs = analysed.morphs
    details = {}
    for fname in chosen:
        ex = examples[fname]
        dialogue_words = set(morphs(ex.dialogue))
        reference = align.scorer_words(ex.summaries[0], morphs) if ex.summaries else None
        entry = {"dialogue": ex.dialogue, "references": list(ex.summaries), "systems": []}
        for system, sc in zip(systems, scored):
            text = sc["text"][fname]
            hyp = align.scorer_words(text, morphs)
            hyp_bits, ref_bits = align.match_classes(hyp, reference) if reference else ([0] * len(hyp.words), [])
            for i, w in enumerate(hyp.words):
                if w and w not in dialogue_words and not set(w) <= PUNCTUATION and not TOKEN_PATTERN.fullmatch(w):
                    hyp_bits[i] |= align.NEW
            entry["systems"].append({
                "raw": system.predictions[fname], "scored": text,
                "marks": align.marks(hyp, hyp_bits),
                "reference_marks": align.marks(reference, ref_bits) if reference else [],
                "flags": sc["flags"][fname],
            })
        details[fname] = entry
    note = "" if len(chosen) == len(order) else (
        f"texts and highlights of {len(chosen):,} of {len(order):,} rows are embedded (the worst, best, flagged"
        f"{' and most changed' if data['comparison'] else ''} rows); every row's scores, flags and prediction are in the table")
    return details, note


def _content(analysed: Analysed, text: str) -> set[str]:
    """The text's morphemes without punctuation; a #...# tag (four morphemes for mecab) counts as one."""
    tags = set(TOKEN_PATTERN.findall(text))
    return tags | {w for w in analysed.morphs(TOKEN_PATTERN.sub(" ", text)) if not set(w) <= PUNCTUATION}
