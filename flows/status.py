"""What `docflow status` reports: the status query over one read-only unit of work."""

from __future__ import annotations

from schemas.settings import Settings
from schemas.status import ObjectView, StatusReport
from storage.db import unit_of_work
from storage.status import StatusQuery, object_view
from storage.tables import utcnow


def collect_status(
    settings: Settings, failures_limit: int = 50, runs_limit: int = 10, documents_limit: int = 50
) -> StatusReport:
    with unit_of_work(settings.database_url) as session:
        return StatusQuery(session).report(
            now=utcnow(),
            stale_after_s=settings.runner.claim_stale_after_s,
            failures_limit=failures_limit,
            runs_limit=runs_limit,
            documents_limit=documents_limit,
        )


def collect_object(settings: Settings, ref: str) -> ObjectView | None:
    with unit_of_work(settings.database_url) as session:
        return object_view(session, ref)
