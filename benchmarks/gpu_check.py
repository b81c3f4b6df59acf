"""What only a GPU shows, in one run of a few minutes: `uv run python benchmarks/gpu_check.py`.

Prints one table:
- KoBART-shaped training at full size (the real config: d_model 768, 6+6 layers, vocab 30,000; random weights),
  bf16 autocast, AdamW: tokens per second and model FLOPs utilisation (MFU: 6 × parameters × tokens/s over the
  card's dense bf16 peak);
- SOLAR-width QLoRA: a few decoder layers of the real width (hidden 4,096, MLP 14,336, GQA 32/8 heads) loaded in
  NF4 by bitsandbytes, peft's prepare_model_for_kbit_training, LoRA r16 on every linear layer, paged 8-bit AdamW,
  gradient checkpointing, batch 1 × 1,024 tokens: seconds per step and peak memory against `dsum doctor`'s
  estimate for the same shape (dsum.model.memory.estimate_training_memory);
- batched generation on the KoBART-shaped model: new tokens per second at the organiser's settings (beam 4);
- the same generation on CTranslate2 (generation.engine=ctranslate2, dsum.model.engine_ct2: the model converted in
  memory, compute type bfloat16 as training's precision, libcublas found from torch's nvidia-cublas-cu12):
  new tokens per second and the ratio over generate();
- NCCL: a process group over every GPU present and one all-reduce.

Random weights time the arithmetic, not the answers. Without CUDA it stops with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "tests" / "models"
# Dense bf16 peaks (no sparsity) from the vendors' data sheets, by a substring of torch's device name.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "4090": 165e12,
             "3090": 71e12, "V100": 125e12, "T4": 65e12}


def peak_flops(name: str) -> float | None:
    return next((flops for key, flops in PEAK_BF16.items() if key in name), None)


def kobart(vocab_only: bool = False):
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig.from_pretrained(MODELS / "digit82__kobart-summarization")
    return config if vocab_only else BartForConditionalGeneration(config)


def seq2seq_training(steps: int, batch: int, source: int, target: int) -> dict:
    """Full fine-tuning of the KoBART shape in bf16 autocast: tokens/s and MFU."""
    model = kobart().cuda().train()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    vocab = model.config.vocab_size
    inputs = torch.randint(7, vocab, (batch, source), device="cuda")
    labels = torch.randint(7, vocab, (batch, target), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up: kernels chosen, allocator settled
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens_per_s = steps * batch * (source + target) / seconds
    peak = peak_flops(torch.cuda.get_device_name())
    mfu = 6 * params * tokens_per_s / peak if peak else None
    del model, optimizer
    torch.cuda.empty_cache()
    return {"params": params, "tokens_per_s": tokens_per_s, "mfu": mfu, "batch": f"{batch} × {source}+{target}"}


def generation(batch: int, source: int, new_tokens: int, beams: int) -> dict:
    """Beam search of the KoBART shape in bf16; every row forced to `new_tokens` (random weights never stop)."""
    model = kobart().cuda().eval().to(torch.bfloat16)
    inputs = torch.randint(7, model.config.vocab_size, (batch, source), device="cuda")
    settings = dict(num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens, no_repeat_ngram_size=2)
    with torch.no_grad():
        model.generate(input_ids=inputs[:2], **{**settings, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(input_ids=inputs, **settings)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del model
    torch.cuda.empty_cache()
    return {"new_tokens_per_s": batch * new_tokens / seconds, "batch": f"{batch} rows, beam {beams}, {new_tokens} new"}


def engine_generation(batch: int, source: int, new_tokens: int, beams: int) -> dict:
    """generation()'s beam search on CTranslate2 through dsum's engine: the same model, ids and settings."""
    from dsum.config import GenerationConfig
    from dsum.model.engine_ct2 import engine_for
    from dsum.model.tokenization import framing_for, load_tokenizer

    tokenizer = load_tokenizer(MODELS / "digit82__kobart-summarization")
    model = kobart().cuda().eval().to(torch.bfloat16)
    framing_for(model.config, tokenizer, None).apply_to(model)
    gen = GenerationConfig(engine="ctranslate2", num_beams=beams, no_repeat_ngram_size=2, max_new_tokens=new_tokens)
    start = time.perf_counter()
    engine = engine_for(model, tokenizer, gen, precision="bf16", keep=False)
    convert = time.perf_counter() - start
    rows = torch.randint(7, model.config.vocab_size, (batch, source)).tolist()
    settings = {"num_beams": beams, "length_penalty": 1.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 2,
                "max_new_tokens": new_tokens, "min_new_tokens": new_tokens}
    engine.generate(rows[:2], {**settings, "max_new_tokens": 4, "min_new_tokens": 4}, model.generation_config)  # warm-up
    start = time.perf_counter()
    engine.generate(rows, settings, model.generation_config)
    seconds = time.perf_counter() - start
    del model, engine
    torch.cuda.empty_cache()
    return {"new_tokens_per_s": batch * new_tokens / seconds, "compute_type": "bfloat16", "convert_s": convert}


def qlora(layers: int, steps: int, seq: int) -> dict:
    """A SOLAR-width slice in NF4 with LoRA and paged 8-bit AdamW; peak memory against dsum's estimate."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    from dsum.config import LoraConfig as DsumLora
    from dsum.model.memory import GIB, estimate_training_memory

    config = AutoConfig.from_pretrained(MODELS / "upstage__SOLAR-10.7B-Instruct-v1.0")
    config.num_hidden_layers = layers
    with tempfile.TemporaryDirectory() as folder:
        # bitsandbytes quantizes while loading: save random fp16 weights of the slice, load them in NF4.
        AutoModelForCausalLM.from_config(config, dtype=torch.float16).save_pretrained(folder)
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                          bnb_4bit_compute_dtype=torch.bfloat16)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantization, device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=64, lora_dropout=0.1, target_modules="all-linear"))
    optimizer = bnb.optim.PagedAdamW8bit([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    inputs = torch.randint(3, config.vocab_size, (1, seq), device="cuda")
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=inputs, labels=inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    measured = torch.cuda.max_memory_allocated() - base
    estimate = estimate_training_memory(config, DsumLora(r=16, target_modules="all-linear"), "4bit", batch_size=1,
                                        seq_len=seq, gradient_checkpointing=True, optimizer_8bit=True)
    # The estimate's overhead is the CUDA context and fragmentation, which max_memory_allocated does not see.
    expected = estimate.total - estimate.overhead
    del model, optimizer
    torch.cuda.empty_cache()
    return {"layers": layers, "seconds_per_step": seconds, "peak_gib": measured / GIB, "doctor_gib": expected / GIB,
            "off_by": measured / expected - 1}


def nccl_worker(rank: int, world: int, port: int, result) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    start = time.perf_counter()
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank))
    value = torch.ones(1, device="cuda") * (rank + 1)
    dist.all_reduce(value)
    torch.cuda.synchronize()
    if rank == 0:
        result.put((time.perf_counter() - start, value.item()))
    dist.destroy_process_group()


