"""`dsum predict --split dev` through the one predict path: a JSON-lines dev file, no sample submission."""

import json

import pandas as pd
import pytest
from conftest import REPO, TINY, input_dependent

import dsum
from dsum.config import load_config
from dsum.data.files import read_examples, read_predictions, reference_map
from dsum.data.text import special_tokens_for
from dsum.metric.rouge import score_texts
from dsum.model.loading import load_model_and_tokenizer


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny seq2seq checkpoint with input-dependent weights (no training needed for this path)."""
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    examples = read_examples(REPO / "data/sample/train.csv", require_summary=True)
    texts = [ex.dialogue for ex in examples] + [ex.summaries[0] for ex in examples]
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), texts)
    folder = tmp_path / "run" / "checkpoint-best"
    input_dependent(model).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_predict_dev_reads_jsonl_and_needs_no_sample_submission(tmp_path, checkpoint):
    dev = tmp_path / "dev.jsonl"
    examples = read_examples(REPO / "data/sample/dev.csv", require_summary=True)[:6]
    dev.write_text("".join(json.dumps({"fname": e.fname, "dialogue": e.dialogue, "summary": e.summaries[0]}, ensure_ascii=False) + "\n" for e in examples))
    overrides = [*TINY, f"data.dev={dev}", f"data.sample_submission={tmp_path / 'absent.csv'}"]
    result = dsum.predict(load_config(REPO / "configs/demo.yaml", overrides), checkpoint, split="dev")

    out = checkpoint.parent / "dev_predict.csv"
    assert result["path"] == str(out) and result["rows"] == 6
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(written.columns) == ["fname", "dialogue", "prediction", "reference", "score", "rouge1", "rouge2", "rougeL"]
    assert written["fname"].tolist() == [e.fname for e in examples]
    predictions = read_predictions(out)  # the one reader takes a dev predictions file as predictions
    assert len(set(predictions.values())) > 1  # input-dependent weights: not one summary for every row
    score = score_texts(predictions, reference_map(examples), analyser="mecab")
    assert result["score"] == score.score
    assert [float(v) for v in written["score"]] == pytest.approx([row.score for row in score.per_row], rel=1e-12)
