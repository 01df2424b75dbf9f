"""Thin Prefect tasks over the stage logic. Retries are for infrastructure faults only: a broken file is data
(a failed row), never a reason to retry. How many, and how long apart, is RunnerSettings': the tasks are declared
here without retries (at import time, before any settings), and a flow calls them through `with_retries` (the
pipeline's, all at once: `RunTasks`)."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from schemas.records import DiscoveryRequest, DiscoveryResult, RunKind, RunSummary, ShardSummary
from schemas.settings import RunnerSettings, Settings
from storage.db import migrate
from tasks.faults import is_infrastructure_fault
from tasks.pipeline.stage import WorkItem
from tasks.review import queue
from tasks.review.label_studio import Connection
from tasks.run import claims, discovery, fanout, runs, steps
from tasks.run.concurrency import device_slot, ensure_limit, model_limit_name
from tasks.run.stages import check_model_server
from tasks.run.workdirs import clean_stale_work_dirs
from tasks.system_tools import check_tools


def retry_on_infrastructure_fault(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """retry_condition_fn: retry store/database outages, not bugs."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_infrastructure_fault(exc)


_COMMON: dict[str, Any] = {"cache_policy": NO_CACHE, "retry_condition_fn": retry_on_infrastructure_fault}

P = ParamSpec("P")
R = TypeVar("R")


def with_retries(task: Task[P, R], runner: RunnerSettings, **options: Any) -> Task[P, R]:
    """`task` with the retries every task gets: DOCFLOW_RETRIES of them, the first DOCFLOW_RETRY_DELAY_S after the
    failure, each next one twice as long after; its retry condition (infrastructure faults only) kept. `options`:
    more of Task.with_options (a time limit)."""
    return task.with_options(
        retries=runner.retries, retry_delay_seconds=exponential_backoff(backoff_factor=runner.retry_delay_s), **options
    )


@task(name="prepare", **_COMMON)
def prepare(settings: Settings) -> str:
    """Programs on PATH, an inference server's key and model, schema to head, the device's concurrency limit;
    scratch folders that killed runs left behind are removed. Returns the name of the concurrency limit the model
    stages hold."""
    logger = get_run_logger()
    check_tools(settings)
    check_model_server(settings)
    migrate(settings.database_url)
    removed = clean_stale_work_dirs(settings.temp_dir or Path(tempfile.gettempdir()))
    if removed:
        logger.info("removed %d scratch folder(s) left by runs that were killed", removed)
    name = model_limit_name(settings)
    slots = ensure_limit(name, settings.device.slots)
    logger.info("model stages hold a slot of the global concurrency limit %r (%d slot(s))", name, slots)
    return name


@task(name="start-run", **_COMMON)
def start_run(settings: Settings, run_id: str, kind: RunKind, parameters: dict[str, Any]) -> None:
    runs.start_run(settings, run_id, kind, parameters, worker=fanout.worker_identity())


@task(name="start-shard", **_COMMON)
def start_shard(settings: Settings, run_id: str, parent_run_id: str, shard: int, objects: int) -> str:
    """The shard's own run row, pointing at its parent and naming the worker that took it. Returns the worker."""
    worker = fanout.worker_identity()
    runs.start_run(settings, run_id, RunKind.SHARD, {"shard": shard}, parent_id=parent_run_id, worker=worker)
    runs.record_shard_plan(settings, run_id, objects)
    get_run_logger().info("shard %d of run %s: %d objects on %s", shard, parent_run_id, objects, worker)
    return worker


@task(name="discover", **_COMMON)
def discover(settings: Settings, request: DiscoveryRequest, run_id: str) -> DiscoveryResult:
    result = discovery.discover(settings, request, run_id)
    runs.record_plan(settings, run_id, result)
    get_run_logger().info(
        "discovery: %d listed, %d new, %d to process, %d failed without processing",
        result.listed,
        result.new,
        len(result.object_ids),
        result.failed,
    )
    return result


