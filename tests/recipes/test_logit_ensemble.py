"""Logit ensembles: one beam search over the members' mean log-probabilities (tiny models, CPU)."""

import copy

import pytest
import torch
from conftest import REPO, TINY, input_dependent

from dsum.config import load_config
from dsum.data.files import read_examples
from dsum.util.errors import UserError
from dsum.model.generate import LogitEnsemble, _MemberScores, generate_summaries
from dsum.model.loading import load_ensemble, load_model_and_tokenizer
from dsum.data.text import special_tokens_for

SAMPLE = REPO / "data" / "sample"


@pytest.fixture(scope="module", params=["bart", "t5"])
def tiny(request):
    cfg = load_config(REPO / "configs/demo.yaml", [*TINY, f"model.tiny.architecture={request.param}", "generation.num_beams=3"])
    examples = read_examples(SAMPLE / "train.csv")
    texts = [ex.dialogue for ex in examples] + [ex.summaries[0] for ex in examples]
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), train_texts=texts)
    dialogues = [ex.dialogue for ex in read_examples(SAMPLE / "dev.csv")][:8]
    return cfg, input_dependent(model, 1), tokenizer, dialogues


def summaries(model, tokenizer, dialogues, gen):
    return generate_summaries(model, tokenizer, dialogues, gen, 3, 512, progress=False)


@pytest.mark.parametrize("beams", [1, 3])
def test_ensemble_of_one_and_of_two_copies_equal_the_model(tiny, beams):
    cfg, model, tokenizer, dialogues = tiny
    gen = cfg.generation.model_copy(update={"num_beams": beams})
    alone = summaries(model, tokenizer, dialogues, gen)
    assert len(set(alone)) == len(dialogues)  # every dialogue its own summary: the equality means something
    assert summaries(LogitEnsemble([model]), tokenizer, dialogues, gen) == alone
    assert summaries(LogitEnsemble([model, copy.deepcopy(model)]), tokenizer, dialogues, gen) == alone


def test_scores_are_the_mean_of_the_members_log_probs(tiny, monkeypatch):
    """With two different members, every step's scores (cached, beams reordered) equal a full recompute."""
    cfg, model, tokenizer, dialogues = tiny
    other = input_dependent(copy.deepcopy(model), 2)
    steps = []
    call = _MemberScores.__call__

    def recording(self, sequences, scores):
        result = call(self, sequences, scores)
        steps.append((self, sequences.clone(), scores.clone(), result.clone()))
        return result

    monkeypatch.setattr(_MemberScores, "__call__", recording)
    ensemble = summaries(LogitEnsemble([model, other]), tokenizer, dialogues[:4], cfg.generation)
    assert ensemble != summaries(model, tokenizer, dialogues[:4], cfg.generation)
    reordered = 0
    with torch.inference_mode():
        for processor, sequences, scores, result in steps[::3]:
            own = other(
                encoder_outputs=processor.encoded[0], attention_mask=processor.attention_mask, decoder_input_ids=sequences
            ).logits[:, -1, :].float().log_softmax(-1)
            banned = scores == float("-inf")
            expected = ((scores + own) / 2).masked_fill(banned, float("-inf"))
            forced = (~banned).sum(-1, keepdim=True) == 1  # eos forced at the last step stays as generate set it
            expected = torch.where(forced, scores, expected)
            torch.testing.assert_close(result, expected, atol=1e-4, rtol=1e-4, msg=lambda m: f"{sequences.shape} {m}")
            reordered += int(sequences.shape[1] > 2 and len({tuple(r) for r in sequences[:, :-1].tolist()}) > 1)
    assert reordered  # beams did diverge, so the cache reorder was exercised


def test_members_with_other_vocabularies_are_refused(tmp_path, tiny):
    cfg, model, tokenizer, _ = tiny
    model.save_pretrained(tmp_path / "a")
    tokenizer.save_pretrained(tmp_path / "a")
    other = copy.deepcopy(tokenizer)
    other.add_tokens(["#Extra#"])
    model.save_pretrained(tmp_path / "b")
    other.save_pretrained(tmp_path / "b")
    with pytest.raises(UserError, match="another vocabulary"):
        load_ensemble([tmp_path / "a", tmp_path / "b"])
    ensemble, loaded = load_ensemble([tmp_path / "a", tmp_path / "a"])
    assert len(ensemble.members) == 2 and loaded.get_vocab() == tokenizer.get_vocab()


def test_predict_with_two_copies_writes_the_single_model_file(tmp_path, tiny):
    from dsum.verbs.predict import predict

    cfg, model, tokenizer, _ = tiny
    model.save_pretrained(tmp_path / "a")
    tokenizer.save_pretrained(tmp_path / "a")
    one = predict(cfg, tmp_path / "a", "dev", tmp_path / "one.csv")
    two = predict(cfg, [tmp_path / "a", tmp_path / "a"], "dev", tmp_path / "two.csv")
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    assert two["score"] == one["score"]
