"""`dsum augment`: new training rows from old ones, each keeping its source's #...# tokens.

Local methods (no API, seeded per row so a rerun writes the same file):
  speaker-swap     #Person1# ↔ #Person2# everywhere in the dialogue and the summary;
  aeda             punctuation marks inserted between the words of each turn (AEDA, Karimi et al. 2021);
  turn-noise       a filler word ("음,", "아,", ...) added to, dropped from or repeated at the start of
                   some turns. Whole turns are never dropped or duplicated: that would remove or add
                   a #PersonN# tag, and a row must keep its source's tokens exactly.
API methods (the llm section's model, limits, retries and cache):
  llm-paraphrase   the dialogue reworded, the summary kept;
  back-translation Korean → pivot language → Korean, of augment.back_translation_fields;
  summary-rewrite  the summary reworded, the dialogue kept.

Every row must keep exactly the multiset of #...# tokens of its source, field by field (for
speaker-swap, after swapping), and API dialogues must keep the source's turns and speakers;
other rows are rejected and counted. Rows equal to their source or to an earlier row are dropped.
The output CSV (`fname, dialogue, summary, topic, source_fname, method`) goes into data.train
beside the original file; fnames are `<source fname>__<method>`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dsum.util.atomic import atomic_write_text
from dsum.config import Config
from dsum.data.files import Example, read_examples
from dsum.util.errors import UserError
from dsum.data.text import TOKEN_PATTERN

LOCAL_METHODS = ("speaker-swap", "aeda", "turn-noise")
API_METHODS = ("llm-paraphrase", "back-translation", "summary-rewrite")
METHODS = LOCAL_METHODS + API_METHODS

SWAP = {"#Person1#": "#Person2#", "#Person2#": "#Person1#"}
AEDA_MARKS = (".", ",", "!", "?", ";", ":")
# Leading words that carry no content; added ones are drawn from FILLERS.
FILLER_WORDS = {"네,", "응,", "아,", "음,", "어,", "오,", "와,", "저,", "저기,", "글쎄,", "글쎄요,", "그러니까,"}
FILLERS = ("음,", "아,", "어,", "저,", "그러니까,", "글쎄요,")
_TURN = re.compile(r"^(#[A-Za-z][A-Za-z0-9]*#: ?)(.*)$")  # speaker tag, then what is said


@dataclass
class Candidate:
    source: Example
    dialogue: str | None  # None: the API failed for this row
    summary: str | None
    error: str | None = None


@dataclass
class AugmentResult:
    method: str
    path: Path
    source_rows: int
    written: int
    counts: Counter[str] = field(default_factory=Counter)  # why rows were not written
    api: dict | None = None  # the closing report of API methods


def augment_file(
    cfg: Config, method: str, out: Path | None = None, limit: int | None = None, use_cache: bool = True
) -> AugmentResult:
    if method not in METHODS:
        raise UserError(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    source = cfg.augment.source or cfg.data.train[0]
    rows = read_examples(source, require_summary=True)[:limit]
    out = out or cfg.augment.output or cfg.general.output_dir / "augment" / f"{Path(source).stem}_{method}.csv"

    api_report = None
    if method in LOCAL_METHODS:
        transform = {"speaker-swap": speaker_swap, "aeda": aeda, "turn-noise": turn_noise}[method]
        candidates = []
        for row in rows:
            rng = random.Random(f"{cfg.general.seed}:{method}:{row.fname}")
            dialogue, summary = transform(row.dialogue, row.summaries[0], rng, cfg)
            candidates.append(Candidate(row, dialogue, summary))
    else:
        from dsum.llm.client import ChatRunner

        runner = ChatRunner(cfg.llm, use_cache=use_cache)
        candidates = _api_candidates(cfg, method, rows, runner)
        api_report = runner.stats.to_dict()

    kept, counts = select_rows(candidates, method)
    frame = pd.DataFrame(kept, columns=["fname", "dialogue", "summary", "topic", "source_fname", "method"])
    atomic_write_text(Path(out), frame.to_csv(index=False, lineterminator="\n"))
    return AugmentResult(method, Path(out), len(rows), len(kept), counts, api_report)


def select_rows(candidates: list[Candidate], method: str) -> tuple[list[dict], Counter[str]]:
    """The rows to write, and a count per reason for the others."""
    mapping = SWAP if method == "speaker-swap" else {}
    seen: set[tuple[str, str]] = set()
    kept, counts = [], Counter()
    for cand in candidates:
        src = cand.source
        if cand.dialogue is None or cand.summary is None:
            counts["failed (API)"] += 1
            continue
        if not tokens_match(src.dialogue, cand.dialogue, mapping) or not tokens_match(src.summaries[0], cand.summary, mapping):
            counts["rejected: #...# tokens changed"] += 1
            continue
        if method in ("llm-paraphrase", "back-translation") and speakers(cand.dialogue) != speakers(src.dialogue):
            counts["rejected: turns changed"] += 1
            continue
        pair = (_squash(cand.dialogue), _squash(cand.summary))  # whitespace alone is no change
        if pair == (_squash(src.dialogue), _squash(src.summaries[0])):
            counts["unchanged"] += 1
            continue
        if pair in seen:
            counts["duplicate"] += 1
            continue
        seen.add(pair)
        kept.append(
            dict(fname=f"{src.fname}__{method}", dialogue=cand.dialogue, summary=cand.summary,
                 topic=src.topic or "", source_fname=src.fname, method=method)
        )
    return kept, counts


def _squash(text: str) -> str:
    return " ".join(text.split())


def tokens_match(source: str, new: str, mapping: dict[str, str] | None = None) -> bool:
    """True when `new` holds exactly the #...# tokens of `source` (after `mapping`), with counts."""
    expected = Counter((mapping or {}).get(t, t) for t in TOKEN_PATTERN.findall(source))
    return Counter(TOKEN_PATTERN.findall(new)) == expected


