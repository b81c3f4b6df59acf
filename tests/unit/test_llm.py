"""`dsum llm summarize` against a real local HTTP server: faults, retries, rate limits, the cache,
a kill in the middle, and the key never written anywhere. Plus the parts on their own."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, run_dsum
from fake_openai_server import FakeChatServer
from rich.console import Console

from dsum.config import LlmConfig, load_config
from dsum.data.files import file_sha256, read_examples
from dsum.util.errors import UserError
from dsum.llm.cache import CachedAnswer, ResponseCache, request_key
from dsum.llm.prompts import BM25Matrix, Shot, ShotRetriever, chat_messages, clean_answer, render
from dsum.llm.ratelimit import SlidingWindowLimiter
from dsum.llm.summarize import summarize_split
from dsum.runs.read import list_runs, read_status, run_status
from dsum.data.text import TOKEN_PATTERN

KEY = "sk-test-SECRET-123"
DEV = read_examples(REPO / "data/sample/dev.csv")


def llm_sets(server: FakeChatServer, tmp: Path) -> list[str]:
    """Overrides of configs/solar-api.yaml (3-shot BM25): the local server, fast limits: 10
    requests in any 1-second window (600/minute)."""
    sets = {
        "llm.base_url": server.base_url,
        "llm.cache": str(tmp / "cache.sqlite"),
        "general.output_dir": str(tmp / "runs"),
        "llm.timeout_s": "0.5",
        "llm.backoff_s": "0.05",
        "llm.requests_per_minute": "600",
        "llm.window_s": "1",
    }
    return [f"{key}={value}" for key, value in sets.items()]


def llm_args(server: FakeChatServer, tmp: Path, *extra: str) -> list[str]:
    """`dsum llm summarize` of the first 20 dev rows with llm_sets."""
    args = ["llm", "summarize", "-c", "configs/solar-api.yaml", "--split", "dev", "--limit", "20"]
    for override in llm_sets(server, tmp):
        args += ["--set", override]
    return args + list(extra)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def assert_key_nowhere(tmp: Path, *outputs: str) -> None:
    files = files_under(tmp)
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    for text in outputs:
        assert KEY not in text


# ---------------------------------------------------------------------------------------------
# The whole command


def test_summarize_survives_every_fault_respects_the_limit_and_never_pays_twice(tmp_path):
    script = ["429", "500", "slow", "malformed", "drop"]
    with FakeChatServer(KEY, script=script, retry_after="0.3", slow_s=1.0) as server:
        first = run_dsum(*llm_args(server, tmp_path), env={"UPSTAGE_API_KEY": KEY})
        assert first.returncode == 0, first.stderr
        assert server.count("401") == 0  # every request carried the key
        assert [a.action for a in server.arrivals[:5]] == script
        assert len(server.arrivals) == 25  # 20 rows + one retry per fault
        # No more than 10 requests in any 1-second window, by the server's clock; 25 requests
        # therefore span at least 2 windows.
        assert server.max_in_window(1.0) <= 10
        times = server.times()
        assert times[-1] - times[0] >= 2.0
        # Retry-After: the request answered 429 came back no sooner than 0.3 s later.
        rejected = server.arrivals[0]
        again = next(a for a in server.arrivals[1:] if a.body_sha == rejected.body_sha)
        assert again.at - rejected.at >= 0.3

        out = tmp_path / "runs" / "solar-api"
        report = json.loads((out / "dev_llm_report.json").read_text())
        assert report["answered"] == 20 and report["failed"] == 0 and report["from_cache"] == 0
        assert report["requests_sent"] == 25
        assert report["retries"] == {"429": 1, "500": 1, "timeout": 1, "malformed": 1, "connection": 1}
        assert "dev board score" in first.stdout and "requests sent" in first.stderr

        sub_text = (out / "dev_submission.csv").read_text()
        sub = pd.read_csv(out / "dev_submission.csv", dtype=str, keep_default_na=False)
        assert list(sub.columns) == ["Unnamed: 0", "fname", "summary"]
        assert sub.fname.tolist() == [ex.fname for ex in DEV]
        for ex, summary in zip(DEV, sub.summary):
            # The server answered '요약: "<tag1>와 <tag2>가 이야기합니다. ..."': label and quotes gone,
            # tokens exact.
            tokens = list(dict.fromkeys(TOKEN_PATTERN.findall(ex.dialogue)))
            assert summary.startswith(f"{tokens[0]}와 {tokens[1]}가 이야기합니다. ")
            assert not summary.endswith('"')
        rows = pd.read_csv(out / "dev_predictions.csv")
        assert len(rows) == 20 and rows.score.between(0, 100).all()
        score = float(first.stdout.split("dev board score ")[1].split()[0])
        assert score == pytest.approx(rows.score.mean(), abs=0.01)

        # 3-shot: system, 3 × (user, assistant), user.
        assert [m["role"] for m in server.arrivals[-1].messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]

        arrived = len(server.arrivals)
        second = run_dsum(*llm_args(server, tmp_path), env={"UPSTAGE_API_KEY": KEY})
        assert second.returncode == 0, second.stderr
        assert len(server.arrivals) == arrived  # nothing sent: every answer came from the cache
        out2 = tmp_path / "runs" / "solar-api-2"  # a run again is a new run directory
        report = json.loads((out2 / "dev_llm_report.json").read_text())
        assert report["from_cache"] == 20 and report["requests_sent"] == 0
        assert (out2 / "dev_submission.csv").read_text() == sub_text

        third = run_dsum(*llm_args(server, tmp_path, "--no-cache", "--limit", "2"), env={"UPSTAGE_API_KEY": KEY})
        assert third.returncode == 0, third.stderr
        assert len(server.arrivals) == arrived + 2  # --no-cache asks again
    assert_key_nowhere(tmp_path, first.stdout, first.stderr, second.stdout, second.stderr)


def test_a_row_that_keeps_failing_is_recorded_and_the_rest_go_on(tmp_path):
    victim = DEV[7]
    marker = victim.dialogue.split("\n")[0].strip()
    with FakeChatServer(KEY, fail_when=lambda messages: marker in messages[-1]["content"]) as server:
        result = run_dsum(*llm_args(server, tmp_path, "--set", "llm.max_retries=2"), env={"UPSTAGE_API_KEY": KEY})
        assert result.returncode == 2
        assert "1 of 20 rows failed" in result.stderr and "dev_failures.csv" in result.stderr
        assert "LLM report (dev)" in result.stderr  # the closing report is shown for a failed run too
        assert server.count("fail") == 3  # the first try and 2 retries
        assert server.count("ok") == 19
        out = tmp_path / "runs" / "solar-api"
        failures = pd.read_csv(out / "dev_failures.csv")
        assert failures.fname.tolist() == [victim.fname]
        assert failures.error[0].startswith("500 after 3 attempts")
        assert not (out / "dev_submission.csv").exists() and not (out / "metrics.json").exists()
        report = json.loads((out / "dev_llm_report.json").read_text())
        assert (report["answered"], report["failed"], report["retries"]) == (19, 1, {"500": 2})
        assert run_status(out) == "failed"

        server.fail_when = None  # the API recovers: the rerun sends only the failed row
        again = run_dsum(*llm_args(server, tmp_path), env={"UPSTAGE_API_KEY": KEY})
        assert again.returncode == 0, again.stderr
        assert server.count("ok") == 20
        out2 = tmp_path / "runs" / "solar-api-2"
        assert not (out2 / "dev_failures.csv").exists()
        assert len(pd.read_csv(out2 / "dev_submission.csv")) == 20
        assert [(r.name, r.status) for r in list_runs(tmp_path / "runs", sort="name")] == [
            ("solar-api", "failed"), ("solar-api-2", "finished")]


def test_an_llm_run_is_a_run_directory_listed_with_its_model_score_and_status(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("UPSTAGE_API_KEY", KEY)
    quiet = Console(file=io.StringIO())
    with FakeChatServer(KEY) as server:
        cfg = load_config("configs/solar-api.yaml", [*llm_sets(server, tmp_path), "general.run_name=null"])
        result = summarize_split(cfg, "dev", limit=5, console=quiet)
        again = summarize_split(cfg, "dev", limit=5, console=quiet)  # all from the cache, a new run
    runs = tmp_path / "runs"
    run_dir = runs / "llm_solar-pro2"
    assert (result.submission, again.submission) == (run_dir / "dev_submission.csv", runs / "llm_solar-pro2-2" / "dev_submission.csv")
    assert (result.stats.answered, again.stats.from_cache) == (5, 5)

    rows = list_runs(runs, sort="name")
    assert [(r.name, r.kind, r.model, r.status) for r in rows] == [
        ("llm_solar-pro2", "llm", "api:solar-pro2", "finished"),
        ("llm_solar-pro2-2", "llm", "api:solar-pro2", "finished"),
    ]
    assert rows[0].score == result.score.score and rows[1].score == again.score.score
    assert (rows[0].learning_rate, rows[0].batch_size, rows[0].epochs, rows[0].best_epoch) == (None, None, None, None)

    s = result.score
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dev"] == {"score": s.score, "rouge1": s.rouge1, "rouge2": s.rouge2, "rougeL": s.rougeL, "rows": 5}
    assert metrics["llm"]["model"] == "solar-pro2" and metrics["llm"]["answered"] == 5
    status = read_status(run_dir)
    assert (status["status"], status["kind"], status["pid"]) == ("finished", "llm", os.getpid())
    assert load_config(run_dir / "config.yaml") == cfg
    hashes = json.loads((run_dir / "environment.json").read_text())["data_sha256"]
    assert hashes == {p: file_sha256(p) for p in ("data/sample/dev.csv", "data/sample/train.csv")}  # train: the shots
    assert_key_nowhere(tmp_path)


def test_missing_key_names_the_variable(tmp_path):
    with FakeChatServer(KEY) as server:
        result = run_dsum(*llm_args(server, tmp_path), env={"UPSTAGE_API_KEY": ""})
    assert result.returncode == 2
    assert result.stderr.startswith("error: UPSTAGE_API_KEY is not set")
    assert len(result.stderr.strip().splitlines()) == 1
    assert server.arrivals == []


def test_a_refused_key_stops_the_run_without_showing_the_key(tmp_path):
    with FakeChatServer("sk-the-right-one") as server:
        # Its own process: whatever any library would print, the key must be in none of it.
        result = run_dsum(*llm_args(server, tmp_path), env={"UPSTAGE_API_KEY": KEY}, process=True)
        assert result.returncode == 2
        assert "refused the key in UPSTAGE_API_KEY (HTTP 401" in result.stderr
        assert server.count("401") <= 4  # the requests already in flight (concurrency 4), no retries
    assert_key_nowhere(tmp_path, result.stdout, result.stderr)


def test_killed_halfway_the_rerun_repeats_no_answered_request(tmp_path):
    # Concurrency 2; after 5 answers every request hangs. Once both workers hang, every answer
    # they received is committed (a worker commits before it takes the next row): kill -9 then.
    with FakeChatServer(KEY, block_after=5) as server:
        args = llm_args(server, tmp_path, "--set", "llm.concurrency=2", "--set", "llm.timeout_s=60")
        proc = subprocess.Popen([sys.executable, "-m", "dsum", *args], cwd=REPO,
                                env={**os.environ, "UPSTAGE_API_KEY": KEY},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while server.blocked < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert server.blocked == 2
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
        answered_before = set(server.answered)
        assert 5 <= len(answered_before) <= 7
        before = len(server.arrivals)

        server.block_after = None
        server.release()
        result = run_dsum(*args, env={"UPSTAGE_API_KEY": KEY})
        assert result.returncode == 0, result.stderr
        rerun = [a.body_sha for a in server.arrivals[before:]]
        assert not answered_before & set(rerun)  # nothing answered before is asked again
        assert len(rerun) == len(set(rerun)) == 20 - len(answered_before)
        report = json.loads((tmp_path / "runs/solar-api-2/dev_llm_report.json").read_text())
        assert (report["from_cache"], report["answered"]) == (len(answered_before), 20 - len(answered_before))
        assert run_status(tmp_path / "runs/solar-api") == "crashed"  # killed: a dead pid, never marked


def test_ctrl_c_stops_with_a_message_and_keeps_the_answers(tmp_path):
    # Nothing here races the clock. One worker; the server answers 3 requests and holds the 4th,
    # so when it is held the client has committed exactly 3 answers. The limiter allows 4 requests
    # in 4 minutes: a retry of the 4th, whether it comes before or after the client sees Ctrl-C,
    # waits in the limiter until Ctrl-C stops it, so the server never sees a 5th request.
    with FakeChatServer(KEY, block_after=3) as server:
        args = llm_args(server, tmp_path, "--set", "llm.concurrency=1", "--set", "llm.timeout_s=600",
                        "--set", "llm.requests_per_minute=1", "--set", "llm.window_s=240")
        proc = subprocess.Popen([sys.executable, "-m", "dsum", *args], cwd=REPO,
                                env={**os.environ, "UPSTAGE_API_KEY": KEY},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300  # a bound on a stuck client only, never reached otherwise
        while server.blocked < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert server.blocked == 1 and proc.poll() is None
        proc.send_signal(signal.SIGINT)
        server.release()  # the request in flight ends (a dropped connection)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, stderr
        assert "interrupted: the 3 answers received so far are saved in" in stderr
        assert [a.action for a in server.arrivals] == ["ok", "ok", "ok", "blocked"]
    assert len(ResponseCache(tmp_path / "cache.sqlite")) == 3
    assert run_status(tmp_path / "runs" / "solar-api") == "failed"


def test_llm_commands_have_help_with_an_example():
    for verb in (["llm", "summarize"], ["augment"]):
        result = run_dsum(*verb, "--help")
        assert result.returncode == 0 and "Example: dsum" in result.stdout


# ---------------------------------------------------------------------------------------------
# The parts


def test_limiter_never_lets_more_than_n_through_in_any_window():
    limiter = SlidingWindowLimiter(max_requests=5, window_s=0.3)
    times: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            entry = limiter.acquire()
            limiter.mark_sent(entry)
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.sort()
    worst = max(sum(1 for u in times if t <= u < t + 0.3) for t in times)
    assert worst == 5  # a token bucket of 5 per 0.3 s would let 10 through in some window
    assert times[-1] - times[0] >= 0.6  # 15 requests need three windows


def test_limiter_counts_tokens_and_settles_to_the_real_count():
    limiter = SlidingWindowLimiter(max_requests=100, window_s=0.5, max_tokens=100)
    start = time.monotonic()
    a = limiter.acquire(40)
    limiter.acquire(40)
    limiter.settle(a, 10)  # the answer used fewer tokens than estimated: 50 in the window now
    limiter.acquire(40)
    assert time.monotonic() - start < 0.2  # fitted without waiting
    limiter.acquire(40)  # 130 > 100: waits for the oldest to leave the window
    assert time.monotonic() - start >= 0.5


def test_cache_survives_reopening_and_keys_follow_the_request(tmp_path):
    messages = [{"role": "user", "content": "대화"}]
    key = request_key("solar-pro2", messages, {"temperature": 0.2, "top_p": 0.3, "max_tokens": 10})
    assert key == request_key("solar-pro2", messages, {"max_tokens": 10, "top_p": 0.3, "temperature": 0.2})
    assert key != request_key("solar-pro2", messages, {"temperature": 0.3, "top_p": 0.3, "max_tokens": 10})
    assert key != request_key("solar-mini", messages, {"temperature": 0.2, "top_p": 0.3, "max_tokens": 10})
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(key, "solar-pro2", CachedAnswer("#Person1#가 웃습니다.", 12, 5))
    cache.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")
    assert reopened.get(key) == CachedAnswer("#Person1#가 웃습니다.", 12, 5)
    assert reopened.get("0" * 64) is None


@pytest.mark.parametrize(
    "answer, expected",
    [
        ('요약: "#Person1#은 #Person2#에게 #PhoneNumber#로 전화하라고 합니다."', "#Person1#은 #Person2#에게 #PhoneNumber#로 전화하라고 합니다."),
        ("**요약**: #Person2#가  늦었다고\n사과합니다.  ", "#Person2#가 늦었다고 사과합니다."),
        ("“#Person1#와 #Person2#가 #Address#에서 만납니다.”", "#Person1#와 #Person2#가 #Address#에서 만납니다."),
        ("Summary - # Person1 #는 #person2#에게 길을 묻습니다.", "#Person1#는 #Person2#에게 길을 묻습니다."),
        ("```\n대화 요약: '#Person1#'이 웃습니다.\n```", "'#Person1#'이 웃습니다."),
        ("#Person1#는 \"좋다\"고 말합니다.", "#Person1#는 \"좋다\"고 말합니다."),
    ],
)
def test_clean_answer_removes_labels_and_quotes_and_keeps_tokens(answer, expected):
    assert clean_answer(answer) == expected


def test_retrievers_pick_similar_dialogues_and_random_is_seeded():
    pool = [Shot(ex.dialogue, ex.summaries[0]) for ex in read_examples(REPO / "data/sample/train.csv")]
    from dsum.metric.rouge import get_tokenizer

    morphs = get_tokenizer("mecab")
    query = pool[10].dialogue.replace("#Person1#:", "#Person1#: 음,")  # a near copy of pool[10]
    for method in ("bm25", "tfidf"):
        shots = ShotRetriever(pool, 2, method, morphs, seed=1).select("dev_x", query)
        assert shots[0] == pool[10] and len(shots) == 2
    # The query itself is never its own example.
    assert pool[10] not in ShotRetriever(pool, 3, "bm25", morphs, seed=1).select("x", pool[10].dialogue)
    # The sparse BM25 gives rank_bm25's own scores.
    from rank_bm25 import BM25Okapi

    corpus = [morphs(shot.dialogue) for shot in pool]
    query_tokens = morphs(query)
    assert BM25Matrix(corpus).scores(query_tokens) == pytest.approx(BM25Okapi(corpus).get_scores(query_tokens), rel=1e-9)
    rand = ShotRetriever(pool, 3, "random", morphs, seed=1)
    assert rand.select("dev_1", query) == rand.select("dev_1", query)
    assert rand.select("dev_1", query) != rand.select("dev_2", query)


def test_messages_and_template_errors():
    messages = chat_messages("sys", "요약:\n{dialogue}", "#Person1#: 안녕", [Shot("#Person1#: 네", "#Person1#가 답합니다.")])
    assert messages == (
        ("system", "sys"),
        ("user", "요약:\n#Person1#: 네"),
        ("assistant", "#Person1#가 답합니다."),
        ("user", "요약:\n#Person1#: 안녕"),
    )
    with pytest.raises(UserError, match=r"must contain \{dialogue\}"):
        render("요약해 주세요", "llm.user_prompt", dialogue="x")
    with pytest.raises(UserError, match=r"unknown placeholder\(s\) \{text\}"):
        render("{text}", "llm.user_prompt", dialogue="x")
    assert render("{{JSON}} {dialogue}", "llm.user_prompt", dialogue="{a}") == "{JSON} {a}"


def test_default_limits_follow_the_organiser_notebook():
    cfg = LlmConfig()
    assert (cfg.base_url, cfg.model, cfg.requests_per_minute, cfg.window_s) == ("https://api.upstage.ai/v1", "solar-pro2", 100, 60)
    assert (cfg.temperature, cfg.top_p) == (0.2, 0.3)
