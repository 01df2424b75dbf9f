"""Shared fixtures: paths to real input files, real services (PostgreSQL, SeaweedFS) started once per session."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import LabelStudioServer, LlamaServer, PostgresCluster, SeaweedS3

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_INBOX = REPO_ROOT / "infra" / "sample-inbox"
CORPUS = REPO_ROOT.parent / "shared" / "corpus"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def sample_inbox() -> Path:
    return SAMPLE_INBOX


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not beside the repo ({CORPUS})")
    return CORPUS


@pytest.fixture(autouse=True)
def _no_docflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from the defaults, whatever the developer's shell exports."""
    for name in list(os.environ):
        if name.startswith("DOCFLOW_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One real, temporary Prefect server for the whole session (flows run against it as in production). One
    only: Prefect's long-lived client threads (e.g. the concurrency-slot service) keep the server they first saw,
    so a second server in the same process would take slots on one and give them back to the other."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


_db_counter = itertools.count()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    return postgres.create_database(f"test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'docflow.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'docflow.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def label_studio() -> Iterator[LabelStudioServer]:
    server = LabelStudioServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    server = SeaweedS3()
    server.start()
    yield server
    server.destroy()


_bucket_counter = itertools.count()


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """Point boto3's standard chain at the test store, as a user would with AWS_* variables."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return seaweed


@pytest.fixture
def bucket(s3_env: SeaweedS3) -> str:
    name = f"docflow-test-{next(_bucket_counter)}"
    s3_env.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """llama.cpp's llama-server serving the bundled Qwen2.5-Coder-0.5B GGUF as `docflow-extractor`, behind a key made
    for this session (the tests look for it in every output)."""
    from schemas.defaults import model_cache_dir
    from tasks.models.generation.gguf import gguf_file

    model = gguf_file("pkg:qwen2.5-coder-0.5b", model_cache_dir())
    server = LlamaServer(model, alias="docflow-extractor", api_key=f"sk-docflow-test-{secrets.token_hex(12)}")
    try:
        server.start()
        yield server
    finally:
        server.destroy()
