"""The classifier's model loaded while Prefect's temporary server starts: `docflow run` waits seconds for that
server (a subprocess) with the main thread idle, and the first classify window would otherwise wait as long again
for torch and the image embedder. Loaded in this process's model cache (tasks/models/cache.py), which the stages'
worker threads share, so they find it there."""

from __future__ import annotations

import logging
import threading

from schemas.settings import Settings

log = logging.getLogger(__name__)


def start_loading_models(settings: Settings) -> threading.Thread | None:
    """Start loading the classifier's image embedder in a background thread; None when no model is needed. A load
    that fails here is left to the stage, whose own load reports it (failures are not cached)."""
    if settings.classifier.kind == "keywords":
        return None
    from tasks.classify.prototypes import embedder_spec
    from tasks.models.embedders import load_embedder

    spec = embedder_spec(settings.classifier, settings.device)

    def load() -> None:
        try:
            load_embedder(spec)
        except Exception as exc:  # the stage loads it again and says why it cannot
            log.debug("loading %s ahead of the run failed: %s", spec.model_id, exc)

    thread = threading.Thread(target=load, name="docflow-model-preload", daemon=True)
    thread.start()
    return thread
