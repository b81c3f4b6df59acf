"""A real HTTP server on 127.0.0.1 that speaks the chat-completions part of the OpenAI API.

Tests point dsum's real `openai` client at it (`llm.base_url`) and script faults: the first
requests to arrive are answered from `script` in arrival order (429 with Retry-After, 500, a
response slower than the client's timeout, a malformed JSON body, a dropped connection), every
later one succeeds. `fail_when` fails chosen requests every time. The server records each
arrival with its own clock, so tests measure the client's request rate from the server's side.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dsum.data.text import TOKEN_PATTERN

Messages = list[dict]


@dataclass
class Arrival:
    at: float  # time.monotonic() when the request line and headers were read
    body_sha: str  # identifies the request: same messages and parameters → same hash
    action: str  # what the server did: ok, 429, 500, slow, malformed, drop, 401, fail, blocked
    messages: Messages


def summary_answer(messages: Messages) -> str:
    """A deterministic 'summary' of the last user message, wrapped the way chat models often
    answer (a "요약:" label and quotes), so dsum's clean-up has something to remove."""
    text = messages[-1]["content"]
    tokens = list(dict.fromkeys(TOKEN_PATTERN.findall(text)))
    first_turn = next((line.split(": ", 1)[1] for line in text.split("\n") if line.startswith("#Person") and ": " in line), "")
    return f'요약: "{tokens[0]}와 {tokens[1]}가 이야기합니다. {first_turn}"'


def echo_answer(messages: Messages) -> str:
    """The text after the prompt's first blank line, lightly reworded (the augment prompts put
    the text to transform last)."""
    text = messages[-1]["content"].split("\n\n", 1)[-1]
    return text.replace("요.", "요!").replace("다.", "다!")


class FakeChatServer:
    def __init__(
        self,
        api_key: str,
        script: list[str] | tuple[str, ...] = (),
        answer: Callable[[Messages], str] = summary_answer,
        fail_when: Callable[[Messages], bool] | None = None,
        retry_after: str = "0.3",
        slow_s: float = 1.5,
        answer_delay_s: float = 0.0,
        block_after: int | None = None,
    ):
        self.api_key = api_key
        self.script = deque(script)
        self.answer = answer
        self.fail_when = fail_when
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.answer_delay_s = answer_delay_s
        # After this many requests were let through (action ok), every request hangs until
        # release() (a client killed meanwhile never gets an answer): a crash with requests in
        # flight. Counted when the request is let through, not when its answer is sent, so the
        # count never depends on how fast a handler thread gets to record its answer.
        self.block_after = block_after
        self.arrivals: list[Arrival] = []
        self.answered: list[str] = []  # body hashes whose 200 answer was fully sent
        self.let_through = 0  # requests given action ok
        self.blocked = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def release(self) -> None:
        self._release.set()

    def times(self) -> list[float]:
        return sorted(a.at for a in self.arrivals)

    def count(self, action: str) -> int:
        return sum(a.action == action for a in self.arrivals)

    def max_in_window(self, window_s: float) -> int:
        """The most arrivals in any half-open window [t, t + window_s) (the worst window
        starts at an arrival)."""
        times = self.times()
        best, j = 0, 0
        for i, start in enumerate(times):
            while j < len(times) and times[j] < start + window_s:
                j += 1
            best = max(best, j - i)
        return best

    def _decide(self, auth: str, messages: Messages, at: float, sha: str) -> str:
        """The action for one request, recorded in the same critical section that chose it, so
        `arrivals` is in the order the script was handed out whatever the threads do."""
        with self._lock:
            action = self._action(auth, messages)
            self.arrivals.append(Arrival(at, sha, action, messages))
            return action

    def _action(self, auth: str, messages: Messages) -> str:
        if auth != f"Bearer {self.api_key}":
            return "401"
        if self.fail_when is not None and self.fail_when(messages):
            return "fail"
        if self.script:
            return self.script.popleft()
        if self.block_after is not None and self.let_through >= self.block_after:
            self.blocked += 1
            return "blocked"
        self.let_through += 1
        return "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real API: drops hit pooled connections

            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                at = time.monotonic()
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(raw)
                messages = body["messages"]
                sha = hashlib.sha256(raw).hexdigest()
                action = server._decide(self.headers.get("Authorization", ""), messages, at, sha)
                if action == "401":
                    self._send(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}})
                elif action == "429":
                    self._send(429, {"error": {"message": "Too many requests"}}, {"Retry-After": server.retry_after})
                elif action in ("500", "fail"):
                    self._send(500, {"error": {"message": "internal error"}})
                elif action == "malformed":
                    self._send_raw(200, b'{"id": "x", "choices": [', "application/json")
                elif action == "drop":
                    self.close_connection = True  # no status line at all: the client sees a dropped connection
                elif action == "blocked":
                    server._release.wait()
                    self.close_connection = True
                else:
                    if action == "slow":
                        time.sleep(server.slow_s)
                    elif server.answer_delay_s:
                        time.sleep(server.answer_delay_s)
                    content = server.answer(messages)
                    self._send(200, completion(body["model"], content, raw))
                    if action == "ok":  # a slow answer arrives after the client gave up
                        with server._lock:
                            server.answered.append(sha)

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                self._send_raw(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json", headers)

            def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

        return Handler


def completion(model: str, content: str, raw_request: bytes) -> dict:
    prompt_tokens = len(raw_request) // 4
    completion_tokens = max(1, len(content) // 2)
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
