"""Typed SQLAlchemy 2 tables. Natural keys carry unique constraints so upserts make re-runs harmless."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# The review items waiting for a person (schemas.review's open and exported): the queue's partial index.
REVIEW_WAITING_SQL = "status IN ('open', 'exported')"
MAX_KEY_LENGTH = 1024  # longest object key a row holds (S3's own limit is 1024 bytes)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class SourceObject(Base):
    """One version of one object in a source store, and where it stands in the pipeline."""

    __tablename__ = "source_objects"
    __table_args__ = (
        UniqueConstraint("source", "key", "version", name="uq_source_objects_natural_key"),
        Index("ix_source_objects_status", "status"),
        Index("ix_source_objects_source_key", "source", "key"),
        # `docflow show KEY` (a key in any source); the newest processed first (status, `export results --since`)
        Index("ix_source_objects_key", "key"),
        Index("ix_source_objects_processed_at", "processed_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(512))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    version: Mapped[str] = mapped_column(String(256))
    size: Mapped[int] = mapped_column(BigInteger)
    last_modified: Mapped[datetime]
    sha256: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(16))
    detected_type: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_stage: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    review_reason: Mapped[str | None] = mapped_column(Text)  # the reasons' messages joined with '; ', for people
    review_reasons: Mapped[list[Any] | None]  # the same reasons, structured: [{stage, code, message, value}]
    warnings: Mapped[list[Any] | None]
    page_count: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[float | None] = mapped_column(Float)
    speech_ratio: Mapped[float | None] = mapped_column(Float)
    pipeline_version: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    superseded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    pages: Mapped[list[Page]] = relationship(
        back_populates="source_object", cascade="all, delete-orphan", order_by="Page.page_number"
    )
    speech_segments: Mapped[list[SpeechSegmentRow]] = relationship(
        back_populates="source_object", cascade="all, delete-orphan", order_by="SpeechSegmentRow.segment_index"
    )
    transcripts: Mapped[list[TranscriptRow]] = relationship(
        back_populates="source_object", cascade="all, delete-orphan"
    )
    extractions: Mapped[list[ExtractionRow]] = relationship(
        back_populates="source_object", cascade="all, delete-orphan"
    )
    classification: Mapped[ClassificationRow | None] = relationship(
        back_populates="source_object", cascade="all, delete-orphan"
    )


class Page(Base):
    """A rendered page (or a resized raster image) ready for the model stages."""

    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("object_id", "page_number", name="uq_pages_object_page"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"))
    page_number: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(String(2048))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    dpi: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(64))  # set when every page is classified
    label_probability: Mapped[float | None] = mapped_column(Float)

    source_object: Mapped[SourceObject] = relationship(back_populates="pages")


class SpeechSegmentRow(Base):
    """A stretch of speech found by voice-activity detection."""

    __tablename__ = "speech_segments"
    __table_args__ = (UniqueConstraint("object_id", "segment_index", name="uq_speech_segments_object_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"))
    segment_index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)

    source_object: Mapped[SourceObject] = relationship(back_populates="speech_segments")


class TranscriptRow(Base):
    """One recording's transcript by one model version (re-runs replace it; another model adds a row)."""

    __tablename__ = "transcripts"
    __table_args__ = (UniqueConstraint("object_id", "model_id", "model_version", name="uq_transcripts_object_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(String(512))
    model_version: Mapped[str] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(16))
    language_probability: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    speech_s: Mapped[float] = mapped_column(Float)
    no_speech: Mapped[bool]
    avg_logprob: Mapped[float | None] = mapped_column(Float)
    channels_split: Mapped[bool]
    dropped_segments: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text)
    speakers: Mapped[list[Any] | None]  # per speaker: talk time, words, first and last time heard
    languages: Mapped[list[Any] | None]  # every language spoken, most first
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    source_object: Mapped[SourceObject] = relationship(back_populates="transcripts")
    segments: Mapped[list[TranscriptSegmentRow]] = relationship(
        back_populates="transcript", cascade="all, delete-orphan", order_by="TranscriptSegmentRow.segment_index"
    )


