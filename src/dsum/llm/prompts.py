"""Prompts for chat models: templates, few-shot examples chosen from train, and answer clean-up.

Few-shot examples are earlier user/assistant turns built with the same user template, chosen per
dialogue as the most similar training dialogues (BM25 or TF-IDF over morphemes, the tokens the
board's ROUGE counts) or at random. The choice is deterministic (random is seeded per fname), so
a rerun builds the same requests and finds them in the cache.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dsum.util.errors import UserError
from dsum.data.text import STANDARD_SPECIAL_TOKENS


def render(template: str, name: str, **fields: str) -> str:
    """`template.format(**fields)` with errors a user can act on; every field must be used."""
    try:
        used = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as exc:
        raise UserError(f"{name}: {exc} in the template; write literal braces as {{{{ and }}}}") from None
    unknown = used - set(fields)
    if unknown:
        raise UserError(
            f"{name}: unknown placeholder(s) {', '.join(sorted('{' + u + '}' for u in unknown))}; "
            f"this template may use {', '.join('{' + f + '}' for f in fields)} (literal braces: {{{{ }}}})"
        )
    missing = [f for f in fields if f not in used]
    if missing:
        raise UserError(f"{name}: the template must contain {', '.join('{' + f + '}' for f in missing)}")
    return template.format(**fields)


@dataclass(frozen=True)
class Shot:
    dialogue: str
    summary: str


def chat_messages(system: str, user_template: str, dialogue: str, shots: Sequence[Shot] = ()) -> tuple[tuple[str, str], ...]:
    """system, then (user, assistant) per example, then the dialogue to summarize."""
    messages = [("system", system)]
    for shot in shots:
        messages.append(("user", render(user_template, "llm.user_prompt", dialogue=shot.dialogue)))
        messages.append(("assistant", shot.summary))
    messages.append(("user", render(user_template, "llm.user_prompt", dialogue=dialogue)))
    return tuple(messages)


class ShotRetriever:
    """Chooses k examples from a pool of (dialogue, summary) for each query dialogue."""

    def __init__(self, pool: Sequence[Shot], k: int, method: str, morphs: Callable[[str], list[str]], seed: int):
        if k > len(pool):
            raise UserError(f"llm.shots is {k} but data.train holds only {len(pool)} examples; lower llm.shots")
        self.pool, self.k, self.method, self.morphs, self.seed = list(pool), k, method, morphs, seed
        if method == "bm25":
            self._bm25 = BM25Matrix([morphs(shot.dialogue) or [""] for shot in self.pool])
        elif method == "tfidf":
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._tfidf = TfidfVectorizer(analyzer=morphs)
            self._matrix = self._tfidf.fit_transform([shot.dialogue for shot in self.pool])
        elif method != "random":
            raise UserError(f"llm.shot_selection must be bm25, tfidf or random, not {method!r}")

    def select(self, fname: str, dialogue: str) -> list[Shot]:
        """The k examples for one dialogue, best first (a pool row with the same dialogue is skipped)."""
        candidates = [i for i, shot in enumerate(self.pool) if shot.dialogue != dialogue]
        if self.method == "random":
            rng = random.Random(f"{self.seed}:{fname}")
            return [self.pool[i] for i in rng.sample(candidates, min(self.k, len(candidates)))]
        if self.method == "bm25":
            scores = self._bm25.scores(self.morphs(dialogue))
        else:
            scores = (self._matrix @ self._tfidf.transform([dialogue]).T).toarray().ravel()
        # Highest score first; ties keep pool order, so the choice never depends on the platform.
        ranked = sorted(candidates, key=lambda i: (-float(scores[i]), i))
        return [self.pool[i] for i in ranked[: self.k]]


class BM25Matrix:
    """rank_bm25's Okapi BM25 (its statistics, its scores) with the scoring as one sparse product.

    `BM25Okapi.get_scores` loops in Python over every document for every query token: about 6 s
    per dialogue against the 12,457 training dialogues here, 50 minutes for a test set. The
    per-(document, term) weights do not depend on the query, so they are computed once; a
    query's scores are then the weight matrix times its term counts (the same numbers).
    """

    def __init__(self, corpus: list[list[str]]):
        import numpy as np
        from rank_bm25 import BM25Okapi
        from scipy.sparse import csr_matrix

        bm = BM25Okapi(corpus)
        self.vocab = {term: i for i, term in enumerate(bm.idf)}
        rows, cols, weights = [], [], []
        for doc, freqs in enumerate(bm.doc_freqs):
            norm = bm.k1 * (1 - bm.b + bm.b * bm.doc_len[doc] / bm.avgdl)
            for term, freq in freqs.items():
                rows.append(doc)
                cols.append(self.vocab[term])
                weights.append(bm.idf[term] * freq * (bm.k1 + 1) / (freq + norm))
        self.weights = csr_matrix((np.array(weights), (rows, cols)), shape=(len(corpus), len(self.vocab)))

    def scores(self, query: list[str]):
        import numpy as np

        counts = np.zeros(len(self.vocab))
        for term in query:
            if term in self.vocab:
                counts[self.vocab[term]] += 1
        return self.weights @ counts


# --------------------------------------------------------------------------------------------
# Answer clean-up

# "요약:", "**요약**:", "Summary -", "대화 요약:" and the like at the start of an answer.
_LABEL = re.compile(r"^\s*(?:\*\*|##?\s*)?(?:대화\s*)?(?:요약(?:문)?|summary)(?:\*\*)?\s*[:：\-]\s*(?:\*\*)?\s*", re.I)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』", "`": "`"}
# A standard token written with stray spaces or another case: "# Person 1 #", "#person1#".
_LOOSE_TOKEN = re.compile(r"#\s{0,2}([A-Za-z]+)\s{0,2}(\d?)\s{0,2}#")
_CANONICAL = {t.strip("#").lower(): t for t in STANDARD_SPECIAL_TOKENS}


def clean_answer(text: str) -> str:
    """One line of summary from a chat answer: no label, no wrapping quotes, single spaces; the
    #PersonN# and personal-data tokens kept exactly (and repaired when written loosely)."""
    text = text.strip()
    if text.startswith("```"):  # a fenced block: keep its body
        text = text.strip("`").split("\n", 1)[-1] if "\n" in text else text.strip("`")
    for _ in range(3):  # labels and quotes can nest: **요약**: "..."
        before = text
        text = _LABEL.sub("", text, count=1).strip()
        if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and text[0] not in text[1:-1]:
            text = text[1:-1].strip()
        if text == before:
            break
    text = _LOOSE_TOKEN.sub(_canonical_token, text)
    return " ".join(text.split())


def _canonical_token(match: re.Match[str]) -> str:
    return _CANONICAL.get((match.group(1) + match.group(2)).lower(), match.group(0))
