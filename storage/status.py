"""The status query: one read of where every object and run stands, as a typed report (`docflow status`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from schemas.records import ReviewReason
from schemas.review import ReviewStage
from schemas.status import (
    ClaimStatus,
    ClassificationView,
    DocumentStatus,
    ExtractionView,
    FailureStatus,
    LabelCounts,
    ObjectView,
    ReviewEntry,
    RunProgress,
    RunStatus,
    SegmentView,
    StatusReport,
    TranscriptView,
)
from storage.repositories import ObjectRepository, RunRepository
from storage.review import Correction, ReviewRepository
from storage.tables import ExtractionRow, SourceObject, TranscriptRow


def review_reasons(row: SourceObject) -> list[ReviewReason]:
    """An object's structured review reasons, as `ObjectRepository.record_result` stored them."""
    return [ReviewReason.model_validate(r) for r in row.review_reasons or []]


class StatusQuery:
    """Reads only; the caller owns the session (and its transaction)."""

    def __init__(self, session: Session) -> None:
        self.objects = ObjectRepository(session)
        self.runs = RunRepository(session)

    def report(
        self,
        now: datetime,
        stale_after_s: float,
        failures_limit: int = 50,
        runs_limit: int = 10,
        documents_limit: int = 50,
    ) -> StatusReport:
        """Counts per status, kind and class label; recent documents, claims, failures and runs. A claim not
        renewed for `stale_after_s` seconds before `now` is stale."""
        stale_after = timedelta(seconds=stale_after_s)
        return StatusReport(
            objects=self.objects.count_by_status(),
            by_kind=self.objects.count_by_kind(),
            by_label={
                kind: {label: LabelCounts.model_validate(entry) for label, entry in labels.items()}
                for kind, labels in self.objects.count_by_label().items()
            },
            documents=[
                DocumentStatus(
                    key=o.key,
                    source=o.source,
                    kind=o.kind,
                    status=o.status,
                    label=c.label,
                    probability=round(c.probability, 4),
                    margin=round(c.margin, 4),
                    runner_up=c.runner_up,
                    route=c.route,
                    review_reason=o.review_reason,
                    review_reasons=review_reasons(o),
                )
                for o, c in self.objects.classified(limit=documents_limit)
            ],
            in_progress=[
                ClaimStatus(
                    key=o.key,
                    source=o.source,
                    run_id=o.run_id or "",
                    attempts=o.attempts,
                    claimed_at=o.claimed_at,
                    claim_age_s=round((now - o.claimed_at).total_seconds(), 1) if o.claimed_at else None,
                    stale=o.claimed_at is not None and now - o.claimed_at > stale_after,
                )
                for o in self.objects.in_progress()
            ],
            failures=[
                FailureStatus(key=o.key, source=o.source, kind=o.kind, code=o.error_code, error=o.error_message)
                for o in self.objects.failures(limit=failures_limit)
            ],
            runs=[
                RunStatus(
                    id=r.id,
                    kind=r.kind,
                    status=r.status,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                    listed=r.discovered,
                    processed=r.processed,
                    failed=r.failed,
                    warnings=_strings(r.warnings),
                )
                for r in self.runs.recent(runs_limit)
            ],
        )

    def progress(self, started_since: datetime) -> RunProgress | None:
        """The newest run started at or after `started_since`, as far as it and its shards have got (None: not
        started yet)."""
        run = self.runs.newest_since(started_since)
        if run is None:
            return None
        shards = self.runs.shards(run.id)
        return RunProgress(
            id=run.id,
            status=run.status,
            listed=run.discovered,
            planned=run.planned,
            processed=run.processed + sum(s.processed for s in shards),
            failed=run.failed + sum(s.failed for s in shards),
        )


def _strings(values: list[Any] | None) -> list[str]:
    return [str(v) for v in values or []]


def object_view(session: Session, ref: str) -> ObjectView | None:
    """The current object whose key is `ref` (or whose id is `ref`, when no key matches), with its newest
    transcript and extraction, its class, the corrections reviewers made (beside the models' outputs) and its
    review history."""
    objects = ObjectRepository(session)
    row = objects.get_by_key(ref)
    if row is None and ref.isdigit():
        row = session.get(SourceObject, int(ref))
    if row is None:
        return None
    reviews = ReviewRepository(session)
    transcript = max(row.transcripts, key=lambda t: t.created_at, default=None)
    extraction = max(row.extractions, key=lambda e: e.created_at, default=None)
    classification = row.classification
    corrections = _person_corrections(reviews, row.id, extraction.schema_id if extraction else None)
    return ObjectView(
        id=row.id,
        key=row.key,
        source=row.source,
        kind=row.kind,
        detected_type=row.detected_type,
        status=row.status,
        error=row.error_message,
        review_reasons=review_reasons(row),
        warnings=list(row.warnings or []),
        classification=ClassificationView(
            label=classification.label,
            probability=classification.probability,
            runner_up=classification.runner_up,
            corrected=(_value(corrections.get(ReviewStage.CLASSIFICATION)) or {}).get("label"),
        )
        if classification
        else None,
        transcript=_transcript_view(transcript, _value(corrections.get(ReviewStage.TRANSCRIPTION)))
        if transcript
        else None,
        extraction=_extraction_view(extraction, corrections.get(ReviewStage.EXTRACTION)) if extraction else None,
        reviews=[
            ReviewEntry(
                id=item.id,
                stage=item.stage,
                status=item.status,
                audit=item.audit,
                reasons=[r["code"] for r in item.reasons],
                reviewer=item.reviewer,
                created_at=item.created_at,
                resolved_at=item.resolved_at,
                note=item.note,
            )
            for item in reviews.history(row.id)
        ],
    )


def _person_corrections(
    reviews: ReviewRepository, object_id: int, extraction_schema: str | None
) -> dict[ReviewStage, Correction]:
    """The stages whose values a person changed (a sign-off changes nothing), from the newest answer of each; an
    extraction's correction only while the extraction has its schema (a corrected class re-extracts under another)."""
    found = {
        stage: answer
        for stage, answer in reviews.newest_answers([object_id]).get(object_id, {}).items()
        if answer.changed
    }
    extraction = found.get(ReviewStage.EXTRACTION)
    if extraction is not None and extraction.schema_id != extraction_schema:
        del found[ReviewStage.EXTRACTION]
    return found


def _value(correction: Correction | None) -> dict[str, Any] | None:
    return correction.value if correction is not None else None


def _transcript_view(row: TranscriptRow, corrected: dict[str, Any] | None) -> TranscriptView:
    if corrected is not None:
        segments = [SegmentView(channel=None, **s) for s in corrected["segments"]]
    else:
        segments = [
            SegmentView(start_s=s.start_s, end_s=s.end_s, speaker=s.speaker, channel=s.channel, text=s.text)
            for s in row.segments
        ]
    return TranscriptView(
        model_id=row.model_id,
        language=row.language,
        languages=list(row.languages or []),
        duration_s=row.duration_s,
        channels_split=row.channels_split,
        speakers=list(row.speakers or []),
        segments=segments,
        corrected=corrected is not None,
    )


def _extraction_view(row: ExtractionRow, correction: Correction | None) -> ExtractionView:
    return ExtractionView(
        schema_id=row.schema_id,
        model_id=row.model_id,
        valid=row.valid,
        data=row.data,
        corrected=correction.value if correction else None,
        corrected_fields=list(correction.fields) if correction else [],
        field_confidence=dict(row.field_confidence or {}),
        field_grounding=dict(row.field_grounding or {}),
        field_pages=dict(row.field_pages or {}),
    )