def nccl() -> dict:
    import torch.multiprocessing as mp

    world = torch.cuda.device_count()
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(nccl_worker, args=(world, 29531, queue), nprocs=world, join=True)
    seconds, total = queue.get()
    return {"gpus": world, "init_and_allreduce_s": seconds, "ok": total == world * (world + 1) / 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qlora-layers", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU server (it checks what only a GPU shows)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name()
    print(f"{name}, {torch.cuda.get_device_properties(0).total_memory / 1024**3:.0f} GiB, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    results = {
        "seq2seq_training": seq2seq_training(steps=20, batch=32, source=512, target=100),
        "qlora": qlora(args.qlora_layers, steps=5, seq=1024),
        "generation": generation(batch=64, source=512, new_tokens=100, beams=4),
        "engine_generation": engine_generation(batch=64, source=512, new_tokens=100, beams=4),
        "nccl": nccl(),
    }
    train, q, gen, dist = (results[k] for k in ("seq2seq_training", "qlora", "generation", "nccl"))
    ct2 = results["engine_generation"]
    mfu = f"{train['mfu']:.1%}" if train["mfu"] is not None else "n/a (unknown card)"
    rows = [
        ("KoBART-shaped bf16 training", f"{train['tokens_per_s']:,.0f} tokens/s, MFU {mfu}", train["batch"]),
        (f"SOLAR-width QLoRA ({q['layers']} layers)", f"{q['seconds_per_step']:.2f} s/step, peak {q['peak_gib']:.2f} GiB",
         f"doctor {q['doctor_gib']:.2f} GiB ({q['off_by']:+.0%})"),
        ("batched generation", f"{gen['new_tokens_per_s']:,.0f} new tokens/s", gen["batch"]),
        ("the same on CTranslate2", f"{ct2['new_tokens_per_s']:,.0f} new tokens/s "
         f"({ct2['new_tokens_per_s'] / gen['new_tokens_per_s']:.2f}x)", f"{ct2['compute_type']}, conversion {ct2['convert_s']:.1f} s"),
        ("NCCL", f"{'ok' if dist['ok'] else 'WRONG SUM'} in {dist['init_and_allreduce_s']:.1f} s", f"{dist['gpus']} GPU(s)"),
    ]
    width = max(len(r[0]) for r in rows)
    for check, value, detail in rows:
        print(f"{check:<{width}}  {value:<40}  {detail}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