class TranscriptSegmentRow(Base):
    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("transcript_id", "segment_index", name="uq_transcript_segments_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transcript_id: Mapped[int] = mapped_column(ForeignKey("transcripts.id", ondelete="CASCADE"))
    segment_index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    speaker: Mapped[str] = mapped_column(String(32))
    channel: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    avg_logprob: Mapped[float] = mapped_column(Float)
    no_speech_prob: Mapped[float] = mapped_column(Float)
    compression_ratio: Mapped[float] = mapped_column(Float)
    flagged: Mapped[str | None] = mapped_column(Text)
    words: Mapped[list[Any] | None]

    transcript: Mapped[TranscriptRow] = relationship(back_populates="segments")


class ExtractionRow(Base):
    """A document's structured data by one schema version and model (re-runs replace it)."""

    __tablename__ = "extractions"
    __table_args__ = (
        UniqueConstraint("object_id", "schema_id", "model_id", name="uq_extractions_object_schema_model"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"))
    schema_id: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str] = mapped_column(String(512))
    data: Mapped[dict[str, Any] | None]
    valid: Mapped[bool]
    attempts: Mapped[int] = mapped_column(Integer)
    errors: Mapped[list[Any] | None]
    field_confidence: Mapped[dict[str, Any] | None]
    field_pages: Mapped[dict[str, Any] | None]
    field_grounding: Mapped[dict[str, Any] | None]
    pages: Mapped[list[Any] | None]
    raw_output: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    source_object: Mapped[SourceObject] = relationship(back_populates="extractions")


class ClassificationRow(Base):
    """What a document is, by image classification, and the extraction schema it was routed to (one per object)."""

    __tablename__ = "classifications"
    __table_args__ = (
        UniqueConstraint("object_id", name="uq_classifications_object"),
        Index("ix_classifications_label", "label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    runner_up: Mapped[str | None] = mapped_column(String(64))
    scores: Mapped[dict[str, Any]]
    route: Mapped[str | None] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(512))
    pages_classified: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    source_object: Mapped[SourceObject] = relationship(back_populates="classification")


class ImageEmbedding(Base):
    """An image's embedding by one model, keyed by the image's content: re-runs and new label sets reuse it."""

    __tablename__ = "image_embeddings"

    content_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One flow run: what it was asked to do and what came of it."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_parent_id", "parent_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(String(64))  # a shard's fanned-out run
    worker: Mapped[str | None] = mapped_column(String(200))  # where a shard ran (worker name, or host:pid)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    discovered: Mapped[int] = mapped_column(Integer, default=0)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[Any] | None]  # listing problems that no object row can hold (e.g. an unreadable folder)


class StageRun(Base):
    """One call of a pipeline stage in a run (a window of objects): when it held its device, what it did. The run
    summary's timings and throughput come from these rows."""

    __tablename__ = "stage_runs"
    __table_args__ = (Index("ix_stage_runs_run_id", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(32))
    window: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    items: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    audio_s: Mapped[float] = mapped_column(Float, default=0.0)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    batch_rows: Mapped[int] = mapped_column(Integer, default=0)
    batch_capacity: Mapped[int] = mapped_column(Integer, default=0)
    max_batch_owners: Mapped[int] = mapped_column(Integer, default=0)


class ReviewItem(Base):
    """One stage's output of one object that a person should check: why (structured reasons, or an audit sample of
    a confident result), what the model said, and what the reviewer made of it. The correction is stored beside
    the model's output, never over it; results and exports use it from then on."""

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_status", "status"),
        Index("ix_review_items_object", "object_id", "stage"),
        # The queue, oldest first (`review list`): only the waiting items, whatever the history's size.
        Index(
            "ix_review_items_waiting",
            "created_at",
            "id",
            postgresql_where=text(REVIEW_WAITING_SQL),
            sqlite_where=text(REVIEW_WAITING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))  # classification, extraction, transcription
    schema_id: Mapped[str] = mapped_column(String(64))  # what a correction is validated against
    reasons: Mapped[list[Any]]  # [{stage, code, message, value, field}]; empty for an audit sample
    audit: Mapped[bool] = mapped_column(default=False)
    model_output: Mapped[dict[str, Any]]
    model_id: Mapped[str] = mapped_column(String(512))
    score: Mapped[float | None] = mapped_column(Float)  # the model's confidence in its output, when it has one
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, exported, resolved, dismissed
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    exported_at: Mapped[datetime | None]
    external_project: Mapped[str | None] = mapped_column(String(64))  # Label Studio project id, once pushed
    external_task: Mapped[str | None] = mapped_column(String(64))  # Label Studio task id, once pushed
    corrected: Mapped[dict[str, Any] | None]  # the reviewer's value, valid against schema_id
    # The fields the reviewer changed (CSV field names: `total`, `label`, `segments[2].text`); empty for a sign-off.
    # NULL on items resolved before it was recorded.
    changed_fields: Mapped[list[Any] | None]
    reviewer: Mapped[str | None] = mapped_column(String(256))
    resolved_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)  # why an item was dismissed, or the last correction rejected

    source_object: Mapped[SourceObject] = relationship()
