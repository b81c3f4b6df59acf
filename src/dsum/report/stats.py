"""The numbers of the data report: ids, lengths, truncation, topics, special tokens, TF-IDF, shift.

Pure functions over plain lists, so each number can be checked on its own; nothing here draws or
writes. Lengths are counted on the text the model sees (cleaned when the config cleans).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from dsum.data.files import read_table, topic_column
from dsum.util.errors import UserError
from dsum.data.text import find_special_tokens

# A turn starts with its speaker's tag: "#Person2#: ...".
SPEAKER_AT_TURN_START = re.compile(r"^[^\S\n]*(#Person\d+#):", re.MULTILINE)
_NUMBERED_ID = re.compile(r"(.*?)(\d+)")

# The shares of examples the "keep" lengths must cover, in percent.
KEEP_PERCENTS = (95, 99)

# Light verbs, demonstrative adjectives and the verbs of "~에 대해", "~을 위해": they would fill
# every word cloud.
CLOUD_STOPWORDS = frozenset({"하다", "있다", "되다", "없다", "같다", "그렇다", "이렇다", "어떻다", "대하다", "위하다"})


@dataclass
class Split:
    """One split as read from its file(s); texts are replaced by their cleaned form when cleaning."""

    name: str  # train | dev | test
    paths: list[Path]
    fnames: list[str]
    dialogues: list[str]
    summaries: list[str] | None  # the first reference per row ("" where empty); None: no summary column
    topics: list[str] | None  # "" where empty; None: no topic column

    def __len__(self) -> int:
        return len(self.fnames)


def read_split(name: str, paths: Sequence[Path]) -> Split:
    """Reads a split from one or more files (train may list several). Summary and topic columns
    may be missing (the split then has None); fname and dialogue columns may not."""
    fnames: list[str] = []
    dialogues: list[str] = []
    summaries: list[str] = []
    topics: list[str] = []
    for path in paths:
        table = read_table(path)
        missing = [c for c in ("fname", "dialogue") if c not in table.columns]
        if missing:
            present = ", ".join(map(repr, table.columns)) or "none"
            raise UserError(
                f"{path}: missing column(s) {', '.join(missing)} (columns present: {present}): "
                "the report needs at least fname and dialogue"
            )
        fnames += table["fname"].tolist()
        dialogues += table["dialogue"].tolist()
        summary_col = next((c for c in ("summary", "summary1") if c in table.columns), None)
        topic_col = topic_column(table.columns)
        # A file without the column (an augmented file without topics, say) adds empty cells.
        summaries += table[summary_col].tolist() if summary_col else [""] * len(table)
        topics += table[topic_col].tolist() if topic_col else [""] * len(table)
    # No column, or one with nothing in it (some test files): the split has none.
    return Split(name, [Path(p) for p in paths], fnames, dialogues,
                 summaries if any(s.strip() for s in summaries) else None,
                 topics if any(t.strip() for t in topics) else None)


# ---------------------------------------------------------------------------------------------
# Ids


def id_report(fnames: Sequence[str]) -> dict:
    """Empty and duplicate ids, and gaps in numbered ids (`train_0`, `train_1`, ... with one
    common prefix): the competition drops a few ids on purpose."""
    present = [f for f in fnames if f.strip()]
    counts = Counter(present)
    duplicates = sorted(f for f, n in counts.items() if n > 1)
    matches = [_NUMBERED_ID.fullmatch(f) for f in counts]
    missing: list[str] | None = None
    if matches and all(matches) and len({m.group(1) for m in matches}) == 1:
        prefix = matches[0].group(1)
        numbers = {int(m.group(2)) for m in matches}
        span = max(numbers) - min(numbers) + 1
        if span <= 2 * len(numbers):  # more gaps than ids: numbered, but not a sequence
            missing = [f"{prefix}{n}" for n in range(min(numbers), max(numbers) + 1) if n not in numbers]
    return {
        "rows": len(fnames),
        "empty_ids": len(fnames) - len(present),
        "duplicate_ids": duplicates,
        "duplicate_rows": sum(counts[f] - 1 for f in duplicates),
        "missing_numbered_ids": missing,  # None: the ids are not one numbered sequence
    }


def shared_ids(splits: Sequence[Split]) -> list[dict]:
    """Ids that appear in two splits (a leak between train and dev, for example)."""
    rows = []
    for a, b in combinations(splits, 2):
        shared = sorted(set(a.fnames) & set(b.fnames) - {""})
        rows.append({"a": a.name, "b": b.name, "count": len(shared), "examples": shared[:5]})
    return rows


def submission_ids(test_fnames: Sequence[str], submission_fnames: Sequence[str]) -> dict:
    test, submission = set(test_fnames), set(submission_fnames)
    missing = [f for f in test_fnames if f not in submission]
    extra = [f for f in submission_fnames if f not in test]
    return {"missing_in_submission": missing, "extra_in_submission": extra}


# ---------------------------------------------------------------------------------------------
# Lengths


def turn_count(dialogue: str) -> int:
    return sum(1 for line in dialogue.split("\n") if line.strip())


def speaker_count(dialogue: str) -> int:
    return len(set(SPEAKER_AT_TURN_START.findall(dialogue)))


def describe(values: Sequence[float]) -> dict | None:
    """count, mean, std (n-1, as pandas), min, quartiles, p95, p99 (linear interpolation, as
    pandas), max; None for no values."""
    if not len(values):
        return None
    array = np.asarray(values, dtype=float)
    p25, median, p75, p95, p99 = np.percentile(array, [25, 50, 75, 95, 99]).tolist()
    return {
        "count": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "min": _plain(min(values)),
        "p25": p25,
        "median": median,
        "p75": p75,
        "p95": p95,
        "p99": p99,
        "max": _plain(max(values)),
    }


def _plain(value):
    """An int stays an int in the JSON (a length), anything else becomes a float."""
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def keep_length(values: Sequence[int], percent: int) -> int:
    """The smallest length L such that at least `percent`% of the values are <= L."""
    ordered = sorted(values)
    needed = -(-percent * len(ordered) // 100)  # ceil in integers: 0.99 * 100 is 99.00000000000001
    return ordered[max(needed, 1) - 1]


def truncation(values: Sequence[int], max_length: int) -> dict:
    """How many examples a max length cuts, and the lengths that keep 95% and 99% whole."""
    cut = sum(v > max_length for v in values)
    report = {"max_length": max_length, "cut": cut, "cut_share": cut / len(values)}
    for percent in KEEP_PERCENTS:
        report[f"keep_{percent}"] = keep_length(values, percent)
    return report


# ---------------------------------------------------------------------------------------------
# Topics and special tokens


def topic_counts(split: Split) -> Counter[str]:
    return Counter(t for t in split.topics or () if t.strip())


def topic_overlap(splits: Sequence[Split]) -> list[dict]:
    """For each pair of splits with topics: topics in both, Jaccard index, and the share of the
    second split's rows whose topic the first split has."""
    rows = []
    for a, b in combinations([s for s in splits if s.topics is not None], 2):
        ca, cb = topic_counts(a), topic_counts(b)
        shared = set(ca) & set(cb)
        rows.append({
            "a": a.name,
            "b": b.name,
            "topics_a": len(ca),
            "topics_b": len(cb),
            "shared_topics": len(shared),
            "jaccard": len(shared) / len(set(ca) | set(cb)),
            "b_rows_with_topic_in_a": sum(cb[t] for t in shared) / sum(cb.values()),
        })
    return rows


