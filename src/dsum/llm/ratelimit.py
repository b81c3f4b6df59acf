"""A sliding-window rate limiter: never more than N requests (or T tokens) in ANY window.

A token bucket refilled at N per minute lets a full bucket burst N requests at once and then N more
as it refills, so some 60-second windows see up to 2N; the API counts requests in a sliding
window and answers 429 to the excess. This limiter remembers when each request went out and lets
a new one through only when fewer than N fall inside the window ending now.

"When it went out" is the moment the HTTP request is handed to the connection (`mark_sent`, from
the HTTP client's request hook), not the moment we allowed it: the first request of a run may
spend a while in the client's set-up between the two, and counting it from the earlier time would
let later requests bunch up with it at the server. The window is also counted a little longer than
asked (SAFETY_FRACTION, at least SAFETY_MIN_S) for the network's own jitter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SAFETY_FRACTION = 0.03  # 1.8 s on a 60-second window
SAFETY_MIN_S = 0.1


class Interrupted(Exception):
    """The stop event was set while waiting for a slot."""


class SlidingWindowLimiter:
    """Thread-safe. `acquire()` blocks until a request (with its estimated tokens) fits, records
    it and returns its entry; `mark_sent(entry)` moves its time to the real send time;
    `settle(entry, tokens)` replaces the estimate by the real count."""

    def __init__(
        self,
        max_requests: int,
        window_s: float,
        max_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.window_s = window_s + max(window_s * SAFETY_FRACTION, SAFETY_MIN_S)
        self._clock = clock
        self._sent: list[list[float]] = []  # [time, tokens] per request in the window
        self._cond = threading.Condition()

    def acquire(self, tokens: int = 0, stop: threading.Event | None = None) -> list[float]:
        with self._cond:
            while True:
                now = self._clock()
                self._sent = [e for e in self._sent if e[0] > now - self.window_s]
                wait = self._wait_time(now, tokens)
                if wait <= 0:
                    entry = [now, float(tokens)]
                    self._sent.append(entry)
                    return entry
                if stop is not None and stop.is_set():
                    raise Interrupted
                # Wake up when a slot may free up, when an entry changes, or to check `stop`.
                self._cond.wait(min(wait, 0.5))

    def mark_sent(self, entry: list[float]) -> None:
        with self._cond:
            entry[0] = max(entry[0], self._clock())
            self._cond.notify_all()

    def settle(self, entry: list[float], tokens: int) -> None:
        with self._cond:
            entry[1] = float(tokens)
            self._cond.notify_all()

    def _wait_time(self, now: float, tokens: int) -> float:
        """Seconds until a request of `tokens` fits; <= 0 when it fits now."""
        entries = sorted(self._sent)  # oldest first
        waits = [0.0]
        excess = len(entries) - self.max_requests + 1
        if excess > 0:
            # The `excess` oldest requests must leave the window first.
            waits.append(entries[excess - 1][0] + self.window_s - now)
        if self.max_tokens is not None and entries:
            used = sum(e[1] for e in entries)
            # Tokens that must leave the window first; a request larger than the whole budget
            # waits for an empty window and goes alone.
            over = used if tokens > self.max_tokens else used + tokens - self.max_tokens
            freed = 0.0
            for at, spent in entries:
                if freed >= over:
                    break
                freed += spent
                waits.append(at + self.window_s - now)
        return max(waits)
