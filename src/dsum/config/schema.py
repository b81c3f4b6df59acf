"""The YAML recipe as validated pydantic models: every section, every field documented where it is declared.

A config is data: each section below is a plain model. Unknown keys are errors (see dsum.config.load),
so a typo never silently falls back to a default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator



class Section(BaseModel):
    # use_attribute_docstrings: the docstring under each field is its description (`dsum config schema`,
    # an editor's hover and completion in the YAML files).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class GeneralConfig(Section):
    run_name: str | None = None
    """Run directory name; None = `{model}_{data_version}_lr{lr}_bs{bs}_ep{epochs}`."""
    output_dir: Path = Path("runs")
    """Where run directories are created."""
    seed: int = 42
    """Seed of everything random: model init, data order, dropout, sampling."""
    data_version: str = "v1"
    """A short label of the data used (goes into the run name)."""
    notes: str = ""
    """The purpose of the experiment, copied into the run record."""
    parent: str | None = None
    """The run this one changes (a run name under output_dir, or a run directory): record.md shows the config diff."""


class CleanRule(Section):
    name: str
    """The rule's name in reports (rows changed per rule)."""
    pattern: str
    """A Python regular expression."""
    replacement: str
    """What each match becomes (\\1 refers to a group)."""


class DataConfig(Section):
    train: list[Path] = Field([Path("data/sample/train.csv")], min_length=1)
    """One or more training files (CSV or JSONL); augmented files are appended here."""
    dev: Path = Path("data/sample/dev.csv")
    """The dev file (with summaries): evaluation during training, the dev score."""
    test: Path = Path("data/sample/test.csv")
    """The test file: its fnames are the rows of the submission."""
    sample_submission: Path | None = Path("data/sample/sample_submission.csv")
    """The organiser's sample submission whose layout submissions copy; None = fname,summary."""
    clean: bool = True
    """Apply the clean-up rules to dialogues and summaries (training and inference alike)."""
    rules: list[CleanRule] | None = None
    """Clean-up rules in order; None = dsum's defaults (ㅋ+/ㅎ+ → 웃음, ㅠ+/ㅜ+ → 슬픔, artefacts, spaces)."""
    language: str = Field("auto", pattern=r"^(auto|[a-z]{2,3})$")
    """The language of the dialogues: auto, or a code (ko, en, ...). auto = Korean when at least half the
    letters of the dialogues are Hangul (#...# tokens left out), decided from the dialogues a command reads.
    Only Korean data gets the Hangul checks: the "mostly not in Hangul" count and `_non_korean.csv` file of
    predictions, generation.korean_only, and dsum doctor's token-per-syllable advice."""


class TinyModelConfig(Section):
    """A small model built from a config, with a tokenizer trained on the training text (offline)."""

    architecture: Literal["bart", "t5", "llama", "qwen3"] = "bart"
    """bart (encoder-decoder like KoBART), t5, or a decoder-only llama (SOLAR's architecture) or qwen3."""
    d_model: int = 64
    """Hidden size."""
    layers: int = 2
    """Encoder layers, and as many decoder layers (decoder-only: this many layers)."""
    heads: int = 4
    """Attention heads (must divide d_model)."""
    ffn_dim: int = 128
    """Feed-forward inner size."""
    vocab_size: int = 3000
    """Vocabulary of the tokenizer trained on the training text."""


class ModelConfig(Section):
    name: str = "digit82/kobart-summarization"
    """A hub name, a local folder, or a llama.cpp `.gguf` file (converted once to a float32 folder in dsum's cache,
    dsum.model.gguf); ignored when `tiny` is set."""
    tiny: TinyModelConfig | None = None
    """Build a small model from this config instead of loading `name` (offline demos and tests)."""
    max_source_length: int = Field(512, gt=0)
    """Encoder length: longer dialogues are truncated (the count is reported). Decoder-only models: the length
    of the rendered prompt; the dialogue inside it is cut, never the prompt's end."""
    max_target_length: int = Field(100, gt=0)
    """Decoder length for training labels (decoder-only: the summary and its end-of-turn token)."""


