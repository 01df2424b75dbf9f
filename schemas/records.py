"""Records passed between stages. Every item ends in an ObjectStatus; errors are data, not exceptions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ObjectKind(StrEnum):
    PDF = "pdf"
    IMAGE = "image"
    AUDIO = "audio"
    UNKNOWN = "unknown"


class ObjectStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    REVIEW = "review"

    @property
    def is_terminal(self) -> bool:
        return self in (ObjectStatus.DONE, ObjectStatus.FAILED, ObjectStatus.REVIEW)


class RunKind(StrEnum):
    NIGHTLY = "nightly"
    BACKFILL = "backfill"
    SHARD = "shard"  # a share of a fanned-out nightly or backfill run, on whichever worker took it


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class StageError(_Frozen):
    """Why an item could not be processed, in words a person understands."""

    stage: str
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


class ReviewReason(_Frozen):
    """Why a person should look at an object that was processed (its status is then `review`): the stage that
    raised the doubt, a stable code to sort and filter on, the message a person reads, and `value`, the measured
    figure that crossed a threshold (a probability, a margin, a mean log-probability, a count), when there is one."""

    stage: str
    code: str
    message: str
    value: float | str | None = None
    field: str | None = None  # the value's path (total, line_items[0].amount) when the doubt is about one value

    def __str__(self) -> str:
        return self.message


class BlobInfo(_Frozen):
    """One object as a store lists it, before anything is downloaded."""

    source: str = Field(description="The store's URI: s3://bucket or file:///abs/dir")
    key: str
    version: str = Field(description="S3 VersionId or ETag, or size+mtime for a local file")
    size: int
    last_modified: datetime
    problem: StageError | None = Field(
        default=None, description="Why the entry cannot be read as an object (e.g. a FIFO): it is recorded as failed"
    )


class DocumentPage(_Frozen):
    """One page image of a document, from rendering (PDF) or normalising (image) to the models and the database.
    `path` and `text` live only while the object is in flight; `uri` is where the page is kept."""

    page_number: int = Field(ge=1)
    width: int
    height: int
    dpi: float | None = Field(default=None, description="Effective render DPI; None for raster inputs")
    uri: str | None = Field(default=None, description="Where the page image is stored (derived BlobStore)")
    path: Path | None = Field(default=None, exclude=True, description="The local image file while in flight")
    text: str = Field(default="", exclude=True, description="The page's text layer or OCR text, when read")


class SpeechSegment(_Frozen):
    start_s: float
    end_s: float


class PdfSummary(_Frozen):
    page_count: int
    pages_rendered: int


class AudioSummary(_Frozen):
    duration_s: float
    speech_s: float
    speech_ratio: float
    source_sample_rate: int | None = None
    channels: int | None = None


class Word(_Frozen):
    start_s: float
    end_s: float
    word: str
    probability: float


class TranscriptSegment(_Frozen):
    start_s: float
    end_s: float
    text: str
    speaker: str = Field(
        description="SPEAKER_0, SPEAKER_1, ... in the order they first speak: the left/right channel of a stereo "
        "call, or the voices found in a mono recording"
    )
    channel: int | None = None
    language: str | None = None
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    flagged: str | None = Field(default=None, description="Why this segment is suspect (kept, but sent to review)")
    words: tuple[Word, ...] | None = None


class Transcript(_Frozen):
    model_id: str
    model_version: str
    language: str | None
    language_probability: float | None
    duration_s: float
    speech_s: float
    no_speech: bool
    avg_logprob: float | None
    channels_split: bool
    segments: tuple[TranscriptSegment, ...]
    dropped_segments: int = 0
    languages: tuple[str, ...] = Field(default=(), description="Every language spoken, most spoken first")

    @property
    def text(self) -> str:
        """The words in time order (a call's dialogue as it went)."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def speakers(self) -> tuple[SpeakerSummary, ...]:
        """Per speaker: talk time, words, first and last time heard, in the order they first speak."""
        summaries: dict[str, SpeakerSummary] = {}
        for seg in self.segments:
            words = len(seg.text.split())
            if (known := summaries.get(seg.speaker)) is None:
                summaries[seg.speaker] = SpeakerSummary(
                    speaker=seg.speaker,
                    channel=seg.channel,
                    talk_s=round(seg.end_s - seg.start_s, 3),
                    words=words,
                    first_s=seg.start_s,
                    last_s=seg.end_s,
                )
            else:
                summaries[seg.speaker] = known.model_copy(
                    update={
                        "talk_s": round(known.talk_s + seg.end_s - seg.start_s, 3),
                        "words": known.words + words,
                        "last_s": max(known.last_s, seg.end_s),
                    }
                )
        return tuple(summaries.values())


class SpeakerSummary(_Frozen):
    speaker: str
    channel: int | None
    talk_s: float
    words: int
    first_s: float
    last_s: float


class Extraction(_Frozen):
    """Structured data pulled from a document, valid against `schema_id`, or the reason it is not."""

    schema_id: str
    backend: str
    model_id: str
    data: dict[str, Any] | None
    valid: bool
    attempts: int
    errors: tuple[str, ...] = ()
    field_confidence: dict[str, float] = Field(default_factory=dict)
    field_pages: dict[str, list[int]] = Field(default_factory=dict)
    field_grounding: dict[str, str] = Field(
        default_factory=dict,
        description="Per value path (total, line_items[0].amount): grounded (printed on the page), derived "
        "(sum or difference of printed amounts), completed (an address the model gave only part of, taken whole "
        "from the page), partial, off_label, missing, ungrounded (not found: read wrong or invented) or unchecked",
    )
    pages: tuple[int, ...] = ()
    raw_output: str = ""


class PageLabel(_Frozen):
    page_number: int
    label: str
    probability: float


class Classification(_Frozen):
    """What a document is (by image classification) and which extraction schema it was routed to."""

    label: str
    probability: float = Field(ge=0, le=1, description="Softmax probability of the top label")
    margin: float = Field(ge=0, le=1, description="Top probability minus the runner-up's")
    runner_up: str | None = None
    scores: dict[str, float] = Field(default_factory=dict, description="Probability of every label")
    route: str | None = Field(description="Extraction schema name, or None: no extraction (e.g. photos)")
    model_id: str
    pages: tuple[PageLabel, ...] = ()
    encoded: int = Field(default=0, description="Page images encoded by the model (the rest came from the cache)")


class ObjectResult(_Frozen):
    """The outcome of processing one object: either `error` is set or the artifacts are."""

    kind: ObjectKind
    sha256: str
    detected_type: str | None = Field(default=None, description="What the bytes are, e.g. 'PDF document'")
    pages: tuple[DocumentPage, ...] = ()
    page_count: int | None = Field(
        default=None, description="Pages in the source (PDF pages, image frames), including any beyond the page limit"
    )
    segments: tuple[SpeechSegment, ...] = ()
    audio: AudioSummary | None = None
    pdf: PdfSummary | None = None
    transcript: Transcript | None = None
    extraction: Extraction | None = None
    classification: Classification | None = None
    warnings: tuple[str, ...] = ()
    review_reasons: tuple[ReviewReason, ...] = ()
    error: StageError | None = None

    @property
    def status(self) -> ObjectStatus:
        if self.error:
            return ObjectStatus.FAILED
        return ObjectStatus.REVIEW if self.review_reasons else ObjectStatus.DONE


class FailureRecord(_Frozen):
    key: str
    source: str
    kind: str | None
    code: str | None
    error: str


class DiscoveryRequest(_Frozen):
    """What a run should look at and which objects it may (re)process."""

    sources: tuple[str, ...]
    prefixes: tuple[str, ...] = ("",)
    since: datetime | None = None
    until: datetime | None = None
    kinds: tuple[ObjectKind, ...] = ()
    force: bool = False
    retry_failed: bool = False
    limit: int | None = Field(default=None, ge=1)


class DiscoveryResult(_Frozen):
    listed: int
    new: int
    object_ids: tuple[int, ...]
    costs: tuple[float, ...] = Field(
        default=(), description="The expected work of each of object_ids, in pages (tasks/run/windows.py)"
    )
    failed: int = Field(default=0, description="Listed entries recorded as failed without processing (e.g. a FIFO)")
    warnings: tuple[str, ...] = Field(default=(), description="Listing problems that belong to no object row")


class RecordOutcome(_Frozen):
    """What recording finished objects came to."""

    recorded: int
    by_status: dict[str, int]
    lost_claims: int = Field(default=0, description="Results dropped because another run took the object over")


class StageTotals(_Frozen):
    """One stage over a whole run: how long it held its device and what it got through."""

    stage: str
    calls: int
    seconds: float
    items: int
    pages: int
    audio_s: float
    batches: int = Field(description="Model forward batches")
    batch_rows: int = Field(description="Rows in those batches (pages, or images encoded)")
    batch_capacity: int = Field(description="Configured rows per forward batch")
    max_batch_owners: int = Field(default=0, description="Most objects whose pages shared one forward batch")

    @property
    def mean_fill(self) -> float | None:
        """Mean forward-batch fill: rows per batch over the configured batch size."""
        if not self.batches or not self.batch_capacity:
            return None
        return self.batch_rows / (self.batches * self.batch_capacity)


class ReviewOpened(_Frozen):
    stage: str
    reason: str  # a reason code, or `audit` for the audit sample
    items: int


class ReviewQueueSummary(_Frozen):
    """The review queue as a run leaves it: what this run opened, what waits, and for how long."""

    opened: tuple[ReviewOpened, ...] = ()
    backlog: dict[str, int] = Field(default_factory=dict, description="Waiting items (open or exported) per stage")
    oldest_open_at: datetime | None = None
    oldest_open_key: str | None = None


class ShardSummary(_Frozen):
    """One shard of a fanned-out run: which worker took it, what it got through, how its flow run ended."""

    name: str
    run_id: str
    objects: int
    processed: int = 0
    worker: str | None = None
    state: str = Field(description="The shard's final Prefect state: Completed, Failed, Crashed, Cancelled...")
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "Completed"


class RunSummary(_Frozen):
    run_id: str
    kind: RunKind
    status: str
    started_at: datetime
    finished_at: datetime | None
    listed: int
    planned: int
    processed: int
    by_status: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    failures: tuple[FailureRecord, ...]
    failed_windows: int = Field(default=0, description="Windows whose stages failed after retries")
    error: str | None = None
    warnings: tuple[str, ...] = ()
    stale_claims: int = Field(
        default=0, description="Objects still claimed by a run that stopped renewing its claims (crashed)"
    )
    stages: tuple[StageTotals, ...] = ()
    review: ReviewQueueSummary | None = None
    shards: tuple[ShardSummary, ...] = ()
    preparation_s: dict[str, float] = Field(
        default_factory=dict, description="Per model stage: its CPU preparation outside the device (OCR), seconds"
    )
    planning_s: float | None = Field(
        default=None, description="From the run's start to its first window: checks, schema, discovery"
    )
    orchestration_s: float | None = Field(
        default=None,
        description="Time of the windows' part of the run in which no stage worked: task runs, claims, result "
        "writes, hand-offs (unknown for a fanned-out run)",
    )
