"""The classifier's model loaded while Prefect's server starts: the stages' worker threads find it in the
process's model cache; no model for the keyword classifier; a model that cannot load is left to the stage, which
says why."""

from __future__ import annotations

import pytest

from schemas.errors import ConfigError, ModelLoadError
from schemas.settings import Settings
from tasks.classify.prototypes import embedder_spec
from tasks.models import cache
from tasks.models.embedders import load_embedder
from tasks.run.warmup import start_loading_models


def _classifier(**changes: str) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"classifier": settings.classifier.model_copy(update=changes)})


def test_the_classifier_model_is_loaded_into_the_process_cache() -> None:
    settings = Settings()
    spec = embedder_spec(settings.classifier, settings.device)

    thread = start_loading_models(settings)

    assert thread is not None and thread.daemon
    thread.join(timeout=300)
    assert ("embedder", spec) in cache._loaded
    assert load_embedder(spec) is cache._loaded[("embedder", spec)]  # what the classify stage gets


def test_the_keyword_classifier_loads_nothing() -> None:
    settings = _classifier(kind="keywords")

    assert start_loading_models(settings) is None


def test_a_model_that_cannot_load_is_left_to_the_stage() -> None:
    settings = _classifier(image_embedder="no_such_backbone_27")
    spec = embedder_spec(settings.classifier, settings.device)

    thread = start_loading_models(settings)
    assert thread is not None
    thread.join(timeout=300)  # no exception escapes the thread

    assert ("embedder", spec) not in cache._loaded
    with pytest.raises((ConfigError, ModelLoadError)):
        load_embedder(spec)
