"""What `docflow status` reports, as plain JSON-ready data."""

from __future__ import annotations

from typing import Any

from schemas.settings import Settings
from storage.db import unit_of_work
from storage.repositories import ObjectRepository, RunRepository


def collect_status(
    settings: Settings, failures_limit: int = 50, runs_limit: int = 10, documents_limit: int = 50
) -> dict[str, Any]:
    with unit_of_work(settings.database_url) as session:
        objects = ObjectRepository(session)
        return {
            "objects": objects.count_by_status(),
            "by_kind": objects.count_by_kind(),
            "by_label": objects.count_by_label(),
            "documents": [
                {
                    "key": o.key, "source": o.source, "kind": o.kind, "status": o.status, "label": c.label,
                    "probability": round(c.probability, 4), "margin": round(c.margin, 4), "runner_up": c.runner_up,
                    "route": c.route, "review_reason": o.review_reason,
                }
                for o, c in objects.classified(limit=documents_limit)
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
                }
                for r in RunRepository(session).recent(runs_limit)
            ],
        }