def speakers(dialogue: str) -> list[str]:
    """The speaker tag of each turn, in order."""
    return [m.group(1).rstrip(": ") for line in dialogue.split("\n") if (m := _TURN.match(line.strip()))]


# --------------------------------------------------------------------------------------------
# Local methods: (dialogue, summary, rng, cfg) → (dialogue, summary)


def speaker_swap(dialogue: str, summary: str, rng: random.Random, cfg: Config) -> tuple[str, str]:
    def swap(text: str) -> str:
        return TOKEN_PATTERN.sub(lambda m: SWAP.get(m.group(0), m.group(0)), text)

    return swap(dialogue), swap(summary)


def aeda(dialogue: str, summary: str, rng: random.Random, cfg: Config) -> tuple[str, str]:
    def insert(words: list[str]) -> list[str]:
        n = rng.randint(1, max(1, int(cfg.augment.aeda_ratio * len(words))))
        # After word i (never right after the speaker tag); a mark is a word of its own, so it is
        # never glued to a #...# token.
        positions = set(rng.sample(range(len(words)), min(n, len(words))))
        out = []
        for i, word in enumerate(words):
            out.append(word)
            if i in positions:
                out.append(rng.choice(AEDA_MARKS))
        return out

    return _map_turns(dialogue, lambda words: insert(words) if words else words), summary


def turn_noise(dialogue: str, summary: str, rng: random.Random, cfg: Config) -> tuple[str, str]:
    lines = dialogue.split("\n")
    turns = [i for i, line in enumerate(lines) if (m := _TURN.match(line)) and m.group(2).strip()]
    if not turns:
        return dialogue, summary
    chosen = set(rng.sample(turns, max(1, round(cfg.augment.turn_noise_ratio * len(turns)))))

    def edit(words: list[str]) -> list[str]:
        if words[0] in FILLER_WORDS:
            # Drop the filler (when something is left) or say it twice.
            return words[1:] if len(words) > 1 and rng.random() < 0.5 else [words[0], *words]
        return [rng.choice(FILLERS), *words]

    for i in sorted(chosen):
        lines[i] = _map_turns(lines[i], edit)
    return "\n".join(lines), summary


