# `make demo`: set up and train the offline demo (tiny model, bundled sample, CPU, ~2 minutes).
# `make test`: set up and run the test suite (`make test-fast`: the unit tests alone).
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: setup demo demo-llm test test-fast bench real-weights

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen

demo: setup
	$(UV) run --frozen dsum data check data/sample/train.csv data/sample/dev.csv data/sample/test.csv
	$(UV) run --frozen dsum train -c configs/demo.yaml

demo-llm: setup
	$(UV) run --frozen dsum train -c configs/demo-llm.yaml

test: setup
	$(UV) run --frozen pytest

# The unit tests alone (tests/unit): a minute or two, to run often.
test-fast: setup
	$(UV) run --frozen pytest tests/unit

bench: setup
	$(UV) run --frozen python benchmarks/score_speed.py
	$(UV) run --frozen python benchmarks/train_throughput.py
	$(UV) run --frozen python benchmarks/generate_throughput.py
	$(UV) run --frozen python benchmarks/llm_generate_throughput.py
	$(UV) run --frozen python benchmarks/llm_train_throughput.py
	$(UV) run --frozen python benchmarks/pruning.py
	$(UV) run --frozen python benchmarks/ensembles.py

# Real weights on the competition's Korean task (outside the suite, ~10-15 minutes on 2 CPU cores; needs ../shared):
# Qwen2.5-Coder-0.5B-Instruct's GGUF file (fetched once), zero-shot and after a short LoRA, board scores side by side.
# Sizes: make real-weights ARGS="--eval-rows 30 --train-rows 64"
real-weights: setup
	$(UV) run --frozen python benchmarks/real_weights_ko.py $(ARGS)
