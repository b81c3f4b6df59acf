"""dsum.model.memory: exact parameter counts (against real models and peft) and the training memory estimate's parts."""

import pytest
import torch
from conftest import REPO
from standins import QWEN3, SOLAR
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, BartConfig, LlamaConfig, Qwen3Config

from dsum.config import LoraConfig, load_config
from dsum.verbs.doctor import FAIL, OK, WARN, memory_check
from dsum.model.memory import (
    GIB,
    LOGIT_BYTES,
    LOGIT_BYTES_FP32,
    NF4_BYTES,
    OVERHEAD,
    EvalGeneration,
    activation_bytes,
    build_on_meta,
    estimate_training_memory,
    eval_generation,
    generation_bytes,
    lora_parameter_count,
)


def _llama(**extra):
    return LlamaConfig(vocab_size=500, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, **extra)


TINY_CONFIGS = {
    "llama": _llama(),
    "qwen3-tied": Qwen3Config(vocab_size=500, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=32, tie_word_embeddings=True),
    "bart": BartConfig(vocab_size=500, d_model=64, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=96, decoder_ffn_dim=96),
}


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"], ["down_proj", "embed_tokens"]])
@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_parameter_counts_equal_the_real_model_and_peft(name, targets):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = TINY_CONFIGS[name]
    if name == "bart" and targets != "all-linear":
        targets = ["q_proj", "fc1"] if "q_proj" in targets else ["out_proj"]
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    real = auto.from_config(config)
    meta = build_on_meta(config)
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in real.parameters())
    peft_model = get_peft_model(real, PeftLoraConfig(r=8, target_modules=targets))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable > 0 and lora_parameter_count(meta, 8, targets) == trainable


def test_real_configs_count_exactly():
    solar, qwen3 = AutoConfig.from_pretrained(SOLAR), AutoConfig.from_pretrained(QWEN3)
    # SOLAR: 48 layers of q, k, v, o (in + out: 8192, 5120, 5120, 8192) and gate, up, down (18432 each), r 16.
    assert lora_parameter_count(build_on_meta(solar), 16) == 48 * 16 * (8192 + 5120 + 5120 + 8192 + 3 * 18432)
    assert sum(p.numel() for p in build_on_meta(solar).parameters()) == 10_731_524_096
    # Qwen3-4B: 36 layers, q/o 2560 ↔ 4096, k/v 2560 → 1024, MLP 2560 ↔ 9728; the tied head counted once.
    assert lora_parameter_count(build_on_meta(qwen3), 16) == 36 * 16 * (2 * 6656 + 2 * 3584 + 3 * 12288)
    assert sum(p.numel() for p in build_on_meta(qwen3).parameters()) == 4_022_468_096


def test_weights_shrink_with_quantization_and_follow_the_config_dtype():
    config = _llama(dtype="bfloat16")
    params = sum(p.numel() for p in build_on_meta(config).parameters())
    linear = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 96)  # q, o; k, v (2 kv heads of 16); gate, up, down
    lora = LoraConfig(r=8)
    bf16 = estimate_training_memory(config, lora, "none")
    int8 = estimate_training_memory(config, lora, "8bit")
    nf4 = estimate_training_memory(config, lora, "4bit")
    assert bf16.weights == params * 2
    # Quantized: the linear layers packed, the rest (embeddings, head, norms) fp32 after prepare_model_for_kbit_training.
    rows = 2 * (64 + 32 + 32 + 64 + 96 + 96 + 64)  # one fp32 scale per output row of each layer
    assert int8.weights == linear + 4 * rows + (params - linear) * 4
    assert nf4.weights == int(linear * NF4_BYTES + (params - linear) * 4)
    assert nf4.weights < int8.weights < estimate_training_memory(_llama(dtype="float32"), lora).weights
    big = AutoConfig.from_pretrained(SOLAR)  # linear layers dominate: 4bit < 8bit < 16-bit
    sizes = [estimate_training_memory(big, lora, q).weights for q in ("4bit", "8bit", "none")]
    assert sizes[0] < sizes[1] < sizes[2] and 0.25 < sizes[0] / sizes[2] < 0.35 and 0.5 < sizes[1] / sizes[2] < 0.6


