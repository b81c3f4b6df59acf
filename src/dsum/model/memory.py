"""How much GPU memory a training run needs, from the model's config alone (no weights, no GPU).

The parameter counts are exact: the model is built on the meta device (shapes only) and its parameters
summed; the LoRA count is r × (in + out) for each layer peft would adapt. Bytes per parameter follow the
loading (16-bit, NF4 or int8) and the optimizer; activations are an approximation (see activation_bytes).
A run has two peaks: the training step, and dev evaluation's generate() (dsum evaluates by generating
summaries inside training, with the weights, adapters and optimizer state still in memory): its KV cache
and prefill (generation_bytes) outweigh a checkpointed training step at the default generation settings.
`dsum doctor` compares the total, the larger of the two, with the GPU's memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from dsum.model.tokenization import is_decoder_only

GIB = 1024**3
# CUDA context with cuBLAS/cuDNN workspaces (~0.5 GiB) and the caching allocator's fragmentation: 1 GiB in all.
OVERHEAD = 1 * GIB
# NF4 (QLoRA, Dettmers et al. 2023 §3): 4 bits a weight plus its block's absmax constant; double quantization stores
# those constants in 8 bits (blocks of 64 weights, second-level blocks of 256): 8/64 + 32/(64·256) = 0.127 bits.
NF4_BYTES = (4 + 0.127) / 8
# LLM.int8(): 1 byte a weight plus one fp32 scale per output row (added per layer below).
INT8_BYTES = 1
# The loss over the vocabulary: the head's 16-bit logits, their fp32 upcast and the fp32 log-softmax kept for the
# backward (whose gradients are as big): 2 + 4 + 4 bytes per position and vocabulary entry at the peak.
LOGIT_BYTES = 2 + 4 + 4
# In fp32 the upcast is no copy, but the logits are 4 bytes: 4 + 4 + 4.
LOGIT_BYTES_FP32 = 4 + 4 + 4


@dataclass(frozen=True)
class EvalGeneration:
    """The generate() calls of dev evaluation inside training (dsum.verbs.trainer.DevEvaluation), as
    dsum.model.generate batches them: `batch_size` dialogues (training.eval_batch_size) of at most `source_len`
    tokens (model.max_source_length), `num_beams` beams each, `max_new_tokens` generated."""

    batch_size: int
    source_len: int
    max_new_tokens: int
    num_beams: int = 1


def eval_generation(cfg) -> EvalGeneration:
    """A dsum Config's evaluation generation (give it with the model's defaults: dsum.model.loading.with_model_defaults,
    which sets a decoder-only model's max_new_tokens)."""
    g = cfg.generation
    return EvalGeneration(cfg.training.eval_batch_size, cfg.model.max_source_length, g.max_new_tokens, g.num_beams)


@dataclass
class MemoryEstimate:
    """Bytes of each part of a run's peak. The training step holds weights, adapters, gradients, optimizer state and
    activations; dev evaluation's generation (`generation`, 0 when not estimated) holds the same but for the
    gradients and activations (freed: the Trainer zeroes gradients to None after each step). `total` is the larger.
    """

    params: int
    lora_params: int
    weights: int  # the base model as loaded (quantized layers at their packed size)
    lora_weights: int  # the adapters (fp32)
    gradients: int
    optimizer: int  # AdamW's two moments (of the adapters only with LoRA)
    activations: int  # kept for the backward, including the loss over the vocabulary
    overhead: int = OVERHEAD
    generation: int = 0  # dev evaluation's generate(): KV cache, prefill, scores (generation_bytes); 0: not counted
    how: dict[str, str] = field(default_factory=dict)  # part → how it was counted
    # The settings it was made for (what dsum doctor suggests changing).
    batch_size: int = 1
    seq_len: int = 0
    gradient_checkpointing: bool = False
    quantization: str = "none"

    @property
    def generation_peak(self) -> bool:
        """True when dev evaluation's generation, not the training step, is the run's peak."""
        return self.generation > self.gradients + self.activations

    @property
    def total(self) -> int:
        """The run's peak: what both steps hold, plus the larger of the training step's gradients + activations and
        the evaluation's generation."""
        step = max(self.gradients + self.activations, self.generation)
        return self.weights + self.lora_weights + self.optimizer + step + self.overhead

    def parts(self) -> dict[str, int]:
        names = ("weights", "lora_weights", "gradients", "optimizer", "activations", "generation", "overhead")
        shown = {name: getattr(self, name) for name in names if name != "lora_weights" or self.lora_params}
        return shown if self.generation else {k: v for k, v in shown.items() if k != "generation"}

    def lines(self) -> list[str]:
        """One line per part in GiB with how it was counted, then the total (and which step it is)."""
        rows = [f"{name:<12} {size / GIB:6.2f} GiB  {self.how.get(name, '')}".rstrip() for name, size in self.parts().items()]
        total = f"{'total':<12} {self.total / GIB:6.2f} GiB"
        if self.generation:
            total += ("  at dev evaluation's generation (gradients and activations freed)" if self.generation_peak
                      else "  at the training step (generation smaller)")
        return [*rows, total]

    def describe(self) -> str:
        """One line: the total and the parts it sums (with a generation estimate: the step it is at, and the other)."""
        parts = self.parts()
        if not self.generation:
            listed = ", ".join(f"{name.replace('_', ' ')} {size / GIB:.2f}" for name, size in parts.items())
            return f"~{self.total / GIB:.1f} GiB ({listed} GiB)"
        other = ("gradients", "activations") if self.generation_peak else ("generation",)
        listed = ", ".join(f"{name.replace('_', ' ')} {size / GIB:.2f}" for name, size in parts.items() if name not in other)
        if self.generation_peak:
            return (f"~{self.total / GIB:.1f} GiB at dev evaluation's generation ({listed} GiB; the training step's "
                    f"gradients + activations {(self.gradients + self.activations) / GIB:.2f} GiB)")
        return (f"~{self.total / GIB:.1f} GiB at the training step ({listed} GiB; dev evaluation's generation "
                f"{self.generation / GIB:.2f} GiB)")


