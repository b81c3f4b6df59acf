"""generation.engine=ctranslate2 (dsum.model.engine_ct2) against transformers generate(), on the real-shaped
stand-ins (the real tokenizer and config, sizes shrunk, input-dependent random weights), the real SmolLM2
weights when ../shared has them, and the demo recipes trained end to end.

Greedy: identical token ids at fp32. Beam search: identical too where both search by the same rules
(no n-gram ban); dsum's default no_repeat_ngram_size=2 is where they part (the README's measurements).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, TINY, input_dependent, run_dsum, tiny_overrides
from standins import KOBART, PKO_T5, build_standin

from dsum.config import GenerationConfig, PromptConfig, load_config
from dsum.model.generate import GenerationStats, generate_summaries
from dsum.model.loading import load_pretrained
from dsum.model.tokenization import framing_for

DIALOGUES = [
    "#Person1#: 안녕하세요, 오늘 회의는 몇 시에 시작하나요?\n#Person2#: 오후 세 시입니다. 자료는 미리 보내 드릴게요.",
    "#Person1#: 주말에 뭐 했어?\n#Person2#: 친구랑 등산 갔다가 저녁에 영화 봤어.",
    "#Person1#: 이 책 언제까지 반납해야 하나요?\n#Person2#: 다음 주 월요일까지입니다. 연장도 가능해요.\n#Person1#: 감사합니다.",
    "#Person1#: 배고프다.\n#Person2#: 나도.",
]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSUM_CACHE", str(tmp_path / "cache"))  # conversions go to the test's folder


@pytest.fixture(scope="module", params=["kobart", "pko-t5", "solar", "qwen3"])
def standin(request, tmp_path_factory):
    """(name, model with input-dependent weights and its framing applied, tokenizer, prompt)."""
    name = request.param
    if name in ("kobart", "pko-t5"):
        folder = build_standin(KOBART if name == "kobart" else PKO_T5, tmp_path_factory.mktemp(name) / "standin")
    else:
        folder = request.getfixturevalue(f"{name}_standin")
    model, tokenizer = load_pretrained(folder)
    prompt = PromptConfig()
    framing_for(model.config, tokenizer, prompt).apply_to(model)
    return name, input_dependent(model), tokenizer, prompt


def both(model, tokenizer, prompt, gen: GenerationConfig, **kwargs) -> tuple[list, list, GenerationStats]:
    """(generate()'s summaries, CTranslate2's, CTranslate2's stats) of DIALOGUES."""
    run = lambda engine, stats=None: generate_summaries(  # noqa: E731
        model, tokenizer, DIALOGUES, gen.model_copy(update={"engine": engine}), 4, 256, progress=False,
        prompt=prompt, stats=stats, **kwargs,
    )
    stats = GenerationStats()
    return run("hf"), run("ctranslate2", stats), stats


def test_greedy_ids_identical_on_every_standin(standin):
    """The summaries, and the rows cut at max_new_tokens, are generate()'s at fp32."""
    name, model, tokenizer, prompt = standin
    gen = GenerationConfig(num_beams=1, no_repeat_ngram_size=0, max_new_tokens=12)
    hf_stats = GenerationStats()
    hf = generate_summaries(model, tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=prompt, stats=hf_stats)
    _, ct2, stats = both(model, tokenizer, prompt, gen)
    assert (stats.engine, stats.compute_type) == ("ctranslate2", "float32")
    assert ct2 == hf and all(text for text in hf), name
    assert stats.cut == hf_stats.cut


def test_beam_search_identical_without_an_ngram_ban(standin):
    """Same length penalty (sum of log-probs over generated length incl. eos), early stopping at num_beams
    finished, forced eos at max length: 4 beams and the 2 best of them match generate()'s."""
    name, model, tokenizer, prompt = standin
    gen = GenerationConfig(num_beams=4, no_repeat_ngram_size=0, max_new_tokens=10, length_penalty=1.2)
    hf, ct2, _ = both(model, tokenizer, prompt, gen, num_return_sequences=2)
    assert ct2 == hf, name


@pytest.mark.parametrize("standin", ["pko-t5"], indirect=True)
def test_t5_decoder_outputs_not_scaled(standin):
    """pko-t5 (transformers 5 says tie_word_embeddings=True, scale_decoder_outputs=False): the converted model's
    log-probabilities of a summary are generate()'s model's, not those of logits scaled by d_model ** -0.5."""
    _, model, tokenizer, prompt = standin
    from dsum.model.engine_ct2 import engine_for

    assert model.config.tie_word_embeddings and not model.config.scale_decoder_outputs
    engine = engine_for(model, tokenizer, GenerationConfig(engine="ctranslate2"))
    source = framing_for(model.config, tokenizer, prompt).encode_prompts(DIALOGUES[:1], 256)[0][0]
    target = tokenizer(" 회의는 세 시", add_special_tokens=False)["input_ids"] + [model.config.eos_token_id]
    # score_batch appends the eos itself: the summary's ids are given without it.
    scored = engine.model.score_batch([[str(i) for i in source]], [[str(i) for i in target[:-1]]])[0].log_probs
    with torch.no_grad():
        decoder = torch.tensor([[model.config.decoder_start_token_id, *target[:-1]]])
        logits = model(input_ids=torch.tensor([source]), decoder_input_ids=decoder).logits[0]
    expected = torch.log_softmax(logits, -1)[range(len(target)), target]
    assert torch.allclose(torch.tensor(scored), expected, atol=1e-4)


def test_demo_trained_on_ctranslate2_and_predict_reproduces_its_dev_score(tmp_path):
    """Done when: train with --set generation.engine=ctranslate2, then dsum predict on the run (its own config
    names no engine: the run's is taken from metrics.json) gives metrics.json's dev score, the last evaluation's."""
    from dsum.verbs.train import train

    run_dir = train(load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path, "generation.engine=ctranslate2")))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["engine"] == {"name": "ctranslate2", "compute_type": "float32"}
    evals = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    best = max(e["eval_board_score"] for e in evals if "eval_board_score" in e)
    assert metrics["dev"]["score"] == pytest.approx(best, abs=1e-9)  # training's evaluation ran on the engine too
    settings = [f"--set={item}" for item in TINY]
    result = run_dsum("predict", "-c", "configs/demo.yaml", "--checkpoint", str(run_dir), "--split", "dev", *settings)
    assert result.returncode == 0, result.stderr
    assert f"dev board score {metrics['dev']['score']:.2f}" in result.stdout + result.stderr
    predicted = (run_dir / "dev_predict.csv").read_text().splitlines()
    assert predicted == (run_dir / "dev_predictions.csv").read_text().splitlines()