def test_lora_trains_the_adapters_and_full_fine_tuning_every_weight():
    config = _llama(dtype="bfloat16")
    params = sum(p.numel() for p in build_on_meta(config).parameters())
    adapters = lora_parameter_count(build_on_meta(config), 8)
    lora = estimate_training_memory(config, LoraConfig(r=8), "none")
    assert (lora.lora_weights, lora.gradients, lora.optimizer) == (adapters * 4, adapters * 4, adapters * 8)
    assert estimate_training_memory(config, LoraConfig(r=8), optimizer_8bit=True).optimizer == adapters * 2
    full = estimate_training_memory(config, None)
    assert (full.lora_weights, full.gradients, full.optimizer) == (0, params * 2, params * 4)  # AdamW moments in bf16
    assert full.total == full.weights + full.gradients + full.optimizer + full.activations + OVERHEAD


def test_gradient_checkpointing_keeps_layer_inputs_and_one_layer():
    config = _llama()
    b, s, h, a, layers = 2, 100, 64, 4, 2
    per_layer = b * s * h * 34 + 5 * a * s * s * b
    logits = b * s * 500 * LOGIT_BYTES
    assert activation_bytes(config, b, s, checkpointing=False) == layers * per_layer + logits
    assert activation_bytes(config, b, s, checkpointing=True) == layers * b * s * h * 2 + per_layer + logits
    # LoRA: each adapted input kept once more (16-bit copy + dropout mask).
    assert activation_bytes(config, b, s, False, adapter_inputs=500) == layers * (per_layer + b * s * 500 * 3) + logits
    solar = AutoConfig.from_pretrained(SOLAR)
    on, off = (estimate_training_memory(solar, LoraConfig(), "4bit", 1, 1184, gc, True).activations for gc in (True, False))
    assert on < off / 10


def test_solar_qlora_and_qwen3_lora_estimates():
    """SOLAR QLoRA (the teams' recipe on a 24 GB RTX 3090 / A100) and Qwen3-4B in bf16."""
    cfg = load_config(REPO / "configs/solar-qlora.yaml")
    solar = estimate_training_memory(AutoConfig.from_pretrained(SOLAR), cfg.lora, "4bit", 1, 1024 + 150, True, True)
    assert 6 * GIB < solar.total < 20 * GIB
    assert 5 * GIB < solar.weights < 6.5 * GIB and solar.optimizer == solar.lora_params * 2
    qwen3 = estimate_training_memory(AutoConfig.from_pretrained(QWEN3), LoraConfig(r=16), "none", 1, 1184, True, True)
    assert qwen3.weights == 4_022_468_096 * 2 and 9 * GIB < qwen3.total < 16 * GIB
    lines = solar.lines()
    assert [line.split()[0] for line in lines] == ["weights", "lora_weights", "gradients", "optimizer", "activations",
                                                   "overhead", "total"]
    assert "NF4" in lines[0] and f"{solar.total / GIB:.2f} GiB" in lines[-1]
    assert solar.describe().startswith(f"~{solar.total / GIB:.1f} GiB (weights ")