def special_token_counts(split: Split) -> dict[str, dict[str, int]]:
    counts = {"dialogue": dict(find_special_tokens(split.dialogues).most_common())}
    if split.summaries is not None:
        counts["summary"] = dict(find_special_tokens(split.summaries).most_common())
    return counts


# ---------------------------------------------------------------------------------------------
# TF-IDF, word clouds (over the content words of dsum.report.morphemes)


def tfidf_by_topic(words: Sequence[list[str]], topics: Sequence[str], top_topics: int = 20, top_terms: int = 8) -> dict:
    """Each topic is one document (the content words of all its rows); TF-IDF across topics; the
    best terms of the `top_topics` most frequent topics."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    documents: dict[str, list[str]] = {}
    rows: Counter[str] = Counter()
    for row_words, topic in zip(words, topics):
        if topic.strip():
            documents.setdefault(topic, []).extend(row_words)
            rows[topic] += 1
    names = [t for t in documents if documents[t]]
    if not names:
        return {"topics_total": len(documents), "topics": []}
    # The documents are already lists of morphemes: the analyser is the identity.
    vectorizer = TfidfVectorizer(analyzer=lambda doc: doc)
    matrix = vectorizer.fit_transform([documents[t] for t in names]).tocsr()
    vocabulary = vectorizer.get_feature_names_out()
    index = {t: i for i, t in enumerate(names)}
    shown = sorted(names, key=lambda t: (-rows[t], t))[:top_topics]
    result = []
    for topic in shown:
        row = matrix.getrow(index[topic])
        best = sorted(zip(row.data, row.indices), key=lambda pair: (-pair[0], vocabulary[pair[1]]))[:top_terms]
        result.append({"topic": topic, "rows": rows[topic], "terms": [[str(vocabulary[i]), float(s)] for s, i in best]})
    return {"topics_total": len(documents), "topics": result}


def word_frequencies(words: Sequence[list[str]]) -> Counter[str]:
    counts: Counter[str] = Counter(w for row in words for w in row if w not in CLOUD_STOPWORDS)
    return counts


# ---------------------------------------------------------------------------------------------
# Shift between splits


def ks_shift(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sample Kolmogorov-Smirnov test: do the two length distributions differ?"""
    from scipy.stats import ks_2samp

    result = ks_2samp(a, b)
    return {"ks_statistic": float(result.statistic), "p_value": float(result.pvalue)}
