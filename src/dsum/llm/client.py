"""Send many chat requests to an OpenAI-compatible API: concurrent, rate-limited, retried, cached.

The `openai` client does the HTTP; its own retries are switched off (max_retries=0) so that every
attempt passes through our sliding-window limiter and is counted. Transient faults (429, 5xx,
timeouts, dropped connections, malformed bodies) are retried with exponential backoff and jitter,
or after exactly the server's Retry-After. A request that keeps failing becomes a failed row with
its error and the others go on; a rejected key or an unknown model stops the run. Each answer is
committed to the SQLite cache as it arrives.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dsum.config import LlmConfig
from dsum.util.errors import UserError
from dsum.llm.cache import CachedAnswer, ResponseCache, request_key
from dsum.llm.ratelimit import Interrupted, SlidingWindowLimiter
from dsum.util.progress import progress_console

API_KEY_ENV = "UPSTAGE_API_KEY"


def api_key() -> str:
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise UserError(
            f"{API_KEY_ENV} is not set: export {API_KEY_ENV}=... or put the line {API_KEY_ENV}=... in a .env "
            "file in the folder you run dsum from (keys: console.upstage.ai)"
        )
    return key


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    temperature: float
    top_p: float
    max_tokens: int

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def estimated_tokens(self) -> int:
        # Before the answer says how many were used: about 2 characters per token for Korean,
        # plus the most the answer may take. Replaced by the real count when the answer comes.
        return sum(len(content) for _, content in self.messages) // 2 + self.max_tokens


@dataclass(frozen=True)
class ChatResult:
    text: str | None  # None when the request failed
    error: str | None = None
    from_cache: bool = False


@dataclass
class RunStats:
    """What the closing report shows; counts are per request asked for (a repeated identical
    request is sent once and counted with the one that was sent)."""

    answered: int = 0
    from_cache: int = 0
    failed: int = 0
    requests_sent: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # reason → count
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "from_cache": self.from_cache,
            "failed": self.failed,
            "requests_sent": self.requests_sent,
            "retries": dict(self.retries),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "elapsed_s": round(self.elapsed_s, 3),
        }


class _Retry(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason, self.retry_after = reason, retry_after


class _RowError(Exception):
    """The API refused this request (400, 422...): retrying would not help."""


class _Fatal(Exception):
    """Every request would fail the same way (bad key, unknown model or URL)."""


class ChatRunner:
    """Runs batches of ChatRequests with `cfg`'s limits; `stats` adds up over batches."""

    def __init__(self, cfg: LlmConfig, use_cache: bool = True, console: Console | None = None):
        import openai

        self.cfg = cfg
        self.use_cache = use_cache  # False: never read the cache (answers are still stored)
        self.console = console or progress_console()
        # The request hook tells the limiter when each request really goes out (see ratelimit.py).
        http = openai.DefaultHttpxClient(event_hooks={"request": [self._on_send]})
        self.client = openai.OpenAI(
            api_key=api_key(), base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s, http_client=http
        )
        self._slot = threading.local()  # the limiter entry of the request this thread is sending
        scale = cfg.window_s / 60  # the limits are per minute; the window may be shorter
        self.limiter = SlidingWindowLimiter(
            max_requests=max(1, int(cfg.requests_per_minute * scale + 1e-9)),
            window_s=cfg.window_s,
            max_tokens=max(1, int(cfg.tokens_per_minute * scale + 1e-9)) if cfg.tokens_per_minute else None,
        )
        self.cache = ResponseCache(cfg.cache)
        self.stats = RunStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._received = 0  # answers committed to the cache by this runner

    def run(self, requests: list[ChatRequest], description: str = "requests") -> list[ChatResult]:
        """One result per request, in order; failed ones carry their error."""
        started = time.monotonic()
        keys = [request_key(self.cfg.model, r.as_messages(), r.params()) for r in requests]
        results: dict[str, ChatResult] = {}
        todo = {}
        for key, request in zip(keys, requests):
            if key in results or key in todo:
                continue
            cached = self.cache.get(key) if self.use_cache else None
            if cached is not None:
                results[key] = ChatResult(cached.text, from_cache=True)
            else:
                todo[key] = request
        if todo:
            results.update(self._send_all(todo, description))
        for key in keys:
            result = results[key]
            if result.text is None:
                self.stats.failed += 1
            elif result.from_cache:
                self.stats.from_cache += 1
            else:
                self.stats.answered += 1
        self.stats.elapsed_s += time.monotonic() - started
        return [results[key] for key in keys]

    def _send_all(self, todo: dict[str, ChatRequest], description: str) -> dict[str, ChatResult]:
        results: dict[str, ChatResult] = {}
        progress = Progress(
            TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console
        )
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="llm")
        try:
            with progress:
                task = progress.add_task(description, total=len(todo))
                futures = {pool.submit(self._complete, key, request): key for key, request in todo.items()}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[futures[future]] = future.result()  # re-raises _Fatal
                        progress.advance(task)
        except _Fatal as exc:
            self._stop.set()
            raise UserError(str(exc)) from None
        except KeyboardInterrupt:
            self._stop.set()
            raise UserError(
                f"interrupted: the {self._received} answers received so far are saved in {self.cfg.cache}; "
                "run the same command again to go on where it stopped"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _complete(self, key: str, request: ChatRequest) -> ChatResult:
        attempt = 0
        while True:
            if self._stop.is_set():
                return ChatResult(None, "stopped before it was sent")
            try:
                slot = self.limiter.acquire(request.estimated_tokens(), self._stop)
            except Interrupted:
                return ChatResult(None, "stopped before it was sent")
            if self._stop.is_set():
                return ChatResult(None, "stopped before it was sent")
            with self._lock:
                self.stats.requests_sent += 1
            self._slot.entry = slot
            try:
                answer = self._send(request)
            except _Retry as exc:
                if attempt >= self.cfg.max_retries:
                    return ChatResult(None, f"{exc.reason} after {attempt + 1} attempts: {exc}")
                attempt += 1
                with self._lock:
                    self.stats.retries[exc.reason] += 1
                self._stop.wait(self._delay(attempt, exc.retry_after))
                continue
            except _RowError as exc:
                return ChatResult(None, str(exc))
            except _Fatal:
                self._stop.set()  # no other worker starts a request that would fail the same way
                raise
            self.limiter.settle(slot, answer.prompt_tokens + answer.completion_tokens)
            self.cache.put(key, self.cfg.model, answer)
            with self._lock:
                self._received += 1
                self.stats.prompt_tokens += answer.prompt_tokens
                self.stats.completion_tokens += answer.completion_tokens
            return ChatResult(answer.text)

    def _on_send(self, _request: Any) -> None:
        entry = getattr(self._slot, "entry", None)
        if entry is not None:
            self.limiter.mark_sent(entry)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # At least what the server asked for; the jitter spreads the workers that were told
            # the same thing.
            return retry_after * (1 + random.uniform(0, 0.1))
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** (attempt - 1))
        return cap / 2 + random.uniform(0, cap / 2)

    def _send(self, request: ChatRequest) -> CachedAnswer:
        import openai

        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.cfg.model, messages=request.as_messages(), **request.params()
            )
        except openai.APITimeoutError:
            raise _Retry("timeout", f"no answer within {self.cfg.timeout_s:g} s") from None
        except openai.APIConnectionError as exc:
            raise _Retry("connection", f"connection failed or dropped ({exc.__cause__ or exc})") from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            message = _error_message(exc)
            if status == 429 or status >= 500 or status == 408:
                raise _Retry(str(status), f"HTTP {status}: {message}", _retry_after(exc.response.headers)) from None
            if status in (401, 403):
                raise _Fatal(
                    f"the API at {self.cfg.base_url} refused the key in {API_KEY_ENV} (HTTP {status}: {message}); "
                    f"check {API_KEY_ENV} in your environment or .env"
                ) from None
            if status == 404:
                raise _Fatal(
                    f"HTTP 404 from {self.cfg.base_url} ({message}): check llm.base_url and llm.model "
                    f"(now {self.cfg.model!r})"
                ) from None
            raise _RowError(f"HTTP {status}: {message}") from None
        return _parse_answer(raw.text)


def _parse_answer(body: str) -> CachedAnswer:
    try:
        data = json.loads(body)
        text = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retry("malformed", f"the answer is not a chat completion: {body[:80]!r}") from None
    if not isinstance(text, str):
        raise _Retry("malformed", f"the answer has no text content: {body[:80]!r}")
    return CachedAnswer(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _error_message(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message", body)
    return str(body)[:200]


def _retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
