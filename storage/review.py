"""Review items in the database: opened when a result is recorded, marked when sent out, resolved with a
correction (stored beside the model's output) or dismissed when the object is processed again."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import Integer, Text, any_, bindparam, case, cast, false, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, selectinload

from schemas.records import ReviewOpened, ReviewQueueSummary, ReviewReason
from schemas.review import ReviewDraft, ReviewItemView, ReviewStage, ReviewStatus
from storage.batching import chunked
from storage.tables import Page, ReviewItem, SourceObject, utcnow

_WAITING = (ReviewStatus.OPEN, ReviewStatus.EXPORTED)
# What a view of an item needs of its row (`ReviewRepository.views`).
_VIEW_COLUMNS = (
    ReviewItem.id,
    ReviewItem.object_id,
    ReviewItem.stage,
    ReviewItem.schema_id,
    ReviewItem.status,
    ReviewItem.audit,
    ReviewItem.reasons,
    ReviewItem.model_output,
    ReviewItem.model_id,
    ReviewItem.score,
    ReviewItem.corrected,
    ReviewItem.reviewer,
    ReviewItem.created_at,
    ReviewItem.resolved_at,
    ReviewItem.note,
)


@dataclass(frozen=True, slots=True)
class ExportRow:
    """What a CSV or JSONL review file shows of a waiting item, as stored: `reasons` are the stored dicts
    (`ReviewReason` fields), `pages` empty unless asked for."""

    id: int
    key: str
    stage: ReviewStage
    schema_id: str
    audit: bool
    reasons: list[dict[str, Any]]
    model_output: dict[str, Any]
    model_id: str
    score: float | None
    pages: list[str]


# orjson reads an integer beyond 64 bits as a float: text with a run of 19 digits goes to json, which keeps it.
# Found by mapping every byte to "0" (a digit) or "x" and looking for the run: a regex scan costs more than the parse.
_DIGIT_BYTES = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_LONG_NUMBER = b"0" * 19


def json_value(text: str | None) -> Any:
    """A JSON column's text as json.loads reads it (SQLAlchemy's JSON type does), by orjson where the two agree;
    NaN, Infinity, lone surrogates and long integers, which orjson refuses or rounds, by json."""
    if text is None:
        return None
    if _LONG_NUMBER not in text.encode("utf-8", "surrogatepass").translate(_DIGIT_BYTES):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def json_values(texts: Sequence[str | None]) -> list[Any]:
    """`json_value` of each text: the texts looked at for long integers all at once (most chunks have none)."""
    joined = "\x00".join(text for text in texts if text is not None)  # no run of digits across two texts
    if _LONG_NUMBER not in joined.encode("utf-8", "surrogatepass").translate(_DIGIT_BYTES):
        try:
            return [None if text is None else orjson.loads(text) for text in texts]
        except orjson.JSONDecodeError:
            pass
    return [json_value(text) for text in texts]


_STAGES = {stage.value: stage for stage in ReviewStage}


@dataclass(frozen=True)
class Resolution:
    """What applying one correction did: `changed` is False when the item already held this very correction."""

    item_id: int
    changed: bool


@dataclass(frozen=True)
class Correction:
    """A person's newest answer about one stage of an object: the value results use and the fields the person
    changed (none: they signed the model's value off)."""

    stage: ReviewStage
    schema_id: str
    value: dict[str, Any]
    fields: tuple[str, ...]
    reviewer: str | None

    @property
    def changed(self) -> bool:
        return bool(self.fields)


def changed_fields(item: ReviewItem) -> list[str]:
    """The fields a resolved item's reviewer changed: as recorded when it was resolved, or, for an item resolved
    before that was recorded, the fields whose stored value differs from the model's."""
    return recorded_changes(ReviewStage(item.stage), item.changed_fields, item.model_output, item.corrected or {})


def recorded_changes(
    stage: ReviewStage, recorded: list[Any] | None, model_output: dict[str, Any], corrected: dict[str, Any]
) -> list[str]:
    """`changed_fields` of a row read as plain columns (see changed_fields)."""
    if recorded is not None:
        return [str(f) for f in recorded]
    return _differing_fields(stage, model_output, corrected)


def _differing_fields(stage: ReviewStage, model_output: dict[str, Any], corrected: dict[str, Any]) -> list[str]:
    if stage is ReviewStage.CLASSIFICATION:
        return [] if model_output.get("label") == corrected.get("label") else ["label"]
    if stage is ReviewStage.TRANSCRIPTION:
        return [] if model_output.get("segments") == corrected.get("segments") else ["segments"]
    data = model_output.get("data") or {}
    return sorted(name for name, value in corrected.items() if data.get(name) != value)


def _new_item(object_id: int, draft: ReviewDraft, run_id: str | None) -> ReviewItem:
    """A waiting (open) review item of the object, from a stage's draft."""
    return ReviewItem(
        object_id=object_id,
        stage=draft.stage,
        schema_id=draft.schema_id,
        reasons=[r.model_dump(mode="json") for r in draft.reasons],
        audit=draft.audit,
        model_output=draft.model_output,
        model_id=draft.model_id,
        score=draft.score,
        status=ReviewStatus.OPEN,
        run_id=run_id,
    )


class ReviewRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def open(self, object_id: int, drafts: Sequence[ReviewDraft], run_id: str | None) -> list[ReviewItem]:
        """The object's new review items; the ones still waiting from an earlier result are dismissed (the result
        they were about is gone). Resolved items stay: they are the object's review history. A class a person
        already gave is not sampled for audit again (the run used the person's class)."""
        if any(d.stage is ReviewStage.CLASSIFICATION and d.audit for d in drafts) and self.person_classes([object_id]):
            drafts = [d for d in drafts if not (d.stage is ReviewStage.CLASSIFICATION and d.audit)]
        for item in self.session.scalars(
            select(ReviewItem).where(ReviewItem.object_id == object_id, ReviewItem.status.in_(_WAITING))
        ):
            item.status = ReviewStatus.DISMISSED
            item.note = f"superseded: the object was processed again (run {run_id})"
        items = [_new_item(object_id, draft, run_id) for draft in drafts]
        self.session.add_all(items)
        return items

    def open_many(self, drafts_by_object: Sequence[tuple[int, Sequence[ReviewDraft]]], run_id: str | None) -> None:
        """`open` for a window's objects at once: the waiting items and the persons' classes of all of them read in
        one query each (per chunk), not one per object."""
        ids = [object_id for object_id, _ in drafts_by_object]
        audited = [
            object_id
            for object_id, drafts in drafts_by_object
            if any(d.stage is ReviewStage.CLASSIFICATION and d.audit for d in drafts)
        ]
        answered = set(self.person_classes(audited)) if audited else set()
        for chunk in chunked(ids, 500):
            for item in self.session.scalars(
                select(ReviewItem).where(ReviewItem.object_id.in_(chunk), ReviewItem.status.in_(_WAITING))
            ):
                item.status = ReviewStatus.DISMISSED
                item.note = f"superseded: the object was processed again (run {run_id})"
        self.session.add_all(
            _new_item(object_id, draft, run_id)
            for object_id, drafts in drafts_by_object
            for draft in drafts
            if not (object_id in answered and draft.stage is ReviewStage.CLASSIFICATION and draft.audit)
        )

    def select(
        self,
        statuses: Sequence[ReviewStatus] = (),
        stage: ReviewStage | None = None,
        object_id: int | None = None,
        not_pushed: bool = False,
    ) -> Iterator[ReviewItem]:
        """Items oldest first, with their objects and pages loaded, streamed in chunks."""
        query = select(ReviewItem).options(selectinload(ReviewItem.source_object).selectinload(SourceObject.pages))
        if statuses:
            query = query.where(ReviewItem.status.in_(list(statuses)))
        if stage is not None:
            query = query.where(ReviewItem.stage == stage)
        if object_id is not None:
            query = query.where(ReviewItem.object_id == object_id)
        if not_pushed:
            query = query.where(ReviewItem.external_task.is_(None))
        yield from self.session.scalars(query.order_by(ReviewItem.id).execution_options(yield_per=500))

    def views(
        self, statuses: Sequence[ReviewStatus], stage: ReviewStage | None = None, chunk: int = 1000
    ) -> Iterator[tuple[ReviewItemView, str]]:
        """Items oldest first as views, each with its object's source, for writing a review file: plain rows (no
        ORM objects) read through a server-side cursor `chunk` at a time, with one query for a chunk's pages, so
        the 50,000 items of a large queue are never all in memory."""
        query = (
            select(*_VIEW_COLUMNS, SourceObject.key, SourceObject.kind, SourceObject.source)
            .join(SourceObject, SourceObject.id == ReviewItem.object_id)
            .where(ReviewItem.status.in_(list(statuses)))
            .order_by(ReviewItem.id)
        )
        if stage is not None:
            query = query.where(ReviewItem.stage == stage)
        rows = self.session.execute(query.execution_options(yield_per=chunk))
        for part in rows.partitions():
            pages = self._page_uris([row.object_id for row in part])
            for row in part:
                yield _row_view(row, pages.get(row.object_id, [])), row.source

    def export_chunks(
        self, statuses: Sequence[ReviewStatus], stage: ReviewStage | None = None, *, pages: bool, chunk: int = 1000
    ) -> Iterator[list[ExportRow]]:
        """The items of `views`, oldest first, as plain `ExportRow`s a chunk at a time, for the CSV and JSONL
        files: no validation per item (the rows were validated when stored) and the JSON columns read as text and
        parsed by orjson (a 50,000-item queue spent most of its read in building views). `pages`: also the
        object's page images (one query a chunk; CSV has no column for them)."""
        query = (
            select(
                ReviewItem.id,
                ReviewItem.object_id,
                SourceObject.key,
                ReviewItem.stage,
                ReviewItem.schema_id,
                ReviewItem.audit,
                cast(ReviewItem.reasons, Text),
                cast(ReviewItem.model_output, Text),
                ReviewItem.model_id,
                ReviewItem.score,
            )
            .join(SourceObject, SourceObject.id == ReviewItem.object_id)
            .where(ReviewItem.status.in_(list(statuses)))
            .order_by(ReviewItem.id)
        )
        if stage is not None:
            query = query.where(ReviewItem.stage == stage)
        # Core, not the ORM's execute: plain tuples, without the ORM's work per row (the option on the query: on
        # the connection it would stay for the statements after)
        rows = self.session.connection().execute(query.execution_options(yield_per=chunk)).tuples()
        for part in rows.partitions():
            uris = self._page_uris([row[1] for row in part]) if pages else {}
            values = iter(json_values([text for row in part for text in (row[6], row[7])]))
            yield [
                ExportRow(
                    id,
                    key,
                    _STAGES.get(stage_name) or ReviewStage(stage_name),
                    schema_id,
                    audit,
                    next(values) or [],
                    next(values),
                    model_id,
                    score,
                    uris.get(object_id, []),
                )
                for id, object_id, key, stage_name, schema_id, audit, _reasons, _output, model_id, score in part
            ]

    def _page_uris(self, object_ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        postgres = self.session.get_bind().dialect.name == "postgresql"
        ids = sorted(set(object_ids))
        # PostgreSQL: the ids as one array parameter; psycopg rewrites an IN list's placeholders for every query
        for chunk in [ids] if postgres else chunked(ids, 500):
            listed = (
                Page.object_id == any_(bindparam("ids", chunk, type_=ARRAY(Integer)))
                if postgres
                else Page.object_id.in_(chunk)
            )
            for object_id, uri in self.session.execute(
                select(Page.object_id, Page.uri).where(listed).order_by(Page.object_id, Page.page_number)
            ).tuples():
                found.setdefault(object_id, []).append(uri)
        return found

    def mark_all_exported(self, item_ids: Sequence[int]) -> None:
        """Mark items written to a review file: one UPDATE that sets both columns (each row gets one new version,
        not two), not one per item (50,000 waiting items are one export). PostgreSQL takes the ids as one array;
        SQLite, a thousand at a time."""
        now = utcnow()
        postgres = self.session.get_bind().dialect.name == "postgresql"
        for chunk in [list(item_ids)] if postgres else chunked(item_ids, 1000):
            listed = (
                ReviewItem.id == any_(bindparam("ids", chunk, type_=ARRAY(Integer)))
                if postgres
                else ReviewItem.id.in_(chunk)
            )
            self.session.execute(
                update(ReviewItem)
                .where(listed)
                .values(
                    status=case(
                        (ReviewItem.status == ReviewStatus.OPEN, ReviewStatus.EXPORTED), else_=ReviewItem.status
                    ),
                    exported_at=now,
                ),
                execution_options={"synchronize_session": False},
            )

    def mark_exported(self, item: ReviewItem, project: str | None = None, task: str | None = None) -> None:
        if item.status == ReviewStatus.OPEN:
            item.status = ReviewStatus.EXPORTED
        item.exported_at = utcnow()
        if task is not None:
            item.external_project, item.external_task = project, task

    def resolve(
        self,
        item: ReviewItem,
        corrected: dict[str, Any],
        reviewer: str | None,
        changed: Sequence[str] | None = None,
    ) -> Resolution:
        """Store the reviewer's (validated) value, and the fields they `changed`, and resolve the item; the same
        correction again is a no-op."""
        if item.status == ReviewStatus.RESOLVED and item.corrected == corrected:
            return Resolution(item.id, changed=False)
        item.corrected = corrected
        item.changed_fields = list(changed) if changed is not None else None
        item.reviewer = reviewer
        item.status = ReviewStatus.RESOLVED
        item.resolved_at = utcnow()
        item.note = None
        return Resolution(item.id, changed=True)

    def reject(self, item: ReviewItem, reason: str) -> None:
        """Note why a correction was not taken (the item keeps waiting)."""
        item.note = f"correction rejected: {reason}"

    def lock(self, item_ids: Iterable[int]) -> None:
        """Take the write lock on these items and re-read them (the session's objects are refreshed), so that two
        imports at once apply one after the other: the second sees what the first stored (and reports a conflict)
        instead of overwriting it. Postgres locks the rows; SQLite, which has one writer at a time, takes its write
        lock with an empty update (its reads so far ran outside a transaction, so the re-read sees the other's
        commit)."""
        ids = sorted(set(item_ids))
        if not ids:
            return
        if self.session.get_bind().dialect.name == "sqlite":
            self.session.execute(
                update(ReviewItem).where(false()).values(note=None).execution_options(synchronize_session=False)
            )
        for chunk in chunked(ids, 500):
            self.session.scalars(
                select(ReviewItem)
                .where(ReviewItem.id.in_(chunk))
                .order_by(ReviewItem.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all()

    def waiting(self, object_id: int) -> int:
        """How many of the object's items still wait for a person."""
        return int(
            self.session.scalar(
                select(func.count()).where(ReviewItem.object_id == object_id, ReviewItem.status.in_(_WAITING))
            )
            or 0
        )

    def dismiss_waiting(self, object_id: int, stage: ReviewStage, note: str) -> int:
        """Dismiss the object's waiting items of `stage` (what they ask about is about to be redone)."""
        items = list(
            self.session.scalars(
                select(ReviewItem).where(
                    ReviewItem.object_id == object_id, ReviewItem.stage == stage, ReviewItem.status.in_(_WAITING)
                )
            )
        )
        for item in items:
            item.status = ReviewStatus.DISMISSED
            item.note = note
        return len(items)

    def newest_answers(self, object_ids: Sequence[int]) -> dict[int, dict[ReviewStage, Correction]]:
        """Per object and stage, the newest resolved item's answer: a correction, or a sign-off (no fields
        changed), which then stands over an older correction of an earlier result."""
        found: dict[int, dict[ReviewStage, Correction]] = {}
        for chunk in chunked(list(object_ids), 500):
            query = (
                select(ReviewItem)
                .where(ReviewItem.object_id.in_(chunk), ReviewItem.status == ReviewStatus.RESOLVED)
                .order_by(ReviewItem.resolved_at, ReviewItem.id)
            )
            for item in self.session.scalars(query):
                if item.corrected is None:  # JSON null, not SQL NULL, when set to None: filtered here
                    continue
                stage = ReviewStage(item.stage)
                found.setdefault(item.object_id, {})[stage] = Correction(
                    stage, item.schema_id, item.corrected or {}, tuple(changed_fields(item)), item.reviewer
                )
        return found

    def person_classes(self, object_ids: Sequence[int]) -> dict[int, str]:
        """The class a person gave (or confirmed) each of these objects, where one did: it wins over the
        classifier's when the object is processed again."""
        return {
            object_id: str(answers[ReviewStage.CLASSIFICATION].value["label"])
            for object_id, answers in self.newest_answers(object_ids).items()
            if ReviewStage.CLASSIFICATION in answers
        }

    def corrections(self, object_id: int) -> dict[ReviewStage, dict[str, Any]]:
        """The newest resolved correction of each stage of an object: what results use instead of the model's."""
        found: dict[ReviewStage, dict[str, Any]] = {}
        for item in self.session.scalars(
            select(ReviewItem)
            .where(ReviewItem.object_id == object_id, ReviewItem.status == ReviewStatus.RESOLVED)
            .order_by(ReviewItem.resolved_at)
        ):
            if item.corrected is not None:
                found[ReviewStage(item.stage)] = item.corrected
        return found

    def history(self, object_id: int) -> list[ReviewItem]:
        return list(
            self.session.scalars(select(ReviewItem).where(ReviewItem.object_id == object_id).order_by(ReviewItem.id))
        )

    def summary(self, run_ids: list[str]) -> ReviewQueueSummary:
        """Items the run opened per stage and reason, the waiting backlog per stage, and the oldest waiting item."""
        opened: dict[tuple[str, str], int] = {}
        for stage, reasons, audit in self.session.execute(
            select(ReviewItem.stage, ReviewItem.reasons, ReviewItem.audit).where(ReviewItem.run_id.in_(run_ids))
        ).tuples():
            for code in ["audit"] if audit else sorted({r["code"] for r in reasons}):
                opened[stage, code] = opened.get((stage, code), 0) + 1
        waiting = self.session.execute(
            select(ReviewItem.stage, func.count()).where(ReviewItem.status.in_(_WAITING)).group_by(ReviewItem.stage)
        )
        backlog = {stage: count for stage, count in waiting.tuples()}
        oldest = self.session.execute(
            select(ReviewItem.created_at, SourceObject.key)
            .join(SourceObject, SourceObject.id == ReviewItem.object_id)
            .where(ReviewItem.status.in_(_WAITING))
            .order_by(ReviewItem.created_at, ReviewItem.id)
            .limit(1)
        ).first()
        return ReviewQueueSummary(
            opened=tuple(ReviewOpened(stage=s, reason=r, items=n) for (s, r), n in sorted(opened.items())),
            backlog=backlog,
            oldest_open_at=oldest[0] if oldest else None,
            oldest_open_key=oldest[1] if oldest else None,
        )


class ExportMarks:
    """The items a review file holds, marked `exported` only once the file is in place (`keep`); dropped when it is
    not. On PostgreSQL each chunk is marked as it is written, from a second connection in a transaction of its own
    that `keep` commits: the UPDATEs run on the server while Python writes the file (the one UPDATE of a 50,000-item
    export after the file took 0.5 s of its 1.9). Until then no other session sees the marks, and a failure rolls
    them back. SQLite marks them in the export's own session at the end: one writer at a time, and an in-memory
    database is one connection.

        with ExportMarks(session) as marks:
            ... marks.add(ids) as the file is written ...
            marks.keep()  # after the file replaced the old one
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        concurrent = session.get_bind().dialect.name == "postgresql"
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="review-marks") if concurrent else None
        self._marker: Session | None = None  # the worker's session, used only in its thread
        self._marking: list[Future[None]] = []
        self._ids: list[int] = []

    def add(self, ids: Sequence[int]) -> None:
        if self._worker is None:
            self._ids.extend(ids)
        else:
            self._marking.append(self._worker.submit(self._mark, list(ids)))

    def _mark(self, ids: list[int]) -> None:
        if self._marker is None:
            self._marker = Session(self._session.get_bind())
            self._marker.begin()
        ReviewRepository(self._marker).mark_all_exported(ids)

    def keep(self) -> None:
        """Make the marks stand: raises what marking raised (the file is in place, its items stay waiting)."""
        if self._worker is None:
            ReviewRepository(self._session).mark_all_exported(self._ids)
        else:
            for marking in self._marking:
                marking.result()
            if self._marker is not None:
                self._worker.submit(self._marker.commit).result()

    def __enter__(self) -> ExportMarks:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._worker is None:
            return
        for marking in self._marking:  # those not started yet (after a failure)
            marking.cancel()
        self._worker.submit(self._close)  # after the marks started: the worker runs them in order
        self._worker.shutdown(wait=True)

    def _close(self) -> None:
        if self._marker is not None:
            self._marker.close()  # rolls back what `keep` did not commit


def item_view(item: ReviewItem) -> ReviewItemView:
    obj = item.source_object
    return ReviewItemView(
        id=item.id,
        object_id=item.object_id,
        key=obj.key,
        kind=obj.kind,
        stage=ReviewStage(item.stage),
        schema_id=item.schema_id,
        status=ReviewStatus(item.status),
        audit=item.audit,
        reasons=[ReviewReason.model_validate(r) for r in item.reasons],
        model_output=item.model_output,
        model_id=item.model_id,
        score=item.score,
        pages=[p.uri for p in obj.pages],
        corrected=item.corrected,
        reviewer=item.reviewer,
        created_at=item.created_at,
        resolved_at=item.resolved_at,
        note=item.note,
    )


def _row_view(row: Any, pages: list[str]) -> ReviewItemView:
    """`item_view` of a row of `_VIEW_COLUMNS` and the object's key and kind."""
    return ReviewItemView(
        id=row.id,
        object_id=row.object_id,
        key=row.key,
        kind=row.kind,
        stage=ReviewStage(row.stage),
        schema_id=row.schema_id,
        status=ReviewStatus(row.status),
        audit=row.audit,
        reasons=[ReviewReason.model_validate(r) for r in row.reasons],
        model_output=row.model_output,
        model_id=row.model_id,
        score=row.score,
        pages=pages,
        corrected=row.corrected,
        reviewer=row.reviewer,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        note=row.note,
    )
