"""`dsum eda`: the report's numbers against values computed here with pandas/scipy, its font, its images."""

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, run_dsum
from fontTools.ttLib import TTFont
from scipy.stats import ks_2samp

from dsum.config import load_config
from dsum.report import morphemes
from dsum.report.stats import describe, id_report, keep_length, read_split
from dsum.model.loading import load_model_and_tokenizer
from dsum.data.text import Normalizer, special_tokens_for
from dsum.model.tokenization import encode_labels, encode_sources, framing_for

SAMPLE = REPO / "data" / "sample"
TOKEN = r"#[A-Za-z][A-Za-z0-9]*#"
SPLITS = ("train", "dev", "test")
# Smaller max lengths than the demo's 512/100, so that some examples are cut.
MAX_SOURCE, MAX_TARGET = 200, 40


def read(name: str, folder: Path = SAMPLE) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


def cleaned(table: pd.DataFrame) -> pd.DataFrame:
    """The texts the model sees (the report counts lengths on them when the config cleans)."""
    table = table.copy()
    clean = Normalizer()
    for column in ("dialogue", "summary"):
        if column in table:
            table[column] = table[column].map(clean)
    return table


def expected_stats(values: pd.Series) -> dict:
    values = values.astype(float)
    return {
        "count": len(values), "mean": values.mean(), "std": values.std(), "min": values.min(),
        "p25": values.quantile(0.25), "median": values.median(), "p75": values.quantile(0.75),
        "p95": values.quantile(0.95), "p99": values.quantile(0.99), "max": values.max(),
    }


def assert_stats(actual: dict, values: pd.Series) -> None:
    expected = expected_stats(values)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def smallest_keeping(values: pd.Series, share: float) -> int:
    return int(next(v for v in sorted(values) if (values <= v).mean() >= share))


def turns(text: str) -> int:
    return len([line for line in text.split("\n") if line.strip() != ""])


def speakers(text: str) -> int:
    return len(set(re.findall(r"(?m)^\s*(#Person\d+#):", text)))


