"""Every stage of docflow over one local file, in this process, without Prefect or a database: what the
benchmarks time docflow's own stages with."""

from __future__ import annotations

from pathlib import Path

from schemas.records import ObjectResult
from schemas.settings import Settings
from storage.blobstore import LocalDirStore
from tasks.classify.prototypes import EmbeddingCache
from tasks.pipeline.runner import run_stage
from tasks.pipeline.stage import ObjectRef, WorkItem
from tasks.run.stages import StageContext, build_stages


def process_local_file(
    path: Path, settings: Settings, work_dir: Path, embeddings: EmbeddingCache | None = None
) -> ObjectResult:
    """Every stage the settings turn on over `path`. Derived files go under `work_dir`."""
    return process_local_files([path], settings, work_dir, embeddings)[0]


def process_local_files(
    paths: list[Path], settings: Settings, work_dir: Path, embeddings: EmbeddingCache | None = None
) -> list[ObjectResult]:
    """Every stage the settings turn on over `paths` as one window: each stage takes them together, as a run
    does (batches across objects)."""
    refs = [
        ObjectRef(id=i, source=str(path.parent.resolve()), key=path.name, size=path.stat().st_size)
        for i, path in enumerate(paths)
    ]
    stages = build_stages(settings, StageContext(LocalDirStore(work_dir / "derived"), work_dir, embeddings))
    items = [WorkItem(ref) for ref in refs]
    for stage in stages:
        run_stage(stage, items)
    return [item.result() for item in items]
