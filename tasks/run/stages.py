"""The pipeline template: the stage list built once from the settings (CPU preprocessing, then the model stages
they turn on), and which model stage a window goes to next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.settings import Settings
from storage.blobstore import BlobStore, LocalDirStore
from tasks.classify.prototypes import EmbeddingCache, embedder_spec
from tasks.classify.stage import ClassifyStage
from tasks.extract.stage import ExtractStage, generator_spec
from tasks.models.generation.registry import load_generator
from tasks.models.whisper import whisper_spec
from tasks.pipeline.stage import Stage, WorkItem
from tasks.preprocess.stage import PreprocessStage
from tasks.transcribe.stage import TranscribeStage


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
        ocr = settings.extraction
        stages.append(ClassifyStage(settings.classifier, spec, context.embeddings, ocr.ocr_engine, ocr.ocr_precision))
    if settings.extraction.enabled:
        server = settings.llm_server
        generator = generator_spec(settings.extraction, device, settings.render.max_pixels, server)
        stages.append(ExtractStage(settings.extraction, generator))
    if settings.whisper.enabled:
        whisper = whisper_spec(settings.whisper, device.cache_dir)
        stages.append(TranscribeStage(settings.whisper, settings.audio, whisper, settings.diarization, device.device))
    return stages


def check_model_server(settings: Settings) -> None:
    """With extraction on an inference server (DOCFLOW_LLM_SERVER_URL): the server answers, takes the key and serves
    the configured model, before any object is claimed. A wrong key or model name stops the run as a setting to fix
    (ConfigError); a server away is a TransientError (retried). The checked client is the one extraction uses."""
    if settings.extraction.enabled and settings.llm_server.url is not None:
        load_generator(
            generator_spec(settings.extraction, settings.device, settings.render.max_pixels, settings.llm_server)
        )


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