def build_on_meta(model_config):
    """The model with shapes but no storage: exact parameter counts of a 10B model in a fraction of a second."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForCausalLM if is_decoder_only(model_config) else AutoModelForSeq2SeqLM
    with torch.device("meta"):
        return auto.from_config(model_config)


def linear_layers(model, target_modules: str | Sequence[str] = "all-linear") -> dict:
    """Name → layer of the layers LoRA adapts, as peft picks them.

    all-linear: every nn.Linear but the output head (the head is left alone, as peft and bitsandbytes do).
    A list: the Linear (or Embedding) layers whose name is one of them or ends in `.name`.
    """
    from torch import nn

    head = model.get_output_embeddings()
    if target_modules == "all-linear":
        return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}
    wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return {
        n: m for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Embedding)) and any(n == t or n.endswith(f".{t}") for t in wanted)
    }


def lora_parameter_count(model, r: int, target_modules: str | Sequence[str] = "all-linear") -> int:
    """A is r × in, B is out × r: r × (in + out) per adapted layer (no bias)."""
    from torch import nn

    def sides(m) -> int:
        return m.num_embeddings + m.embedding_dim if isinstance(m, nn.Embedding) else m.in_features + m.out_features

    return sum(r * sides(m) for m in linear_layers(model, target_modules).values())


def layer_stacks(config, seq: int, target: int | None = None) -> list[tuple[int, int]]:
    """(layers, tokens) of each stack: the decoder-only model's, or an encoder's and its decoder's."""
    if is_decoder_only(config):
        return [(config.num_hidden_layers, seq)]
    decoder = getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None)  # bart, t5
    return [(config.num_hidden_layers, seq), (decoder or config.num_hidden_layers, target or seq)]


def activation_bytes(
    config, batch: int, seq: int, checkpointing: bool, value_bytes: int = 2, target: int | None = None,
    adapter_inputs: float = 0, label_tokens: int | None = None,
) -> int:
    """Activations kept for the backward: an approximation after Korthikanti et al. 2022 ("Reducing Activation
    Recomputation in Large Transformer Models", eq. 1): one transformer layer keeps s·b·h·(34 + 5·a·s/h) bytes
    with 16-bit values (s sequence, b batch, h hidden, a heads; the 5·a·s² term is the attention matrix, which
    fused SDPA/flash attention does not store, so this errs high). With gradient checkpointing only each layer's
    input (b·s·h values) is kept, plus one layer's activations recomputed in the backward. Plus the loss over the
    vocabulary (LOGIT_BYTES, LOGIT_BYTES_FP32 for 4-byte values) at every position of a row, or at `label_tokens`
    positions of a row when the loss runs the output layer on label positions only (dsum.model.label_loss, every
    decoder-only training). Encoder-decoder: the encoder at `seq`, the decoder layers like encoder layers at
    `target` (cross-attention not added).

    LoRA: each adapted layer keeps its input once more for its adapter (peft casts it to the adapter's dtype, and
    dropout keeps a 1-byte mask): (value_bytes + 1) × `adapter_inputs` (the adapted in_features of one layer) per
    token. Checked against the tensors autograd saves for SOLAR's and Qwen3-4B's real layer shapes (bf16
    autocast, SDPA, LoRA r16 all-linear, 1174 tokens): 92 and 110 bytes per s·b·h measured, 108 and 138
    estimated; with checkpointing 2.0 per layer, as here.
    """
    h, a = config.hidden_size, config.num_attention_heads
    scale = value_bytes / 2  # the formula's bytes are for 16-bit values

    def per_layer(s: int) -> float:
        return (batch * s * h * 34 + 5 * a * s * s * batch) * scale + batch * s * adapter_inputs * (value_bytes + 1)

    stacks = layer_stacks(config, seq, target)
    if checkpointing:
        kept = sum(layers * batch * s * h * value_bytes for layers, s in stacks) + max(per_layer(s) for _, s in stacks)
    else:
        kept = sum(layers * per_layer(s) for layers, s in stacks)
    positions = stacks[-1][1] if label_tokens is None else min(label_tokens, stacks[-1][1])
    return int(kept + batch * positions * config.vocab_size * (LOGIT_BYTES_FP32 if value_bytes == 4 else LOGIT_BYTES))


