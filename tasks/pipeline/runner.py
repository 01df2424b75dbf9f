"""Running a stage over a batch of work items: only the items it wants, its updates applied once it has
succeeded, each item timed; a batch that fails on something other than an infrastructure fault is run again item by
item, so one bad object fails alone, with its reason."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from schemas.errors import ConfigError, TransientError
from schemas.records import StageError
from tasks.display import printable
from tasks.faults import is_infrastructure_fault
from tasks.pipeline.stage import ItemUpdate, Stage, StageReport, WorkItem

log = logging.getLogger(__name__)


def run_stage(stage: Stage, items: Sequence[WorkItem], *, prepared: bool = False) -> StageReport:
    """Run one stage over the items it wants and apply its updates. A stage that raises something other than an
    infrastructure fault on a batch is run again item by item, so one bad object fails alone, with its reason."""
    wanted = [item for item in items if stage.wants(item)]
    report = StageReport()
    if not wanted:
        return report
    started = time.perf_counter()
    if not prepared:
        stage.prepare(wanted)
    updates = _call_isolating(stage, wanted, report)
    elapsed = time.perf_counter() - started
    for item, update in zip(wanted, updates, strict=True):
        item.apply(update)
        item.seconds[stage.name] = elapsed
        if update.transcript is not None:
            item.decoded = None  # the samples of an hours-long call are no longer needed
    return report


def _call_isolating(stage: Stage, items: Sequence[WorkItem], report: StageReport) -> list[ItemUpdate]:
    try:
        return stage(items, report)
    except (TransientError, ConfigError):
        raise
    except Exception as exc:
        if is_infrastructure_fault(exc):
            raise
        if len(items) == 1:
            log.exception("%s failed on %s", stage.name, printable(items[0].ref.key))
            message = f"internal error in {stage.name} ({type(exc).__name__}): {exc}"
            return [ItemUpdate(error=StageError(stage=stage.name, code="internal", message=message))]
        log.warning("%s failed on a batch of %d (%s); retrying them one by one", stage.name, len(items), exc)
        return [update for item in items for update in _call_isolating(stage, [item], report)]


def finished(items: Sequence[WorkItem], later: Sequence[Stage]) -> list[WorkItem]:
    """Items no later stage wants: their result can be recorded now."""
    return [item for item in items if item.error is not None or not any(s.wants(item) for s in later)]
