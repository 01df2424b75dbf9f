"""The nightly and backfill flows. Orchestration only: the work lives in tasks/."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from schemas.records import DiscoveryRequest, ObjectKind, RunKind, RunSummary
from schemas.settings import Settings, load_settings
from storage.batching import chunked
from tasks.display import first_line
from tasks.run import fanout, steps
from tasks.run.claims import ClaimHeartbeat
from tasks.run.prefect_tasks import run_tasks
from tasks.run.report import run_markdown, stage_lines
from tasks.run.steps import Handoff
from tasks.run.timing import RunClock
from tasks.run.windows import work_windows
from tasks.run.workdirs import run_work_dir


class RunFailed(RuntimeError):
    """Raised at the end of a run some of whose windows (or shards) failed; carries the run's summary and what
    failed, as (what, why) pairs. Its message is the reason the flow run's Failed state shows in the UI."""

    def __init__(self, summary: RunSummary, failures: Sequence[tuple[str, str]]) -> None:
        self.summary = summary
        self.failures = tuple(failures)
        what = (
            f"{len(self.failures)} of {len(summary.shards)} shard(s) did not complete"
            if summary.shards
            else f"{summary.failed_windows} window(s) failed after retries"
        )
        reasons = "; ".join(dict.fromkeys(why for _, why in self.failures))
        super().__init__(f"{what}: {reasons}. Their objects stay pending for the next run")


def preprocessing_runner(settings: Settings) -> TaskRunner[Any]:
    """The preprocessing tasks' own pool: DOCFLOW_TASK_RUNNER with DOCFLOW_WORKERS workers, so CPU work (and its
    database writes) run exactly that wide, while the model stages, which mostly wait for the device's slot, run
    on the flow's task runner beside it."""
    if settings.runner.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=settings.runner.pool_size)
    return ThreadPoolTaskRunner(max_workers=settings.runner.pool_size)


def _task_size(window: int, settings: Settings) -> int:
    """Objects per preprocessing task: the window shared among the workers, at most DOCFLOW_BATCH_SIZE each."""
    return max(1, min(settings.runner.batch_size, math.ceil(window / settings.runner.pool_size)))


