"""The nightly and backfill flows. Orchestration only: the work lives in tasks/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run

from schemas.records import BatchOutcome, DiscoveryRequest, ObjectKind, RunKind, RunSummary
from schemas.settings import Settings, load_settings
from tasks import prefect_tasks as t
from tasks.display import first_line
from tasks.report import run_markdown


class RunFailed(RuntimeError):
    """Raised at the end of a run some of whose batches failed after retries; carries the run's summary and the
    error of each failed batch."""

    def __init__(self, summary: RunSummary, batch_errors: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(
            f"{summary.failed_batches} batch(es) failed after retries; their objects stay pending for the next run"
        )
        self.summary = summary
        self.batch_errors = tuple(batch_errors)


def _batches(ids: Sequence[int], size: int) -> Iterator[tuple[int, ...]]:
    it = iter(ids)
    while chunk := tuple(islice(it, size)):
        yield chunk


def run_pipeline(settings: Settings, kind: RunKind, request: DiscoveryRequest) -> RunSummary:
    run_id = str(flow_run.get_id() or uuid.uuid4())
    t.prepare(settings)
    t.start_run(settings, run_id, kind, request.model_dump(mode="json"))
    try:
        plan = t.discover(settings, request, run_id)
    except Exception as exc:  # a store or database outage at listing time: record it on the run, then fail
        t.finish_run(settings, run_id, 0, f"discovery failed: {exc}", return_state=True)
        raise

    process = t.process_batch.with_options(
        retries=settings.retries,
        retry_delay_seconds=[settings.retry_delay_s * 2**attempt for attempt in range(settings.retries)] or 0,
    )
    batches = enumerate(_batches(plan.object_ids, settings.batch_size))
    in_flight: dict[PrefectFuture[BatchOutcome], tuple[int, tuple[int, ...]]] = {}
    batch_errors: list[tuple[int, str]] = []
    distinct: dict[str, None] = {}  # distinct batch errors, in order

    def submit_next() -> None:  # at most `workers` batches run at once
        if (item := next(batches, None)) is not None:
            index, ids = item
            in_flight[process.submit(settings, run_id, index, ids, request.force, request.retry_failed)] = item

    for _ in range(settings.workers):
        submit_next()
    while in_flight:
        done = next(as_completed(list(in_flight)))
        index, ids = in_flight.pop(done)
        # result() waits for the final state; future.state may still lag behind in the API.
        outcome = done.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            error = f"{type(outcome).__name__}: {first_line(str(outcome))}"
            batch_errors.append((index, error))
            distinct.setdefault(error, None)
            t.release_batch(settings, run_id, ids, return_state=True)  # best effort; claims also expire
        submit_next()

    failed_batches = len(batch_errors)
    summary = t.finish_run(settings, run_id, failed_batches, "; ".join(distinct) or None)
    create_markdown_artifact(
        key=f"docflow-{kind.value}-summary", markdown=run_markdown(summary), description="docflow run summary"
    )
    if failed_batches:
        raise RunFailed(summary, batch_errors)
    return summary


@flow(name="docflow-nightly", description="Process everything new under the configured sources.")
def nightly(source: list[str] | None = None, limit: int | None = None, retry_failed: bool = False) -> RunSummary:
    settings = load_settings(source=source)
    request = DiscoveryRequest(sources=tuple(settings.source), limit=limit, retry_failed=retry_failed)
    return run_pipeline(settings, RunKind.NIGHTLY, request)


@flow(name="docflow-backfill", description="(Re)process objects last modified in a time window.")
def backfill(
    since: datetime,
    until: datetime | None = None,
    prefixes: list[str] | None = None,
    kinds: list[ObjectKind] | None = None,
    force: bool = False,
    retry_failed: bool = False,
    source: list[str] | None = None,
    limit: int | None = None,
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
    return run_pipeline(settings, RunKind.BACKFILL, request)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
