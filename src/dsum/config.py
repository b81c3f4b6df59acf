"""The YAML recipe as validated pydantic models: load, dotted overrides (--set a.b=1), errors.

A config is data: every section below is a plain model whose fields are documented where they are
declared. Unknown keys are errors that name the key, the valid keys at that level and the closest
match, so a typo never silently falls back to a default. Relative paths written in a config file
are relative to its project root (see resolve_paths), so a recipe means the same from any folder.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dsum.errors import UserError


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
    """A hub name or a local folder; ignored when `tiny` is set."""
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
    """Load the base model quantized with bitsandbytes (CUDA only): 4bit = NF4, double quantization, bf16
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
    """Decoder-only models: rows whose answer is mostly not Hangul are generated again with tokens of other
    scripts banned (the #...# tokens of the data stay allowed)."""
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


class EnsembleConfig(Section):
    method: Literal["mbr", "logits", "average"] = "mbr"
    """How several models make one submission (the folds of `dsum train --folds K`): mbr = per row, the candidate
    summary closest (board ROUGE) to the others; logits = one beam search over the models' averaged log-probabilities;
    average = one model whose parameters are the models' mean."""


class MetricConfig(Section):
    tokenizer: Literal["mecab", "kiwi", "whitespace"] = "mecab"
    """The morpheme analyser of the board's ROUGE (mecab matches the board; whitespace is a quick stand-in).
    Not a model tokenizer: the key keeps its historical name (dsum.metric.get_analyser reads it)."""


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
        return yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


def load_config(
    path: str | Path | None, overrides: Sequence[str] | Mapping[str, Any] | None = None
) -> Config:
    """Read a YAML recipe (or the defaults when `path` is None), apply overrides, validate.

    `overrides` are `a.b=value` strings as `--set` takes them, or a mapping of dotted keys to
    values (the library API): a string value is read as `--set` reads it (typed by its field), any
    other value is set as it is and validated. Relative paths are resolved as `resolve_paths` says.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path} (pass an existing YAML, e.g. configs/demo.yaml)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}; fix the syntax") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path} must hold a mapping of sections (general:, data:, ...), not {type(raw).__name__}")
    typed: list[str] = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if isinstance(value, str):
                apply_override(raw, f"{key}={value}")
            else:
                set_dotted(raw, str(key), value, what="override")
            typed.append(str(key))
    else:
        for override in overrides or ():
            apply_override(raw, override)
            typed.append(override.partition("=")[0].strip())
    cfg = validate_config(raw, source=str(path) if path else "config")
    return resolve_paths(cfg, project_root(path) if path is not None else None, typed)


# A folder holding one of these is a project root: the folder a config file's relative paths start from.
PROJECT_MARKERS = ("pyproject.toml", ".git")


def project_root(config_file: str | Path) -> Path | None:
    """The nearest folder at or above the config file's that holds pyproject.toml or .git (None: none does)."""
    folder = Path(config_file).resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return None


def path_fields() -> list[str]:
    """Dotted keys of the config's file and folder fields (a Path, an optional Path, a list of Paths)."""
    keys = []
    for section, info in Config.model_fields.items():
        model = _model_in(info.annotation)
        for name, field in model.model_fields.items():
            members = _union_members(field.annotation)
            inner = [arg for m in members for arg in (typing.get_args(m) if typing.get_origin(m) is list else (m,))]
            if any(isinstance(arg, type) and issubclass(arg, PurePath) for arg in inner):
                keys.append(f"{section}.{name}")
    return keys


