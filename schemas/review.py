"""The review queue's vocabulary: which stage an item checks, where it stands, and the shape a reviewer's
correction must have for each stage (a document's correction is its extraction schema itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import ReviewReason


class ReviewStage(StrEnum):
    CLASSIFICATION = "classification"
    EXTRACTION = "extraction"
    TRANSCRIPTION = "transcription"


class ReviewStatus(StrEnum):
    OPEN = "open"  # waiting for a person
    EXPORTED = "exported"  # sent to Label Studio or written to a file, no answer yet
    RESOLVED = "resolved"  # a person confirmed or corrected it
    DISMISSED = "dismissed"  # no longer needed: the object was processed again


# Where each pipeline stage's doubts go; a `pipeline` doubt (e.g. pages beyond the page limit) goes to the object's
# main output: its extraction, or its transcript.
STAGE_OF_REASON = {
    "classify": ReviewStage.CLASSIFICATION,
    "extract": ReviewStage.EXTRACTION,
    "transcribe": ReviewStage.TRANSCRIPTION,
}
CLASS_SCHEMA = "class"
TRANSCRIPT_SCHEMA = "transcript"


class ClassCorrection(BaseModel):
    """A document's class, as a reviewer sets it (one of the configured labels)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    label: str = Field(min_length=1, description="The document's class")


class SegmentCorrection(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    speaker: str = Field(min_length=1, max_length=32)
    text: str


class TranscriptCorrection(BaseModel):
    """A transcript as a reviewer leaves it: its utterances with times, speakers and text."""

    model_config = ConfigDict(extra="forbid")

    segments: list[SegmentCorrection]


@dataclass(frozen=True)
class ReviewDraft:
    """A review item about to be opened."""

    stage: ReviewStage
    schema_id: str
    reasons: tuple[ReviewReason, ...]
    audit: bool  # no doubt was raised: the audit sample picked it
    model_output: dict[str, Any]
    model_id: str
    score: float | None


class ReviewItemView(BaseModel):
    """A review item as the CLI, the exports and the Label Studio tasks see it."""

    model_config = ConfigDict(frozen=True)

    id: int
    object_id: int
    key: str
    kind: str | None
    stage: ReviewStage
    schema_id: str
    status: ReviewStatus
    audit: bool
    reasons: list[ReviewReason]
    model_output: dict[str, Any]
    model_id: str
    score: float | None
    pages: list[str] = Field(default_factory=list, description="Page image locations (documents)")
    corrected: dict[str, Any] | None = None
    reviewer: str | None = None
    created_at: datetime
    resolved_at: datetime | None = None
    note: str | None = None
