"""What `docflow status`, `show` and `review list` report: the status query over one read-only unit of work."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.review import ReviewStage
from schemas.settings import Settings
from schemas.status import ObjectList, ObjectView, ReviewQueueView, StatusReport
from storage.db import unit_of_work
from storage.status import StatusQuery, find_object, object_view, object_view_of
from storage.tables import utcnow


def collect_status(
    settings: Settings,
    failures_limit: int = 50,
    runs_limit: int = 10,
    documents_limit: int = 50,
    review_limit: int = 20,
) -> StatusReport:
    with unit_of_work(settings.database_url) as session:
        return StatusQuery(session).report(
            now=utcnow(),
            stale_after_s=settings.runner.claim_stale_after_s,
            failures_limit=failures_limit,
            runs_limit=runs_limit,
            documents_limit=documents_limit,
            review_limit=review_limit,
        )


def collect_object(settings: Settings, ref: str) -> ObjectView | None:
    with unit_of_work(settings.database_url) as session:
        return object_view(session, ref)


@dataclass(frozen=True)
class ObjectLookup:
    """The object a reference names, or the keys it could mean (`candidates` of `candidates_total`), or the keys
    that look like it (`suggestions`)."""

    view: ObjectView | None
    candidates: list[str] = field(default_factory=list)
    candidates_total: int = 0
    suggestions: list[str] = field(default_factory=list)


def look_up_object(settings: Settings, ref: str) -> ObjectLookup:
    with unit_of_work(settings.database_url) as session:
        match = find_object(session, ref)
        return ObjectLookup(
            view=object_view_of(session, match.row) if match.row is not None else None,
            candidates=match.candidates,
            candidates_total=match.candidates_total,
            suggestions=match.suggestions,
        )


def collect_run_outcomes(settings: Settings, run_id: str, limit: int = 20) -> dict[str, ObjectList]:
    with unit_of_work(settings.database_url) as session:
        return StatusQuery(session).run_outcomes(run_id, limit)


def collect_review_queue(settings: Settings, limit: int = 50, stage: ReviewStage | None = None) -> ReviewQueueView:
    with unit_of_work(settings.database_url) as session:
        return StatusQuery(session).review_queue(limit, stage)