def kv_width(config) -> int:
    """Values one token keeps per layer for its keys (as many again for its values): kv heads × head size."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = (getattr(config, "head_dim", None) or getattr(config, "d_kv", None)
                or config.hidden_size // config.num_attention_heads)
    return heads * head_dim


def generation_bytes(config, gen: EvalGeneration, value_bytes: int = 2) -> int:
    """The peak of one generate() call of dev evaluation over what the model holds anyway (weights, adapters).

    b dialogues of s tokens, k beams, n new tokens (gen). The KV cache at the last step: k·b·(s + n) tokens × layers
    × 2 × kv_width values (encoder-decoder: the decoder's layers, the cross-attention's s tokens and its own n, plus
    the encoder output, one copy per beam: k·b·s·h values). The prefill: one layer's forward over every beam's prompt
    (k·b·s tokens; encoder-decoder: the encoder over b·s, before the beams are made), counted as Korthikanti's
    34 bytes a 16-bit value of the hidden size (activation_bytes) without the attention matrix (SDPA keeps none).
    The scores: each sequence's logits at one position (generate asks for the last only), fp32 and log-softmaxed
    (LOGIT_BYTES). Measured with SmolLM2-135M (hidden 576, 3 kv heads of 64) fp32 on the CPU (benchmarks/train_memory.py,
    malloc's live bytes): its first 2 layers, 32 dialogues × 4 beams, 512 + 160 tokens: 2.48 GB (counted here 2.90);
    all 30 layers, 2 × 4 beams, 419 + 160: 0.27 GB (counted 0.35). At 30 layers and 32 × 4 the cache alone is 3.96 GB.

    b and s are training.eval_batch_size and model.max_source_length: the batch of the longest dialogues, exact
    for fixed batches. Token-budget batches (generation.batch_by_tokens) of shorter dialogues hold more rows (at
    most dsum.model.generate.MAX_BATCH_GROWTH × b) of fewer prompt tokens, whose new tokens add to the cache: up to
    (rows − b)·n more tokens a beam (on DialogSum's dev, 47 rows of 345 tokens: 10% more cache than 32 of 512).
    """
    b, s, n, k = gen.batch_size, gen.source_len, gen.max_new_tokens, gen.num_beams
    h = config.hidden_size
    layers = layer_stacks(config, s)[-1][0]  # the decoder's (decoder-only: every layer)
    cache = k * b * (s + n) * layers * 2 * kv_width(config) * value_bytes
    prompt = k * b * s
    if not is_decoder_only(config):
        cache += k * b * s * h * value_bytes  # the encoder output, repeated for the beams
        prompt = b * s  # the encoder runs once a dialogue
    prefill = prompt * h * 34 * value_bytes // 2
    scores = k * b * config.vocab_size * (LOGIT_BYTES_FP32 if value_bytes == 4 else LOGIT_BYTES)
    return cache + prefill + scores


def weight_bytes(model, quantization: str, params: int, loaded: int, dtype: str) -> tuple[int, str]:
    """(bytes, how) of the weights as loaded: packed by bitsandbytes (4bit/8bit: the linear layers but the head;
    every other weight cast to fp32 by prepare_model_for_kbit_training) or in the config's dtype."""
    if quantization not in ("4bit", "8bit"):
        return loaded, f"{params / 1e9:.2f}B params in {dtype}"
    packed = {id(m.weight): m for m in linear_layers(model, "all-linear").values()}
    quantized = sum(p.numel() for p in model.parameters() if id(p) in packed)
    if quantization == "4bit":
        weights, how = quantized * NF4_BYTES, f"{quantized / 1e9:.2f}B linear params in NF4 + double quantization (4.127 bits)"
    else:
        weights = quantized * INT8_BYTES + sum(m.out_features * 4 for m in packed.values())
        how = f"{quantized / 1e9:.2f}B linear params in int8 + fp32 row scales"
    rest = params - quantized
    return int(weights + rest * 4), f"{how}, {rest / 1e9:.2f}B (embeddings, head, norms) in fp32"


def estimate_training_memory(
    model_config,
    lora=None,
    quantization: str = "none",
    batch_size: int = 1,
    seq_len: int = 1024,
    gradient_checkpointing: bool = False,
    optimizer_8bit: bool = False,
    precision: str = "bf16",
    target_len: int | None = None,
    label_tokens: int | None = None,
    generation: EvalGeneration | None = None,
) -> MemoryEstimate:
    """The peak memory of a training run on one GPU, as dsum trains (transformers Trainer, peft): its training step
    or, with `generation` (eval_generation(cfg)), dev evaluation's generate() if larger (generation_bytes).

    `lora`: a dsum LoraConfig (its r and target_modules) or None for full fine-tuning. `quantization`: none, 4bit or
    8bit (bitsandbytes). `seq_len`: the tokens of one example (decoder-only: prompt + summary; encoder-decoder: the
    source, with `target_len` the summary). `optimizer_8bit`: (paged) 8-bit AdamW, 2 bytes of state a parameter.
    `precision`: the activations' (fp32, or a 16-bit one: auto counts as 16-bit, what a GPU run resolves it to).
    `label_tokens`: the positions of a row whose logits the loss computes (None: all; dsum's decoder-only training
    computes them at label positions only: see dsum.verbs.doctor.training_estimate). `generation`: the evaluation's
    generate() calls (None: the training step alone, as before). Generation runs at the activations' precision.

    Weights load in the dtype of the model's config (from_pretrained's dtype="auto"; fp32 when it names none), and
    mixed precision autocasts them: no fp32 master copy, AdamW's moments in the weights' dtype. Quantized: the
    linear layers but the head are packed; peft's prepare_model_for_kbit_training (dsum.model.loading.wrap_lora) casts
    every other weight (embeddings, head, norms) to fp32. Adapters are fp32 (peft's default), as are their
    gradients; AdamW keeps two fp32 moments per adapter parameter (8 B), 8-bit AdamW two bytes.
    """
    model = build_on_meta(model_config)
    params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    loaded = sum(p.numel() * p.element_size() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    width = 4 if precision == "fp32" else 2
    how: dict[str, str] = {}

    weights, how["weights"] = weight_bytes(model, quantization, params, loaded, dtype)

    if lora is not None:
        lora_params = lora_parameter_count(model, lora.r, lora.target_modules)
        state = 2 if optimizer_8bit else 8
        lora_weights, gradients, optimizer = lora_params * 4, lora_params * 4, lora_params * state
        how["lora_weights"] = f"{lora_params / 1e6:.1f}M adapter params (r {lora.r}) in fp32"
        how["gradients"] = "the adapters', fp32"
        how["optimizer"] = f"{'8-bit' if optimizer_8bit else ''} AdamW moments of the adapters ({state} B/param)".lstrip()
    else:
        lora_params, lora_weights, gradients = 0, 0, loaded
        optimizer = params * 2 if optimizer_8bit else 2 * loaded
        how["gradients"] = f"every param, {dtype}"
        how["optimizer"] = "8-bit AdamW moments (2 B/param)" if optimizer_8bit else f"AdamW's two moments in {dtype}"

    adapted = linear_layers(model, lora.target_modules).values() if lora is not None else []
    layers = sum(count for count, _ in layer_stacks(model_config, seq_len))
    adapter_inputs = sum(getattr(m, "in_features", 0) for m in adapted) / layers  # Linear inputs of one layer
    activations = activation_bytes(model_config, batch_size, seq_len, gradient_checkpointing, width, target_len, adapter_inputs,
                                   label_tokens)
    where = "" if label_tokens is None else f" at {min(label_tokens, seq_len)} label positions a row"
    how["activations"] = (f"batch {batch_size} × {seq_len} tokens, gradient checkpointing "
                          f"{'on' if gradient_checkpointing else 'off'}, logits over {model_config.vocab_size} tokens{where}")
    how["overhead"] = "CUDA context and allocator fragmentation"
    generated = generation_bytes(model_config, generation, width) if generation is not None else 0
    if generation is not None:
        g = generation
        how["generation"] = (f"dev evaluation: {g.batch_size} dialogues × {g.num_beams} beams × ({g.source_len} + "
                             f"{g.max_new_tokens} tokens): KV cache, one layer's prefill, scores")
    return MemoryEstimate(
        params, lora_params, int(weights), lora_weights, gradients, optimizer, activations, generation=generated, how=how,
        batch_size=batch_size, seq_len=seq_len, gradient_checkpointing=gradient_checkpointing, quantization=quantization,
    )
