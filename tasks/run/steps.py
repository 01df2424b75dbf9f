"""One step of a run: a stage over a window's work items, then the bookkeeping around it. The stage's time on
its device and what it did become a stage_runs row; objects no later stage wants are recorded at once (a crash
loses at most the work in flight) and their scratch files removed; the rest go on to the next stage."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from schemas.records import RecordOutcome
from schemas.settings import Settings
from storage.blobstore import open_store
from storage.embeddings import SqlEmbeddingCache
from storage.repositories import RunRepository
from storage.tables import StageRun, utcnow
from tasks.pipeline.runner import finished, run_stage
from tasks.pipeline.stage import ObjectRef, Stage, StageReport, WorkItem
from tasks.preprocess.stage import item_dir
from tasks.run import claims
from tasks.run.stages import StageContext, build_stages, next_model_stage

log = logging.getLogger(__name__)


def build(settings: Settings, work_dir: Path) -> list[Stage]:
    """The run's stages. Cheap: models load on first use, once per worker process (tasks/models/cache.py)."""
    context = StageContext(open_store(settings.derived_store), work_dir, SqlEmbeddingCache(settings.database_url))
    return build_stages(settings, context)


def warm_up(settings: Settings) -> None:
    """Load the models the run's first window will wait for into this process's cache, where its stages find them:
    called while a run starts (Prefect's server, discovery), it takes their loading off the first window's path.
    Best effort: a model that cannot load is left to its stage, which reports it as it would without a warm-up."""
    preparation = settings.runner.task_runner == "threads"  # else the preprocessing steps run in other processes
    try:
        for stage in build(settings, Path(tempfile.gettempdir())):
            stage.warm_up(preparation)
    except Exception as exc:  # the stage meets it again and reports it
        log.debug("warm-up stopped, the stages load their models themselves: %s", exc)


@dataclass(frozen=True)
class StepResult:
    stage: str
    report: StageReport
    recorded: RecordOutcome
    remaining: list[WorkItem]
    seconds: float
    slot_wait_s: float = 0.0  # time spent waiting for the device's concurrency slot
    # Per stage, seconds of CPU preparation outside the device (OCR for the classifier's words): this stage's, or
    # the next model stage's when a CPU step prepared its items ahead.
    prepare_s: dict[str, float] = field(default_factory=dict)
    busy: tuple[tuple[datetime, datetime], ...] = ()  # when it worked: preparation, the stage itself

    def handoff(self) -> Handoff:
        return Handoff(self.remaining, self.busy, {name: s for name, s in self.prepare_s.items() if s > 0})


@dataclass(frozen=True)
class Handoff:
    """What a step's task hands back to the flow: the items still on their way, and when the step worked, so the
    run can tell its stages' time from the orchestration around them."""

    items: list[WorkItem]
    busy: tuple[tuple[datetime, datetime], ...] = ()
    prepare_s: dict[str, float] = field(default_factory=dict)


def run_step(
    settings: Settings,
    run_id: str,
    window: int,
    stage_name: str,
    items: Sequence[WorkItem],
    work_dir: Path,
    slot: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> StepResult:
    """Run `stage_name` over `items` (its CPU preparation first, then the stage inside `slot`, e.g. a device's
    concurrency limit), record the step and every object it finished."""
    stages = build(settings, work_dir)
    names = [s.name for s in stages]
    if stage_name not in names:
        raise ValueError(f"stage {stage_name!r} is not configured (stages: {', '.join(names)})")
    position = names.index(stage_name)
    stage, later = stages[position], stages[position + 1 :]
    wanted = [item for item in items if stage.wants(item)]
    preparing = utcnow()
    _prepare(stage, wanted)
    # No work, no slot: taking one costs a round trip to the server (and, measured, sometimes a 2 s back-off).
    asked = utcnow()
    with slot() if wanted else nullcontext():
        started = utcnow()
        report = run_stage(stage, items, prepared=True)
        ended = utcnow()
    done = finished(items, later)
    row = _stage_row(run_id, window, stage_name, started, ended, report) if report.items else None
    recorded = claims.record(
        settings,
        run_id,
        [(item.ref.id, item.result()) for item in done],
        also=(lambda session: RunRepository(session).record_stage(row)) if row is not None else None,
    )
    for item in done:
        shutil.rmtree(item_dir(work_dir, item.ref.id), ignore_errors=True)
    finished_ids = {item.ref.id for item in done}
    remaining = [item for item in items if item.ref.id not in finished_ids]
    seconds, waited = (ended - started).total_seconds(), (started - asked).total_seconds()
    prepare_s = {stage_name: (asked - preparing).total_seconds()} if wanted else {}
    busy = [span for span in ((preparing, asked), (started, ended)) if wanted]
    if not stage.uses_model and (ahead := _prepare_next(later, remaining)) is not None:
        name, span = ahead
        prepare_s[name] = (span[1] - span[0]).total_seconds()
        busy.append(span)
    return StepResult(stage_name, report, recorded, remaining, seconds, waited, prepare_s, tuple(busy))


def _prepare(stage: Stage, items: Sequence[WorkItem]) -> None:
    """The stage's CPU preparation of the items not prepared for it yet (by the preprocessing step, ahead)."""
    unprepared = [item for item in items if stage.name not in item.prepared]
    stage.prepare(unprepared)
    for item in unprepared:
        item.prepared.add(stage.name)


def _prepare_next(later: Sequence[Stage], items: Sequence[WorkItem]) -> tuple[str, tuple[datetime, datetime]] | None:
    """In a CPU step, the CPU preparation of the next model stage that wants some of the items (OCR of the pages
    the classifier reads), so it runs in the preprocessing pool, as wide as its workers, rather than in the model
    stage's task ahead of the device. Returns that stage's name and when it worked (None: nothing to prepare)."""
    live = [item for item in items if item.error is None]
    for stage in later:
        wanted = [item for item in live if stage.wants(item)]
        if wanted:
            started = utcnow()
            _prepare(stage, wanted)
            return stage.name, (started, utcnow())
    return None


def preprocess(settings: Settings, run_id: str, window: int, refs: Sequence[ObjectRef], work_dir: Path) -> StepResult:
    return run_step(settings, run_id, window, "preprocess", [WorkItem(ref) for ref in refs], work_dir)


def _stage_row(
    run_id: str, window: int, stage: str, started: datetime, ended: datetime, report: StageReport
) -> StageRun:
    return StageRun(
        run_id=run_id,
        stage=stage,
        window=window,
        started_at=started,
        finished_at=ended,
        items=report.items,
        pages=report.pages,
        audio_s=report.audio_s,
        batches=len(report.batch_rows),
        batch_rows=sum(report.batch_rows),
        batch_capacity=report.batch_capacity,
        max_batch_owners=max(report.batch_owners, default=0),
    )


def next_stage(settings: Settings, after: str | None, items: Sequence[WorkItem]) -> str | None:
    """The next model stage some of a window's items want (None: they are finished)."""
    return next_model_stage(settings, after, items)