def resolve_paths(cfg: Config, root: Path | None, typed: Sequence[str] = ()) -> Config:
    """Make a config's relative paths mean the same from any working directory.

    A relative path written in a config file (or left at its default: data/sample/..., runs/...)
    is relative to the project root of that file (`project_root`), so configs/demo.yaml names the
    same data and run directories from the repo root, from examples/ (a notebook) or from
    configs/. A relative path in an override (`--set`, or `typed` keys of the API's mapping) is
    relative to the current directory, as any path typed on a command line. `model.name` is
    resolved the same way when that folder exists (else it is a hub name).

    When the current directory is the project root both readings agree and nothing changes, so a
    command run from the root sees (and saves) its paths as written; from elsewhere they become
    absolute. A config file outside any project (a run directory under /tmp) keeps its paths
    relative to the current directory.
    """
    cwd = Path.cwd()
    if root is None or root == cwd.resolve():
        return cfg

    def base(key: str) -> Path:
        return cwd if any(key == k or key.startswith(k + ".") for k in typed) else root

    sections: dict[str, dict[str, Any]] = {}
    for key in path_fields():
        section_name, name = key.split(".")
        section = getattr(cfg, section_name)
        value = getattr(section, name, None) if section is not None else None
        if isinstance(value, list):
            resolved: Any = [p if p.is_absolute() else base(key) / p for p in value]
        elif isinstance(value, PurePath) and not value.is_absolute():
            resolved = base(key) / value
        else:
            continue
        sections.setdefault(section_name, {})[name] = resolved
    model_name = Path(cfg.model.name)
    if cfg.model.tiny is None and not model_name.is_absolute() and (base("model.name") / model_name).is_dir():
        sections.setdefault("model", {})["name"] = str(base("model.name") / model_name)
    updates = {name: getattr(cfg, name).model_copy(update=fields) for name, fields in sections.items()}
    return cfg.model_copy(update=updates)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set a dotted key in the raw mapping: `training.learning_rate=3e-5`.

    The value is typed by the field it goes to: a text field (str, a path, a choice of words) keeps
    the raw string, so `general.data_version=2` is "2" and `general.notes=yes` is "yes"; an empty
    value or `null` sets an optional one to None. A list of texts (`data.train=[a.csv, b.csv]`)
    keeps its items as strings. Any other field (numbers, bools, nested lists and mappings) gets
    the value parsed as YAML.
    """
    key, sep, value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE with a dotted key, e.g. training.learning_rate=3e-5; got {override!r}")
    set_dotted(raw, key, parse_value(key, value), what="--set")


def parse_value(key: str, text: str) -> Any:
    """The value of `--set KEY=TEXT`, typed by the field at the dotted `key` (see apply_override)."""
    kind = _kind_of(field_annotation(key))
    if kind in ("text", "optional text"):
        if kind == "optional text" and text.strip() in _YAML_NULLS:
            return None
        return text
    try:
        if kind == "text list":
            return yaml.load(text, Loader=yaml.BaseLoader) if text.strip() else None  # scalars stay strings
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: {text!r} is not a valid YAML value ({str(exc).splitlines()[0]}); quote it or fix the brackets") from None


def set_dotted(raw: dict[str, Any], key: str, value: Any, what: str = "--set", create: bool = True) -> None:
    """Put `value` at the dotted `key` of a raw config mapping.

    A number or bool (or a Path) bound for a text field becomes its string (a tune search space may hold
    `choices: [1, 2]` for general.data_version). Missing or empty sections are created unless
    `create` is False (then the key must name a section that is there). `what` names the source
    in errors.
    """
    if isinstance(value, (int, float, PurePath)) and _kind_of(field_annotation(key)) in ("text", "optional text"):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    *sections, name = key.split(".")
    node = raw
    for section in sections:
        child = node.get(section)
        if child is None and create:  # absent, or an optional section left empty (tune: null)
            child = node[section] = {}
        if not isinstance(child, dict):
            problem = "is a value, not a section" if section in node and child is not None else "is not set in this config"
            raise UserError(f"{what} {key}: {section} {problem} (see dsum config show)")
        node = child
    node[name] = value


_YAML_NULLS = ("", "~", "null", "Null", "NULL")


def field_annotation(key: str) -> Any:
    """The type annotation of the field at a dotted key (None when the key names no field).

    Walks the models from Config; a mapping field (tune.space) takes the next part as its key.
    """
    annotation: Any = Config
    for part in key.split("."):
        model = _model_in(annotation)
        if model is not None:
            field_info = model.model_fields.get(part)
            if field_info is None:
                return None
            annotation = field_info.annotation
            continue
        mapping = _mapping_value_in(annotation)
        if mapping is None:
            return None
        annotation = mapping
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model held by `annotation` itself or by an Optional of it."""
    for arg in _union_members(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _mapping_value_in(annotation: Any) -> Any:
    for arg in _union_members(annotation):
        if typing.get_origin(arg) is dict:
            return typing.get_args(arg)[1]
    return None


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _is_text(annotation: Any) -> bool:
    """str, a path, or a Literal of strings: a field whose value is written as plain text."""
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, (str, PurePath))


def _kind_of(annotation: Any) -> str:
    """"text", "optional text", "text list" or "yaml": how --set reads a value for this field."""
    if annotation is None:
        return "yaml"  # not a field: parsed as YAML, and validation names the unknown key
    members = _union_members(annotation)
    others = [arg for arg in members if arg is not type(None)]
    if len(others) != 1:
        return "yaml"
    (inner,) = others
    if _is_text(inner):
        return "optional text" if len(others) < len(members) else "text"
    if typing.get_origin(inner) is list and all(_is_text(arg) for arg in typing.get_args(inner)):
        return "text list"
    return "yaml"


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {describe_error(exc.errors()[0])}") from None


# How to fix a validation error that the pydantic message alone does not explain.
_FIXES = {
    ("data.train", "too_short"): "list at least one training file, e.g. data.train=[data/sample/train.csv]",
}


def describe_error(error: dict[str, Any]) -> str:
    """One line for the first validation error; for an unknown key, the valid keys and the closest."""
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    if error["type"] != "extra_forbidden":
        fix = _FIXES.get((dotted, error["type"]))
        return f"{dotted}: {error['msg']} (got {error.get('input')!r})" + (f": {fix}" if fix else "")
    valid = list(_fields_at(loc[:-1]))
    hint = difflib.get_close_matches(loc[-1], valid, n=1)
    closest = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key {dotted!r}; valid keys at this level: {', '.join(valid)}{closest}"


def _fields_at(path: list[str]) -> dict[str, Any]:
    """The fields of the model found by walking `path` from Config (list indices are skipped)."""
    model: type[BaseModel] = Config
    """The model (hub name, local folder or tiny) and its maximum lengths."""
    for part in path:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        model = next(arg for arg in _candidates(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel))
    return model.model_fields


def _candidates(annotation: Any) -> list[Any]:
    """Unwrap Optional[...] / list[...] annotations down to the types they hold."""
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [inner for arg in args for inner in _candidates(arg)]


def json_schema() -> dict[str, Any]:
    """The JSON schema of a config file, every field with its description: `dsum config schema`.

    Editors use it to complete and check the YAML recipes (yaml-language-server, VS Code's YAML
    extension, PyCharm); unknown keys are flagged as dsum would refuse them.
    """
    schema = Config.model_json_schema()
    schema["title"] = "dsum config"
    schema["description"] = "A dsum recipe (configs/*.yaml): `dsum config show -c FILE` prints it resolved."
    return schema
