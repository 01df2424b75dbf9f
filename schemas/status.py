"""What `docflow status` reports: a typed snapshot of the database, read by `storage.status.StatusQuery`.

`StatusReport.model_dump(mode="json")` is the `docflow status --json` document: field names are its keys, and
times are written as Python's `isoformat()` writes them (`+00:00`, not pydantic's `Z`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from schemas.records import ReviewReason, SpeakerSummary

IsoTime = Annotated[datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str, when_used="json")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class LabelCounts(_Frozen):
    """Documents of one kind with one class label."""

    objects: int
    by_status: dict[str, int]
    mean_probability: float | None = Field(description="Mean top-label probability; None when none is classified")
    min_margin: float | None = Field(description="Least margin over the runner-up; None when none is classified")


class DocumentStatus(_Frozen):
    """A recently processed document with its classification, and why it is in review (if it is)."""

    key: str
    source: str
    kind: str | None
    status: str
    label: str
    probability: float
    margin: float
    runner_up: str | None
    route: str | None
    review_reason: str | None = Field(description="The review reasons' messages joined with '; '")
    review_reasons: list[ReviewReason] = Field(default_factory=list)


class ClaimStatus(_Frozen):
    """An object claimed by a run right now."""

    key: str
    source: str
    run_id: str
    attempts: int
    claimed_at: IsoTime | None
    claim_age_s: float | None
    stale: bool = Field(description="Its run stopped renewing the claim (it crashed); the next run takes it over")


class FailureStatus(_Frozen):
    key: str
    source: str
    kind: str | None
    code: str | None
    error: str | None


class RunStatus(_Frozen):
    id: str
    kind: str
    status: str
    started_at: IsoTime
    finished_at: IsoTime | None
    listed: int
    processed: int
    failed: int
    warnings: list[str]


class RunProgress(_Frozen):
    """How far a run has got, for a progress bar."""

    id: str
    status: str
    listed: int
    planned: int
    processed: int
    failed: int


class ObjectBrief(_Frozen):
    """One object in a list a person reads: where it stands and why (a failure's error, or its review reasons)."""

    id: int
    key: str
    source: str
    kind: str | None
    status: str
    error: str | None = None
    review_reasons: list[ReviewReason] = Field(default_factory=list)


class ObjectList(_Frozen):
    """The first objects of a capped list, and how many there are in all."""

    total: int = 0
    objects: list[ObjectBrief] = Field(default_factory=list)


class QueueItem(_Frozen):
    """A review item waiting for a person (`docflow review list`)."""

    id: int
    object_id: int
    key: str
    stage: str
    status: str
    audit: bool
    reasons: list[ReviewReason]
    created_at: IsoTime


class ReviewQueueView(_Frozen):
    """The open review queue: every waiting item counted (per stage), the first ones listed, oldest first."""

    total: int
    by_stage: dict[str, int]
    items: list[QueueItem]


class StatusReport(_Frozen):
    objects: dict[str, int] = Field(description="Current objects per status")
    by_kind: dict[str, dict[str, int]] = Field(description="kind -> status -> objects")
    by_label: dict[str, dict[str, LabelCounts]] = Field(description="Documents: kind -> class label -> counts")
    documents: list[DocumentStatus] = Field(description="Recently classified documents, newest first")
    in_progress: list[ClaimStatus] = Field(description="Claimed objects, oldest claim first")
    failures: list[FailureStatus] = Field(description="Recent failures, newest first")
    runs: list[RunStatus] = Field(description="Recent runs, newest first")
    waiting_review: ObjectList = Field(
        default_factory=ObjectList, description="Objects in `review`, by key: the first ones, and how many in all"
    )


class SegmentView(_Frozen):
    start_s: float
    end_s: float
    speaker: str
    channel: int | None
    text: str


class TranscriptView(_Frozen):
    model_id: str
    language: str | None
    languages: list[str]
    duration_s: float
    channels_split: bool
    speakers: list[SpeakerSummary]
    segments: list[SegmentView] = Field(description="The trusted dialogue: a reviewer's correction when there is one")
    corrected: bool = Field(default=False, description="Whether the segments are a reviewer's correction")


class ExtractionView(_Frozen):
    schema_id: str
    model_id: str
    valid: bool
    data: dict[str, Any] | None = Field(description="What the model extracted")
    corrected: dict[str, Any] | None = Field(default=None, description="A reviewer's correction of `data`")
    corrected_fields: list[str] = Field(default_factory=list, description="The fields of `data` a reviewer changed")
    field_confidence: dict[str, float]
    field_grounding: dict[str, str]
    field_pages: dict[str, list[int]] = Field(default_factory=dict)

    @property
    def trusted(self) -> dict[str, Any] | None:
        """The value results use: the reviewer's when corrected, else the model's."""
        return self.corrected if self.corrected is not None else self.data


class ClassificationView(_Frozen):
    label: str = Field(description="The model's class")
    probability: float
    runner_up: str | None
    corrected: str | None = Field(default=None, description="The class a reviewer gave, when corrected")


class ReviewEntry(_Frozen):
    """One review item of an object, as its history shows it."""

    id: int
    stage: str
    status: str
    audit: bool
    reasons: list[str] = Field(description="The reasons' codes")
    reviewer: str | None
    created_at: IsoTime
    resolved_at: IsoTime | None
    note: str | None


class ObjectView(_Frozen):
    """One object as `docflow show` prints it: where it stands and what the models made of it (newest results)."""

    id: int
    key: str
    source: str
    kind: str | None
    detected_type: str | None
    status: str
    error: str | None
    review_reasons: list[ReviewReason]
    note: str | None = Field(
        default=None, description="What settled it outside a run: `corrected by ana`, `queued to be extracted as ...`"
    )
    warnings: list[str]
    classification: ClassificationView | None = None
    transcript: TranscriptView | None
    extraction: ExtractionView | None
    reviews: list[ReviewEntry] = Field(default_factory=list, description="Review items, oldest first")