class LoraConfig(Section):
    """LoRA adapters (peft) instead of training every weight; QLoRA with quantization 4bit."""

    r: int = Field(16, gt=0)
    """Rank of each adapter."""
    alpha: float = Field(32, gt=0)
    """Scale: the adapter's update is multiplied by alpha / r."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the adapter's input."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names that get adapters (e.g. [q_proj, v_proj]); all-linear = every linear layer but the output head."""
    modules_to_save: list[str] = []
    """Modules trained in full and saved with the adapters, e.g. [embed_tokens] for a base whose embeddings are
    untrained (the tiny demo) or got new tokens."""
    quantization: Literal["none", "4bit", "8bit"] = "none"
    """Load the base model quantized with bitsandbytes (on CUDA, or the CPU: slowly): 4bit = NF4, double quantization, bf16
    compute (QLoRA); 8bit = LLM.int8(). The adapters train in full precision."""


class PromptConfig(Section):
    """Decoder-only models: the prompt a dialogue is summarized with, in training and generation alike."""

    system: str = (
        "당신은 한국어 대화를 요약하는 전문가입니다. 대화의 핵심을 한국어로 간결하게 요약하세요. "
        "#Person1#, #Person2#, #PhoneNumber#, #Address# 같은 #...# 토큰은 바꾸거나 번역하지 말고 그대로 쓰세요."
    )
    """The system message ('' = none: some templates, such as SOLAR's, render it as a ### System: block)."""
    user: str = "다음 대화를 요약해 주세요.\n\n{dialogue}"
    """The user message; the dialogue goes where {dialogue} is."""
    chat_template: str | None = None
    """A Jinja chat template that replaces the tokenizer's (needed by a tokenizer without one, e.g. a tiny model's)."""
    template_options: dict[str, Any] = {}
    """Keyword options of the chat template, e.g. {enable_thinking: false} for Qwen3 (its template otherwise puts
    an empty <think></think> block between the prompt and the answer)."""
    plain_template: str | None = None
    """For a tokenizer with no chat template: the prompt as text with {system} and {user}; the summary and eos
    follow it. Ignored when a chat template exists."""

    @model_validator(mode="after")
    def _dialogue_placeholder(self):
        if "{dialogue}" not in self.user:
            raise ValueError("prompt.user must contain {dialogue}, where the dialogue goes")
        if self.plain_template is not None and "{user}" not in self.plain_template:
            raise ValueError("prompt.plain_template must contain {user}, where the user message goes")
        return self


class TrainingConfig(Section):
    learning_rate: float = Field(1e-5, gt=0)
    """Peak learning rate of AdamW."""
    batch_size: int = Field(50, gt=0)
    """Training examples per device per step."""
    eval_batch_size: int = Field(32, gt=0)
    """Dialogues per generation batch (evaluation, dsum predict); see generation.batch_by_tokens."""
    epochs: float = Field(20, gt=0)
    """Training epochs (a fraction is allowed)."""
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    """Share of the steps spent warming the learning rate up from 0."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay."""
    scheduler: str = "cosine"
    """Any transformers `lr_scheduler_type` (linear, cosine, constant, ...)."""
    gradient_accumulation_steps: int = Field(1, gt=0)
    """Steps whose gradients add up before an update (effective batch = batch_size × this × GPUs)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% slower."""
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """auto = bf16 where the GPU supports it, else fp16 on a GPU (fp32 for T5, which overflows in fp16), else fp32.
    dsum predict and evaluation generate at the same precision."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing of the cross-entropy loss (0 = off)."""
    rdrop_alpha: float = Field(0.0, ge=0)
    """R-Drop weight (0 = off): KL between two dropout passes added to the loss."""
    early_stopping_patience: int | None = 3
    """Stop after this many evaluations without a better dev score; None = never stop early."""
    early_stopping_threshold: float = 0.001
    """The smallest dev gain that counts as better, on ROUGE's 0-1 scale as the organiser's baseline gives it:
    0.001 = 0.1 points of the 0-100 board score."""
    save_total_limit: int = Field(2, gt=0)
    """Checkpoints kept under checkpoints/ (for --resume); the best is always kept too."""
    eval_strategy: Literal["epoch", "steps"] = "epoch"
    """Evaluate (generate and score dev) after every epoch or every eval_steps steps."""
    eval_steps: int | None = None
    """Steps between evaluations when eval_strategy is steps."""
    logging_steps: int = Field(10, gt=0)
    """Steps between train loss / learning rate entries in train_log.jsonl and the tracker."""
    eval_subset: int | None = Field(None, gt=0)
    """Evaluate inside training on this many dev rows drawn with general.seed (the same rows every time) to bound
    the cost of generating with an LLM; None = all of dev. The final dev score always uses all of dev."""
    optimizer: Literal["auto", "adamw_torch", "paged_adamw_8bit"] = "auto"
    """auto = paged 8-bit AdamW (bitsandbytes) for LoRA on a CUDA GPU, else AdamW."""
    packing: bool = False
    """Decoder-only models: several examples in one training row of at most model.max_source_length +
    model.max_target_length tokens (positions restart per example, no attention mask, so none sees another):
    no padding, fewer rows a step. A step of batch_size rows then holds more examples."""