class _ThreadTimeoutNotice(logging.Filter):
    """Drops Prefect's per-task notice that a timeout cannot interrupt a blocking call in a worker thread: said once
    in the README (the poppler and decoder limits are the guards; timeout_seconds is the backstop that fails the
    task once a call returns), it would otherwise be a warning on every task run in the UI."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "running in a worker thread" not in record.getMessage()


def _quiet_thread_timeout_notice() -> None:
    task_logger = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, _ThreadTimeoutNotice) for f in task_logger.filters):
        task_logger.addFilter(_ThreadTimeoutNotice())


@dataclass
class _Window:
    index: int
    object_ids: list[int]
    futures: list[PrefectFuture[Handoff]]  # the tasks of its current stage
    stage: str | None = None  # the model stage its tasks run (None: preprocessing)
    running: set[UUID] = field(default_factory=set)  # task runs of the current stage not finished yet

    def start(self, futures: list[PrefectFuture[Handoff]]) -> None:
        self.futures = futures
        self.running = {f.task_run_id for f in futures}


def run_pipeline(
    settings: Settings, kind: RunKind, request: DiscoveryRequest, fan_out: bool | None = None
) -> RunSummary:
    """Discover what to do, then either process it here or, with fan-out, hand it to shard runs on the work pool;
    one summary either way."""
    run_id = str(flow_run.get_id() or uuid.uuid4())
    t = run_tasks(settings.runner)
    limit = t.prepare(settings)
    t.start_run(settings, run_id, kind, request.model_dump(mode="json"))
    try:
        plan = t.discover(settings, request, run_id)
    except Exception as exc:  # a store or database outage at listing time: record it on the run, then fail
        t.finish_run(settings, run_id, 0, f"discovery failed: {exc}", return_state=True)
        raise
    if settings.deploy.fan_out if fan_out is None else fan_out:
        return _fan_out(settings, kind, run_id, plan.object_ids, request)
    return _process_here(settings, kind, run_id, plan.object_ids, request, limit, plan.costs)


def _process_here(
    settings: Settings,
    kind: RunKind,
    run_id: str,
    object_ids: Sequence[int],
    request: DiscoveryRequest,
    limit: str,
    costs: Sequence[float] = (),
) -> RunSummary:
    windows_started = datetime.now(UTC)
    clock = RunClock(windows_started)
    window_errors = process_objects(settings, run_id, object_ids, request, limit, costs, clock)
    orchestration_s = clock.orchestration_s(datetime.now(UTC))
    distinct = dict.fromkeys(error for _, error in window_errors)
    summary = run_tasks(settings.runner).finish_run(settings, run_id, len(window_errors), "; ".join(distinct) or None)
    summary = summary.model_copy(
        update={
            "planning_s": max(0.0, (windows_started - summary.started_at).total_seconds()),
            "orchestration_s": orchestration_s,
            "preparation_s": {stage: s for stage, s in clock.prepare_s.items() if s >= 0.01},
        }
    )
    _publish(summary, kind)
    if window_errors:
        raise RunFailed(summary, window_errors)
    return summary


def _fan_out(
    settings: Settings, kind: RunKind, run_id: str, object_ids: Sequence[int], request: DiscoveryRequest
) -> RunSummary:
    """Shards as docflow-shard deployment runs that any worker takes; wait for all, then one summary."""
    t = run_tasks(settings.runner)
    progress = cast(
        UUID, create_progress_artifact(progress=0.0 if object_ids else 100.0, description="objects finished")
    )
    try:
        submitted = fanout.submit_shards(
            run_id,
            fanout.plan_shards(object_ids, settings.deploy.shard_size),
            force=request.force,
            retry_failed=request.retry_failed,
        )
    except Exception as exc:  # no deployment, no server: record it on the run, then fail
        t.finish_run(settings, run_id, 0, f"fan-out failed: {exc}", return_state=True)
        raise
    get_run_logger().info(
        "%d objects in %d shard(s) on work pool %r", len(object_ids), len(submitted), settings.deploy.work_pool
    )

    def on_progress(recorded: int) -> None:
        update_progress_artifact(progress, progress=100.0 * min(recorded, len(object_ids)) / max(len(object_ids), 1))

    shards = fanout.wait_for_shards(settings, submitted, on_progress)
    errors = fanout.shard_errors(shards)
    summary = t.finish_run(settings, run_id, 0, "; ".join(errors) or None, shards)
    _publish(summary, kind)
    if errors:
        raise RunFailed(summary, [(s.name, f"{s.state}: {s.message or 'no message'}") for s in shards if not s.ok])
    return summary


def _publish(summary: RunSummary, kind: RunKind) -> None:
    """Stage timings in the log; the summary artifact, except for a shard (its parent publishes the run's)."""
    logger = get_run_logger()
    for line in stage_lines(summary):
        logger.info(line)
    if kind is RunKind.SHARD:
        return
    create_markdown_artifact(
        key=f"docflow-{kind.value}-summary", markdown=run_markdown(summary), description="docflow run summary"
    )


def process_objects(
    settings: Settings,
    run_id: str,
    object_ids: Sequence[int],
    request: DiscoveryRequest,
    limit: str,
    costs: Sequence[float] = (),
    clock: RunClock | None = None,
) -> list[tuple[str, str]]:
    """Windows of objects flow through the stages: each window is claimed, preprocessed by parallel CPU tasks,
    then handed to each model stage in turn (one task per stage and window, holding the device's concurrency
    slot). While the models work on one window, the next ones are preprocessed. Windows are sized by work
    (`costs`, from discovery: one page each when not given): DOCFLOW_WINDOW_PAGES, at most DOCFLOW_WINDOW_SIZE
    objects. `clock` collects when the stages worked. Returns the failed windows."""
    _quiet_thread_timeout_notice()
    t = run_tasks(settings.runner)
    preprocess, model_stage = t.preprocess, t.model_stage
    planned = len(object_ids)
    # Typed as "UUID or coroutine" (it also works in async flows); in this sync flow it is the artifact's id.
    progress = cast(UUID, create_progress_artifact(progress=0.0 if planned else 100.0, description="objects finished"))
    priced = zip(object_ids, costs, strict=True) if costs else ((object_id, 1.0) for object_id in object_ids)
    windows = enumerate(work_windows(priced, settings.runner.window_size, settings.runner.window_pages))
    in_flight: list[_Window] = []
    window_errors: list[tuple[str, str]] = []
    settled = 0

    with (
        ClaimHeartbeat(settings, run_id),
        run_work_dir(settings.temp_dir) as work_dir,
        preprocessing_runner(settings) as cpu,
    ):

        def start_next_window() -> bool:
            if (item := next(windows, None)) is None:
                return False
            index, ids = item
            parameters = {
                "settings": unmapped(settings),
                "run_id": unmapped(run_id),
                "window": unmapped(index),
                "object_ids": list(chunked(ids, _task_size(len(ids), settings))),
                "force": unmapped(request.force),
                "retry_failed": unmapped(request.retry_failed),
                "work_dir": unmapped(work_dir),
            }
            # TaskRunner.map's signature expects a task that may return a coroutine; a sync task is one of those.
            futures: list[PrefectFuture[Handoff]] = list(cpu.map(preprocess, parameters))  # type: ignore[arg-type]
            window = _Window(index, ids, [])
            window.start(futures)
            in_flight.append(window)
            return True

        def advance(window: _Window) -> None:
            """The window's current stage is over: hand its items to the next model stage, or settle it."""
            nonlocal settled
            outcomes = [future.result(raise_on_failure=False) for future in window.futures]
            failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
            handoffs = [o for o in outcomes if not isinstance(o, BaseException)]
            items = [item for handoff in handoffs for item in handoff.items]
            if clock is not None:
                for handoff in handoffs:
                    clock.add(handoff.busy, handoff.prepare_s)
            stage = steps.next_stage(settings, window.stage, items) if failed is None else None
            if stage is not None:
                window.stage = stage
                window.start([model_stage.submit(stage, settings, run_id, window.index, items, work_dir, limit)])
                return
            if failed is not None:
                error = f"{type(failed).__name__}: {first_line(str(failed))}"
                window_errors.append((f"window {window.index}", error))
                t.release(settings, run_id, window.object_ids, return_state=True)  # best effort; claims expire
            in_flight.remove(window)
            settled += len(window.object_ids)
            update_progress_artifact(progress, progress=100.0 * settled / max(planned, 1))

        while len(in_flight) < settings.runner.windows_in_flight and start_next_window():
            pass
        while in_flight:
            done = next(as_completed([f for w in in_flight for f in w.futures if f.task_run_id in w.running]))
            window = next(w for w in in_flight if done.task_run_id in w.running)
            window.running.discard(done.task_run_id)
            if not window.running:
                advance(window)
            while len(in_flight) < settings.runner.windows_in_flight and start_next_window():
                pass
    return window_errors


def _nightly_run_name() -> str:
    """`nightly 2026-11-27 02:00 UTC`: the run's scheduled time, what an operator looks for in the UI."""
    return f"nightly {flow_run.scheduled_start_time.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _backfill_run_name() -> str:
    """`backfill since 2026-11-01 (force)`."""
    parameters = flow_run.parameters
    since = str(parameters.get("since", ""))[:10]
    until = f" until {str(parameters['until'])[:10]}" if parameters.get("until") else ""
    return f"backfill since {since}{until}" + (" (force)" if parameters.get("force") else "")


@flow(
    name="docflow-nightly",
    description="Process everything new under the configured sources.",
    flow_run_name=_nightly_run_name,
)
def nightly(
    source: list[str] | None = None, limit: int | None = None, retry_failed: bool = False, fan_out: bool | None = None
) -> RunSummary:
    settings = load_settings(source=source)
    request = DiscoveryRequest(sources=tuple(settings.source), limit=limit, retry_failed=retry_failed)
    return run_pipeline(settings, RunKind.NIGHTLY, request, fan_out)


@flow(
    name="docflow-backfill",
    description="(Re)process objects last modified in a time window.",
    flow_run_name=_backfill_run_name,
)
def backfill(
    since: datetime,
    until: datetime | None = None,
    prefixes: list[str] | None = None,
    kinds: list[ObjectKind] | None = None,
    force: bool = False,
    retry_failed: bool = False,
    source: list[str] | None = None,
    limit: int | None = None,
    fan_out: bool | None = None,
) -> RunSummary:
    settings = load_settings(source=source)
    request = DiscoveryRequest(
        sources=tuple(settings.source),
        prefixes=tuple(prefixes or ("",)),
        since=_utc(since),
        until=_utc(until) if until else None,
        kinds=tuple(kinds or ()),
        force=force,
        retry_failed=retry_failed,
        limit=limit,
    )
    return run_pipeline(settings, RunKind.BACKFILL, request, fan_out)


@flow(name="docflow-shard", description="One shard of a fanned-out run: the objects its parent planned for it.")
def shard(
    parent_run_id: str, shard: int, object_ids: list[int], force: bool = False, retry_failed: bool = False
) -> RunSummary:
    """Started by a nightly or backfill run with DOCFLOW_FAN_OUT on (as `process-shard-N (M objects)`); claims
    its objects in the database, so a shard that runs twice or overlaps another never processes one twice."""
    settings = load_settings()
    run_id = str(flow_run.get_id() or uuid.uuid4())
    t = run_tasks(settings.runner)
    limit = t.prepare(settings)
    t.start_shard(settings, run_id, parent_run_id, shard, len(object_ids))
    request = DiscoveryRequest(sources=tuple(settings.source), force=force, retry_failed=retry_failed)
    return _process_here(settings, RunKind.SHARD, run_id, object_ids, request, limit)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
