"""The `dsum inspect` page in a real browser (Debian's headless chromium): the table sorts, filters and
pages, a row opens with the board's matches highlighted, the view is the URL's hash, texts holding HTML
stay text, and Hangul is drawn with a Korean font. Skipped, saying why, where chromium is missing
(.ci/run installs chromium and fonts-nanum as it installs PostgreSQL)."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from conftest import REPO, run_dsum

from dsum.metric.rouge import Analysed

SAMPLE_DEV = REPO / "data" / "sample" / "dev.csv"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '</script><script>document.title="pwned"</script><b id="bold">굵게</b> 요약.'


def _chromium(profile: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium fonts-nanum; .ci/run does it as root)")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=4000", *args, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class Page:
    def __init__(self, html: Path, profile: Path):
        self.html, self.profile = html, profile
        self.data = json.loads(html.with_suffix(".json").read_text())

    def dom(self, view: str = "", html: Path | None = None) -> "Dom":
        url = (html or self.html).as_uri() + ("#" + view if view else "")
        return Dom(_chromium(self.profile, url, "--dump-dom").stdout)


class Dom(HTMLParser):
    """The dumped DOM: the rows of the table, and the spans inside elements with an id."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.rows, self.spans, self.title, self.ids = text, [], {}, "", set()
        self._open: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "tr" and "data-fname" in attrs:
            self.rows.append(attrs["data-fname"])
        if tag not in ("br", "input", "meta", "img", "circle", "rect", "line"):
            self._open.append((tag, attrs))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self._open and self._open[-1][0] == "title":
            self.title += data
        owners = [a["id"] for _, a in self._open if "id" in a]
        if self._open and self._open[-1][0] == "span" and owners:
            classes = self._open[-1][1].get("class", "").split()
            in_tag = any("tag" in a.get("class", "").split() for _, a in self._open[:-1])
            self.spans.setdefault(owners[-1], []).append((data, set(classes), in_tag))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Page:
    """One system on the sample dev: two thirds of each reference, the first row's summary hostile HTML."""
    folder = tmp_path_factory.mktemp("inspect_page")
    dev = pd.read_csv(SAMPLE_DEV, dtype=str, keep_default_na=False)
    summaries = [s[: len(s) * 2 // 3] if i % 4 else s for i, s in enumerate(dev["summary"])]
    summaries[0] = HOSTILE
    pd.DataFrame({"fname": dev["fname"], "summary": summaries}).to_csv(folder / "pred.csv", index=False)
    result = run_dsum("inspect", str(folder / "pred.csv"), "--dev", str(SAMPLE_DEV), "--out", str(folder / "page.html"))
    assert result.returncode == 0, result.stderr
    return Page(folder / "page.html", folder / "profile")


def _column(page: Page, name: str) -> dict:
    columns = page.data["table"]["columns"]
    return {r[0]: r[columns.index(name)] for r in page.data["table"]["rows"]}


def test_table_sorts_filters_and_pages_from_the_url(page):
    scores = _column(page, "score0")
    dom = page.dom("sort=score0&desc=1")
    assert dom.rows == sorted(scores, key=lambda f: -scores[f])[:50]
    assert dom.ids >= {"rows-table", "f-q", "f-flag", "f-topic", "f-min", "f-max"}

    flags = _column(page, "flags0")
    cut = page.data["flag_names"].index(next(f for f in page.data["flag_names"] if f["flag"] == "no_sentence_end"))
    expected = [f for f in scores if cut in flags[f] and 20 <= scores[f] <= 80]
    assert expected  # two thirds of a reference rarely ends a sentence
    dom = page.dom("flag=no_sentence_end&min=20&max=80&sort=fname")
    assert dom.rows == sorted(expected)[:50]
    assert f"{len(expected)} of {len(scores)} rows" in dom.text

    topic = _column(page, "topic")
    some_topic = topic[list(topic)[7]]
    assert page.dom("topic=" + quote(some_topic)).rows == [f for f in scores if topic[f] == some_topic][:50]
    predictions = _column(page, "prediction0")
    word = "요청"
    assert page.dom("q=" + quote(word)).rows == [
        f for f in scores if word in predictions[f] or word in page.data["details"][f]["dialogue"]
        or any(word in r for r in page.data["details"][f]["references"]) or word in topic[f]][:50]
    dom = page.dom("page=2&per=6")
    assert dom.rows == list(scores)[6:12] and "page 2 of 4" in dom.text


def test_clicks_sort_the_table_and_open_a_row(page, tmp_path):
    """A header clicked twice sorts by score, descending; the first row's link opens that row."""
    clicking = tmp_path / "clicking.html"
    script = ("<script>setTimeout(() => { const th = () => document.querySelector('th[data-key=score0]'); th().click();"
              "setTimeout(() => { th().click(); setTimeout(() => document.querySelector('#rows-table tbody a.rowlink').click(), 50); }, 50); }, 50);"
              "</script></body>")
    clicking.write_text(page.html.read_text().replace("</body>", script))
    dom = page.dom(html=clicking)
    scores = _column(page, "score0")
    best = sorted(scores, key=lambda f: -scores[f])
    assert dom.rows == best[:50]
    assert "row-panel" in dom.ids and f'data-fname="{best[0]}"' in dom.text


def test_an_opened_row_highlights_the_scorers_matches(page):
    analysed = Analysed("mecab")
    fname = "dev_1"
    detail = page.data["details"][fname]
    prediction = detail["systems"][0]["scored"]
    hyp, ref = analysed.prepared(prediction), analysed.prepared(detail["references"][0])
    inverse = {v: w for w, v in analysed.vocab.items()}
    overlap = {inverse[w] for w in hyp.unigrams & ref.unigrams} - {""}

    dom = page.dom(f"row={fname}&hl=u")
    assert "row-panel" in dom.ids
    highlighted = {text for text, classes, _ in dom.spans["pred-0"] if "m-u" in classes}
    assert highlighted == overlap and len(highlighted) > 3
    assert {text for text, classes, _ in dom.spans["ref-0"] if "m-u" in classes} == overlap
    # #Person1# is four morphemes for mecab, drawn inside one box.
    boxed = [text for text, _, in_tag in dom.spans["pred-0"] if in_tag]
    assert "".join(boxed[:4]) in {"#Person1#", "#Person2#"}
    # The dialogue as turns, speakers coloured by number.
    assert '<span class="spk s1">#Person1#</span>' in dom.text and '<span class="spk s2">#Person2#</span>' in dom.text


def test_texts_holding_html_stay_text(page):
    dom = page.dom("row=dev_0")
    assert dom.title.startswith("dsum inspect") and "bold" not in dom.ids
    assert "&lt;/script&gt;&lt;script&gt;document.title" in dom.text
    assert 'data-ready="1"' in dom.text  # the page's script ran to its end


def test_two_systems_side_by_side(tmp_path):
    dev = pd.read_csv(SAMPLE_DEV, dtype=str, keep_default_na=False)
    for name, cut in (("a", 2), ("b", 3)):
        pd.DataFrame({"fname": dev["fname"], "summary": [s[: len(s) * cut // 4] for s in dev["summary"]]}).to_csv(tmp_path / f"{name}.csv", index=False)
    result = run_dsum("inspect", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--dev", str(SAMPLE_DEV), "--out", str(tmp_path / "ab.html"))
    assert result.returncode == 0, result.stderr
    page = Page(tmp_path / "ab.html", tmp_path / "profile")
    fname = page.data["comparison"]["b_beats_a"][0]
    dom = page.dom(f"row={fname}&sort=diff&desc=1")
    assert dom.ids >= {"pred-0", "pred-1", "ref-0", "ref-1"}
    diff = _column(page, "diff")
    assert dom.rows == sorted(diff, key=lambda f: -diff[f])[:50] and dom.rows[0] == fname


def test_screenshot_draws_hangul_with_a_korean_font(page, tmp_path):
    """Hangul drawn by the browser differs from the boxes of a character no font has (U+E000)."""
    from PIL import Image, ImageChops

    fonts = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True).stdout if shutil.which("fc-list") else ""
    if not fonts.strip():
        pytest.skip("no Korean font (apt-get install fonts-nanum)")
    shots = {}
    for name, text in (("hangul", "대화 요약"), ("boxes", "\ue000\ue000 \ue000\ue000")):
        html = tmp_path / f"{name}.html"
        html.write_text(f'<html><body style="font-family: NanumGothic, sans-serif; font-size: 48px">{text}</body></html>', encoding="utf-8")
        _chromium(tmp_path / "profile", html.as_uri(), f"--screenshot={tmp_path / name}.png", "--window-size=400,120")
        shots[name] = Image.open(tmp_path / f"{name}.png").convert("L")
    assert ImageChops.difference(shots["hangul"], shots["boxes"]).getbbox() is not None
    _chromium(tmp_path / "profile", page.html.as_uri() + "#row=dev_1", f"--screenshot={tmp_path / 'row.png'}", "--window-size=1200,900")
    shot = Image.open(tmp_path / "row.png")
    assert shot.size == (1200, 900) and len(shot.convert("L").getcolors(256) or ()) > 20
