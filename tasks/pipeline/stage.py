"""The one stage interface and the per-object context the stages share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from schemas.records import (
    AudioSummary,
    Classification,
    DocumentPage,
    Extraction,
    ObjectKind,
    ObjectResult,
    PdfSummary,
    ReviewReason,
    SpeechSegment,
    StageError,
    Transcript,
)


class Recording(Protocol):
    """A decoded recording (16 kHz), read back one span at a time: what the transcription stage reads of a call
    that preprocessing decoded."""

    @property
    def channels(self) -> int: ...

    @property
    def samples(self) -> int: ...

    @property
    def channels_differ(self) -> bool:
        """A stereo call with one party per channel."""
        ...

    def read(self, start_s: float, end_s: float, channel: int | None = None) -> np.ndarray:
        """float32 samples of [start_s, end_s): one channel, or the channels' mean (the mono mix)."""
        ...


@dataclass(frozen=True)
class ObjectRef:
    """A claimed object, as the database knows it before anything is downloaded."""

    id: int
    source: str
    key: str
    size: int
    person_class: str | None = None  # the class a reviewer gave it: wins over the classifier's


@dataclass(frozen=True)
class Preprocessed:
    """What preprocessing learnt about an object."""

    kind: ObjectKind
    sha256: str
    detected_type: str
    pages: tuple[DocumentPage, ...] = ()
    page_count: int | None = None
    pdf: PdfSummary | None = None
    audio: AudioSummary | None = None
    segments: tuple[SpeechSegment, ...] = ()
    decoded: Recording | None = None  # on local disk until transcribed


@dataclass(frozen=True)
class ItemUpdate:
    """What one stage found out about one item. Applied only after the whole stage succeeded, so a stage that is
    retried after an infrastructure fault never applies half of its work twice."""

    preprocessed: Preprocessed | None = None
    classification: Classification | None = None
    extraction: Extraction | None = None
    transcript: Transcript | None = None
    warnings: tuple[str, ...] = ()
    review_reasons: tuple[ReviewReason, ...] = ()
    error: StageError | None = None
    sha256: str = ""  # known before a later preprocessing step failed


@dataclass
class WorkItem:
    """One object on its way through the stages."""

    ref: ObjectRef
    kind: ObjectKind = ObjectKind.UNKNOWN
    sha256: str = ""
    detected_type: str | None = None
    pages: tuple[DocumentPage, ...] = ()
    page_count: int | None = None
    pdf: PdfSummary | None = None
    audio: AudioSummary | None = None
    segments: tuple[SpeechSegment, ...] = ()
    decoded: Recording | None = None  # on local disk until transcribed
    classification: Classification | None = None
    extraction: Extraction | None = None
    transcript: Transcript | None = None
    warnings: list[str] = field(default_factory=list)
    review_reasons: list[ReviewReason] = field(default_factory=list)
    error: StageError | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # stage name -> time spent on this item's batch
    prepared: set[str] = field(default_factory=set)  # stages whose CPU preparation (Stage.prepare) it has had

    @property
    def is_document(self) -> bool:
        return self.error is None and self.kind in (ObjectKind.PDF, ObjectKind.IMAGE) and bool(self.pages)

    def apply(self, update: ItemUpdate) -> None:
        if (pre := update.preprocessed) is not None:
            self.kind, self.sha256, self.detected_type = pre.kind, pre.sha256, pre.detected_type
            self.pages, self.page_count, self.pdf = pre.pages, pre.page_count, pre.pdf
            self.audio, self.segments, self.decoded = pre.audio, pre.segments, pre.decoded
        self.sha256 = self.sha256 or update.sha256
        self.classification = update.classification or self.classification
        self.extraction = update.extraction or self.extraction
        self.transcript = update.transcript or self.transcript
        self.warnings.extend(update.warnings)
        self.review_reasons.extend(update.review_reasons)
        self.error = update.error or self.error

    def result(self) -> ObjectResult:
        if self.error is not None:
            return ObjectResult(kind=self.kind, sha256=self.sha256, detected_type=self.detected_type, error=self.error)
        return ObjectResult(
            kind=self.kind,
            sha256=self.sha256,
            detected_type=self.detected_type,
            pages=self.pages,
            page_count=self.page_count,
            segments=self.segments,
            audio=self.audio,
            pdf=self.pdf,
            transcript=self.transcript,
            extraction=self.extraction,
            classification=self.classification,
            warnings=tuple(self.warnings),
            review_reasons=tuple(self.review_reasons),
        )


@dataclass
class StageReport:
    """What one call of a stage did: the throughput figures of the run summary come from these."""

    items: int = 0
    pages: int = 0
    audio_s: float = 0.0
    batch_rows: list[int] = field(default_factory=list)  # rows of each model forward batch
    batch_owners: list[int] = field(default_factory=list)  # distinct objects in each forward batch
    batch_capacity: int = 0


class Stage(Protocol):
    """A step of the pipeline. Built once per worker process (its models come from the per-process cache); called
    with a batch of items, it returns one update per item it `wants`, in order. Bad input becomes an update with
    an `error`; only infrastructure faults (TransientError, database errors) and configuration errors raise."""

    name: str
    uses_model: bool  # model stages hold a slot of the device's concurrency limit while they run

    def wants(self, item: WorkItem) -> bool: ...

    def prepare(self, items: Sequence[WorkItem]) -> None:
        """CPU work that must happen before the model (OCR for a text model); runs outside the device slot."""

    def warm_up(self, preparation: bool) -> None:
        """Load what the stage's first window would wait for (its models, into the process's cache) ahead of the
        window; with `preparation`, what `prepare` uses too (when it runs in this process). A load that fails here
        fails again, and is reported, when the stage runs."""

    def __call__(self, items: Sequence[WorkItem], report: StageReport) -> list[ItemUpdate]: ...