@task(name="preprocess", task_run_name="preprocess-{window}", **_COMMON)
def preprocess(
    settings: Settings,
    run_id: str,
    window: int,
    object_ids: Sequence[int],
    force: bool,
    retry_failed: bool,
    work_dir: Path,
) -> steps.Handoff:
    """CPU: claim the objects still eligible, then download, detect, render/normalise or decode + VAD. Objects
    that end here are recorded here."""
    refs = claims.claim(settings, run_id, object_ids, force=force, retry_failed=retry_failed)
    step = steps.preprocess(settings, run_id, window, refs, work_dir)
    _log_step(step, window)
    return step.handoff()


@task(name="model-stage", task_run_name="{stage}-{window}", **_COMMON)
def model_stage(
    stage: str,
    settings: Settings,
    run_id: str,
    window: int,
    items: Sequence[WorkItem],
    work_dir: Path,
    limit: str,
) -> steps.Handoff:
    """One model stage over every item of a window, holding a slot of the device's concurrency limit (strict: a
    missing limit is an error, never an unguarded GPU)."""
    step = steps.run_step(settings, run_id, window, stage, items, work_dir, slot=lambda: device_slot(limit))
    _log_step(step, window)
    return step.handoff()


def _log_step(step: steps.StepResult, window: int) -> None:
    report = step.report
    if not report.items and not step.recorded.recorded:
        return
    parts = [f"{report.items} object(s)"]
    if report.pages:
        parts.append(f"{report.pages} page(s)")
    if report.audio_s:
        parts.append(f"{report.audio_s / 60:.1f} min of audio")
    if report.batch_rows:
        fill = sum(report.batch_rows) / (len(report.batch_rows) * report.batch_capacity)
        parts.append(f"{len(report.batch_rows)} forward batch(es), mean fill {fill:.0%}")
    recorded = ", ".join(f"{n} {status}" for status, n in sorted(step.recorded.by_status.items()))
    waited = f" (after {step.slot_wait_s:.2f} s waiting for the device)" if step.slot_wait_s >= 0.01 else ""
    prepared = ", ".join(f"{s:.2f} s for {name}" for name, s in step.prepare_s.items() if s >= 0.01)
    if prepared:
        waited += f" (CPU preparation: {prepared})"
    get_run_logger().info(
        "%s window %d: %s in %.2f s%s%s",
        step.stage,
        window,
        ", ".join(parts),
        step.seconds,
        waited,
        f"; recorded {recorded}" if recorded else "",
    )


@task(name="release", **_COMMON)
def release(settings: Settings, run_id: str, object_ids: Sequence[int]) -> int:
    return claims.release(settings, run_id, object_ids)


@task(name="finish-run", **_COMMON)
def finish_run(
    settings: Settings,
    run_id: str,
    failed_windows: int,
    error: str | None,
    shards: Sequence[ShardSummary] = (),
) -> RunSummary:
    return runs.finish_run(settings, run_id, failed_windows, error, shards)


class RunTasks:
    """The pipeline's tasks as the settings run them: each with its retries (`with_retries`), the preprocessing and
    model stage tasks with their time limits too."""

    def __init__(self, runner: RunnerSettings) -> None:
        self.prepare = with_retries(prepare, runner)
        self.start_run = with_retries(start_run, runner)
        self.start_shard = with_retries(start_shard, runner)
        self.discover = with_retries(discover, runner)
        self.preprocess = with_retries(preprocess, runner, timeout_seconds=runner.preprocess_timeout_s)
        self.model_stage = with_retries(model_stage, runner, timeout_seconds=runner.model_timeout_s)
        self.release = with_retries(release, runner)
        self.finish_run = with_retries(finish_run, runner)


@functools.cache
def run_tasks(runner: RunnerSettings) -> RunTasks:
    """The RunTasks of these runner settings, built once per process (a flow asks for them at every step)."""
    return RunTasks(runner)


# The review-export flow's tasks (called through with_retries): Label Studio or a store may be away for a moment, so
# they retry on any fault.


@task(name="review-push")
def review_push(settings: Settings, connection: Connection, project: int) -> queue.PushReport:
    return queue.push(settings, connection, project, None)


@task(name="review-pull")
def review_pull(settings: Settings, connection: Connection, project: int) -> queue.ApplyReport:
    return queue.pull(settings, connection, project)


@task(name="review-file")
def review_file(settings: Settings, location: str) -> tuple[str, int]:
    return queue.export_to_store(settings, location)
