"""The one generator: batched generation sorted by length, used by training's evaluation, predict and tune.

Dialogues are framed by the model's framing (dsum.model.tokenization.framing_for) and outputs decoded
by it (cut at eos or end-of-turn, control tokens dropped), at the precision training used (bf16/fp16 autocast on a GPU).

Sorting by length means each batch pads only to its own longest dialogue; the original order is
restored before returning, so outputs equal those of an unsorted loop.

With generation.batch_by_tokens (the default) batches are sized by a token budget rather than a
row count: a batch may hold as many dialogues as fit in batch_size × max_source_length source
tokens (counting each row at the batch's longest, as padded), at most MAX_BATCH_GROWTH ×
batch_size. A batch of the longest dialogues is therefore as big as a fixed batch and peaks at the
same encoder memory, while short dialogues go in bigger batches: beam search then runs fewer
generate calls, each of fuller steps, and every step's fixed cost is paid once for more rows.

Beam search with an encoder-decoder model also gets a cache that leaves the cross-attention keys
and values in place when the beams are reordered: transformers gathers them again at every step
(batch × beams × source length × width per layer), but a reorder only moves beams within one
dialogue, whose beams all hold copies of the same encoder output, so the gather changes nothing.
The self-attention cache is reordered as usual; outputs are the same (tests/recipes/test_train.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Sequence

import torch

from dsum.config import GenerationConfig
from dsum.model.degenerate import EmptyAnswers
from dsum.model.engine_ct2 import engine_for
from dsum.model.length_control import limits, model_buckets, split_batches
from dsum.model.precision import autocast
from dsum.model.tokenization import framing_for, is_decoder_only
from dsum.util.oom import Halving

# A token-budget batch holds at most this many times batch_size rows: the decoder's self-attention
# cache and each step's logits (rows × beams × vocab) grow with the row count, not the source length.
MAX_BATCH_GROWTH = 4

# Candidates drawn for MBR (dsum predict --samples): epsilon sampling, tokens below probability 0.02
# cut, the choice of MBR studies (Freitag et al. 2023, "Epsilon sampling rocks"). CTranslate2 has no
# epsilon sampling: it draws by top-p (dsum.model.engine_ct2.SAMPLING).
SAMPLING = {"do_sample": True, "epsilon_cutoff": 0.02, "top_k": 0}


@dataclass
class GenerationStats:
    """What a generate_summaries call saw: the rows whose summary hit max_new_tokens without ending (cut), and
    the rows whose answer decoded to nothing and were generated again (dsum.model.degenerate)."""

    cut: list[int] = field(default_factory=list)
    regenerated: list[int] = field(default_factory=list)  # rows whose answer was empty, generated again
    still_empty: list[int] = field(default_factory=list)  # of those, the ones empty still
    engine: str = "hf"  # what generated: "hf" or "ctranslate2" (a fallback to generate() says "hf")
    compute_type: str | None = None  # the engine's compute type (ctranslate2), e.g. float32


def generation_kwargs(gen: GenerationConfig) -> dict:
    return dict(
        # Deterministic decoding unless sampling is asked for: Qwen3's generation_config.json turns sampling on.
        do_sample=False,
        num_beams=gen.num_beams,
        no_repeat_ngram_size=gen.no_repeat_ngram_size,
        length_penalty=gen.length_penalty,
        repetition_penalty=gen.repetition_penalty,
        max_new_tokens=gen.max_new_tokens,
        # A beam search setting: with one beam transformers refuses to save a config that sets it.
        early_stopping=gen.early_stopping if gen.num_beams > 1 else False,
    )


@functools.cache
def _cross_attention_kept_cache_class():
    from transformers.cache_utils import EncoderDecoderCache

    class CrossAttentionKeptCache(EncoderDecoderCache):
        """Beam reorders gather the self-attention cache only (see the module docstring)."""

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)

    return CrossAttentionKeptCache


def beam_search_cache(model, gen: GenerationConfig) -> dict:
    """generate() kwargs giving an encoder-decoder beam search the cross-attention-kept cache; {} otherwise."""
    settings = model.generation_config
    if gen.num_beams <= 1 or is_decoder_only(model.config):
        return {}
    if settings.cache_implementation is not None or settings.use_cache is False:
        return {}  # a model that asks for another cache (or none) keeps it
    from transformers.cache_utils import DynamicCache

    config = model.config.get_text_config(decoder=True)
    return {"cache": _cross_attention_kept_cache_class()(DynamicCache(config=config), DynamicCache(config=config))}


def length_batches(
    lengths: Sequence[int], batch_size: int, max_source_length: int, by_tokens: bool = True
) -> list[list[int]]:
    """Indices grouped into batches, longest dialogues first.

    Fixed batches hold batch_size rows. Token-budget batches (by_tokens) hold as many rows as fit
    in batch_size × max_source_length tokens at the batch's longest (its first row, as the order
    is longest first), never fewer than batch_size and at most MAX_BATCH_GROWTH × batch_size.
    """
    # Longest first: a memory problem shows up in the first batch, not after an hour.
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    budget, cap = batch_size * max_source_length, MAX_BATCH_GROWTH * batch_size
    batches, start = [], 0
    while start < len(order):
        size = batch_size
        if by_tokens:
            size = min(cap, max(batch_size, budget // max(1, lengths[order[start]])))
        batches.append(order[start : start + size])
        start += size
    return batches


def generate_summaries(
    model,
    tokenizer,
    dialogues: Sequence[str],
    gen: GenerationConfig,
    batch_size: int,
    max_source_length: int,
    precision: str = "fp32",
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    num_return_sequences: int = 1,
    sampling: bool = False,
    *,
    prompt=None,
    stats: GenerationStats | None = None,
    suppress_tokens: Sequence[int] | None = None,
    keep_conversion: bool = True,
) -> list:
    """Summaries for `dialogues`, in their order, generated in length-sorted batches.

    The one generator: evaluation inside training, dsum predict and dsum tune all call it.
    Batches are token-budget batches when gen.batch_by_tokens is set (see length_batches).
    shard=(rank, world): generate only every world-th batch from rank on (None for the other rows):
    the batches are the ones one process would form, so the summaries are the same too.
    num_return_sequences=K > 1 (K ≤ num_beams): each dialogue's K best beams, best first, as a list.
    sampling: draw the sequences instead (epsilon sampling, SAMPLING; seed torch first; gen.num_beams 1).
    Decoder-only models: each dialogue is rendered with `prompt` (the config's PromptConfig), padded on
    the left, and the summary is what follows the prompt up to a stop id. `stats` collects the indices
    of the rows cut at max_new_tokens; `suppress_tokens` are ids never generated (generation.korean_only).
    Rows whose answer decodes to nothing are generated again (dsum.model.degenerate; in `stats` too).
    gen.engine picks the decoding loop (generate() or CTranslate2, dsum.model.engine_ct2; `stats.engine` says
    which ran); keep_conversion: CTranslate2's conversion of these weights is kept in the cache for later
    calls (False inside training, whose weights change before the next evaluation).
    """
    from dsum.util.progress import progress_bar

    results: list = [None] * len(dialogues)
    k = num_return_sequences
    steps = iter_generate(
        model, tokenizer, dialogues, gen, batch_size, max_source_length, precision, shard, k, sampling,
        prompt=prompt, stats=stats, suppress_tokens=suppress_tokens, keep_conversion=keep_conversion,
    )
    n_batches = next(steps)
    for batch, texts in progress_bar(steps, n_batches, "generate", "batch", show=progress):
        for j, index in enumerate(batch):
            # generate returns batch × K rows, each dialogue's K sequences together, best first.
            results[index] = texts[j] if k == 1 else texts[j * k : (j + 1) * k]
    return results


def iter_generate(
    model, tokenizer, dialogues: Sequence[str], gen: GenerationConfig, batch_size: int, max_source_length: int,
    precision: str = "fp32", shard: tuple[int, int] = (0, 1), num_return_sequences: int = 1, sampling: bool = False,
    *, prompt=None, stats: GenerationStats | None = None, suppress_tokens: Sequence[int] | None = None,
    keep_conversion: bool = True,
):
    """generate_summaries one batch at a time: yields the number of batches, then (indices, summaries) per batch.

    With num_return_sequences=K, each batch's summaries are len(indices) × K, grouped by dialogue.

    The first next() does the tokenizing and batching; each later one generates one batch.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    framing = framing_for(model.config, tokenizer, prompt)
    encoded, _ = framing.encode_prompts(dialogues, max_source_length)
    lengths = [len(ids) for ids in encoded]
    batches = length_batches(lengths, batch_size, max_source_length, gen.batch_by_tokens)
    # generation.length_control=buckets: batches cut at bucket boundaries, each with its bucket's min/max new tokens.
    buckets = model_buckets(model, gen)
    if buckets:
        batches = split_batches(batches, lengths, buckets)
    rank, world = shard
    batches = batches[rank::world]
    yield len(batches)
    kwargs = generation_kwargs(gen)
    if num_return_sequences > 1:
        kwargs["num_return_sequences"] = num_return_sequences
    if sampling:
        kwargs.update(SAMPLING)
    if suppress_tokens:
        kwargs["suppress_tokens"] = list(suppress_tokens)
    # Decoder-only: prompts padded on the left, so every row's continuation starts at the same column.
    side = framing.padding_side
    engine = engine_for(model, tokenizer, gen, precision, keep_conversion, reopen=sampling)
    if stats is not None:
        stats.engine, stats.compute_type = ("ctranslate2", engine.compute_type) if engine else ("hf", None)

    def run(rows: list[int], extra=None) -> list[list[int]]:
        settings = {**kwargs, **(limits(buckets, lengths[rows[0]]) if buckets else {})}
        settings.update(extra(settings) if extra else {})  # rows generated again (dsum.model.degenerate)
        if engine is not None and engine.takes(settings):
            # The same ids in; sequences out as generate() gives them, for the same framing to decode.
            return engine.generate([encoded[i] for i in rows], settings, model.generation_config, sampling)
        with torch.inference_mode(), autocast(precision, device):
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt", padding_side=side).to(device)
            output = model.generate(**inputs, **settings, **beam_search_cache(model, gen))  # a fresh cache per call
        return framing.outputs(output, inputs["input_ids"].shape[1])

    # Answers that decode to nothing are generated again, with a few new tokens at least (dsum.model.degenerate).
    vocab = model.config.get_text_config(decoder=True).vocab_size
    refill = EmptyAnswers(tokenizer, framing.decoder, vocab, stats) if num_return_sequences == 1 and not sampling else None
    halving = Halving()  # out of memory: the batch halves, the rows already generated are kept (dsum.util.oom)
    try:
        for batch in batches:
            sequences = halving(run, batch)
            if refill is not None:
                sequences = refill(batch, sequences, run)
            if stats is not None and num_return_sequences == 1:
                stats.cut += [index for index, ids in zip(batch, sequences) if not framing.stopped(ids)]
            yield batch, framing.decode(sequences)
    finally:
        model.train(was_training)  # evaluation inside training hands the model back in training mode


class LogitEnsemble(torch.nn.Module):
    """Several seq2seq models that share a tokenizer, generating as one: `dsum predict --checkpoint A --checkpoint B`.

    One beam search runs over the members' *averaged log-probabilities*: at every step each candidate
    token scores (1/N) Σ_i log p_i(token | prefix, dialogue), a product of experts; the mean is not
    renormalised, so two identical members score exactly what one does ((x + x) / 2 == x in floats).

    The search is the first member's own `generate` (the same beam search, length penalty, n-gram ban
    and stopping as a single model), with one logits processor that adds the other members' log-probs.
    Each other member keeps its own encoder output and cache; the processor finds each beam's parent
    by its prefix (beams are extensions of the previous step's beams) and reorders that cache.
    An ensemble of one is its member: generate is the member's generate, untouched.
    It quacks like a model for iter_generate: config, generation_config, parameters(), eval(), generate().
    """

    def __init__(self, members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.config = members[0].config
        self.generation_config = members[0].generation_config
        self.eval()  # inference only: iter_generate hands it (and so its members) back in eval mode

    def generate(self, input_ids, attention_mask=None, **kwargs):
        lead = self.members[0]
        if len(self.members) == 1:
            return lead.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        from transformers import LogitsProcessorList

        beams = kwargs.get("num_beams") or lead.generation_config.num_beams or 1
        others = _MemberScores(list(self.members[1:]), input_ids, attention_mask, beams)
        processors = LogitsProcessorList([*kwargs.pop("logits_processor", []), others])
        return lead.generate(input_ids=input_ids, attention_mask=attention_mask, logits_processor=processors, **kwargs)


class _MemberScores:
    """A LogitsProcessor: the lead member's scores → the members' mean log-probabilities.

    Beam search hands processors log-probs (log_softmax first); greedy search hands raw logits,
    whose log_softmax is taken (the argmax is unchanged). Tokens that generate's own processors
    banned in the lead's scores (-inf: repeated n-grams, min length) stay banned, and a token they
    force (eos at the last step: the only finite score) stays forced. Sampling (--samples) thus draws
    from the softmax of the mean log-probs, among the tokens the lead's epsilon cut keeps.
    """

    def __init__(self, members, input_ids, attention_mask, beams: int):
        self.members, self.beams = members, beams
        self.log_probs_given = beams > 1
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self.attention_mask = attention_mask.repeat_interleave(beams, dim=0)
        # Encoders run once per batch, on the dialogues (not the beams), as generate does.
        self.encoded = [
            m.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True) for m in members
        ]
        for output in self.encoded:
            output.last_hidden_state = output.last_hidden_state.repeat_interleave(beams, dim=0)
        self.caches = [None] * len(members)
        self.previous: torch.Tensor | None = None

    def _parents(self, sequences: torch.Tensor) -> torch.Tensor | None:
        """Row of the previous step each beam extends (None: the same rows in the same order)."""
        previous, rows = self.previous.tolist(), sequences[:, :-1].tolist()
        where = {(index // self.beams, tuple(ids)): index for index, ids in enumerate(previous)}
        parents = [where[(index // self.beams, tuple(ids))] for index, ids in enumerate(rows)]
        if parents == list(range(len(parents))):
            return None
        return torch.tensor(parents, device=sequences.device)

    def __call__(self, sequences: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        first = self.previous is None
        parents = None if first else self._parents(sequences)
        banned = scores == float("-inf")
        total = scores if self.log_probs_given else torch.log_softmax(scores.float(), dim=-1)
        for i, member in enumerate(self.members):
            if first:
                config = member.config.get_text_config(decoder=True)
                self.caches[i] = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
            elif parents is not None:
                # Beams only move within their own dialogue, whose beams share one encoder output:
                # the cross-attention cache is the same for all of them (as in generate.py's cache).
                self.caches[i].self_attention_cache.reorder_cache(parents)
            # The member's own input preparation, as generate does it: the same ids, masks and cache,
            # so two identical members give bit-identical log-probs.
            inputs = member.prepare_inputs_for_generation(
                sequences, next_sequence_length=None if first else 1, cache=self.caches[i],
                attention_mask=self.attention_mask, encoder_outputs=self.encoded[i], use_cache=True,
            )
            output = member(**inputs, return_dict=True)  # the cache is updated in place
            total = total + torch.log_softmax(output.logits[:, -1, :].float(), dim=-1)
        self.previous = sequences
        mean = (total / (len(self.members) + 1)).masked_fill(banned, float("-inf"))
        # A token forced by generate (forced eos at max length: one finite score) stays forced as the lead has it.
        forced = (~banned).sum(dim=-1, keepdim=True) == 1
        return torch.where(forced, scores, mean)