def _map_turns(dialogue: str, edit: Callable[[list[str]], list[str]]) -> str:
    """Applies `edit` to the words of what each turn says (the speaker tag is left alone)."""
    out = []
    for line in dialogue.split("\n"):
        m = _TURN.match(line)
        words = m.group(2).split(" ") if m else []
        if m and m.group(2).strip():
            line = m.group(1) + " ".join(edit(words))
        out.append(line)
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# API methods


def _api_candidates(cfg: Config, method: str, rows: list[Example], runner) -> list[Candidate]:
    from dsum.llm.client import ChatRequest
    from dsum.llm.prompts import clean_answer, render

    a = cfg.augment

    def ask(prompts: list[str], description: str) -> list[str | None]:
        requests = [ChatRequest((("system", a.system_prompt), ("user", p)), a.temperature, a.top_p, a.max_tokens) for p in prompts]
        return [r.text for r in runner.run(requests, description)]

    if method == "llm-paraphrase":
        prompts = [render(a.paraphrase_prompt, "augment.paraphrase_prompt", dialogue=r.dialogue) for r in rows]
        answers = ask(prompts, "paraphrase")
        return [Candidate(r, clean_dialogue(t) if t is not None else None, r.summaries[0]) for r, t in zip(rows, answers)]

    if method == "summary-rewrite":
        prompts = [render(a.summary_rewrite_prompt, "augment.summary_rewrite_prompt", summary=r.summaries[0]) for r in rows]
        answers = ask(prompts, "summary rewrite")
        return [Candidate(r, r.dialogue, clean_answer(t) if t is not None else None) for r, t in zip(rows, answers)]

    # back-translation: every chosen field of every row there, then back.
    def translate(texts: list[str | None], source: str, target: str) -> list[str | None]:
        todo = [i for i, t in enumerate(texts) if t is not None]
        prompts = [
            render(a.translate_prompt, "augment.translate_prompt", source_language=source, target_language=target, text=texts[i])
            for i in todo
        ]
        answers = ask(prompts, f"{source} → {target}")
        out: list[str | None] = [None] * len(texts)
        for i, answer in zip(todo, answers):
            out[i] = answer.strip() if answer is not None else None
        return out

    fields = list(dict.fromkeys(a.back_translation_fields))
    originals = {"dialogue": [r.dialogue for r in rows], "summary": [r.summaries[0] for r in rows]}
    texts = [t for f in fields for t in originals[f]]
    back = translate(translate(texts, "Korean", a.pivot_language), a.pivot_language, "Korean")
    result = {f: back[k * len(rows):(k + 1) * len(rows)] for k, f in enumerate(fields)}
    candidates = []
    for i, row in enumerate(rows):
        dialogue = result["dialogue"][i] if "dialogue" in result else row.dialogue
        summary = result["summary"][i] if "summary" in result else row.summaries[0]
        candidates.append(
            Candidate(
                row,
                clean_dialogue(dialogue) if dialogue is not None and "dialogue" in result else dialogue,
                clean_answer(summary) if summary is not None and "summary" in result else summary,
            )
        )
    return candidates


def clean_dialogue(text: str) -> str:
    """A dialogue from a chat answer: no code fence or label line, one turn per line."""
    lines = [line.strip() for line in text.strip().strip("`").split("\n")]
    lines = [line for line in lines if line]
    # A first line such as "바꿔 쓴 대화:" or "text" (after a fence) is not a turn.
    while lines and not _TURN.match(lines[0]) and len(lines) > 1 and _TURN.match(lines[1]):
        lines.pop(0)
    return "\n".join(lines)