class GenerationConfig(Section):
    num_beams: int = Field(4, gt=0)
    """Beam search width (1 = greedy)."""
    no_repeat_ngram_size: int = Field(2, ge=0)
    """No n-gram of this size appears twice in a summary (0 = off)."""
    length_penalty: float = 1.0
    """Beam score exponent on length: > 1 favours longer summaries, < 1 shorter ones."""
    max_new_tokens: int = Field(100, gt=0)
    """The longest summary generated, in tokens. Left unset, decoder-only models get 160 (the SOLAR team's 96
    cut 19% of summaries); every prediction reports how many answers hit it."""
    repetition_penalty: float = Field(1.0, gt=0)
    """Divides the scores of tokens already generated (1 = off; 1.1 for the SOLAR recipe)."""
    korean_only: bool = False
    """Decoder-only models on Korean data (data.language): rows whose answer is mostly not Hangul are generated
    again with tokens of other scripts banned (the #...# tokens of the data stay allowed)."""
    early_stopping: bool = True
    """Beam search stops when num_beams finished candidates exist."""
    batch_by_tokens: bool = True
    """dsum predict: size the length-sorted batches by a token budget (eval_batch_size × max_source_length,
    at most 4 × eval_batch_size rows), so short dialogues go in bigger batches; same outputs (bar float
    rounding in a rare near-tie of beams), same peak encoder memory. False = fixed batches of
    eval_batch_size. Evaluation inside training uses the same generator and batches."""
    length_control: Literal["none", "buckets"] = "none"
    """none = every row gets max_new_tokens. buckets = `dsum train` fits, on the training rows, the summary length
    (tokens) per dialogue-length bucket and each row generates between its bucket's min and max new tokens
    (saved with the checkpoint, so evaluation, dsum predict and ensembles use the same buckets)."""
    length_buckets: int = Field(10, ge=1)
    """length_control=buckets: how many buckets, cut at quantiles of the training dialogues' token lengths."""
    length_min_quantile: float = Field(0.05, ge=0, le=1)
    """length_control=buckets: a bucket's min new tokens = this quantile of its training summaries' lengths."""
    length_max_quantile: float = Field(0.95, ge=0, le=1)
    """length_control=buckets: a bucket's max new tokens = this quantile of its summaries' lengths + 1 (the eos),
    never above max_new_tokens."""
    engine: Literal["hf", "ctranslate2"] = "hf"
    """What runs the decoding loop of every verb that writes summaries (training's evaluation, predict, folds, tune):
    hf = transformers generate(); ctranslate2 = CTranslate2 on the same token ids (dsum.model.engine_ct2: converted
    once per checkpoint and cached; a logit ensemble or a 4/8-bit model runs on hf, said in one log line)."""
    compute_type: Literal["auto", "float32", "int8", "int8_float16", "int16", "float16", "bfloat16"] = "auto"
    """engine=ctranslate2: the weights' type as it computes. auto = float32 on a CPU, on a GPU training's precision
    (bfloat16/float16/float32); int8 (CPU, GPU), int8_float16 and float16/bfloat16 (GPU), int16 (CPU with MKL) on request."""


