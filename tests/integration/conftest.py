from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real, temporary Prefect server for the whole session (flows run against it as in production)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


class Configure:
    """Sets DOCFLOW_* variables the way a user would; flows read them at their entry point."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path

    def __call__(self, **fields: object) -> None:
        defaults = {
            "derived_store": str(self.tmp_path / "derived"),
            "retries": 1,
            "retry_delay_s": 0.1,
            "batch_size": 4,
            "whisper_model": "pkg:whisper-tiny.en",  # real weights, small and fast
        }
        for name, value in {**defaults, **fields}.items():
            text = ",".join(value) if isinstance(value, list | tuple) else str(value)
            self.monkeypatch.setenv(f"DOCFLOW_{name.upper()}", text)


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Configure:
    return Configure(monkeypatch, tmp_path)
