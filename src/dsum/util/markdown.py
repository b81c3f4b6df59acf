"""Markdown for the files dsum writes for people to read (record.md, MBR records)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], text: Callable[[Any], str] = str) -> str:
    """A markdown table; values that are not strings go through `text`; `|` is escaped so a value
    never splits a cell, and a newline becomes a space."""

    def cell(value: Any) -> str:
        shown = value if isinstance(value, str) else text(value)
        return shown.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