class EnsembleConfig(Section):
    method: Literal["mbr", "logits", "average"] = "mbr"
    """How several models make one submission (the folds of `dsum train --folds K`): mbr = per row, the candidate
    summary closest (board ROUGE) to the others; logits = one beam search over the models' averaged log-probabilities;
    average = one model whose parameters are the models' mean."""


class MetricConfig(Section):
    tokenizer: Literal["mecab", "kiwi", "whitespace"] = "mecab"
    """The morpheme analyser of the board's ROUGE (mecab matches the board; whitespace is a quick stand-in).
    Not a model tokenizer: the key keeps its historical name (dsum.metric.rouge.get_analyser reads it)."""


class TrackingConfig(Section):
    backend: Literal["none", "wandb", "mlflow", "tensorboard"] = "none"
    """Where runs are tracked: none, wandb, mlflow or tensorboard."""
    project: str = "dsum"
    """W&B project / MLflow experiment shared by the team."""
    entity: str | None = None
    """W&B team (entity); None = the logged-in user's default."""
    group: str | None = None
    """W&B group (a tuning study puts its trials in a group named after it)."""
    tags: list[str] = []
    """W&B / MLflow tags of the run."""
    notes: str | None = None
    """W&B run notes; None = general.notes."""
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    """W&B mode; auto = WANDB_MODE when set, else online when logged in (WANDB_API_KEY or ~/.netrc), else offline."""
    log_model: bool = False
    """Upload checkpoint-best as a model artifact (W&B) or run artifact (MLflow)."""
    log_data: bool = False
    """Log the data files (data.train, dev, test, sample_submission) with the run: W&B dataset artifact
    `data-<data_version>` (a new version only when their content changes); MLflow run artifacts under data/."""
    uri: str | None = None
    """MLflow tracking URI; None = sqlite:///<general.output_dir>/mlflow.db."""
    required: bool = False
    """false: a tracker that cannot be reached (at the start or mid-run) costs one warning and the run goes on
    (W&B offline, MLflow in the local store); true: the run stops with an error instead."""


class SearchParam(Section):
    """One searched key: a float/int range (low, high, log, step) or categorical choices."""

    type: Literal["float", "int", "categorical"]
    """float, int or categorical."""
    low: float | None = None
    """The smallest value (float, int)."""
    high: float | None = None
    """The largest value (float, int)."""
    log: bool = False
    """Sample on a log scale (learning rates)."""
    step: float | None = None
    """Sample on a grid of this step (None = continuous for float, 1 for int)."""
    choices: list[Any] | None = None
    """The values a categorical parameter takes."""

    @model_validator(mode="after")
    def _check_bounds(self) -> "SearchParam":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter needs low <= high")
        return self


class TuneConfig(Section):
    study_name: str = "dsum-study"
    """The Optuna study (runs/<study_name>/ holds its trials, results and default storage)."""
    storage: str | None = None
    """Optuna storage URL; None = sqlite:///<general.output_dir>/<study_name>/optuna.db. Use postgresql://... for several machines."""
    mode: Literal["train", "decode"] = "train"
    """train: each trial is a full training run; decode: search generation.* on a fixed checkpoint, no training."""
    checkpoint: Path | None = None
    """The model folder decode mode generates with (e.g. runs/demo/checkpoint-best)."""
    space: dict[str, SearchParam] = {}
    """Dotted config key → how to sample it, e.g. training.learning_rate: {type: float, low: 1e-5, high: 5e-4, log: true}."""
    n_trials: int = Field(20, gt=0)
    """Trials this command runs (a re-run adds this many more to the same study)."""
    timeout: float | None = None
    """Stop starting new trials after this many seconds."""
    direction: Literal["maximize", "minimize"] = "maximize"
    """maximize for scores."""
    objective: Literal["score", "rouge1", "rouge2", "rougeL"] = "score"
    """The dev metric to optimise: the board score (default) or one of its parts."""
    sampler: Literal["tpe", "random"] = "tpe"
    """tpe (seeded, learns from finished trials) or random."""
    seed: int | None = 42
    """Sampler seed (worker i uses seed + i); None = unseeded."""
    pruner: Literal["median", "hyperband", "none"] = "median"
    """Stop unpromising trials at an evaluation: median, hyperband or none."""
    n_startup_trials: int = Field(3, ge=0)
    """Median pruner: trials finished before any pruning."""
    n_warmup_steps: int = Field(1, ge=0)
    """Median pruner: evaluations of a trial before it can be pruned."""
    heartbeat_interval: int = Field(60, gt=0)
    """Seconds between a running trial's heartbeats; a trial silent for 3x this (a killed worker) is failed and retried once."""