def test_memory_check_names_the_settings_to_change():
    estimate = estimate_training_memory(AutoConfig.from_pretrained(QWEN3), LoraConfig(), "none", 4, 1184, False, False)
    level, detail = memory_check(estimate, 24 * GIB)
    assert level == FAIL and "more than the GPU's 24.0 GiB" in detail
    for setting in ("training.batch_size (now 4", "model.max_source_length", "training.gradient_checkpointing: true",
                    "lora.quantization: 4bit"):
        assert setting in detail, setting
    assert memory_check(estimate, 141 * GIB) == (OK, f"training needs {estimate.describe()} of the GPU's 141.0 GiB")
    assert memory_check(estimate, int(estimate.total / 0.95))[0] == WARN
    assert memory_check(estimate, None) == (WARN, f"training needs {estimate.describe()}; no CUDA GPU visible to compare it with")
    # Settings already at their lowest are not suggested again.
    low = estimate_training_memory(AutoConfig.from_pretrained(SOLAR), LoraConfig(), "4bit", 1, 1184, True, True)
    level, detail = memory_check(low, 4 * GIB)
    assert level == FAIL and "batch_size" not in detail and "checkpointing" not in detail and "4bit" not in detail
    full = estimate_training_memory(AutoConfig.from_pretrained(SOLAR), None, "none", 1, 1184, True, False)
    assert "a lora section" in memory_check(full, 80 * GIB)[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_memory_is_the_devices():
    from dsum.util.gpu import gpu_memory

    assert gpu_memory() == torch.cuda.get_device_properties(0).total_memory


def test_label_only_logits_and_fp32_logit_bytes():
    """dsum's decoder-only loss builds logits at label positions only (dsum.model.label_loss); fp32 logits are 4 bytes."""
    config = _llama()
    b, s, h, a, layers = 2, 100, 64, 4, 2
    per_layer = b * s * h * 34 + 5 * a * s * s * b
    assert activation_bytes(config, b, s, False, label_tokens=30) == layers * per_layer + b * 30 * 500 * LOGIT_BYTES
    assert activation_bytes(config, b, s, False, label_tokens=300) == activation_bytes(config, b, s, False)  # at most s
    assert activation_bytes(config, b, s, False, value_bytes=4) == layers * per_layer * 2 + b * s * 500 * LOGIT_BYTES_FP32
    qwen3 = AutoConfig.from_pretrained(QWEN3)
    full, labels = (estimate_training_memory(qwen3, LoraConfig(), "none", 4, 1184, True, True, label_tokens=n)
                    for n in (None, 160))
    # Qwen3's 151,936-entry vocabulary: 4 × (1184 − 160) positions × 10 bytes fewer.
    assert full.activations - labels.activations == 4 * (1184 - 160) * 151_936 * LOGIT_BYTES
    assert "at 160 label positions a row" in labels.how["activations"]


def test_eval_generation_counts_the_kv_cache_prefill_and_scores():
    """Dev evaluation's generate(): 3 dialogues of 20 tokens, 2 beams, 10 new tokens, by hand."""
    gen = EvalGeneration(batch_size=3, source_len=20, max_new_tokens=10, num_beams=2)
    # Llama, 2 layers, 2 kv heads of 64 / 4 = 16: a token keeps 2 × 32 values a layer (keys and values).
    cache = 2 * 3 * (20 + 10) * 2 * 2 * 32  # beams × dialogues × tokens × layers × (k, v) × kv width
    prefill = 2 * 3 * 20 * 64 * 34 // 2  # one layer over every beam's prompt: 34 bytes a 16-bit value, hidden 64
    scores = 2 * 3 * 500  # one position a sequence, vocabulary 500
    assert generation_bytes(_llama(), gen) == cache * 2 + prefill * 2 + scores * LOGIT_BYTES == 337_200
    assert generation_bytes(_llama(), gen, value_bytes=4) == cache * 4 + prefill * 4 + scores * LOGIT_BYTES_FP32 == 650_400
    # BART: the decoder's 2 layers keep 64-wide keys and values (self 10 + cross 20 tokens), the encoder output is
    # repeated per beam (2 × 3 × 20 × 64), and the encoder runs once a dialogue (3 × 20 tokens, not per beam).
    bart = 2 * 3 * 30 * 2 * 2 * 64 * 2 + 2 * 3 * 20 * 64 * 2 + 3 * 20 * 64 * 34 + scores * LOGIT_BYTES
    assert generation_bytes(TINY_CONFIGS["bart"], gen) == bart == 268_080


def test_the_peak_is_the_larger_of_the_training_step_and_the_evaluation():
    config = _llama()
    lora = LoraConfig(r=8)
    step = estimate_training_memory(config, lora, "none", 2, 30, True, precision="fp32")
    big = EvalGeneration(batch_size=32, source_len=512, max_new_tokens=160, num_beams=4)
    small = EvalGeneration(batch_size=1, source_len=8, max_new_tokens=4)
    evaluated = estimate_training_memory(config, lora, "none", 2, 30, True, precision="fp32", generation=big)
    assert evaluated.generation == generation_bytes(config, big, 4) > step.gradients + step.activations
    # Gradients (zeroed to None after each step) and activations are freed while evaluation generates.
    assert evaluated.total == step.weights + step.lora_weights + step.optimizer + evaluated.generation + OVERHEAD
    assert evaluated.describe().startswith(f"~{evaluated.total / GIB:.1f} GiB at dev evaluation's generation (weights ")
    assert "generation" in evaluated.parts() and "at dev evaluation's generation" in evaluated.lines()[-1]
    quiet = estimate_training_memory(config, lora, "none", 2, 30, True, precision="fp32", generation=small)
    assert quiet.total == step.total and quiet.describe().startswith(f"~{step.total / GIB:.1f} GiB at the training step (")
    assert step.generation == 0 and "generation" not in step.parts() and "generation" not in step.describe()
    cfg = load_config(None, {"training.eval_batch_size": 8, "generation.num_beams": 3, "generation.max_new_tokens": 70,
                             "model.max_source_length": 300})
    assert eval_generation(cfg) == EvalGeneration(8, 300, 70, 3)
