"""Run bookkeeping: a row per flow run (a fanned-out run's shards each have theirs, pointing at it), and the
summary a finished run reports: its own objects and those of its shards."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from schemas.records import DiscoveryResult, FailureRecord, RunKind, RunSummary, ShardSummary
from schemas.settings import Settings
from storage.db import unit_of_work
from storage.repositories import ObjectRepository, RunRepository
from storage.review import ReviewRepository
from storage.tables import utcnow


def start_run(
    settings: Settings,
    run_id: str,
    kind: RunKind,
    parameters: dict[str, Any],
    parent_id: str | None = None,
    worker: str | None = None,
) -> None:
    with unit_of_work(settings.database_url) as session:
        RunRepository(session).start(run_id, kind.value, parameters, parent_id=parent_id, worker=worker)


def record_shard_plan(settings: Settings, run_id: str, planned: int) -> None:
    """A shard was handed its objects by its parent: nothing listed, `planned` to account for."""
    with unit_of_work(settings.database_url) as session:
        RunRepository(session).record_plan(run_id, listed=0, planned=planned, warnings=())


def record_plan(settings: Settings, run_id: str, plan: DiscoveryResult) -> None:
    """What discovery found: entries it already failed (a FIFO...) count as processed, warnings stay on the run."""
    with unit_of_work(settings.database_url) as session:
        runs = RunRepository(session)
        runs.record_plan(run_id, listed=plan.listed, planned=len(plan.object_ids) + plan.failed, warnings=plan.warnings)
        runs.add_counts(run_id, processed=plan.failed, failed=plan.failed)


def finish_run(
    settings: Settings,
    run_id: str,
    failed_windows: int,
    error: str | None,
    shards: Sequence[ShardSummary] = (),
) -> RunSummary:
    """Close the run and summarise it. A fanned-out run passes its shards' flow-run outcomes: the summary counts
    their objects too, and a shard whose flow run crashed (its worker died) is closed as such here."""
    with unit_of_work(settings.database_url) as session:
        runs = RunRepository(session)
        run = runs.finish(run_id, "failed" if (failed_windows or error) else "completed", error)
        shards = _close_shards(runs, shards)
        family = runs.family(run_id)
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
            for o in objects.failures(run_ids=family, limit=500)
        )
        return RunSummary(
            run_id=run.id,
            kind=RunKind(run.kind),
            status=run.status,
            started_at=run.started_at,
            finished_at=run.finished_at,
            listed=run.discovered,
            planned=run.planned,
            processed=run.processed + sum(s.processed for s in shards),
            by_status=objects.count_by_status(run_ids=family),
            by_kind=objects.count_by_kind(run_ids=family),
            failures=failures,
            failed_windows=failed_windows,
            stages=tuple(runs.stage_totals(family)),
            error=error,
            warnings=tuple(warnings),
            stale_claims=len(stale),
            review=ReviewRepository(session).summary(family),
            shards=tuple(shards),
        )


def _close_shards(runs: RunRepository, shards: Sequence[ShardSummary]) -> list[ShardSummary]:
    """Each shard with its worker and its count from its own row; a row a dead shard left 'running' is closed."""
    closed = []
    for shard in shards:
        row = runs.get(shard.run_id)
        if row is None:  # never started: no worker took it, or it crashed before its first step
            closed.append(shard)
            continue
        if row.status == "running":
            runs.finish(shard.run_id, shard.state.lower(), shard.message)
        closed.append(shard.model_copy(update={"processed": row.processed, "worker": row.worker}))
    return closed
