"""The status query: one read of where every object and run stands, as a typed report (`docflow status`)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from schemas.records import ObjectStatus, ReviewReason
from schemas.review import ReviewStage, ReviewStatus
from schemas.status import (
    ClaimStatus,
    ClassificationView,
    DocumentStatus,
    ExtractionView,
    FailureStatus,
    LabelCounts,
    ObjectBrief,
    ObjectList,
    ObjectView,
    QueueItem,
    ReviewEntry,
    ReviewQueueView,
    RunProgress,
    RunStatus,
    SegmentView,
    StatusReport,
    TranscriptView,
)
from storage.repositories import ObjectRepository, RunRepository
from storage.review import Correction, ReviewRepository
from storage.tables import ExtractionRow, ReviewItem, SourceObject, TranscriptRow

_WAITING = (ReviewStatus.OPEN, ReviewStatus.EXPORTED)


def review_reasons(row: SourceObject) -> list[ReviewReason]:
    """An object's structured review reasons, as `ObjectRepository.record_result` stored them."""
    return [ReviewReason.model_validate(r) for r in row.review_reasons or []]


class StatusQuery:
    """Reads only; the caller owns the session (and its transaction)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.objects = ObjectRepository(session)
        self.runs = RunRepository(session)

    def report(
        self,
        now: datetime,
        stale_after_s: float,
        failures_limit: int = 50,
        runs_limit: int = 10,
        documents_limit: int = 50,
        review_limit: int = 20,
    ) -> StatusReport:
        """Counts per status, kind and class label; recent documents, claims, failures and runs. A claim not
        renewed for `stale_after_s` seconds before `now` is stale."""
        stale_after = timedelta(seconds=stale_after_s)
        # The counts per kind and per class label in one pass over the objects; per status, the per-kind counts
        # added up.
        by_kind, by_label = self.objects.count_by_kind_and_label()
        objects: dict[str, int] = {}
        for counts in by_kind.values():
            for status, n in counts.items():
                objects[status] = objects.get(status, 0) + n
        return StatusReport(
            objects=objects,
            by_kind=by_kind,
            by_label={
                kind: {label: LabelCounts.model_validate(entry) for label, entry in labels.items()}
                for kind, labels in by_label.items()
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
            waiting_review=self.waiting_review(review_limit),
        )

    def waiting_review(self, limit: int = 20) -> ObjectList:
        """Current objects in `review`, by key: the first `limit`, with their reasons, and how many in all."""
        return self._object_list([SourceObject.status == ObjectStatus.REVIEW], limit)

    def run_outcomes(self, run_id: str, limit: int = 20) -> dict[str, ObjectList]:
        """What a run (and its shards) left each object it took in, per status: the first `limit` objects by key,
        with why they failed or wait for a person, and how many in all."""
        run_ids = self.runs.family(run_id)
        counts = self.objects.count_by_status(run_ids)
        return {
            status: self._object_list([SourceObject.status == status, SourceObject.run_id.in_(run_ids)], limit)
            for status in sorted(counts)
        }

    def review_queue(self, limit: int = 50, stage: ReviewStage | None = None) -> ReviewQueueView:
        """The review items waiting for a person, oldest first: the first `limit`, and how many per stage."""
        where: list[ColumnElement[bool]] = [ReviewItem.status.in_(_WAITING)]
        if stage is not None:
            where.append(ReviewItem.stage == stage)
        by_stage = {
            s: n
            for s, n in self.session.execute(
                select(ReviewItem.stage, func.count()).where(*where).group_by(ReviewItem.stage)
            ).tuples()
        }
        rows = self.session.execute(
            select(ReviewItem, SourceObject.key)
            .join(SourceObject, SourceObject.id == ReviewItem.object_id)
            .where(*where)
            .order_by(ReviewItem.created_at, ReviewItem.id)
            .limit(limit)
        ).tuples()
        return ReviewQueueView(
            total=sum(by_stage.values()),
            by_stage=by_stage,
            items=[
                QueueItem(
                    id=item.id,
                    object_id=item.object_id,
                    key=key,
                    stage=item.stage,
                    status=item.status,
                    audit=item.audit,
                    reasons=[ReviewReason.model_validate(r) for r in item.reasons or []],
                    created_at=item.created_at,
                )
                for item, key in rows
            ],
        )

    def _object_list(self, where: list[ColumnElement[bool]], limit: int) -> ObjectList:
        current = [SourceObject.superseded_at.is_(None), *where]
        total = self.session.scalar(select(func.count()).select_from(SourceObject).where(*current)) or 0
        rows = self.session.scalars(
            select(SourceObject).where(*current).order_by(SourceObject.key, SourceObject.id).limit(limit)
        )
        return ObjectList(
            total=total,
            objects=[
                ObjectBrief(
                    id=o.id,
                    key=o.key,
                    source=o.source,
                    kind=o.kind,
                    status=o.status,
                    error=o.error_message,
                    review_reasons=review_reasons(o),
                )
                for o in rows
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


# The largest id a database integer holds: a longer run of digits is no id (the driver would overflow on it).
_MAX_ID = 2**63 - 1
# Close matches are looked for among this many of the newest keys (difflib compares the reference with each).
_CLOSE_MATCH_POOL = 20_000
_CLOSE_MATCH_MAX_REF = 1_000


@dataclass(frozen=True)
class ObjectMatch:
    """What a reference given to `docflow show` names: one object (`row`), several (`candidates`: their keys, the
    first ones, of `candidates_total`), or none (`suggestions`: the closest keys)."""

    row: SourceObject | None = None
    candidates: list[str] = field(default_factory=list)
    candidates_total: int = 0
    suggestions: list[str] = field(default_factory=list)


def object_id(ref: str) -> int | None:
    """`ref` as an object id: ASCII digits only (not "²", not Arabic-Indic digits), within a database integer."""
    if not (ref.isascii() and ref.isdigit()) or len(ref) > len(str(_MAX_ID)):
        return None
    number = int(ref)
    return number if 0 < number <= _MAX_ID else None


def find_object(session: Session, ref: str, limit: int = 20) -> ObjectMatch:
    """The current object `ref` names, tried in this order: its key; its id; the path given to `docflow run`
    (`inbox/documents/x.pdf`, an absolute path, `s3://bucket/key`); a unique file name or end of a key (`x.pdf`,
    `documents/x.pdf`). Several matches: their keys; none: the closest keys."""
    if "\x00" in ref or not ref.strip():  # no key holds a NUL (Postgres refuses one in a query), or is blank
        return ObjectMatch()
    objects = ObjectRepository(session)
    row = objects.get_by_key(ref)
    if row is None and (number := object_id(ref)) is not None:
        row = session.get(SourceObject, number)
    if row is None:
        row = _by_path(session, ref)
    if row is not None:
        return ObjectMatch(row=row)
    # A whole file name or path tail first, then any end of a key; in any case (as a person types a name), on
    # SQLite and Postgres alike.
    for tail in (f"/{ref}", ref):
        condition = SourceObject.key.iendswith(tail, autoescape=True)
        keys = _current_keys(session, condition, limit + 1)
        if len(keys) == 1:
            return ObjectMatch(row=objects.get_by_key(keys[0]))
        if keys:
            total = session.scalar(select(func.count(func.distinct(SourceObject.key))).where(_current(), condition))
            return ObjectMatch(candidates=keys[:limit], candidates_total=total or len(keys))
    return ObjectMatch(suggestions=_close_keys(session, ref))


def _current() -> ColumnElement[bool]:
    return SourceObject.superseded_at.is_(None)


def _current_keys(session: Session, condition: ColumnElement[bool], limit: int) -> list[str]:
    return list(
        session.scalars(
            select(SourceObject.key).where(_current(), condition).distinct().order_by(SourceObject.key).limit(limit)
        )
    )


def _by_path(session: Session, ref: str) -> SourceObject | None:
    """`ref` as a file under a local source folder (relative to the working folder, or absolute) or as a URI under
    a source (`s3://bucket/key`): the object with that key in that source."""
    try:
        given = Path(ref).expanduser().absolute()
        path: Path | None = given.parent.resolve() / given.name  # the folders' links resolved, as the store does
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a loop of links: no such path
        path = None
    for source in session.scalars(select(SourceObject.source).where(_current()).distinct()):
        parsed = urlparse(source)
        key = None
        if parsed.scheme == "file" and path is not None:
            root = Path(url2pathname(parsed.path))
            if path != root and path.is_relative_to(root):
                key = path.relative_to(root).as_posix()
        elif ref.startswith(source.rstrip("/") + "/"):
            key = ref[len(source.rstrip("/")) + 1 :]
        if key:
            row = session.scalars(
                select(SourceObject)
                .where(SourceObject.source == source, SourceObject.key == key, _current())
                .order_by(SourceObject.id.desc())
            ).first()
            if row is not None:
                return row
    return None


def _close_keys(session: Session, ref: str, n: int = 5) -> list[str]:
    """Keys that look like `ref` (a typo, a wrong folder), among the newest keys; whole keys, then file names."""
    if len(ref) > _CLOSE_MATCH_MAX_REF:
        return []
    keys = list(
        dict.fromkeys(
            session.scalars(
                select(SourceObject.key).where(_current()).order_by(SourceObject.id.desc()).limit(_CLOSE_MATCH_POOL)
            )
        )
    )
    # Compared in lower case: `amazon.pdf` finds `invoice2data_AmazonWebServices.pdf`'s neighbours too.
    whole: dict[str, str] = {}
    names: dict[str, str] = {}
    for key in keys:
        whole.setdefault(key.lower(), key)
        names.setdefault(key.rsplit("/", 1)[-1].lower(), key)
    wanted = ref.lower()
    close = [whole[k] for k in difflib.get_close_matches(wanted, list(whole), n=n, cutoff=0.6)]
    close += [names[k] for k in difflib.get_close_matches(wanted.rsplit("/", 1)[-1], list(names), n=n, cutoff=0.6)]
    stem = wanted.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if not close and len(stem) >= 3:  # a part of a name (`amazon.pdf`): the keys that hold it
        close = [key for low, key in whole.items() if stem in low]
    return list(dict.fromkeys(close))[:n]


def object_view(session: Session, ref: str) -> ObjectView | None:
    """The current object `ref` names (see `find_object`; None when not exactly one), as `view` shows it."""
    row = find_object(session, ref).row
    return object_view_of(session, row) if row is not None else None


def object_view_of(session: Session, row: SourceObject) -> ObjectView:
    """One object with its newest transcript and extraction, its class, the corrections reviewers made (beside
    the models' outputs) and its review history."""
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
        # In `review` the column holds the reasons' messages (review_reasons says them); otherwise a person's answer.
        note=row.review_reason if row.status != ObjectStatus.REVIEW else None,
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