def run_report(out: Path, *args: str):
    result = run_dsum("eda", *args, "--out", str(out), process=True)  # matplotlib's warnings reach its stderr
    assert result.returncode == 0, result.stderr
    return result, json.loads((out / "eda.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("eda") / "report"
    result, report = run_report(out, "-c", "configs/demo.yaml", "--set", f"model.max_source_length={MAX_SOURCE}",
                                "--set", f"model.max_target_length={MAX_TARGET}")
    tables = {name: cleaned(read(name)) for name in SPLITS}
    return result, out, report, tables


# ---------------------------------------------------------------------------------------------
# Small pieces


def test_keep_length_is_the_smallest_length_that_keeps_the_share():
    assert keep_length(list(range(1, 101)), 99) == 99  # 0.99 * 100 is 99.00000000000001 in floats
    assert keep_length(list(range(1, 101)), 95) == 95
    assert keep_length([5, 1, 3], 95) == 5
    assert keep_length([7], 99) == 7
    values = pd.Series([3, 9, 1, 4, 4, 12, 8, 2, 2, 30, 5, 6, 7, 1, 3, 3, 11, 2, 40, 6, 5])
    assert keep_length(values.tolist(), 95) == smallest_keeping(values, 0.95) == 30


def test_describe_matches_pandas():
    values = pd.Series([3, 9, 1, 4, 4, 12, 8, 2, 2, 30])
    assert_stats(describe(values.tolist()), values)
    assert describe([]) is None
    assert describe([5])["std"] == 0.0


def test_id_report_finds_gaps_duplicates_and_empty_ids():
    report = id_report(["dev_0", "dev_1", "dev_3", "dev_3", "", "dev_5"])
    assert report == {"rows": 6, "empty_ids": 1, "duplicate_ids": ["dev_3"], "duplicate_rows": 1,
                      "missing_numbered_ids": ["dev_2", "dev_4"]}
    assert id_report(["a", "b1"])["missing_numbered_ids"] is None  # not one numbered sequence
    assert id_report(["train_9", "dev_1"])["missing_numbered_ids"] is None  # two prefixes
    assert id_report(["x_1", "x_1000"])["missing_numbered_ids"] is None  # more gaps than ids


def test_content_words_are_the_same_from_worker_processes():
    texts = read("train").dialogue.tolist() * 30  # 2,400 texts: enough for a pool of workers
    pool = morphemes.start_pool(2, len(texts))
    assert pool is not None
    try:
        words = morphemes.collect(morphemes.submit(pool, texts), advance=lambda n: None)
    finally:
        pool.shutdown()
    assert words == morphemes.analyse_chunk(texts)
    # Nouns, and verbs/adjectives as 다-forms (했 is 하/VV + 았/EP); 어제 is an adverb (MAG).
    sentence = "#Person1#: 어제 맛있는 음식을 먹었고 숙제를 했어요."
    assert morphemes.analyse_chunk([sentence]) == [["맛있다", "음식", "먹다", "숙제", "하다"]]
    assert morphemes.start_pool(1, len(texts)) is None and morphemes.start_pool(2, 10) is None


def test_split_of_several_files_with_and_without_columns(tmp_path):
    pd.DataFrame({"fname": ["a_0"], "dialogue": ["#Person1#: 안녕"], "summary": ["인사"], "topic": ["인사"]}).to_csv(
        tmp_path / "one.csv", index=False)
    pd.DataFrame({"fname": ["b_0", "b_1"], "dialogue": ["#Person1#: 네", "#Person2#: 응"]}).to_csv(
        tmp_path / "two.csv", index=False)
    split = read_split("train", [tmp_path / "one.csv", tmp_path / "two.csv"])
    assert split.fnames == ["a_0", "b_0", "b_1"] and len(split) == 3
    assert split.summaries == ["인사", "", ""] and split.topics == ["인사", "", ""]
    alone = read_split("test", [tmp_path / "two.csv"])
    assert alone.summaries is None and alone.topics is None


# ---------------------------------------------------------------------------------------------
# The report of the bundled sample (configs/demo.yaml)


def test_eda_has_help_with_an_example():
    result = run_dsum("eda", "--help")
    assert result.returncode == 0 and "Example: dsum eda" in result.stdout


def test_report_files_and_output(demo):
    result, out, report, _ = demo
    assert f"report: {out / 'report.html'}" in result.stdout
    for name in ("report.html", "eda.json", "lengths.csv"):
        assert (out / name).is_file()
    assert set(report["images"]) == {"dialogue_lengths", "summary_lengths", "truncation", "shift", "topics",
                                     "special_tokens", "wordcloud_dialogue", "wordcloud_summary"}
    for name in report["images"].values():
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Every Korean label was drawn with a font that has it (matplotlib warns "Glyph ... missing").
    assert "missing from" not in result.stderr and "Glyph" not in result.stderr
    assert report["config"] == "configs/demo.yaml"
    assert report["files"] == {name: [f"data/sample/{name}.csv"] for name in SPLITS}


def test_sizes_and_ids(demo):
    _, _, report, tables = demo
    for name, table in tables.items():
        sizes = report["sizes"][name]
        assert sizes["rows"] == len(table)
        assert sizes["empty_ids"] == int((table.fname == "").sum()) == 0
        assert sizes["duplicate_ids"] == [] and sizes["duplicate_rows"] == int(table.fname.duplicated().sum()) == 0
        numbers = table.fname.str.split("_").str[1].astype(int)
        assert sizes["missing_numbered_ids"] == [f"{name}_{n}" for n in range(numbers.min(), numbers.max() + 1)
                                                 if n not in set(numbers)]
        assert sizes["with_summary"] == (int((table.summary != "").sum()) if "summary" in table else 0)
        assert sizes["with_topic"] == (int((table.topic != "").sum()) if "topic" in table else 0)
    for row in report["shared_ids"]:
        assert row["count"] == len(set(tables[row["a"]].fname) & set(tables[row["b"]].fname))
    submission = pd.read_csv(SAMPLE / "sample_submission.csv", dtype=str)
    assert report["submission_ids"] == {
        "missing_in_submission": sorted(set(tables["test"].fname) - set(submission.fname)),
        "extra_in_submission": sorted(set(submission.fname) - set(tables["test"].fname)),
    }


def test_lengths_match_pandas(demo):
    _, _, report, tables = demo
    assert report["cleanup"]["applied"] is True
    for name, table in tables.items():
        lengths = report["lengths"][name]
        assert_stats(lengths["dialogue"]["chars"], table.dialogue.str.len())
        assert_stats(lengths["dialogue"]["turns"], table.dialogue.map(turns))
        assert_stats(lengths["dialogue"]["speakers"], table.dialogue.map(speakers))
        if "summary" in table:
            assert_stats(lengths["summary"]["chars"], table.summary.str.len())
            assert_stats(lengths["compression"], table.summary.str.len() / table.dialogue.str.len())
        else:
            assert lengths["summary"] is None and lengths["compression"] is None
    assert report["lengths"]["train"]["dialogue"]["speakers"]["max"] == 2  # the sample has two speakers


def test_token_lengths_and_truncation(demo):
    _, out, report, tables = demo
    assert report["tokenizer"]["available"] is True and report["tokenizer"]["name"] == "tiny"
    per_row = pd.read_csv(out / "lengths.csv", keep_default_na=False, dtype={"fname": str})
    # The tokenizer and framing `dsum train` would build, counted as training encodes examples.
    train, dev = tables["train"], tables["dev"]
    train_texts = [*train.dialogue, *train.summary]
    model, tokenizer = load_model_and_tokenizer(load_config(REPO / "configs/demo.yaml").model,
                                                special_tokens_for([*train_texts, *dev.dialogue]), train_texts)
    framing = framing_for(model.config, tokenizer)
    for name, table in tables.items():
        rows = per_row[per_row.split == name].set_index("fname").loc[table.fname]
        dialogue_tokens = pd.Series([len(ids) for ids in encode_sources(tokenizer, framing, list(table.dialogue), 10**6)[0]])
        assert rows.dialogue_tokens.astype(int).tolist() == dialogue_tokens.tolist()
        assert rows.dialogue_chars.astype(int).tolist() == table.dialogue.str.len().tolist()
        assert_stats(report["lengths"][name]["dialogue"]["tokens"], dialogue_tokens)
        cut = report["truncation"][name]["dialogue"]
        assert cut["max_length"] == MAX_SOURCE
        assert cut["cut"] == int((dialogue_tokens > MAX_SOURCE).sum())
        assert cut["cut_share"] == pytest.approx((dialogue_tokens > MAX_SOURCE).mean())
        assert cut["keep_95"] == smallest_keeping(dialogue_tokens, 0.95)
        assert cut["keep_99"] == smallest_keeping(dialogue_tokens, 0.99)
        if "summary" not in table:
            assert report["truncation"][name]["summary"] is None
            continue
        summary_tokens = pd.Series([len(ids) for ids in encode_labels(tokenizer, framing, list(table.summary), 10**6)[0]])
        assert rows.summary_tokens.astype(int).tolist() == summary_tokens.tolist()
        cut = report["truncation"][name]["summary"]
        assert cut["max_length"] == MAX_TARGET
        assert cut["cut"] == int((summary_tokens > MAX_TARGET).sum())
        assert (cut["keep_95"], cut["keep_99"]) == (smallest_keeping(summary_tokens, 0.95), smallest_keeping(summary_tokens, 0.99))
    assert report["truncation"]["train"]["dialogue"]["cut"] > 0  # the smaller max lengths cut something


def test_topics_counts_and_overlap(demo):
    _, _, report, tables = demo
    with_topic = {name: t for name, t in tables.items() if "topic" in t}
    assert set(report["topics"]["counts"]) == set(with_topic) == {"train", "dev"}
    assert report["topics"]["without_topic"] == ["test"]
    for name, table in with_topic.items():
        counts = report["topics"]["counts"][name]
        value_counts = table.topic.value_counts()
        assert counts["rows_with_topic"] == len(table) and counts["unique"] == table.topic.nunique()
        assert len(counts["top"]) == min(20, table.topic.nunique())
        assert all(value_counts[topic] == n for topic, n in counts["top"])
    (overlap,) = report["topics"]["overlap"]
    a, b = with_topic["train"].topic, with_topic["dev"].topic
    shared = set(a) & set(b)
    assert (overlap["a"], overlap["b"], overlap["shared_topics"]) == ("train", "dev", len(shared))
    assert overlap["jaccard"] == pytest.approx(len(shared) / len(set(a) | set(b)))
    assert overlap["b_rows_with_topic_in_a"] == pytest.approx(b.isin(set(a)).mean())


def test_special_token_counts(demo):
    _, _, report, tables = demo
    for name, table in tables.items():
        for column in ("dialogue", "summary"):
            if column not in table:
                assert column not in report["special_tokens"][name]
                continue
            expected = table[column].str.findall(TOKEN).explode().dropna().value_counts().to_dict()
            assert report["special_tokens"][name][column] == expected
    assert report["special_tokens"]["train"]["dialogue"]["#Person1#"] > 0


def test_cleanup_counts_and_examples(demo):
    _, _, report, _ = demo
    cleanup = report["cleanup"]
    raw = {name: read(name) for name in SPLITS}
    for name, table in raw.items():
        for column in ("dialogue", "summary"):
            if column in table:
                assert cleanup["counts"][name][column] == Normalizer().apply_with_counts(table[column])[1]
    # Leading/trailing spaces on a line: the sample's only kind of untidy text.
    expected = sum(int(t.dialogue.str.contains(r"(?m)^[^\S\n]+|[^\S\n]+$").sum()) for t in raw.values())
    assert sum(cleanup["counts"][n]["dialogue"]["strip_lines"] for n in SPLITS) == expected > 0
    assert len(cleanup["examples"]) == 5
    for example in cleanup["examples"]:
        text = raw[example["split"]].set_index("fname").loc[example["fname"], example["column"]]
        assert example["before"] in text and example["after"] in Normalizer()(text)
        assert example["before"] != example["after"] and example["rules"]
    # One example for each rule that changed anything comes first.
    assert {"strip_lines", "collapse_spaces"} <= {r for e in cleanup["examples"] for r in e["rules"]}


def test_length_shift_is_scipy_ks(demo):
    _, _, report, tables = demo
    rows = {(r["a"], r["b"], r["text"], r["measure"]): r for r in report["shift"]}
    for other in ("dev", "test"):
        expected = ks_2samp(tables["train"].dialogue.str.len(), tables[other].dialogue.str.len())
        row = rows["train", other, "dialogue", "chars"]
        assert row["ks_statistic"] == pytest.approx(expected.statistic)
        assert row["p_value"] == pytest.approx(expected.pvalue)
        assert (row["n_a"], row["n_b"]) == (80, 20)
    expected = ks_2samp(tables["train"].summary.str.len(), tables["dev"].summary.str.len())
    assert rows["train", "dev", "summary", "chars"]["ks_statistic"] == pytest.approx(expected.statistic)
    assert ("train", "test", "summary", "chars") not in rows  # test has no summaries
    assert ("train", "test", "dialogue", "tokens") in rows


def test_tfidf_terms_come_from_each_topic(demo):
    _, _, report, tables = demo
    tfidf = report["tfidf"]
    train = tables["train"].set_index("topic")
    assert tfidf["split"] == "train" and tfidf["topics_total"] == tables["train"].topic.nunique()
    assert len(tfidf["topics"]) == 20
    for topic in tfidf["topics"]:
        text = train.loc[topic["topic"], "dialogue"] + train.loc[topic["topic"], "summary"]
        scores = [score for _, score in topic["terms"]]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
        nouns = [term for term, _ in topic["terms"] if not term.endswith("다")]
        assert nouns and all(noun in text for noun in nouns), topic


def test_word_clouds_count_content_words(demo):
    _, _, report, tables = demo
    clouds = report["word_clouds"]
    assert clouds["dialogue"]["texts"] == sum(len(t) for t in tables.values())
    assert clouds["summary"]["texts"] == len(tables["train"]) + len(tables["dev"])
    for cloud in clouds.values():
        counts = [n for _, n in cloud["top_words"]]
        assert counts == sorted(counts, reverse=True) and len(counts) == 30
        assert not {"하다", "있다"} & {w for w, _ in cloud["top_words"]}  # light verbs are left out
    # A noun is counted once per occurrence in the text, so never more often than it appears as a substring.
    dialogues = pd.concat([t.dialogue for t in tables.values()])
    for word, n in clouds["dialogue"]["top_words"]:
        if not word.endswith("다"):
            assert n <= int(dialogues.str.count(re.escape(word)).sum()), word


def test_font_has_hangul_for_every_label(demo):
    _, _, report, _ = demo
    path = Path(report["font"]["path"])
    assert path.name == "NanumGothic.ttf" and "koreanize_matplotlib" in str(path)
    assert report["font"]["family"] == "NanumGothic"
    cmap = TTFont(path).getBestCmap()
    assert ord("한") in cmap and ord("글") in cmap
    labels = [t for c in report["topics"]["counts"].values() for t, _ in c["top"]]
    labels += [w for c in report["word_clouds"].values() for w, _ in c["top_words"]]
    labels += ["대화 길이 분포", "요약 길이 분포", "주제별 대화 수", "특수 토큰", "최대 길이에서 잘리는 비율"]
    hangul = {ch for label in labels for ch in label if "\uac00" <= ch <= "\ud7a3"}
    assert hangul and all(ord(ch) in cmap for ch in hangul)


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_every_image_in_the_html_exists(demo):
    _, out, report, _ = demo
    html = (out / "report.html").read_text(encoding="utf-8")
    parser = ImageSources()
    parser.feed(html)
    assert len(parser.sources) == len(report["images"])
    for src in parser.sources:
        if src.startswith("data:"):
            header, data = src.split(",", 1)
            assert header == "data:image/png;base64"
            assert base64.b64decode(data, validate=True).startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert (out / src).is_file(), src
    # The page shows the JSON's numbers and needs nothing from the network.
    assert "http://" not in html and "https://" not in html
    assert f"{report['sizes']['train']['rows']:,}" in html


# ---------------------------------------------------------------------------------------------
# Missing columns, no tokenizer, raw text


def test_hub_model_offline_missing_topic_column_and_raw_text(tmp_path):
    dev = read("dev").drop(columns=["topic"])
    dev.to_csv(tmp_path / "dev.csv", index=False)
    result, report = run_report(
        tmp_path / "report", "-c", "configs/kobart.yaml", "--set", "data.train=[data/sample/train.csv]",
        "--set", f"data.dev={tmp_path / 'dev.csv'}", "--set", "data.test=data/sample/test.csv",
        "--set", "data.sample_submission=null", "--set", "data.clean=false",
    )
    tokenizer = report["tokenizer"]
    assert tokenizer["name"] == "digit82/kobart-summarization" and tokenizer["available"] is False
    assert "skipped" in tokenizer["note"]
    assert all(t == {"dialogue": None, "summary": None} for t in report["truncation"].values())
    assert report["lengths"]["train"]["dialogue"]["tokens"] is None
    assert "truncation" not in report["images"]
    # data.clean=false: lengths are those of the raw text; the rules are still reported.
    assert report["cleanup"]["applied"] is False
    assert_stats(report["lengths"]["train"]["dialogue"]["chars"], read("train").dialogue.str.len())
    assert_stats(report["lengths"]["test"]["dialogue"]["chars"], read("test").dialogue.str.len())
    assert report["topics"]["without_topic"] == ["dev", "test"] and report["topics"]["overlap"] == []
    assert report["submission_ids"] is None and report["sample_submission"] is None
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "Token lengths unavailable" in html and "No topic column in: dev, test." in html


def test_file_without_dialogue_is_a_one_line_error(tmp_path):
    pd.DataFrame({"fname": ["test_0"], "text": ["안녕"]}).to_csv(tmp_path / "test.csv", index=False)
    result = run_dsum("eda", "-c", "configs/demo.yaml", "--set", f"data.test={tmp_path / 'test.csv'}",
                      "--out", str(tmp_path / "report"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "missing column(s) dialogue" in line
    assert not (tmp_path / "report" / "eda.json").exists()


# ---------------------------------------------------------------------------------------------
# The real competition files


def test_real_competition_files(shared_data, tmp_path):
    real = shared_data / "competition-ko"
    # ../shared holds no train.csv: the official dev.csv stands in for it (so train and dev share ids).
    result, report = run_report(
        tmp_path / "report", "-c", "configs/demo.yaml", "--set", f"data.train=[{real / 'dev.csv'}]",
        "--set", f"data.dev={real / 'dev.csv'}", "--set", f"data.test={real / 'test.csv'}",
        "--set", f"data.sample_submission={real / 'sample_submission.csv'}", "--workers", "2",
    )
    dev, test = cleaned(read("dev", real)), cleaned(read("test", real))
    assert report["sizes"]["dev"]["rows"] == report["sizes"]["test"]["rows"] == 499
    assert report["sizes"]["dev"]["missing_numbered_ids"] == ["dev_475"]  # dropped on purpose
    assert report["sizes"]["test"]["missing_numbered_ids"] == ["test_466"]
    assert report["shared_ids"][0] == {"a": "train", "b": "dev", "count": 499, "examples": sorted(dev.fname)[:5]}
    assert report["submission_ids"] == {"missing_in_submission": [], "extra_in_submission": []}
    assert_stats(report["lengths"]["test"]["dialogue"]["chars"], test.dialogue.str.len())
    assert_stats(report["lengths"]["dev"]["summary"]["chars"], dev.summary.str.len())
    assert report["lengths"]["test"]["dialogue"]["chars"]["max"] == test.dialogue.str.len().max()
    assert report["topics"]["counts"]["dev"]["unique"] == dev.topic.nunique()
    strip_lines = report["cleanup"]["counts"]["test"]["dialogue"]["strip_lines"]
    assert strip_lines == int(read("test", real).dialogue.str.contains(r"(?m)^[^\S\n]+|[^\S\n]+$").sum()) > 0
    expected = ks_2samp(dev.dialogue.str.len(), test.dialogue.str.len())
    row = next(r for r in report["shift"] if (r["b"], r["text"], r["measure"]) == ("test", "dialogue", "chars"))
    assert row["ks_statistic"] == pytest.approx(expected.statistic) and row["p_value"] == pytest.approx(expected.pvalue)
