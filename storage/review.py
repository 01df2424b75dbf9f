"""Review items in the database: opened when a result is recorded, marked when sent out, resolved with a
correction (stored beside the model's output) or dismissed when the object is processed again."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from schemas.records import ReviewOpened, ReviewQueueSummary, ReviewReason
from schemas.review import ReviewDraft, ReviewItemView, ReviewStage, ReviewStatus
from storage.tables import ReviewItem, SourceObject, utcnow

_WAITING = (ReviewStatus.OPEN, ReviewStatus.EXPORTED)


@dataclass(frozen=True)
class Resolution:
    """What applying one correction did: `changed` is False when the item already held this very correction."""

    item_id: int
    changed: bool


class ReviewRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def open(self, object_id: int, drafts: Sequence[ReviewDraft], run_id: str | None) -> list[ReviewItem]:
        """The object's new review items; the ones still waiting from an earlier result are dismissed (the result
        they were about is gone). Resolved items stay: they are the object's review history."""
        for item in self.session.scalars(
            select(ReviewItem).where(ReviewItem.object_id == object_id, ReviewItem.status.in_(_WAITING))
        ):
            item.status = ReviewStatus.DISMISSED
            item.note = f"superseded: the object was processed again (run {run_id})"
        items = [
            ReviewItem(
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
            for draft in drafts
        ]
        self.session.add_all(items)
        return items

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

    def mark_exported(self, item: ReviewItem, project: str | None = None, task: str | None = None) -> None:
        if item.status == ReviewStatus.OPEN:
            item.status = ReviewStatus.EXPORTED
        item.exported_at = utcnow()
        if task is not None:
            item.external_project, item.external_task = project, task

    def resolve(self, item: ReviewItem, corrected: dict[str, Any], reviewer: str | None) -> Resolution:
        """Store the reviewer's (validated) value and resolve the item; the same correction again is a no-op."""
        if item.status == ReviewStatus.RESOLVED and item.corrected == corrected:
            return Resolution(item.id, changed=False)
        item.corrected = corrected
        item.reviewer = reviewer
        item.status = ReviewStatus.RESOLVED
        item.resolved_at = utcnow()
        item.note = None
        return Resolution(item.id, changed=True)

    def reject(self, item: ReviewItem, reason: str) -> None:
        """Note why a correction was not taken (the item keeps waiting)."""
        item.note = f"correction rejected: {reason}"

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
