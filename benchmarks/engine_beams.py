"""Beam search on trained weights: how many of CTranslate2's summaries are generate()'s, and the board score gap.

Run from anywhere: .venv/bin/python benchmarks/engine_beams.py [--run runs/demo] [--rows 100]

The model is the demo's tiny BART trained on the bundled sample (configs/demo.yaml, as `make demo` trains
it, ~2 min; --run names a finished run instead). Its dev predictions are made by dsum's predict path
(dsum.verbs.predict.predict_split) with generation.engine=hf and =ctranslate2 on the first --rows dev
dialogues (../shared/data/competition-ko/dev.csv, else the sample's), for several decodings:

  * greedy; 2 and 4 beams with the recipe's no_repeat_ngram_size 2; 4 beams without the n-gram ban;
    4 beams with length_penalty 2.0 (no ban).

Printed per decoding: identical summaries, each engine's board score, and dsum's paired bootstrap of
ctranslate2 − hf over the rows (dsum.metric.bootstrap: mean difference, 95% interval, share of resamples
in which ctranslate2 scores higher). What differs is known from CTranslate2's beam search
(src/decoding.cc): it bans repeated n-grams in the logits before its log-softmax, so the banned mass is
shared out among the other tokens, while generate() bans them in the log-probabilities after it; the beam
scores then differ and so may the chosen beam. Without the ban the two searches agree (same length
normalisation, over the generated tokens with eos; stop at num_beams finished; eos forced at max length,
which dsum reproduces by one token fewer and the eos appended).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

CASES = {  # name: generation settings
    "greedy": {"num_beams": 1, "no_repeat_ngram_size": 2},
    "2 beams, no_repeat 2": {"num_beams": 2, "no_repeat_ngram_size": 2},
    "4 beams, no_repeat 2": {"num_beams": 4, "no_repeat_ngram_size": 2},
    "4 beams, no ban": {"num_beams": 4, "no_repeat_ngram_size": 0},
    "4 beams, no ban, length_penalty 2": {"num_beams": 4, "no_repeat_ngram_size": 0, "length_penalty": 2.0},
}


def trained_run(out: Path) -> Path:
    from dsum.config import load_config
    from dsum.verbs.train import train

    return train(load_config(REPO / "configs/demo.yaml", {"general.output_dir": str(out)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished demo run (default: train one into a temporary folder)")
    parser.add_argument("--rows", type=int, default=100, help="dev dialogues compared")
    args = parser.parse_args()
    os.environ.setdefault("DSUM_CACHE", tempfile.mkdtemp(prefix="dsum-bench-cache-"))
    from common import SAMPLE_DEV, SHARED_DEV
    from dsum.config import load_config
    from dsum.data.files import read_examples
    from dsum.data.text import normalizer_from_config
    from dsum.metric.bootstrap import paired_bootstrap, row_scores
    from dsum.model.loading import load_for_inference, with_model_defaults
    from dsum.verbs.predict import predict_split

    scratch = Path(tempfile.mkdtemp(prefix="dsum-beams-"))
    run = args.run or trained_run(scratch / "runs")
    dev = SHARED_DEV if SHARED_DEV.exists() else SAMPLE_DEV
    base = load_config(run / "config.yaml", {"data.dev": str(dev)})
    model, tokenizer = load_for_inference([run / "checkpoint-best"])
    base = with_model_defaults(base, model.config)
    examples = read_examples(dev, require_summary=True)[: args.rows]
    print(f"{run}: {len(examples)} dev dialogues of {dev}")
    for name, settings in CASES.items():
        scores, texts = {}, {}
        for engine in ("hf", "ctranslate2"):
            gen = base.generation.model_copy(update={**settings, "engine": engine, "compute_type": "float32"})
            cfg = base.model_copy(update={"generation": gen})
            out = scratch / f"{engine}-{len(scores)}-{name.replace(' ', '_').replace(',', '')}.csv"
            result = predict_split(cfg, model, tokenizer, "dev", out, normalizer_from_config(cfg.data), examples, progress=False)
            scores[engine], texts[engine] = result["score"], out
        import pandas as pd

        a, b = (pd.read_csv(texts[e], keep_default_na=False)["prediction"].tolist() for e in ("hf", "ctranslate2"))
        same = sum(x == y for x, y in zip(a, b))
        boot = paired_bootstrap(row_scores(texts["hf"]), row_scores(texts["ctranslate2"]))
        print(f"{name:36s} identical {same:3d}/{len(a)}  hf {scores['hf']:.2f}  ctranslate2 {scores['ctranslate2']:.2f}  "
              + boot.line("hf", "ctranslate2"))


if __name__ == "__main__":
    main()
