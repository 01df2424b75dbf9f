"""What `docflow status` reports, as plain JSON-ready data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schemas.settings import Settings
from storage.db import unit_of_work
from storage.repositories import ObjectRepository, RunRepository
from storage.tables import utcnow


def collect_status(
    settings: Settings, failures_limit: int = 50, runs_limit: int = 10, documents_limit: int = 50
) -> dict[str, Any]:
    now = utcnow()
    stale_after = timedelta(seconds=settings.claim_stale_after_s)
    with unit_of_work(settings.database_url) as session:
        objects = ObjectRepository(session)
        return {
            "objects": objects.count_by_status(),
            "by_kind": objects.count_by_kind(),
            "by_label": objects.count_by_label(),
            "documents": [
                {
                    "key": o.key,
                    "source": o.source,
                    "kind": o.kind,
                    "status": o.status,
                    "label": c.label,
                    "probability": round(c.probability, 4),
                    "margin": round(c.margin, 4),
                    "runner_up": c.runner_up,
                    "route": c.route,
                    "review_reason": o.review_reason,
                }
                for o, c in objects.classified(limit=documents_limit)
            ],
            "in_progress": [
                {
                    "key": o.key,
                    "source": o.source,
                    "run_id": o.run_id or "",
                    "attempts": o.attempts,
                    "claimed_at": o.claimed_at.isoformat() if o.claimed_at else None,
                    "claim_age_s": round((now - o.claimed_at).total_seconds(), 1) if o.claimed_at else None,
                    "stale": o.claimed_at is not None and now - o.claimed_at > stale_after,
                }
                for o in objects.in_progress()
            ],
            "failures": [
                {"key": o.key, "source": o.source, "kind": o.kind, "code": o.error_code, "error": o.error_message}
                for o in objects.failures(limit=failures_limit)
            ],
            "runs": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "status": r.status,
                    "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                    "listed": r.discovered,
                    "processed": r.processed,
                    "failed": r.failed,
                    "warnings": r.warnings or [],
                }
                for r in RunRepository(session).recent(runs_limit)
            ],
        }
