"""A persistent cache of API answers (SQLite), so that no request is ever paid for twice.

The key is a hash of everything that determines the answer: model, messages and sampling
parameters. Each answer is committed as soon as it arrives, so after a crash, a kill or Ctrl-C a
rerun sends only the requests that were never answered. Nothing secret is stored (the key is
not part of a request's identity, and the base URL is not either: the same model behind another
address answers the same question).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsum.util.errors import UserError


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    """Thread-safe: one connection, one lock; WAL so that a reader elsewhere never blocks us."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                "text TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
            )
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: cannot be used as the LLM cache ({exc}); point llm.cache at another file") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
            ).fetchone()
        return CachedAnswer(row[0], row[1] or 0, row[2] or 0) if row else None

    def put(self, key: str, model: str, answer: CachedAnswer) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, answer.text, answer.prompt_tokens, answer.completion_tokens, time.time()),
            )
            self._db.commit()  # one answer, one commit: a kill loses at most the answers in flight

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
