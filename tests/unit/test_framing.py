"""One framing object per model kind, chosen once (dsum.model.tokenization.framing_for), and the model
settings `dsum train` refuses before any work (dsum.model.checks): on the real tokenizer and config files
of tests/models and the real-shaped stand-ins."""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import REPO
from standins import KOBART, PKO_T5, QWEN3, SOLAR
from transformers import AutoConfig

from dsum.config import PromptConfig, load_config
from dsum.model.framing import ExampleFraming
from dsum.model.tokenization import ChatFraming, Framing, add_data_tokens, framing_for, load_tokenizer
from dsum.util.errors import UserError

PROMPT = PromptConfig(system="대화를 요약하세요.", user="대화:\n{dialogue}", template_options={"enable_thinking": False})
DIALOGUE = "#Person1#: 안녕하세요, 오늘 회의는 몇 시에 시작하나요?\n#Person2#: 오후 세 시입니다."
SUMMARY = "#Person1#은 회의 시간을 묻고 #Person2#는 오후 세 시라고 답합니다."
SAMPLE = REPO / "data" / "sample"

# folder: (class, kind, stop ids, last label id, ids added around a dialogue / after a summary, prompt ids)
KINDS = {
    "kobart": (KOBART, Framing, "seq2seq", (1,), 1, (2, 1), 21),
    "pko-t5": (PKO_T5, Framing, "seq2seq", (1,), 1, (1, 1), 31),
    "qwen3": (QWEN3, ChatFraming, "decoder-only", (151645,), 151645, (27, 1), 58),
    "solar": (SOLAR, ChatFraming, "decoder-only", (2,), 2, (31, 1), 85),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_framing_for_picks_the_kind_and_its_methods_round_trip(name):
    folder, cls, kind, stop_ids, label_end, added, prompt_ids = KINDS[name]
    tokenizer = load_tokenizer(folder)
    framing = framing_for(AutoConfig.from_pretrained(folder), tokenizer, PROMPT)
    assert type(framing) is cls and framing.kind == kind
    assert (framing.stop_ids, framing.label_end, framing.added_ids()) == (stop_ids, label_end, added)
    if framing.data_tokens:  # seq2seq models get the data's #…# tokens, as training adds them
        add_data_tokens(tokenizer, ["#Person1#", "#Person2#"])
    row = framing.encode_examples([DIALOGUE], [SUMMARY], 512, 100).rows[0]
    source, label = framing.parts(row)
    assert len(source) == prompt_ids and label[-1] == label_end
    # eda counts a dialogue's ids plus what the framing adds around it: here exactly the prompt.
    assert len(tokenizer(DIALOGUE, add_special_tokens=False)["input_ids"]) + added[0] == prompt_ids
    assert framing.encode_prompts([DIALOGUE], 512) == ([source], 0)  # what generation starts from
    # generate()'s output as each kind returns it: the decoder's ids from its start token, or prompt + continuation.
    output = torch.tensor([[framing.decoder_start, *label]] if kind == "seq2seq" else [[*source, *label]])
    generated = framing.outputs(output, len(source))
    assert framing.stopped(generated[0]) and not framing.stopped(generated[0][:-1])
    assert framing.decode(generated) == [SUMMARY]


def test_both_kinds_offer_the_same_methods():
    members = [n for n in (*ExampleFraming.__annotations__, *vars(ExampleFraming)) if not n.startswith("_")]
    assert {"encode_examples", "encode_prompts", "decode", "describe", "stop_ids"} <= set(members)
    for name in members:
        assert hasattr(Framing, name) or name in Framing.__dataclass_fields__, name
        assert hasattr(ChatFraming, name) or name in ChatFraming.__dataclass_fields__, name
        if inspect.isfunction(getattr(ExampleFraming, name, None)):
            assert inspect.signature(getattr(Framing, name)) == inspect.signature(getattr(ChatFraming, name)), name


def test_the_kind_of_a_model_is_told_in_one_module():
    """Only dsum.model.tokenization reads is_encoder_decoder; every other module asks it (is_decoder_only)."""
    readers = sorted(str(p.relative_to(REPO / "src")) for p in (REPO / "src/dsum").rglob("*.py")
                     if "is_encoder_decoder" in p.read_text(encoding="utf-8"))
    assert readers == ["dsum/model/tokenization.py"]


def _qwen3(folder, tmp_path, *extra: str):
    return load_config(REPO / "configs/qwen3-lora.yaml", [
        f"model.name={folder}", "model.max_source_length=256", f"general.output_dir={tmp_path / 'runs'}",
        f"data.train=[{SAMPLE / 'train.csv'}]", f"data.dev={SAMPLE / 'dev.csv'}", f"data.test={SAMPLE / 'test.csv'}",
        f"data.sample_submission={SAMPLE / 'sample_submission.csv'}", "lora.quantization=none", *extra,
    ])


def _refused(cfg, tmp_path) -> str:
    from dsum.verbs.train import train

    with pytest.raises(UserError) as refused:
        train(cfg)
    assert not (tmp_path / "runs").exists()  # refused before a run directory was claimed
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_target_modules_the_model_lacks_are_refused_before_a_run_directory(qwen3_standin, tmp_path):
    from dsum.model.checks import check_lora_targets
    from dsum.model.memory import build_on_meta

    message = _refused(_qwen3(qwen3_standin, tmp_path, "lora.target_modules=[query, q_proj]"), tmp_path)
    assert message == (
        "lora.target_modules names query, which Qwen3ForCausalLM does not have: name its layers (embed_tokens, q_proj, "
        "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or set lora.target_modules: all-linear"
    )
    model = build_on_meta(AutoConfig.from_pretrained(qwen3_standin))
    check_lora_targets(model, ["q_proj", "down_proj"])  # names it has: nothing to refuse
    check_lora_targets(model, "all-linear")
    with pytest.raises(UserError, match="names self_attn, "):
        check_lora_targets(model, ["self_attn"])  # a module, but no layer LoRA adapts


def test_a_chat_template_with_a_syntax_error_is_refused_with_its_line(qwen3_standin, tmp_path):
    cfg = _qwen3(qwen3_standin, tmp_path)
    broken = "{% for m in messages %}\n{{ m['content'] }\n{% endfor %}"
    cfg = cfg.model_copy(update={"prompt": cfg.prompt.model_copy(update={"chat_template": broken})})
    assert _refused(cfg, tmp_path) == (
        "prompt.chat_template has a Jinja syntax error on line 2, \"{{ m['content'] }\" (unexpected '}'): fix prompt.chat_template"
    )


def test_template_options_without_a_chat_template_are_refused(solar_standin, tmp_path):
    expected = (
        "prompt.template_options (enable_thinking) are options of a chat template, and the tokenizer has none "
        "(prompt.plain_template is used): remove prompt.template_options or set prompt.chat_template"
    )
    # The tiny model's trained tokenizer has no chat template: demo-llm's prompt.chat_template gives it one.
    cfg = load_config(REPO / "configs/demo-llm.yaml", [f"general.output_dir={tmp_path / 'runs'}"])
    plain = cfg.prompt.model_copy(update={
        "chat_template": None, "plain_template": "{user}\n요약:\n", "template_options": {"enable_thinking": False}})
    assert _refused(cfg.model_copy(update={"prompt": plain}), tmp_path) == expected
    # The library refuses it too, where the framing is built: SOLAR's tokenizer with its template taken away.
    tokenizer = load_tokenizer(solar_standin)
    tokenizer.chat_template = None
    with pytest.raises(UserError) as refused:
        framing_for(AutoConfig.from_pretrained(solar_standin), tokenizer, plain)
    assert str(refused.value) == expected