class LlmConfig(Section):
    """An OpenAI-compatible chat API (Upstage Solar by default); the key comes from UPSTAGE_API_KEY only."""

    base_url: str = "https://api.upstage.ai/v1"
    """The OpenAI-compatible API's base URL."""
    model: str = "solar-pro2"
    """The chat model."""
    system_prompt: str = (
        "당신은 한국어 일상 대화를 요약하는 전문가입니다. 대화의 핵심을 한두 문장으로 간결하게 요약하세요. "
        "화자는 대화에 나온 그대로 #Person1#, #Person2# 같은 태그로 부르고, #PhoneNumber# 같은 #...# 토큰은 "
        "바꾸지 말고 그대로 쓰세요. 요약문만 출력하세요."
    )
    """The system message of every request."""
    user_prompt: str = "다음 대화를 요약해 주세요.\n\n{dialogue}"
    """The dialogue goes where {dialogue} is; few-shot examples use the same template (write literal braces as {{ }})."""
    shots: int = Field(0, ge=0)
    """0 = zero-shot; k = k examples from data.train given as earlier chat turns."""
    shot_selection: Literal["bm25", "tfidf", "random"] = "bm25"
    """The most similar training dialogues by BM25 or TF-IDF over morphemes (metric.tokenizer), or random (seeded per row)."""
    temperature: float = Field(0.2, ge=0, le=2)
    """Sampling temperature (0 = most deterministic)."""
    top_p: float = Field(0.3, gt=0, le=1)
    """Nucleus sampling mass."""
    max_tokens: int = Field(256, gt=0)
    """The longest answer, in tokens."""
    requests_per_minute: int = Field(100, gt=0)
    """The API's request limit (see window_s)."""
    tokens_per_minute: int | None = Field(None, gt=0)
    """None = no token limit."""
    window_s: float = Field(60, gt=0)
    """The sliding window both limits are enforced over, scaled: at most requests_per_minute × window_s / 60 requests in ANY window_s seconds (a shorter window is smoother, never faster)."""
    concurrency: int = Field(4, gt=0)
    """Requests in flight at once."""
    timeout_s: float = Field(60, gt=0)
    """Seconds before a request is abandoned (and retried)."""
    max_retries: int = Field(6, ge=0)
    """Retries of a request after 429, 5xx, a timeout, a dropped connection or a malformed answer."""
    backoff_s: float = Field(1.0, gt=0)
    """The first retry waits about this long, doubling each time (with jitter) up to backoff_max_s; a Retry-After header wins."""
    backoff_max_s: float = Field(60, gt=0)
    """The longest wait between retries."""
    cache: Path = Path("runs/llm_cache.sqlite")
    """SQLite file of every answer received: a rerun never pays for the same request twice (--no-cache ignores it)."""


