"""docflow's settings: one frozen Settings object made of frozen groups (render, audio, whisper, classifier,
extraction, review, label_studio, device, runner...), each passed straight to the stages that use it.

Read from the environment by the CLI and deployment entry points only; everything else receives a Settings object.
Every field has one environment variable, DOCFLOW_<NAME>, where NAME is the field's alias (its name before the
settings were grouped, e.g. DOCFLOW_PDF_DPI for render.dpi) or else the group's prefix plus the field name; a group
of another program's variables (Label Studio's) reads NAME itself, without the DOCFLOW_ prefix. The table in
docs/settings.md is generated from these declarations (`settings_table()`); a test keeps them in step."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.defaults import CLASSIFY_BATCH_SIZE, TEXT_LLM_ENGINE, VLM_MIN_PIXELS, model_cache_dir, usable_cores
from schemas.documents import ValueKind
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


def _check_location(value: str) -> str:
    """A store location is either s3://bucket[/prefix] or a local directory path (optionally file://)."""
    parsed = urlparse(value)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{value!r}: an S3 location needs a bucket, e.g. s3://my-bucket/incoming/")
    elif parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:  # len>1 lets C:\ paths through
        raise ValueError(f"{value!r}: use s3://bucket/prefix or a local directory")
    return value


def _empty_is_none(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value


class _Group(BaseModel):
    """A frozen group of settings. ENV_PREFIX + field name is a field's variable unless the field has an alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)
    ENV_PREFIX: ClassVar[str] = ""
    # False: another program's variables, read under that program's names (no DOCFLOW_ prefix).
    DOCFLOW_PREFIX: ClassVar[bool] = True


class RenderSettings(_Group):
    """Page images: PDF rendering and image normalisation."""

    dpi: int = Field(default=150, ge=36, le=600, alias="pdf_dpi", description="PDF render resolution (dots per inch).")
    max_pixels: int = Field(
        default=4_000_000,
        ge=10_000,
        description="Pixel budget per page image (width x height): a page that would exceed it at the configured "
        "DPI is rendered at a lower DPI; images are resized.",
    )
    max_side: int = Field(default=4096, ge=64, description="Longest side of a page image in pixels after resizing.")
    max_pages: int = Field(
        default=200,
        ge=1,
        description="Pages rendered per PDF (frames per image); the page count is still recorded, with a warning.",
    )
    chunk_pages: int = Field(
        default=50,
        ge=1,
        alias="render_chunk_pages",
        description="Pages per poppler call. Pages go straight to disk, so memory is bounded either way; smaller "
        "ranges mean shorter calls, larger ones parse the PDF fewer times (bench/render.py measures it).",
    )
    timeout_s: int = Field(default=120, ge=1, alias="render_timeout_s", description="Time limit for one poppler call.")
    jpeg_quality: int = Field(default=90, ge=30, le=100, description="Quality of stored page images.")
    max_file_mb: float = Field(
        default=512.0,
        gt=0,
        description="Larger objects (MiB: 512 x 1024 x 1024 bytes) fail as 'file too large' without being downloaded.",
    )
    max_decode_pixels: int = Field(
        default=150_000_000,
        ge=1_000_000,
        description="Raster images declaring more pixels than this are rejected before decoding (bomb guard).",
    )

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


class AudioSettings(_Group):
    """Recordings: decoding limits and voice-activity detection (Silero VAD)."""

    ENV_PREFIX: ClassVar[str] = "vad_"
    max_duration_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        alias="max_audio_s",
        description="Longest recording decoded, in seconds (4 h); a longer one, or one whose header declares an "
        "absurd sample rate, fails before decoding (memory guard).",
    )
    threshold: float = Field(default=0.5, gt=0, lt=1, description="Silero VAD speech probability threshold.")
    min_speech_ms: int = Field(default=250, ge=0, description="Shortest speech segment kept.")
    min_silence_ms: int = Field(default=2000, ge=0, description="Silence needed to split two segments.")
    speech_pad_ms: int = Field(default=400, ge=0, description="Padding added around each speech segment.")
    max_speech_s: float = Field(
        default=30.0, gt=1, description="Longer speech is split (at a pause when possible) so chunks fit Whisper."
    )


class WhisperSettings(_Group):
    """Transcription with faster-whisper (CTranslate2)."""

    ENV_PREFIX: ClassVar[str] = "whisper_"
    enabled: bool = Field(
        default=True, alias="transcribe", description="Transcribe recordings after VAD (false: preprocessing only)."
    )
    model: str = Field(
        default="pkg:whisper-base",
        description="Whisper (CTranslate2) model: a local directory, a hub id such as Systran/faster-whisper-small, "
        "or pkg:whisper-base / pkg:whisper-tiny.en for the weights installed from Python packages (offline).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when present.")
    compute_type: str = Field(
        default="auto", description="CTranslate2 compute type; auto = float16 on CUDA, int8 on CPU."
    )
    cpu_threads: int = Field(default=0, ge=0, description="CPU threads for Whisper (0: CTranslate2 default).")
    language: str | None = Field(default=None, description="Force a language code (e.g. en); unset: detect.")
    batch_size: int = Field(
        default=8, ge=1, le=128, description="Speech chunks decoded together (batched pipeline); 1 = sequential."
    )
    beam_size: int = Field(default=5, ge=1, le=20, description="Beam width (1 = greedy, fastest).")
    word_timestamps: bool = Field(default=False, description="Store word-level timestamps with segments.")
    condition_on_previous_text: bool = Field(
        default=False, description="Feed previous text as a prompt (off: avoids repetition loops)."
    )
    no_speech_threshold: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Segments above this no-speech probability AND below the log-prob threshold are dropped as "
        "hallucinations.",
    )
    log_prob_threshold: float = Field(default=-1.0, description="See DOCFLOW_WHISPER_NO_SPEECH_THRESHOLD.")
    compression_ratio_threshold: float = Field(
        default=2.4, gt=0, description="Segments whose text compresses better than this (repetition loops) are flagged."
    )
    split_stereo: Literal["auto", "on", "off"] = Field(
        default="auto",
        alias="split_stereo",
        description="Transcribe the two channels of a stereo call separately (agent/customer); auto: when they differ.",
    )
    review_min_avg_logprob: float = Field(
        default=-0.8,
        alias="review_min_avg_logprob",
        description="Recordings whose mean log-probability is lower go to review.",
    )
    review_min_speech_ratio: float = Field(
        default=0.05,
        ge=0,
        le=1,
        alias="review_min_speech_ratio",
        description="Recordings with some speech but a lower speech ratio go to review.",
    )


class DiarizationSettings(_Group):
    """Who spoke when: stereo calls by channel, mono recordings by voice (speaker embeddings clustered)."""

    ENV_PREFIX: ClassVar[str] = "diarization_"
    mode: Literal["auto", "on", "off"] = Field(
        default="auto",
        alias="diarize",
        description="Find speakers by voice: auto = in mono recordings (a stereo call with one party per channel "
        "is split by channel instead); on = also inside each channel; off = never.",
    )
    speakers: int | None = Field(
        default=None,
        ge=1,
        le=32,
        alias="call_speakers",
        description="Number of speakers when known (2 for a call); unset: found from the voices (the threshold, "
        "then the separation test).",
    )
    threshold: float = Field(
        default=0.5,
        gt=0,
        lt=2,
        description="Cosine distance between two voices' mean embeddings below which they are one speaker "
        "(when DOCFLOW_CALL_SPEAKERS is unset).",
    )
    separation: float = Field(
        default=2.6,
        ge=0,
        description="When the threshold finds one speaker, the call is still two when splitting its windows in two "
        "gives voices this many times further apart than each window is from its own (one voice split in two: "
        "1.1-2.1 on the corpus; two voices, the most alike included: 3.1-5.5). 0: the threshold alone decides.",
    )
    speaker_model: str = Field(
        default="pkg:resemblyzer",
        alias="speaker_model",
        description="Speaker encoder: pkg:resemblyzer (the GE2E weights of the resemblyzer package, offline) or the "
        "path of such a checkpoint.",
    )
    model: str | None = Field(
        default=None,
        description="A pyannote.audio diarization pipeline (hub id or local path) to use instead of the built-in "
        "one; needs pyannote.audio installed (and HF_TOKEN for gated hub models).",
    )

    @field_validator("speakers", "model", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return _empty_is_none(value)


class ClassifierSettings(_Group):
    """Document classification before extraction, and the route from a class to an extraction schema."""

    ENV_PREFIX: ClassVar[str] = "class_"
    kind: Literal["embedder", "clip", "keywords"] = Field(
        default="embedder",
        alias="classifier",
        description="How documents are classified before extraction: embedder (an image backbone with example images "
        "per label; offline default), clip (open_clip zero-shot prompts, plus examples if any), or keywords (a rule "
        "on the page text, no model).",
    )
    clip_model: str = Field(
        default="ViT-B-32",
        alias="clip_model",
        description="open_clip architecture (e.g. ViT-B-32), hf-hub:org/repo, local-dir:/path, or a model config "
        ".json file.",
    )
    clip_pretrained: str | None = Field(
        default="laion2b_s34b_b79k",
        alias="clip_pretrained",
        description="open_clip weights: a pretrained tag or a checkpoint file. Empty: random weights (tests only).",
    )
    image_embedder: str = Field(
        default="efficientnet_lite0",
        alias="image_embedder",
        description="timm architecture for DOCFLOW_CLASSIFIER=embedder.",
    )
    image_embedder_weights: str | None = Field(
        default="pkg:efficientnet-lite0",
        alias="image_embedder_weights",
        description="Its weights: pkg:efficientnet-lite0 (installed from a package, offline), a checkpoint file, or "
        "hub (timm's pretrained download). Empty: random weights (tests only).",
    )
    labels: dict[str, list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_CLASS_LABELS),
        description="JSON: label -> descriptions used in the zero-shot prompts, e.g. "
        '{"invoice": ["an invoice", "a bill"], "photo": ["a photo"]}.',
    )
    templates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CLASS_TEMPLATES),
        description="JSON list of prompt templates; {} becomes each description (prompt ensembling).",
    )
    routes: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_CLASS_ROUTES),
        description="JSON: label -> extraction schema (invoice, receipt, generic) or none (no extraction).",
    )
    examples: Path | None = Field(
        default_factory=lambda: SHIPPED_CLASS_EXAMPLES,
        description="Folder with a subfolder of example images per label (few-shot prototypes). Default: "
        "infra/class-examples of this checkout. Empty: none.",
    )
    learned_examples: Path | None = Field(
        default=Path(".docflow/class-examples"),
        description="Folder where pages whose class a reviewer corrected are kept, a subfolder per label (with a "
        ".json beside each image saying who, when and from which item): from the next run each is an exemplar of its "
        "label (a page close to it is close to the label). Empty: corrections teach nothing.",
    )
    example_weight: float = Field(
        default=0.5, ge=0, le=1, description="With clip, the share of the example prototype in a label's prototype."
    )
    logit_scale: float | None = Field(
        default=None, gt=0, description="Softmax sharpness; unset: the CLIP model's own, or 20 for an embedder."
    )
    pages: Literal["first", "all"] = Field(
        default="first",
        alias="classify_pages",
        description="Classify a PDF by its first page, or by all pages (mean probability).",
    )
    batch_size: int = Field(
        default=CLASSIFY_BATCH_SIZE,
        ge=1,
        le=1024,
        alias="classify_batch_size",
        description="Images encoded together.",
    )
    review_min_probability: float = Field(
        default=0.5,
        ge=0,
        le=1,
        alias="review_min_class_probability",
        description="Documents whose top label is less probable go to review.",
    )
    text_sharpness: float = Field(
        default=2.0,
        ge=0,
        alias="class_text_sharpness",
        description="How much the page's words count: each cue word of a label (TOTAL, CASH, CHANGE for a receipt; "
        "BILL TO, DUE DATE for an invoice; tasks/classify/words.py) multiplies its odds by e^this. 0: the image "
        "alone decides. Pages without a text layer are read by OCR first.",
    )
    image_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        alias="class_image_weight",
        description="The exponent on the image classifier's probabilities when they are multiplied with the words' "
        "(1: full weight; lower: the words count for more). Chosen on the labelled corpus with bench/classify.py.",
    )
    review_min_margin: float = Field(
        default=0.1,
        ge=0,
        le=1,
        alias="review_min_class_margin",
        description="Documents whose top two labels are closer than this go to review.",
    )

    @field_validator("clip_pretrained", "image_embedder_weights", "examples", "learned_examples", mode="before")
    @classmethod
    def _empty(cls, value: object) -> object:
        return _empty_is_none(value)

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: list[str]) -> list[str]:
        if not value or any("{}" not in t for t in value):
            raise ValueError("give at least one template, each with {} where the description goes")
        return value

    @model_validator(mode="after")
    def _check_routes(self) -> ClassifierSettings:
        from schemas.documents import SCHEMAS

        if len(self.labels) < 2:
            raise ValueError("DOCFLOW_CLASS_LABELS needs at least two labels")
        unrouted = [label for label in self.labels if label not in self.routes]
        if unrouted:
            raise ValueError(f"DOCFLOW_CLASS_ROUTES has no route for {', '.join(unrouted)}")
        known = {*SCHEMAS, "none"}
        bad = {label: r for label, r in self.routes.items() if r not in known}
        if bad:
            raise ValueError(f"DOCFLOW_CLASS_ROUTES: unknown schema(s) {bad}; use one of {', '.join(sorted(known))}")
        return self

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.labels)

    def route(self, label: str) -> str | None:
        """The extraction schema a label goes to; None: no extraction (e.g. photos)."""
        schema = self.routes.get(label, "none")
        return None if schema == "none" else schema


class ExtractionSettings(_Group):
    """Structured JSON extraction with a constrained generator."""

    ENV_PREFIX: ClassVar[str] = "extract_"
    enabled: bool = Field(
        default=True, alias="extract", description="Extract structured JSON from documents after preprocessing."
    )
    backend: Literal["auto", "vlm", "text"] = Field(
        default="auto",
        description="vlm (a vision-language model reads the page images), text (OCR, then a text LLM), or auto: vlm "
        "when DOCFLOW_VLM_MODEL is set, text otherwise.",
    )
    vlm_model: str | None = Field(
        default=None,
        alias="vlm_model",
        description="Vision-language model (Qwen2-VL / Qwen2.5-VL) by hub id or local path, for the vlm backend; with "
        "DOCFLOW_LLM_SERVER_URL, the name the server serves it under.",
    )
    text_llm_model: str = Field(
        default="pkg:qwen2.5-coder-0.5b",
        alias="text_llm_model",
        description="Instruction LLM for the text backend: pkg:qwen2.5-coder-0.5b or pkg:smollm2-135m (offline, "
        "from packages) or any causal LM by hub id or local path (a local .gguf file for llama.cpp); with "
        "DOCFLOW_LLM_SERVER_URL, the name the server serves it under.",
    )
    text_llm_engine: Literal["transformers", "llama.cpp"] = Field(
        default=TEXT_LLM_ENGINE,
        alias="text_llm_engine",
        description="What runs the text LLM: transformers (torch; a pkg: GGUF model converted once) or llama.cpp "
        "(llama-cpp-python, in process: the GGUF as it ships, 4-bit, all cores; needs docflow[llama]). Unused with "
        "DOCFLOW_LLM_SERVER_URL (the server runs the model).",
    )
    schema_name: Literal["auto", "invoice", "receipt", "generic"] = Field(
        default="auto",
        alias="extract_schema",
        description="The schema every document is extracted with, for a bucket of one kind (receipts...); auto: "
        "the classifier's route, or the keyword rule.",
    )
    ocr_engine: Literal["tesseract", "rapidocr"] = Field(
        default="rapidocr",
        alias="ocr_engine",
        description="OCR for pages without a text layer: rapidocr (PP-OCRv6 ONNX models from the rapidocr package) "
        "or tesseract (needs tesseract-ocr installed).",
    )
    ocr_precision: Literal["auto", "f32"] = Field(
        default="auto",
        alias="ocr_precision",
        description="RapidOCR's models on OpenVINO: auto: OpenVINO's own precision for this CPU (bfloat16 where it "
        "computes it natively, AMX or AVX512-BF16: about twice as fast, as accurate on the labelled scans, the text "
        "different here and there; float32 elsewhere); f32: float32 everywhere.",
    )
    vlm_min_pixels: int = Field(
        default=VLM_MIN_PIXELS, ge=28 * 28, alias="vlm_min_pixels", description="Smallest page image the VLM sees."
    )
    batch_size: int = Field(default=4, ge=1, le=64, description="Pages generated together (across documents).")
    max_attempts: int = Field(
        default=1,
        ge=1,
        le=10,
        description="Tries per page before review: a page whose answer fails validation is asked again with the "
        "errors. 1 for the offline 0.5B model (measured: it repeated its rejected answer in 9 of 12 re-prompts, "
        "for 12 % of the extraction time); 2-3 for a larger model.",
    )
    max_new_tokens: int = Field(default=640, ge=32, description="Longest answer per page, in tokens.")
    max_items: int = Field(
        default=0,
        ge=0,
        description="Most list entries (line items, parties...) per page the grammar allows. Every entry costs "
        "generated tokens: 0 (header fields only) keeps a CPU at seconds per page; raise it on a GPU.",
    )
    max_string: int = Field(default=160, ge=8, description="Longest string value the grammar allows.")
    max_pages: int = Field(default=5, ge=1, description="Pages of a document that extraction reads.")
    review_min_confidence: float = Field(
        default=0.0,
        ge=0,
        le=1,
        alias="review_min_confidence",
        description="Valid extractions whose mean field confidence is lower go to review.",
    )
    grounding_review: list[ValueKind] = Field(
        default_factory=lambda: list(ValueKind),
        description="Kinds of value sent to review when the page does not back them: not printed, only part of what "
        "is printed (names, addresses), not the amount printed beside the field's label (totals), or empty though "
        "such documents print it (comma-separated, from: "
        + ", ".join(ValueKind)
        + "; free text is only checked for letters the page never prints); empty: such values only lower "
        "the confidence.",
    )

    @field_validator("grounding_review", mode="before")
    @classmethod
    def _split_kinds(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_backend(self) -> ExtractionSettings:
        if self.backend == "vlm" and not self.vlm_model:
            raise ValueError("DOCFLOW_EXTRACT_BACKEND=vlm needs DOCFLOW_VLM_MODEL (a hub id or a local path)")
        return self

    @property
    def resolved_backend(self) -> Literal["vlm", "text"]:
        if self.backend == "auto":
            return "vlm" if self.vlm_model else "text"
        return self.backend

    @property
    def model(self) -> str:
        """The model the chosen backend loads."""
        if self.resolved_backend == "vlm":
            assert self.vlm_model is not None  # checked above
            return self.vlm_model
        return self.text_llm_model


class LLMServerSettings(_Group):
    """An OpenAI-compatible inference server (vLLM, SGLang, llama.cpp's llama-server, Ollama, a hosted API) that runs
    the extraction model instead of this process. The model name sent is the backend's own model setting
    (DOCFLOW_VLM_MODEL or DOCFLOW_TEXT_LLM_MODEL): the name the server serves it under."""

    ENV_PREFIX: ClassVar[str] = "llm_server_"
    url: str | None = Field(
        default=None,
        description="Base URL of the server's OpenAI API, ending in /v1 (e.g. http://127.0.0.1:8000/v1): extraction "
        "sends its requests there (JSON schema in response_format). Unset: the model runs in process.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The server's API key, sent as a bearer token; never printed, logged or stored. Unset: none sent.",
    )
    in_flight: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Requests in flight at once (pages sent per generate() call): enough to keep a batching "
        "server (vLLM, SGLang) busy; about its number of parallel slots for llama-server.",
    )
    timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds one request may take before it counts as a transient fault."
    )

    @field_validator("url", "api_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return _empty_is_none(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r}: give the server's http(s) base URL, e.g. http://127.0.0.1:8000/v1")
        return value


class DeviceSettings(_Group):
    """Where the torch models (classification, extraction) run, and the concurrency limit they share."""

    ENV_PREFIX: ClassVar[str] = "model_"
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", alias="model_device", description="Device for the torch models; auto: CUDA when present."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto",
        alias="model_dtype",
        description="auto: bfloat16 (or float16) on CUDA, float32 on CPU, except the image embedder's vision tower on "
        "OpenVINO: OpenVINO's own precision for the CPU (bfloat16 where it computes it natively, AMX or AVX512-BF16: "
        "1.3x the pages a second here, the same classes on the corpus). float32: float32 everywhere.",
    )
    cache_dir: Path = Field(
        default_factory=model_cache_dir,
        alias="model_cache_dir",
        description="Where package-installed weights are unpacked once (e.g. the joined Whisper base model).",
    )
    concurrency_limit: str | None = Field(
        default=None,
        description="Prefect global concurrency limit every model stage holds a slot of; unset: named after the "
        "device and the machine (docflow-gpu-0-HOST, docflow-cpu-HOST), so runs sharing a machine never run models "
        "at once on one device, and other machines never wait for it.",
    )
    slots: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Slots of that limit when docflow creates it (first use); an existing limit is left as set "
        "(prefect gcl update).",
    )


class ReviewSettings(_Group):
    """The human-review queue: the audit sample of confident results, and where review items go."""

    ENV_PREFIX: ClassVar[str] = "review_"
    audit_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of confident results sent to review anyway, as a check on the checks (0.02 = 2%).",
    )
    audit_seed: int = Field(
        default=0, description="Seed of the audit sample: the same seed picks the same objects, run after run."
    )
    url_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Lifetime of the presigned S3 links in Label Studio tasks (S3 allows at most 7 days).",
    )
    export_to: str | None = Field(
        default=None,
        description="Where the review-export flow writes review files when Label Studio is not configured: a "
        "directory or s3://bucket/prefix; unset: no file.",
    )
    local_files_root: Path | None = Field(
        default=None,
        description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT, when it serves docflow's local derived files (pages) "
        "and recordings to reviewers; unset: local files cannot be pushed (an S3 derived store needs nothing).",
    )
    label_studio_project: int | None = Field(
        default=None,
        description="Label Studio project the review-export flow pushes to and pulls from (with LABEL_STUDIO_URL "
        "and LABEL_STUDIO_API_KEY).",
    )

    @field_validator("export_to", "local_files_root", "label_studio_project", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return _empty_is_none(value)


class LabelStudioSettings(_Group):
    """Label Studio, where reviewers answer review items: its own variables, read without the DOCFLOW_ prefix."""

    ENV_PREFIX: ClassVar[str] = "label_studio_"
    DOCFLOW_PREFIX: ClassVar[bool] = False
    url: str | None = Field(default=None, description="Label Studio's address, e.g. http://127.0.0.1:8080.")
    api_key: SecretStr | None = Field(
        default=None,
        description="A personal access token from Label Studio's Account & Settings page (or a legacy token); "
        "never printed.",
    )

    @field_validator("url", "api_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return _empty_is_none(value)


class DeploySettings(_Group):
    """How `docflow deploy` declares the deployments (infra/prefect.yaml): the work pool and the schedules; and
    whether runs fan out over the pool's workers."""

    ENV_PREFIX: ClassVar[str] = ""
    work_pool: str = Field(
        default="docflow", min_length=1, description="Prefect work pool (process type) the deployments run on."
    )
    nightly_cron: str = Field(default="0 2 * * *", description="When docflow-nightly runs (cron, in DOCFLOW_TIMEZONE).")
    review_export_cron: str = Field(
        default="0 6 * * *", description="When docflow-review-export runs: after the nightly run (cron)."
    )
    timezone: str = Field(default="UTC", description="Time zone of the schedules (IANA name, e.g. Europe/Berlin).")
    fan_out: bool = Field(
        default=False,
        description="Split a nightly or backfill run into shards, each a run of the docflow-shard deployment that any "
        "worker on the pool takes (needs `docflow deploy` on a Prefect server). Off: the run does everything itself.",
    )
    heartbeat_s: int = Field(
        default=60,
        ge=30,
        le=3600,
        description="Seconds between the heartbeats of docflow's deployment runs (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, "
        "set on each deployment); a run silent for three of them (its worker died) is marked Crashed.",
    )
    shard_size: int = Field(default=200, ge=1, le=100_000, description="Objects per shard when DOCFLOW_FAN_OUT is on.")

    @field_validator("nightly_cron", "review_export_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule  # Prefect's own check, as the server applies it

        try:
            CronSchedule(cron=value)
        except ValueError:
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (IANA name, e.g. Europe/Berlin)") from None
        return value


class StackSettings(_Group):
    """`docflow stack`: where the local stack keeps its state and the ports it listens on (127.0.0.1)."""

    ENV_PREFIX: ClassVar[str] = "stack_"
    dir: Path = Field(default=Path(".docflow/stack"), description="State of the local stack: data, logs, PIDs.")
    pg_port: int = Field(default=55432, ge=1, le=65535, description="The stack's PostgreSQL port.")
    s3_port: int = Field(default=8333, ge=1, le=65535, description="The stack's S3 (SeaweedFS) port.")
    prefect_port: int = Field(default=4200, ge=1, le=65535, description="The stack's Prefect server (UI and API) port.")
    bucket: str = Field(
        default="docflow-inbox", min_length=3, description="The stack's inbox bucket (and <bucket>-derived)."
    )


class RunnerSettings(_Group):
    """How a run is carried out: windows, tasks, retries, claims."""

    task_runner: Literal["threads", "processes"] = Field(
        default="threads",
        description="Prefect task runner of the preprocessing tasks: threads (default) or processes (CPU work "
        "outside the flow's process). Model stages always run in the flow's process: one model copy per run.",
    )
    window_size: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="Most objects claimed and carried through the stages together (a window): preprocessed in "
        "parallel, then fed to each model stage at once, so forward batches fill across documents.",
    )
    window_pages: float = Field(
        default=64.0,
        gt=0,
        description="Most work in one window, in pages: a recording counts 2 per minute; before an object's first "
        "run its size guesses it (tasks/run/windows.py). Small images travel in large windows, a long PDF in its own.",
    )
    windows_in_flight: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Windows in progress at once: the next window is preprocessed while the models work on this one.",
    )
    batch_size: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Most objects per preprocessing task (one Prefect task run, one transaction); a window is split "
        "among the workers in tasks of up to this many.",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Preprocessing tasks running at once (the size of their task runner's pool). Unset: twice the "
        "cores this process may use, at most 8 (a task waits at times: for the database, a file, an OCR stream).",
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries of every task after a store, database or Label Studio fault (never for a broken file).",
    )
    retry_delay_s: float = Field(default=2.0, ge=0, description="First retry delay; doubles on each retry.")
    preprocess_timeout_s: float = Field(
        default=1800.0, gt=0, description="Time limit of one preprocessing task (Prefect timeout_seconds)."
    )
    model_timeout_s: float = Field(
        default=3600.0, gt=0, description="Time limit of one model stage task, waiting for its slot included."
    )
    claim_ttl_s: int = Field(
        default=900,
        ge=1,
        description="A 'processing' claim not renewed for this long is abandoned (crashed worker) and retaken. A "
        "working run renews its claims every third of it (at most every 60 s).",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Tries at one object whose processing never finished (the worker was killed, ran out of "
        "memory...); the next run then fails it as 'gave up after N attempts'.",
    )

    @property
    def claim_heartbeat_s(self) -> float:
        """How often a working run renews its claims."""
        return max(0.5, min(self.claim_ttl_s / 3, 60.0))

    @property
    def claim_stale_after_s(self) -> float:
        """A claim not renewed for two renewal periods belongs to a run that died."""
        return 2 * self.claim_heartbeat_s

    @property
    def pool_size(self) -> int:
        """Preprocessing tasks at once: DOCFLOW_WORKERS, else twice the usable cores, at most 8. Measured on 2 cores
        (500 small images, end to end): 2 tasks 33.2 s, 3 tasks 31.4 s, 4 tasks 30.8 s; more than 8 threads have
        not been measured against one GIL."""
        return self.workers or min(8, 2 * usable_cores())


GROUPS: dict[str, type[_Group]] = {
    "render": RenderSettings,
    "audio": AudioSettings,
    "whisper": WhisperSettings,
    "diarization": DiarizationSettings,
    "classifier": ClassifierSettings,
    "extraction": ExtractionSettings,
    "llm_server": LLMServerSettings,
    "review": ReviewSettings,
    "label_studio": LabelStudioSettings,
    "deploy": DeploySettings,
    "stack": StackSettings,
    "device": DeviceSettings,
    "runner": RunnerSettings,
}


def _env_key(group: type[_Group], name: str, info: FieldInfo) -> str:
    return info.alias or f"{group.ENV_PREFIX}{name}"


def _group_fields() -> Iterator[tuple[str, str, str, FieldInfo]]:
    """(flat key, group, field name, field) for every grouped setting."""
    for group_name, group in GROUPS.items():
        for name, info in group.model_fields.items():
            yield _env_key(group, name, info), group_name, name, info


_COMMA_SEPARATED = {"source", "extract_grounding_review"}


def _parses_json(key: str, info: FieldInfo) -> bool:
    """dict/list settings come as JSON, except the comma-separated ones."""
    if key in _COMMA_SEPARATED:
        return False
    origin = get_origin(info.annotation)
    return origin in (dict, list) or any(get_origin(a) in (dict, list) for a in get_args(info.annotation))


class _FlatEnvironment(PydanticBaseSettingsSource):
    """DOCFLOW_<KEY> variables (and Label Studio's) as flat keys (JSON decoded where the field is a dict or list);
    Settings routes each key into its group."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ does all the work

    def __call__(self) -> dict[str, Any]:
        env = {k.upper(): v for k, v in os.environ.items()}
        fields: list[tuple[str, FieldInfo]] = [(key, info) for key, _, _, info in _group_fields()]
        fields += [(name, info) for name, info in Settings.model_fields.items() if name not in GROUPS]
        values: dict[str, Any] = {}
        for key, info in fields:
            raw = env.get(env_name(key))
            if raw is None:
                continue
            if _parses_json(key, info):
                try:
                    values[key] = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"invalid settings: {env_name(key)}: not valid JSON: {exc}") from None
            else:
                values[key] = raw
        return values


_ROUTES = {key: (group, name) for key, group, name, _ in _group_fields()}
_KEYS = {route: key for key, route in _ROUTES.items()}


class Settings(BaseSettings):
    """docflow configuration: where objects come from and go, and one frozen group per concern."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str = Field(
        default="sqlite:///docflow.db",
        description="SQLAlchemy URL. SQLite file by default; postgresql+psycopg://user:pw@host/db for real use.",
    )
    source: list[str] = Field(
        default_factory=lambda: ["./inbox"],
        description="Where inputs come from: s3://bucket/prefix or a local directory; several, comma-separated.",
    )
    derived_store: str = Field(
        default=".docflow/derived",
        description="Where rendered pages and other derived files go: a local directory or s3://bucket/prefix.",
    )
    temp_dir: Path | None = Field(default=None, description="Scratch space for downloads; system temp if unset.")

    render: RenderSettings = Field(default_factory=RenderSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    whisper: WhisperSettings = Field(default_factory=WhisperSettings)
    diarization: DiarizationSettings = Field(default_factory=DiarizationSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    llm_server: LLMServerSettings = Field(default_factory=LLMServerSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    device: DeviceSettings = Field(default_factory=DeviceSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _FlatEnvironment(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _route_flat_keys(cls, data: Any) -> Any:
        """`pdf_dpi=100` (a keyword or DOCFLOW_PDF_DPI) lands in render; explicit groups are merged under it."""
        if not isinstance(data, dict):
            return data
        routed: dict[str, Any] = {}
        for key, value in data.items():
            if key in _ROUTES:
                group, name = _ROUTES[key]
                existing = routed.setdefault(group, {})
                if isinstance(existing, dict):
                    existing[name] = value
            elif key in GROUPS and isinstance(value, dict):
                routed.setdefault(key, {}).update(value)
            else:
                routed[key] = value
        return routed

    @field_validator("source", mode="before")
    @classmethod
    def _parse_sources(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
        return value

    @field_validator("source")
    @classmethod
    def _check_sources(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one source is required")
        return [_check_location(v) for v in value]

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


def env_name(key: str) -> str:
    """The variable of a flat key: DOCFLOW_<KEY>, or <KEY> in a group of another program's variables."""
    route = _ROUTES.get(key)
    if route is not None and not GROUPS[route[0]].DOCFLOW_PREFIX:
        return key.upper()
    return f"{ENV_PREFIX}{key.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus explicit overrides (flat keys, as the environment names them);
    turn validation errors into one clear message."""
    # Any, not object: the values are whatever the caller had, and Settings validates (and coerces) each one.
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            loc = [str(part) for part in err["loc"]]
            key = loc[0] if loc else None
            if len(loc) > 1 and loc[0] in GROUPS:  # a grouped field: name it by its variable
                key = _KEYS.get((loc[0], loc[1]), loc[0])
            problems.append(f"{env_name(key)}: {message}" if key and key not in GROUPS else message)
        if len(problems) == 1:
            raise ConfigError(f"invalid settings: {problems[0]}") from None
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None


def _default_text(key: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if isinstance(value, Path) and value == SHIPPED_CLASS_EXAMPLES:
        return "infra/class-examples"
    if isinstance(value, Path) and str(value).startswith(str(Path.home())):
        return "~/" + str(value.relative_to(Path.home()))
    if key in _COMMA_SEPARATED and isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def environment_names() -> set[str]:
    """Every variable docflow reads: the DOCFLOW_* ones (infra files are checked against them) and Label Studio's."""
    keys = [key for key, *_ in _group_fields()] + [name for name in Settings.model_fields if name not in GROUPS]
    return {env_name(key) for key in keys}


def settings_table() -> str:
    """The table of docs/settings.md, from the declarations above (tests/unit/test_readme.py keeps it in step)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]

    def row(key: str, info: FieldInfo) -> str:
        text = (info.description or "").replace("|", "\\|")
        return f"| `{env_name(key)}` | `{_default_text(key, info)}` | {text} |"

    for name, info in Settings.model_fields.items():
        if name not in GROUPS:
            lines.append(row(name, info))
    for group_name, group in GROUPS.items():
        lines.append(f"| **{group_name}** | | {group.__doc__ or ''} |")
        for name, info in group.model_fields.items():
            lines.append(row(_env_key(group, name, info), info))
    return "\n".join(lines)


_TABLE_START = "<!-- settings-table:start"
_TABLE_END = "<!-- settings-table:end -->"


def with_settings_table(page: str) -> str:
    """`page` (docs/settings.md) with the generated table between its settings-table markers."""
    head, _, rest = page.partition(_TABLE_START)
    marker_line, _, rest = rest.partition("\n")
    _, _, tail = rest.partition(_TABLE_END)
    return f"{head}{_TABLE_START}{marker_line}\n{settings_table()}\n{_TABLE_END}{tail}"
