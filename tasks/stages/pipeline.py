"""The pipeline template: build the stages once from the settings, run them over batches of work items, time
each stage, and tell which items are finished (no later stage wants them) so they can be recorded at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ConfigError, TransientError
from schemas.records import ObjectResult, StageError
from schemas.settings import Settings
from storage.blobstore import BlobStore, LocalDirStore
from tasks.classify import EmbeddingCache, embedder_spec
from tasks.display import printable
from tasks.faults import is_infrastructure_fault
from tasks.models.whisper import whisper_spec
from tasks.stages.base import ItemUpdate, ObjectRef, Stage, StageReport, WorkItem
from tasks.stages.classify import ClassifyStage
from tasks.stages.extract import ExtractStage, generator_spec
from tasks.stages.preprocess import PreprocessStage
from tasks.stages.transcribe import TranscribeStage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageContext:
    """What stages need beyond their configuration: where derived files go, scratch space, the embedding cache."""

    derived: BlobStore
    work_dir: Path
    embeddings: EmbeddingCache | None = None


def build_stages(settings: Settings, context: StageContext) -> list[Stage]:
    """Every stage the settings turn on, in order: CPU preprocessing first, then the model stages. Cheap: models
    load on first use, once per worker process (tasks/models/cache.py)."""
    device = settings.device
    stages: list[Stage] = [PreprocessStage(settings, context.derived, context.work_dir)]
    if settings.classifier.kind != "keywords":
        spec = embedder_spec(settings.classifier, device)
        stages.append(ClassifyStage(settings.classifier, spec, context.embeddings))
    if settings.extraction.enabled:
        generator = generator_spec(settings.extraction, device, settings.render.max_pixels)
        stages.append(ExtractStage(settings.extraction, generator))
    if settings.whisper.enabled:
        whisper = whisper_spec(settings.whisper, device.cache_dir)
        stages.append(TranscribeStage(settings.whisper, settings.audio, whisper, settings.diarization, device.device))
    return stages


def _model_stages(settings: Settings) -> list[Stage]:
    # Building touches neither the store nor the folder: an unused local store stands in.
    unused = StageContext(LocalDirStore(Path.cwd()), Path.cwd())
    return [stage for stage in build_stages(settings, unused) if stage.uses_model]


def next_model_stage(settings: Settings, after: str | None, items: Sequence[WorkItem]) -> str | None:
    """The first model stage after `after` (None: from the first) that some of `items` want; None when no later
    stage wants any (the items are finished). A stage nobody in a window wants is never started: no task run, no
    device slot."""
    stages = _model_stages(settings)
    names = [stage.name for stage in stages]
    start = names.index(after) + 1 if after is not None else 0
    live = [item for item in items if item.error is None]
    return next((stage.name for stage in stages[start:] if any(stage.wants(item) for item in live)), None)


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


def run_all(stages: Sequence[Stage], items: Sequence[WorkItem]) -> dict[str, StageReport]:
    """Every stage over one batch, in one process: the pipeline without Prefect (benchmarks, scripts)."""
    return {stage.name: run_stage(stage, items) for stage in stages}


def process_local_file(
    path: Path, settings: Settings, work_dir: Path, embeddings: EmbeddingCache | None = None
) -> ObjectResult:
    """Every stage over one local file, in this process, without a database (benchmarks, scripts). Derived
    files go under `work_dir`."""
    ref = ObjectRef(id=0, source=str(path.parent.resolve()), key=path.name, size=path.stat().st_size)
    stages = build_stages(settings, StageContext(LocalDirStore(work_dir / "derived"), work_dir, embeddings))
    item = WorkItem(ref)
    run_all(stages, [item])
    return item.result()
