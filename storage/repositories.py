"""Repositories: small query objects over a Session. The caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Row,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from schemas.records import (
    BlobInfo,
    Classification,
    Extraction,
    ObjectKind,
    ObjectResult,
    ObjectStatus,
    StageError,
    StageTotals,
    Transcript,
)
from storage.batching import chunked
from storage.tables import (
    ClassificationRow,
    ExtractionRow,
    Page,
    Run,
    SourceObject,
    SpeechSegmentRow,
    StageRun,
    TranscriptRow,
    TranscriptSegmentRow,
    utcnow,
)

_CHUNK = 500

# Discovery's page of listed objects on PostgreSQL, as a few arrays bound to one short statement each: a multi-row
# VALUES or an IN list of 1,000 placeholders costs more to build and parse (psycopg splits the query text anew for
# each) than the statement takes to run on a million rows.
_REGISTER_LISTED = text(
    """
    INSERT INTO source_objects (source, key, version, size, last_modified, status, attempts, created_at, updated_at)
    SELECT listed.source, listed.key, listed.version, listed.size, listed.last_modified, :status, 0, :now, :now
    FROM unnest(
        CAST(:sources AS varchar[]), CAST(:keys AS varchar[]), CAST(:versions AS varchar[]),
        CAST(:sizes AS bigint[]), CAST(:modified AS timestamptz[])
    ) AS listed(source, key, version, size, last_modified)
    ON CONFLICT (source, key, version) DO NOTHING
    RETURNING id
    """
)
_SUPERSEDE_LISTED = text(
    """
    UPDATE source_objects SET superseded_at = :now
    FROM unnest(CAST(:sources AS varchar[]), CAST(:keys AS varchar[]), CAST(:versions AS varchar[]))
        AS listed(source, key, version)
    WHERE source_objects.source = listed.source AND source_objects.key = listed.key
        AND source_objects.superseded_at IS NULL AND source_objects.version <> listed.version
    """
)


def eligible(
    *, force: bool, retry_failed: bool, stale_before: datetime, run_id: str | None = None
) -> ColumnElement[bool]:
    """Which objects a run may (re)process: new ones, abandoned claims, and terminal ones only when asked."""
    so = SourceObject
    abandoned = and_(so.status == ObjectStatus.PROCESSING, so.claimed_at < stale_before)
    conditions: list[ColumnElement[bool]] = [so.status == ObjectStatus.PENDING, abandoned]
    if run_id is not None:  # a retried batch re-takes its own claims
        conditions.append(and_(so.status == ObjectStatus.PROCESSING, so.run_id == run_id))
    if retry_failed or force:
        conditions.append(so.status == ObjectStatus.FAILED)
    if force:
        conditions.append(so.status.in_([ObjectStatus.DONE, ObjectStatus.REVIEW]))
    return and_(so.superseded_at.is_(None), or_(*conditions))


class ObjectRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def register(self, blobs: Sequence[BlobInfo]) -> int:
        """Record listed objects; an unseen (source, key, version) becomes a pending row, and an older version of
        a listed key is marked superseded. Returns rows added."""
        if not blobs:
            return 0
        now = utcnow()
        if self.session.get_bind().dialect.name == "postgresql":
            return self._register_postgres(blobs, now)
        # One statement, its rows as parameters (executemany: SQLAlchemy sends them as multi-row VALUES pages): it
        # compiles once and is cached. A `.values(rows)` statement was compiled afresh for every chunk.
        stmt = (
            sqlite_insert(SourceObject)
            .on_conflict_do_nothing(index_elements=["source", "key", "version"])
            .returning(SourceObject.id)
        )
        connection = self.session.connection()
        added = 0
        for chunk in chunked(blobs, _CHUNK):
            rows = [
                {
                    "source": b.source,
                    "key": b.key,
                    "version": b.version,
                    "size": b.size,
                    "last_modified": b.last_modified,
                    "status": ObjectStatus.PENDING.value,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for b in chunk
            ]
            added += len(connection.execute(stmt, rows).all())  # rowcount is unreliable for multi-row inserts
        self._supersede_old_versions(blobs, now)
        return added

    def _register_postgres(self, blobs: Sequence[BlobInfo], now: datetime) -> int:
        """`register` in two statements whatever the page's size: the insert and the superseding update, each
        joined to the listing as arrays."""
        listed = {
            "sources": [b.source for b in blobs],
            "keys": [b.key for b in blobs],
            "versions": [b.version for b in blobs],
        }
        added = self.session.execute(
            _REGISTER_LISTED,
            {
                **listed,
                "sizes": [b.size for b in blobs],
                "modified": [b.last_modified.astimezone(UTC) for b in blobs],
                "status": ObjectStatus.PENDING.value,
                "now": now,
            },
        ).all()
        self.session.execute(_SUPERSEDE_LISTED, {**listed, "now": now})
        return len(added)

    def _supersede_old_versions(self, blobs: Sequence[BlobInfo], now: datetime) -> None:
        by_source: dict[str, dict[str, str]] = {}
        for b in blobs:
            by_source.setdefault(b.source, {})[b.key] = b.version
        for source, versions in by_source.items():
            for keys in chunked(sorted(versions), _CHUNK):
                stale = self.session.execute(
                    select(SourceObject.id, SourceObject.key, SourceObject.version).where(
                        SourceObject.source == source,
                        SourceObject.key.in_(keys),
                        SourceObject.superseded_at.is_(None),
                    )
                ).all()
                ids = [row.id for row in stale if row.version != versions[row.key]]
                if ids:
                    self.session.execute(update(SourceObject).where(SourceObject.id.in_(ids)).values(superseded_at=now))

    def find_current(self, blobs: Sequence[BlobInfo], condition: ColumnElement[bool]) -> list[SourceObject]:
        """Rows for exactly these listed versions that satisfy `condition`, in listing order."""
        return self._listed_current(blobs, condition, select(SourceObject), scalars=True)

    def find_current_plans(self, blobs: Sequence[BlobInfo], condition: ColumnElement[bool]) -> list[Row[Any]]:
        """`find_current` as the columns discovery plans a run with (id, source, key, version, size, kind,
        page_count, duration_s): plain rows, not ORM objects (10,000 of those cost more than their query)."""
        so = SourceObject
        columns = select(so.id, so.source, so.key, so.version, so.size, so.kind, so.page_count, so.duration_s)
        return self._listed_current(blobs, condition, columns, scalars=False)

    def _listed_current(
        self, blobs: Sequence[BlobInfo], condition: ColumnElement[bool], query: Select[Any], *, scalars: bool
    ) -> list[Any]:
        by_source: dict[str, list[str]] = {}
        for b in blobs:
            by_source.setdefault(b.source, []).append(b.key)
        found: dict[tuple[str, str, str], Any] = {}
        postgres = self.session.get_bind().dialect.name == "postgresql"
        for source, keys in by_source.items():
            # PostgreSQL: the keys as one array parameter (see _REGISTER_LISTED), not an IN list of placeholders
            for chunk in [keys] if postgres else chunked(keys, _CHUNK):
                listed = (
                    SourceObject.key == any_(bindparam("keys", chunk, type_=ARRAY(String)))
                    if postgres
                    else SourceObject.key.in_(chunk)
                )
                statement = query.where(SourceObject.source == source, listed, condition)
                result = self.session.scalars(statement) if scalars else self.session.execute(statement)
                for row in result:
                    found[(row.source, row.key, row.version)] = row
        return [row for row in (found.get((b.source, b.key, b.version)) for b in blobs) if row is not None]

    def by_id(self, object_id: int) -> SourceObject | None:
        return self.session.get(SourceObject, object_id)

    def fail_unprocessed(self, row: SourceObject, error: StageError, run_id: str | None) -> None:
        """Fail an object without processing it: a listed entry that cannot be read (a FIFO, a broken link), or one
        that killed its worker too often. Terminal, so no run takes it again unless asked."""
        row.status = ObjectStatus.FAILED
        row.error_stage, row.error_code, row.error_message = error.stage, error.code, error.message
        row.run_id = run_id
        row.claimed_at = None
        row.processed_at = utcnow()
        row.review_reason = None
        row.review_reasons = None

    def locked(self, object_id: int) -> SourceObject | None:
        """The object, re-read under a row lock (Postgres): concurrent review imports settle it one at a time."""
        return self.session.get(SourceObject, object_id, with_for_update=True, populate_existing=True)

    def mark_reviewed(self, row: SourceObject, note: str) -> None:
        """A person answered every review item of the object's result: it is done, and says by whom (the items,
        with the reasons and corrections, stay as its review history)."""
        row.status = ObjectStatus.DONE
        row.review_reason = note
        row.review_reasons = None

    def requeue(self, row: SourceObject, note: str) -> None:
        """Queue a processed object again (pending, as if new): the next run takes it without --force. `note` says
        why, until that run records its new result."""
        row.status = ObjectStatus.PENDING
        row.attempts = 0
        row.claimed_at = None
        row.review_reason = note
        row.review_reasons = None

    def set_kind(self, object_id: int, kind: str, detected_type: str) -> None:
        self.session.execute(
            update(SourceObject).where(SourceObject.id == object_id).values(kind=kind, detected_type=detected_type)
        )

    def claim(
        self, ids: Sequence[int], run_id: str, condition: ColumnElement[bool], max_attempts: int
    ) -> tuple[list[SourceObject], list[SourceObject]]:
        """Mark the still-eligible objects among `ids` as processing by `run_id`; return (claimed, given up).

        Concurrent runs skip each other's rows (FOR UPDATE SKIP LOCKED on Postgres; SQLite serialises writers).
        `attempts` counts the tries since the object was last queued (new, forced or retried): a batch re-taking
        its own claims does not count, a claim taken over from a dead run does. An abandoned object that already
        had `max_attempts` tries is failed instead: something in it keeps killing the worker."""
        rows = list(
            self.session.scalars(
                select(SourceObject)
                .where(SourceObject.id.in_(ids), condition)
                .order_by(SourceObject.id)
                .with_for_update(skip_locked=True)
            )
        )
        now = utcnow()
        claimed, given_up = [], []
        for row in rows:
            own = row.status == ObjectStatus.PROCESSING and row.run_id == run_id
            if row.status == ObjectStatus.PROCESSING and not own and row.attempts >= max_attempts:
                last = f"; last error: {row.error_message}" if row.error_message else ""
                self.fail_unprocessed(
                    row,
                    StageError(
                        stage="pipeline",
                        code="gave_up",
                        message=f"gave up after {row.attempts} attempts: the worker stopped while processing it each "
                        f"time (killed, out of memory or timed out){last}",
                    ),
                    run_id,
                )
                given_up.append(row)
                continue
            if not own:
                row.attempts = 1 if ObjectStatus(row.status).is_terminal else row.attempts + 1
            row.status = ObjectStatus.PROCESSING
            row.run_id = run_id
            row.claimed_at = now
            claimed.append(row)
        self.session.flush()
        return claimed, given_up

    def renew(self, ids: Sequence[int], run_id: str) -> int:
        """Heartbeat: keep this run's claims fresh while it works on them, so no other run takes them over."""
        return self._update_claims(ids, run_id, claimed_at=utcnow())

    def renew_run(self, run_id: str) -> int:
        """Heartbeat for every claim a run holds."""
        result = cast(
            CursorResult[Any],
            self.session.execute(
                update(SourceObject)
                .where(SourceObject.status == ObjectStatus.PROCESSING, SourceObject.run_id == run_id)
                .values(claimed_at=utcnow())
            ),
        )
        return result.rowcount or 0

    def release(self, ids: Sequence[int], run_id: str) -> int:
        """Give claims back (a batch failed for infrastructure reasons): the next run picks them up, and the try
        does not count against the object."""
        return self._update_claims(
            ids,
            run_id,
            status=ObjectStatus.PENDING,
            claimed_at=None,
            attempts=case((SourceObject.attempts > 0, SourceObject.attempts - 1), else_=0),
        )

    def _update_claims(self, ids: Sequence[int], run_id: str, **values: Any) -> int:
        """Update the objects among `ids` that `run_id` still holds; returns how many."""
        # Session.execute() is typed as returning Result; an UPDATE's result is a CursorResult, which has rowcount.
        result = cast(
            CursorResult[Any],
            self.session.execute(
                update(SourceObject)
                .where(
                    SourceObject.id.in_(ids),
                    SourceObject.status == ObjectStatus.PROCESSING,
                    SourceObject.run_id == run_id,
                )
                .values(**values)
            ),
        )
        return result.rowcount or 0

    def stale_claims(self, stale_before: datetime, exclude_run: str | None = None) -> list[SourceObject]:
        """Objects whose claim was not renewed since `stale_before`: their run stopped without releasing them."""
        stmt = (
            select(SourceObject)
            .where(
                self._current(),
                SourceObject.status == ObjectStatus.PROCESSING,
                SourceObject.claimed_at < stale_before,
            )
            .order_by(SourceObject.claimed_at)
        )
        if exclude_run:
            stmt = stmt.where(SourceObject.run_id != exclude_run)
        return list(self.session.scalars(stmt))

    def in_progress(self, limit: int = 50) -> list[SourceObject]:
        """Objects claimed right now (oldest claim first)."""
        return list(
            self.session.scalars(
                select(SourceObject)
                .where(self._current(), SourceObject.status == ObjectStatus.PROCESSING)
                .order_by(SourceObject.claimed_at)
                .limit(limit)
            )
        )

    def record_result(self, object_id: int, result: ObjectResult, pipeline_version: str, run_id: str) -> bool:
        """Store the outcome and replace the object's derived rows (so a re-run never duplicates them).

        Fenced on the claim: when another run has taken the object over in the meantime, nothing is written and
        False comes back (the slower writer never overwrites the faster one)."""
        row = self.session.get(
            SourceObject,
            object_id,
            options=[selectinload(SourceObject.pages), selectinload(SourceObject.speech_segments)],
            with_for_update=True,
        )
        if row is None:
            raise LookupError(f"source object {object_id} vanished")
        if row.status != ObjectStatus.PROCESSING or row.run_id != run_id:
            return False
        self._set_outcome(row, result, pipeline_version)
        self.session.flush()  # deletes before inserts, so unique (object, page) keys never clash
        self._add_derived(row, result)
        self._replace_classification(row, result.classification)
        return True

    def record_results(
        self, results: Sequence[tuple[int, ObjectResult]], pipeline_version: str, run_id: str
    ) -> list[bool]:
        """record_result for a window's objects at once, in their order: the rows, their pages, speech segments and
        classification read under lock in one query each per chunk (not three or four per object), the old
        derived rows deleted in one flush. Same fence: False for an object another run has taken over."""
        ids = sorted({object_id for object_id, _ in results})
        rows: dict[int, SourceObject] = {}
        for chunk in chunked(ids, _CHUNK):
            stmt = (
                select(SourceObject)
                .where(SourceObject.id.in_(chunk))
                .options(
                    selectinload(SourceObject.pages),
                    selectinload(SourceObject.speech_segments),
                    selectinload(SourceObject.classification),
                )
                .order_by(SourceObject.id)  # one lock order for every writer
                .with_for_update()
            )
            rows.update((row.id, row) for row in self.session.scalars(stmt))
        fenced: list[tuple[SourceObject, ObjectResult]] = []
        for object_id, result in results:
            row = rows.get(object_id)
            if row is None:
                raise LookupError(f"source object {object_id} vanished")
            if row.status == ObjectStatus.PROCESSING and row.run_id == run_id:
                self._set_outcome(row, result, pipeline_version)
                row.classification = None  # delete-orphan: the old row goes in the flush below
                fenced.append((row, result))
        self.session.flush()  # deletes before inserts, so unique keys never clash
        for row, result in fenced:
            self._add_derived(row, result)
            if result.classification is not None:
                self.session.add(self._classification_row(row, result.classification))
        recorded = {id(row) for row, _ in fenced}
        return [id(rows[object_id]) in recorded for object_id, _ in results]

    def _set_outcome(self, row: SourceObject, result: ObjectResult, pipeline_version: str) -> None:
        """The object's own columns from its result; its pages and speech segments cleared (deleted at the flush)."""
        row.status = result.status
        row.kind = result.kind
        row.sha256 = result.sha256 or row.sha256
        if result.detected_type:
            row.detected_type = result.detected_type
        row.error_stage = result.error.stage if result.error else None
        row.error_code = result.error.code if result.error else None
        row.error_message = result.error.message if result.error else None
        row.review_reason = "; ".join(r.message for r in result.review_reasons) or None
        row.review_reasons = [r.model_dump(mode="json") for r in result.review_reasons] or None
        row.warnings = list(result.warnings) or None
        row.page_count = result.page_count if result.page_count is not None else (len(result.pages) or None)
        row.duration_s = result.audio.duration_s if result.audio else None
        row.speech_ratio = result.audio.speech_ratio if result.audio else None
        row.pipeline_version = pipeline_version
        row.processed_at = utcnow()
        row.claimed_at = None
        row.pages.clear()
        row.speech_segments.clear()

    def _add_derived(self, row: SourceObject, result: ObjectResult) -> None:
        """The result's pages, speech segments, transcript and extraction (after the old ones were flushed away)."""
        page_labels = {p.page_number: p for p in result.classification.pages} if result.classification else {}
        row.pages.extend(
            Page(
                page_number=p.page_number,
                uri=p.uri,
                width=p.width,
                height=p.height,
                dpi=p.dpi,
                label=page_labels[p.page_number].label if p.page_number in page_labels else None,
                label_probability=(page_labels[p.page_number].probability if p.page_number in page_labels else None),
            )
            for p in result.pages
        )
        row.speech_segments.extend(
            SpeechSegmentRow(segment_index=i, start_s=s.start_s, end_s=s.end_s) for i, s in enumerate(result.segments)
        )
        if result.transcript is not None:
            self._replace_transcript(row, result.transcript)
        if result.extraction is not None:
            self._replace_extraction(row, result.extraction)

    def _replace_classification(self, row: SourceObject, classification: Classification | None) -> None:
        """One row per object: the current classification (none when the object failed or is not a document)."""
        if classification is None:
            self.session.execute(delete(ClassificationRow).where(ClassificationRow.object_id == row.id))
            return
        self._replace(self._classification_row(row, classification), object_id=row.id)

    @staticmethod
    def _classification_row(row: SourceObject, classification: Classification) -> ClassificationRow:
        return ClassificationRow(
            object_id=row.id,
            label=classification.label,
            probability=classification.probability,
            margin=classification.margin,
            runner_up=classification.runner_up,
            scores=classification.scores,
            route=classification.route,
            model_id=classification.model_id,
            pages_classified=len(classification.pages),
        )

    def _replace(self, new_row: ExtractionRow | TranscriptRow | ClassificationRow, **natural_key: object) -> None:
        """Upsert by natural key: delete the row a previous run wrote (children cascade), then add the new one."""
        existing = self.session.scalars(select(type(new_row)).filter_by(**natural_key)).first()
        if existing is not None:
            self.session.delete(existing)
            self.session.flush()  # the delete must reach the database before the insert hits the unique key
        self.session.add(new_row)

    def _replace_extraction(self, row: SourceObject, extraction: Extraction) -> None:
        """One row per (object, schema version, model)."""
        self._replace(
            ExtractionRow(
                object_id=row.id,
                schema_id=extraction.schema_id,
                model_id=extraction.model_id,
                backend=extraction.backend,
                data=extraction.data,
                valid=extraction.valid,
                attempts=extraction.attempts,
                errors=list(extraction.errors) or None,
                field_confidence=extraction.field_confidence or None,
                field_pages=extraction.field_pages or None,
                field_grounding=extraction.field_grounding or None,
                pages=list(extraction.pages),
                raw_output=extraction.raw_output,
            ),
            object_id=row.id,
            schema_id=extraction.schema_id,
            model_id=extraction.model_id,
        )

    def _replace_transcript(self, row: SourceObject, transcript: Transcript) -> None:
        """One row per (object, model id, model version): a re-run replaces it, another model adds one."""
        self._replace(
            TranscriptRow(
                object_id=row.id,
                model_id=transcript.model_id,
                model_version=transcript.model_version,
                language=transcript.language,
                language_probability=transcript.language_probability,
                duration_s=transcript.duration_s,
                speech_s=transcript.speech_s,
                no_speech=transcript.no_speech,
                avg_logprob=transcript.avg_logprob,
                channels_split=transcript.channels_split,
                dropped_segments=transcript.dropped_segments,
                text=transcript.text,
                speakers=[speaker.model_dump() for speaker in transcript.speakers],
                languages=list(transcript.languages),
                segments=[
                    TranscriptSegmentRow(
                        segment_index=i,
                        start_s=seg.start_s,
                        end_s=seg.end_s,
                        speaker=seg.speaker,
                        channel=seg.channel,
                        language=seg.language,
                        text=seg.text,
                        avg_logprob=seg.avg_logprob,
                        no_speech_prob=seg.no_speech_prob,
                        compression_ratio=seg.compression_ratio,
                        flagged=seg.flagged,
                        words=[w.model_dump() for w in seg.words] if seg.words is not None else None,
                    )
                    for i, seg in enumerate(transcript.segments)
                ],
            ),
            object_id=row.id,
            model_id=transcript.model_id,
            model_version=transcript.model_version,
        )

    # -- reporting ---------------------------------------------------------------------------------------------

    def _current(self) -> ColumnElement[bool]:
        return SourceObject.superseded_at.is_(None)

    def count_by_status(self, run_ids: list[str] | None = None) -> dict[str, int]:
        stmt = select(SourceObject.status, func.count()).where(self._current()).group_by(SourceObject.status)
        if run_ids is not None:
            stmt = stmt.where(SourceObject.run_id.in_(run_ids))
        return {status: n for status, n in self.session.execute(stmt)}

    def count_by_kind(self, run_ids: list[str] | None = None) -> dict[str, dict[str, int]]:
        kind = func.coalesce(SourceObject.kind, "unknown")
        stmt = (
            select(kind, SourceObject.status, func.count()).where(self._current()).group_by(kind, SourceObject.status)
        )
        if run_ids is not None:
            stmt = stmt.where(SourceObject.run_id.in_(run_ids))
        out: dict[str, dict[str, int]] = {}
        for k, status, n in self.session.execute(stmt):
            out.setdefault(k, {})[status] = n
        return out

    def count_by_label(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Documents (PDFs and images) per kind and class label: counts per status, mean probability, least margin."""
        label = func.coalesce(ClassificationRow.label, "unclassified")
        stmt = (
            select(
                SourceObject.kind,
                label,
                SourceObject.status,
                func.count(),
                func.sum(ClassificationRow.probability),
                func.min(ClassificationRow.margin),
            )
            .outerjoin(ClassificationRow, ClassificationRow.object_id == SourceObject.id)
            .where(self._current(), SourceObject.kind.in_(_DOCUMENT_KINDS))
            .group_by(SourceObject.kind, label, SourceObject.status)
        )
        return _label_counts(self.session.execute(stmt).tuples())

    def count_by_kind_and_label(self) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, dict[str, Any]]]]:
        """`count_by_kind()` and `count_by_label()` in one pass over the objects (a million rows take a second
        each time they are read)."""
        kind = func.coalesce(SourceObject.kind, "unknown")
        label = func.coalesce(ClassificationRow.label, "unclassified")
        stmt = (
            select(
                kind,
                label,
                SourceObject.status,
                func.count(),
                func.sum(ClassificationRow.probability),
                func.min(ClassificationRow.margin),
            )
            .outerjoin(ClassificationRow, ClassificationRow.object_id == SourceObject.id)
            .where(self._current())
            .group_by(kind, label, SourceObject.status)
        )
        rows = list(self.session.execute(stmt).tuples())
        by_kind: dict[str, dict[str, int]] = {}
        for k, _label, status, n, _sum, _min in rows:
            by_kind.setdefault(k, {})[status] = by_kind.get(k, {}).get(status, 0) + n
        return by_kind, _label_counts(row for row in rows if row[0] in _DOCUMENT_KINDS)

    def classified(self, limit: int = 50) -> list[tuple[SourceObject, ClassificationRow]]:
        """The most recently processed documents with their classification."""
        stmt = (
            select(SourceObject, ClassificationRow)
            .join(ClassificationRow, ClassificationRow.object_id == SourceObject.id)
            .where(self._current())
            .order_by(SourceObject.processed_at.desc(), SourceObject.id.desc())
            .limit(limit)
        )
        return [(o, c) for o, c in self.session.execute(stmt)]

    def failures(self, run_ids: list[str] | None = None, limit: int = 100) -> list[SourceObject]:
        stmt = (
            select(SourceObject)
            .where(self._current(), SourceObject.status == ObjectStatus.FAILED)
            .order_by(SourceObject.processed_at.desc(), SourceObject.id.desc())
            .limit(limit)
        )
        if run_ids is not None:
            stmt = stmt.where(SourceObject.run_id.in_(run_ids))
        return list(self.session.scalars(stmt))

    def get_by_key(self, key: str) -> SourceObject | None:
        return self.session.scalars(
            select(SourceObject).where(SourceObject.key == key, self._current()).order_by(SourceObject.id.desc())
        ).first()


_DOCUMENT_KINDS = (ObjectKind.PDF.value, ObjectKind.IMAGE.value)


def _label_counts(
    rows: Iterable[tuple[Any, str, str, int, Any, Any]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """(kind, label, status, count, probability sum, least margin) rows as per kind and label: the objects, their
    counts per status, the mean probability and the least margin."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    sums: dict[tuple[str, str], float] = {}
    for kind, name, status, n, probability_sum, least_margin in rows:
        entry = out.setdefault(kind, {}).setdefault(
            name, {"objects": 0, "by_status": {}, "mean_probability": None, "min_margin": None}
        )
        entry["objects"] += n
        entry["by_status"][status] = n
        if probability_sum is not None and least_margin is not None:
            sums[(kind, name)] = sums.get((kind, name), 0.0) + probability_sum
            entry["min_margin"] = min(least_margin, entry["min_margin"] if entry["min_margin"] is not None else 1.0)
    for (kind, name), total in sums.items():
        entry = out[kind][name]
        entry["mean_probability"] = round(total / entry["objects"], 4)
        entry["min_margin"] = round(entry["min_margin"], 4)
    return out


class RunRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def start(
        self,
        run_id: str,
        kind: str,
        parameters: dict[str, Any],
        parent_id: str | None = None,
        worker: str | None = None,
    ) -> Run:
        run = self.session.get(Run, run_id)
        if run is None:
            run = Run(
                id=run_id, kind=kind, parameters=parameters, parent_id=parent_id, worker=worker, started_at=utcnow()
            )
            self.session.add(run)
        else:  # a retried flow run keeps its row
            run.status = "running"
            run.finished_at = None
        self.session.flush()
        return run

    def get(self, run_id: str) -> Run | None:
        return self.session.get(Run, run_id)

    def shards(self, parent_id: str) -> list[Run]:
        """The shard runs of a fanned-out run, oldest first."""
        return list(self.session.scalars(select(Run).where(Run.parent_id == parent_id).order_by(Run.started_at)))

    def family(self, run_id: str) -> list[str]:
        """A run and its shards: the runs whose objects, stages and review items its summary counts."""
        return [run_id, *self.session.scalars(select(Run.id).where(Run.parent_id == run_id))]

    def _require(self, run_id: str) -> Run:
        run = self.session.get(Run, run_id)
        if run is None:
            raise LookupError(f"run {run_id} was never started")
        return run

    def record_plan(self, run_id: str, listed: int, planned: int, warnings: Sequence[str]) -> None:
        """What discovery found: entries listed, objects the run will account for, listing problems."""
        self.session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(discovered=listed, planned=planned, warnings=list(warnings) or None)
        )

    def finish(self, run_id: str, status: str, error: str | None) -> Run:
        """Close the run with its final status (and the error that stopped it, if any)."""
        run = self._require(run_id)
        run.status = status
        run.finished_at = utcnow()
        run.error = error
        self.session.flush()
        return run

    def newest_since(self, started: datetime) -> Run | None:
        """The most recently started run (not a shard) that started at or after `started` (a CLI watching the run
        it began)."""
        return self.session.scalars(
            select(Run).where(Run.started_at >= started, Run.parent_id.is_(None)).order_by(Run.started_at.desc())
        ).first()

    def add_counts(self, run_id: str, processed: int, failed: int) -> None:
        """One atomic UPDATE: concurrent batches of the same run must not overwrite each other's counts."""
        if processed or failed:
            self.session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(processed=Run.processed + processed, failed=Run.failed + failed)
            )

    def record_stage(self, row: StageRun) -> None:
        self.session.add(row)

    def stage_runs(self, run_ids: list[str]) -> list[StageRun]:
        return list(
            self.session.scalars(
                select(StageRun).where(StageRun.run_id.in_(run_ids)).order_by(StageRun.started_at, StageRun.id)
            )
        )

    def stage_totals(self, run_ids: list[str]) -> list[StageTotals]:
        """Per stage, in pipeline order of first use: calls, time, items, pages, audio, forward batches."""
        totals: dict[str, StageTotals] = {}
        for row in self.stage_runs(run_ids):
            seconds = (row.finished_at - row.started_at).total_seconds()
            t = totals.get(row.stage)
            totals[row.stage] = StageTotals(
                stage=row.stage,
                calls=(t.calls if t else 0) + 1,
                seconds=(t.seconds if t else 0.0) + seconds,
                items=(t.items if t else 0) + row.items,
                pages=(t.pages if t else 0) + row.pages,
                audio_s=(t.audio_s if t else 0.0) + row.audio_s,
                batches=(t.batches if t else 0) + row.batches,
                batch_rows=(t.batch_rows if t else 0) + row.batch_rows,
                batch_capacity=max(t.batch_capacity if t else 0, row.batch_capacity),
                max_batch_owners=max(t.max_batch_owners if t else 0, row.max_batch_owners),
            )
        return list(totals.values())

    def recent(self, limit: int = 20) -> list[Run]:
        return list(self.session.scalars(select(Run).order_by(Run.started_at.desc()).limit(limit)))