class AugmentConfig(Section):
    """`dsum augment`: new training rows from old ones; API methods use the llm section's API, limits and cache."""

    source: Path | None = None
    """The rows to augment; None = the first file of data.train."""
    output: Path | None = None
    """None = <general.output_dir>/augment/<source name>_<method>.csv."""
    aeda_ratio: float = Field(0.3, gt=0, le=1)
    """aeda: each turn gets 1 to ratio × words punctuation marks inserted between its words."""
    turn_noise_ratio: float = Field(0.3, gt=0, le=1)
    """turn-noise: the share of turns (at least one) whose leading filler word is added, dropped or repeated."""
    back_translation_fields: list[Literal["dialogue", "summary"]] = ["dialogue"]
    """back-translation: the fields translated to the pivot language and back."""
    pivot_language: str = "English"
    """back-translation: the language in between."""
    temperature: float = Field(0.7, ge=0, le=2)
    """Sampling temperature of the API methods."""
    top_p: float = Field(0.95, gt=0, le=1)
    """Nucleus sampling mass of the API methods."""
    max_tokens: int = Field(2048, gt=0)
    """The longest answer of the API methods, in tokens."""
    system_prompt: str = "당신은 한국어 대화 데이터를 다루는 꼼꼼한 편집자입니다. 요청한 결과물만 출력하세요."
    """The system message of every augmentation request."""
    paraphrase_prompt: str = (
        "다음 대화를 뜻은 그대로 두고 다른 표현으로 바꿔 써 주세요. 각 줄은 원래처럼 '#PersonN#: '으로 시작하고, "
        "줄 수와 화자 순서를 그대로 지키세요. #Person1#, #PhoneNumber# 같은 #...# 토큰은 한 글자도 바꾸지 말고 "
        "그대로 두세요. 바꿔 쓴 대화만 출력하세요.\n\n{dialogue}"
    )
    """llm-paraphrase: the request; the dialogue goes where {dialogue} is."""
    summary_rewrite_prompt: str = (
        "다음 요약문을 뜻은 그대로 두고 다른 문장으로 바꿔 써 주세요. #Person1# 같은 #...# 토큰은 그대로 두세요. "
        "바꿔 쓴 요약문만 출력하세요.\n\n{summary}"
    )
    """summary-rewrite: the request; the summary goes where {summary} is."""
    translate_prompt: str = (
        "Translate the following {source_language} text into {target_language}. Keep every token of the form "
        "#...# (such as #Person1# or #PhoneNumber#) exactly as it is, keep the line breaks, and output only the "
        "translation.\n\n{text}"
    )
    """back-translation: the request, with {source_language}, {target_language} and {text}."""


class Config(Section):
    general: GeneralConfig = GeneralConfig()
    """Run name, output folder, seed, data version, notes."""
    data: DataConfig = DataConfig()
    """The competition files and the clean-up rules."""
    model: ModelConfig = ModelConfig()
    """The model (hub name, local folder or tiny) and its maximum lengths."""
    lora: LoraConfig | None = None
    """Train LoRA adapters (and load the base quantized) instead of every weight; None = full fine-tuning."""
    prompt: PromptConfig = PromptConfig()
    """Decoder-only models: system and user messages and the chat template options."""
    training: TrainingConfig = TrainingConfig()
    """Fine-tuning settings (the transformers Trainer)."""
    generation: GenerationConfig = GenerationConfig()
    """Decoding settings of evaluation, dsum predict and ensembles."""
    metric: MetricConfig = MetricConfig()
    """The board's ROUGE: which morpheme analyser."""
    ensemble: EnsembleConfig = EnsembleConfig()
    """Combining several models' summaries or weights (fold ensembles)."""
    tracking: TrackingConfig = TrackingConfig()
    """Experiment tracking: W&B, MLflow or TensorBoard."""
    tune: TuneConfig | None = None
    """dsum tune: the Optuna study and its search space (None = no study)."""
    llm: LlmConfig = LlmConfig()
    """dsum llm summarize: the chat API, its prompts, limits, retries and cache."""
    augment: AugmentConfig = AugmentConfig()
    """dsum augment: sources, outputs and prompts of the augmentation methods."""

    def to_yaml(self) -> str:
        """The resolved config as YAML (dsum config show, a run's config.yaml), loadable again: model.name is left
        out when model.tiny is set (what runs then is the tiny model, not the default name); whole epochs are
        written as integers (3, not 3.0)."""
        data = self.model_dump(mode="json")
        if self.model.tiny is not None:
            data["model"].pop("name", None)
        if float(data["training"]["epochs"]).is_integer():
            data["training"]["epochs"] = int(data["training"]["epochs"])
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
