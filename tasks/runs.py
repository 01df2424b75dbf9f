"""Run bookkeeping: a row per flow run, and the summary a finished run reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schemas.records import DiscoveryResult, FailureRecord, RunKind, RunSummary
from schemas.settings import Settings
from storage.db import unit_of_work
from storage.repositories import ObjectRepository, RunRepository
from storage.review import ReviewRepository
from storage.tables import utcnow


def start_run(settings: Settings, run_id: str, kind: RunKind, parameters: dict[str, Any]) -> None:
    with unit_of_work(settings.database_url) as session:
        RunRepository(session).start(run_id, kind.value, parameters)


def record_plan(settings: Settings, run_id: str, plan: DiscoveryResult) -> None:
    """What discovery found: entries it already failed (a FIFO...) count as processed, warnings stay on the run."""
    with unit_of_work(settings.database_url) as session:
        runs = RunRepository(session)
        runs.record_plan(run_id, listed=plan.listed, planned=len(plan.object_ids) + plan.failed, warnings=plan.warnings)
        runs.add_counts(run_id, processed=plan.failed, failed=plan.failed)


def finish_run(settings: Settings, run_id: str, failed_windows: int, error: str | None) -> RunSummary:
    with unit_of_work(settings.database_url) as session:
        run = RunRepository(session).finish(run_id, "failed" if (failed_windows or error) else "completed", error)
        objects = ObjectRepository(session)
        stale_before = utcnow() - timedelta(seconds=settings.runner.claim_stale_after_s)
        stale = objects.stale_claims(stale_before, exclude_run=run_id)
        warnings = list(run.warnings or [])
        if stale:
            oldest = min(o.claimed_at for o in stale if o.claimed_at is not None)
            warnings.append(
                f"{len(stale)} object(s) are still claimed by a run that stopped without finishing (claim last "
                f"renewed {oldest:%Y-%m-%d %H:%M:%S} UTC); the next run after the claim expires "
                f"(DOCFLOW_CLAIM_TTL_S={settings.runner.claim_ttl_s}) takes them over"
            )
        failures = tuple(
            FailureRecord(key=o.key, source=o.source, kind=o.kind, code=o.error_code, error=o.error_message or "")
            for o in objects.failures(run_id=run_id, limit=500)
        )
        return RunSummary(
            run_id=run.id,
            kind=RunKind(run.kind),
            status=run.status,
            started_at=run.started_at,
            finished_at=run.finished_at,
            listed=run.discovered,
            planned=run.planned,
            processed=run.processed,
            by_status=objects.count_by_status(run_id=run_id),
            by_kind=objects.count_by_kind(run_id=run_id),
            failures=failures,
            failed_windows=failed_windows,
            stages=tuple(RunRepository(session).stage_totals(run_id)),
            error=error,
            warnings=tuple(warnings),
            stale_claims=len(stale),
            review=ReviewRepository(session).summary(run_id),
        )
