"""Thin Prefect tasks over the stage logic. Retries are for infrastructure faults only: a broken file is data
(a failed row), never a reason to retry."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from schemas.records import BatchOutcome, DiscoveryRequest, DiscoveryResult, RunKind, RunSummary
from schemas.settings import Settings
from storage.db import migrate
from tasks import batch, discovery, runs
from tasks.faults import is_infrastructure_fault
from tasks.system_tools import check_tools
from tasks.workdirs import clean_stale_work_dirs


def retry_on_infrastructure_fault(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """retry_condition_fn: retry store/database outages, not bugs."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_infrastructure_fault(exc)


_COMMON: dict[str, Any] = {"cache_policy": NO_CACHE, "retry_condition_fn": retry_on_infrastructure_fault}


@task(name="prepare", retries=2, retry_delay_seconds=2, **_COMMON)
def prepare(settings: Settings) -> None:
    """Programs on PATH, schema to head; scratch folders that killed runs left behind are removed."""
    check_tools(settings)
    migrate(settings.database_url)
    removed = clean_stale_work_dirs(settings.temp_dir or Path(tempfile.gettempdir()))
    if removed:
        get_run_logger().info("removed %d scratch folder(s) left by runs that were killed", removed)


@task(name="start-run", retries=2, retry_delay_seconds=2, **_COMMON)
def start_run(settings: Settings, run_id: str, kind: RunKind, parameters: dict[str, Any]) -> None:
    runs.start_run(settings, run_id, kind, parameters)


@task(name="discover", retries=2, retry_delay_seconds=2, **_COMMON)
def discover(settings: Settings, request: DiscoveryRequest, run_id: str) -> DiscoveryResult:
    result = discovery.discover(settings, request, run_id)
    runs.record_plan(settings, run_id, result)
    return result


@task(name="process-batch", task_run_name="process-batch-{index}", **_COMMON)
def process_batch(
    settings: Settings, run_id: str, index: int, object_ids: Sequence[int], force: bool, retry_failed: bool
) -> BatchOutcome:
    return batch.process_batch(settings, run_id, object_ids, force=force, retry_failed=retry_failed)


@task(name="release-batch", retries=2, retry_delay_seconds=1, **_COMMON)
def release_batch(settings: Settings, run_id: str, object_ids: Sequence[int]) -> int:
    return batch.release_batch(settings, run_id, object_ids)


@task(name="finish-run", retries=2, retry_delay_seconds=2, **_COMMON)
def finish_run(settings: Settings, run_id: str, failed_batches: int, error: str | None) -> RunSummary:
    return runs.finish_run(settings, run_id, failed_batches, error)
