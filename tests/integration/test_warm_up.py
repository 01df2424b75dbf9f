"""A run's models load while it starts (tasks/run/steps.py `warm_up`, flows/cli/startup.py): the real classifier
(EfficientNet-Lite0 with the shipped examples, RapidOCR) into the process's caches, where the stages find them."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from flows.cli.startup import models_loading
from schemas.errors import ConfigError
from schemas.records import DocumentPage
from schemas.settings import Settings, load_settings
from storage.db import migrate
from storage.embeddings import SqlEmbeddingCache
from tasks.classify import prototypes
from tasks.classify.prototypes import classify_documents, embedder_spec, load_prototypes
from tasks.models import cache
from tasks.preprocess import ocr
from tasks.run.steps import warm_up


@pytest.fixture
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model loaded yet in this process, as at a command's start."""
    monkeypatch.setattr(cache, "_loaded", {})
    ocr._engine.cache_clear()


def _settings(sqlite_url: str, **overrides: object) -> Settings:
    migrate(sqlite_url)
    return load_settings(database_url=sqlite_url, extract=False, ocr_engine="rapidocr", **overrides)


def _loaded_without_building(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the classify stage's prototypes come from the cache: building them now fails the test."""

    def unexpected(*args: object) -> None:
        raise AssertionError("the prototypes were built again")

    monkeypatch.setattr(prototypes, "build_prototypes", unexpected)
    spec = embedder_spec(settings.classifier, settings.device)
    load_prototypes(settings.classifier, spec, SqlEmbeddingCache(settings.database_url))
    return True


@pytest.mark.usefixtures("fresh_caches")
def test_warm_up_loads_the_classifier_and_its_ocr(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(sqlite_url)
    assert settings.classifier.text_sharpness > 0  # the words are read: RapidOCR is part of classification
    warm_up(settings)
    assert ocr._engine.cache_info().currsize == 1
    assert _loaded_without_building(settings, monkeypatch)


@pytest.mark.usefixtures("fresh_caches")
def test_with_preprocessing_in_other_processes_ocr_is_not_loaded_here(sqlite_url: str) -> None:
    warm_up(_settings(sqlite_url, task_runner="processes"))
    assert ocr._engine.cache_info().currsize == 0  # the preprocessing processes read the words, not this one
    assert any(kind == "prototypes" for kind, _ in cache._loaded)


@pytest.mark.usefixtures("fresh_caches")
def test_a_model_that_cannot_load_is_left_to_its_stage(sqlite_url: str, tmp_path: Path) -> None:
    settings = _settings(sqlite_url, class_examples=str(tmp_path / "missing"))
    warm_up(settings)  # no exception: the run goes on, and its stage says what is wrong
    spec = embedder_spec(settings.classifier, settings.device)
    page = DocumentPage(page_number=1, path=tmp_path / "page.png", width=1, height=1)
    with pytest.raises(ConfigError, match="DOCFLOW_CLASS_EXAMPLES"):
        classify_documents([[page]], settings.classifier, spec, None)


@pytest.mark.usefixtures("fresh_caches")
def test_the_collector_is_back_after_the_run(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(sqlite_url)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with models_loading(settings):
        pass  # a run over an empty inbox: over before the models are loaded
    assert gc.isenabled() and gc.get_freeze_count() == 0  # the body's end waited for the loading thread
    assert ocr._engine.cache_info().currsize == 1
    assert _loaded_without_building(settings, monkeypatch)