def cpu_lacks() -> str:
    """A compute type CTranslate2 does not run on this machine's CPU."""
    import ctranslate2

    return next(t for t in ("float16", "int8_float16", "bfloat16", "int16") if t not in ctranslate2.get_supported_compute_types("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the compute types refused are a CPU's")
@pytest.mark.parametrize("setting", ["engine", "compute_type", "compute_type_on_hf"])
def test_bad_engine_settings_end_in_one_line_before_a_model_loads(tmp_path, setting):
    if setting == "engine":
        settings, message = ["generation.engine=vllm"], "generation.engine: Input should be 'hf' or 'ctranslate2'"
    elif setting == "compute_type_on_hf":
        settings, message = ["generation.compute_type=int8"], "generation.compute_type=int8 applies to generation.engine=ctranslate2 only"
    else:
        lacking = cpu_lacks()
        settings = ["generation.engine=ctranslate2", f"generation.compute_type={lacking}"]
        message = f"generation.compute_type={lacking}: CTranslate2 on this CPU runs"
    result = run_dsum("train", "-c", "configs/demo.yaml", f"--set=general.output_dir={tmp_path}", *[f"--set={s}" for s in settings])
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # refused before a run directory (or a model) was made


def test_logit_ensemble_on_ctranslate2_refused_before_loading(tmp_path):
    missing = [str(tmp_path / "a"), str(tmp_path / "b")]  # never read: the refusal comes first
    result = run_dsum(
        "predict", "-c", "configs/demo.yaml", "--checkpoint", missing[0], "--checkpoint", missing[1],
        "--split", "dev", "--set", "generation.engine=ctranslate2",
    )
    assert result.returncode == 2 and "cannot run a logit ensemble" in result.stderr, result.stderr


def test_demo_llm_lora_trained_on_ctranslate2_and_predict_reproduces_its_dev_score(tmp_path):
    """The same with configs/demo-llm.yaml (tiny Qwen3 + LoRA with trained embeddings): the adapter is merged into
    the converted weights, and the model keeps training afterwards with its own weights bit for bit."""
    from test_llm_finetune import demo_llm_overrides

    from dsum.verbs.predict import predict
    from dsum.verbs.train import train

    # generation.repetition_penalty 1.0: the recipe's 1.1 counts the prompt in generate() (a fallback, tested below).
    settings = demo_llm_overrides(tmp_path / "runs", "generation.engine=ctranslate2", "generation.repetition_penalty=1.0")
    run_dir = train(load_config(REPO / "configs/demo-llm.yaml", settings))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["engine"] == {"name": "ctranslate2", "compute_type": "float32"}
    del settings["generation.engine"]  # the run's engine, from its metrics.json
    result = predict(load_config(REPO / "configs/demo-llm.yaml", settings), run_dir, "dev", tmp_path / "dev.csv")
    assert result["engine"] == "ctranslate2"
    assert result["score"] == pytest.approx(metrics["dev"]["score"], abs=1e-9)
    hf = predict(load_config(REPO / "configs/demo-llm.yaml", {**settings, "generation.engine": "hf"}), run_dir, "dev", tmp_path / "hf.csv")
    assert hf["engine"] == "hf"
    assert (tmp_path / "hf.csv").read_text() == (tmp_path / "dev.csv").read_text()  # greedy: generate()'s summaries


@pytest.mark.parametrize("standin", ["qwen3"], indirect=True)
def test_what_the_engine_cannot_do_runs_on_generate_with_one_line(standin, caplog):
    """A decoder-only repetition penalty (generate() counts the prompt) and a logit ensemble: generate() runs, the
    log says why once, and stats say which engine made the summaries."""
    from dsum.model.generate import LogitEnsemble

    _, model, tokenizer, prompt = standin
    gen = GenerationConfig(engine="ctranslate2", num_beams=1, no_repeat_ngram_size=0, repetition_penalty=1.1, max_new_tokens=6)
    stats = GenerationStats()
    with caplog.at_level("INFO", logger="dsum"):
        for _ in range(2):
            ours = generate_summaries(model, tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=prompt, stats=stats)
    assert stats.engine == "hf" and ours == generate_summaries(
        model, tokenizer, DIALOGUES, gen.model_copy(update={"engine": "hf"}), 4, 256, progress=False, prompt=prompt
    )
    said = [r.getMessage() for r in caplog.records if "instead, as" in r.getMessage()]
    assert len(said) == 1 and "repetition_penalty" in said[0]
    ensemble = LogitEnsemble([model, model])
    assert "logit ensemble" in __import__("dsum.model.engine_ct2", fromlist=["x"]).fallback_reason(ensemble)


@pytest.mark.parametrize("standin", ["solar"], indirect=True)
def test_conversion_is_cached_whole_and_reused(standin, tmp_path):
    """Once per weights: the cache folder is complete (its marker written last), a second call (after the
    converter has freed and dsum has put back the model's layers) finds the same key, no staging is left."""
    from dsum.model import engine_ct2

    _, model, tokenizer, _ = standin
    gen = GenerationConfig(engine="ctranslate2", no_repeat_ngram_size=0)
    names = [name for name, _ in model.named_parameters()]
    first = engine_ct2.engine_for(model, tokenizer, gen)
    engine_ct2._KEPT.clear()  # as a later process would: the cache folder, not this process's engine
    second = engine_ct2.engine_for(model, tokenizer, gen)
    assert first.key == second.key and [name for name, _ in model.named_parameters()] == names
    root = engine_ct2.cache_root()
    assert [p.name for p in root.iterdir()] == [first.key] and (root / first.key / engine_ct2.DONE_FILE).is_file()
    # int8 quantizes the spec's tensors in place: the model's own weights must not be among them.
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    engine_ct2.engine_for(model, tokenizer, gen.model_copy(update={"compute_type": "int8"}))
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_real_smollm2_greedy_ids_identical(tmp_path_factory):
    """The real SmolLM2-135M-Instruct weights (../shared, its .gguf dequantized as dsum loads it), English DialogSum
    dialogues with its own chat template: CTranslate2's greedy summaries are generate()'s."""
    from test_real_weights import DIALOGSUM, GGUF, SYSTEM

    if not GGUF.is_file() or not DIALOGSUM.is_dir():
        pytest.skip(f"{GGUF} or {DIALOGSUM} is absent (the real weights live in ../shared beside the clone)")
    model, tokenizer = load_pretrained(GGUF)  # into this test's DSUM_CACHE
    prompt = PromptConfig(system=SYSTEM, user="{dialogue}")
    framing_for(model.config, tokenizer, prompt).apply_to(model)
    rows = (DIALOGSUM / "dialogsum.dev.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    dialogues = [json.loads(row)["dialogue"] for row in rows]
    gen = GenerationConfig(num_beams=1, no_repeat_ngram_size=0, max_new_tokens=24)
    run = lambda engine, stats=None: generate_summaries(  # noqa: E731
        model.eval(), tokenizer, dialogues, gen.model_copy(update={"engine": engine}), 4, 512, progress=False,
        prompt=prompt, stats=stats,
    )
    stats = GenerationStats()
    hf, ct2 = run("hf"), run("ctranslate2", stats)
    assert stats.engine == "ctranslate2" and ct2 == hf and all(hf)
