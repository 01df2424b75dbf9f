"""Claims, fencing, attempt caps and concurrent migrations against real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, inspect

from schemas.records import BlobInfo, ObjectKind, ObjectResult, ObjectStatus
from storage.db import get_engine, migrate, unit_of_work
from storage.repositories import ObjectRepository, eligible
from storage.tables import SourceObject, utcnow
from tests.services import PostgresCluster

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DONE = ObjectResult(kind=ObjectKind.PDF, sha256="ab" * 32)


def _register(url: str, key: str = "a.pdf") -> int:
    migrate(url)
    blob = BlobInfo(source="s3://bucket", key=key, version="v1", size=10, last_modified=T0)
    with unit_of_work(url) as s:
        repo = ObjectRepository(s)
        repo.register([blob])
        return repo.find_current([blob], _cond())[0].id


def _cond(run_id: str | None = None, stale_after: float = 900) -> ColumnElement[bool]:
    return eligible(
        force=False, retry_failed=False, stale_before=utcnow() - timedelta(seconds=stale_after), run_id=run_id
    )


def _claim(url: str, object_id: int, run_id: str, stale_after: float = 900, max_attempts: int = 3):  # type: ignore[no-untyped-def]
    with unit_of_work(url) as s:
        claimed, given_up = ObjectRepository(s).claim([object_id], run_id, _cond(run_id, stale_after), max_attempts)
        return [r.id for r in claimed], [(r.error_code, r.error_message) for r in given_up]


def _row(url: str, object_id: int) -> SourceObject:
    with unit_of_work(url) as s:
        row = s.get(SourceObject, object_id)
        assert row is not None
        return row


def test_the_slower_writer_cannot_overwrite_a_taken_over_object(db_url: str) -> None:
    object_id = _register(db_url)
    assert _claim(db_url, object_id, "slow-run")[0] == [object_id]
    # The slow run's claim is treated as abandoned (stale_after=-1) and a second run takes the object over.
    assert _claim(db_url, object_id, "fast-run", stale_after=-1)[0] == [object_id]
    with unit_of_work(db_url) as s:
        assert ObjectRepository(s).record_result(object_id, DONE, "v", "fast-run")
    with unit_of_work(db_url) as s:
        assert not ObjectRepository(s).record_result(object_id, DONE, "v", "slow-run")
    row = _row(db_url, object_id)
    assert (row.status, row.run_id, row.attempts) == ("done", "fast-run", 2)


def test_renewed_claims_are_not_taken_over(db_url: str) -> None:
    renewed, forgotten = _register(db_url, "renewed.pdf"), _register(db_url, "forgotten.pdf")
    for object_id in (renewed, forgotten):
        _claim(db_url, object_id, "live-run")
    with unit_of_work(db_url) as s:
        for object_id in (renewed, forgotten):
            s.get(SourceObject, object_id).claimed_at = utcnow() - timedelta(seconds=60)  # type: ignore[union-attr]
    with unit_of_work(db_url) as s:
        assert ObjectRepository(s).renew([renewed, forgotten], "not-the-owner") == 0
        assert ObjectRepository(s).renew([renewed], "live-run") == 1
    assert _claim(db_url, renewed, "other", stale_after=30)[0] == []
    assert _claim(db_url, forgotten, "other", stale_after=30)[0] == [forgotten]


def test_an_object_that_keeps_killing_workers_fails_after_max_attempts(db_url: str) -> None:
    object_id = _register(db_url)
    for n in range(1, 4):  # three runs die while processing it; each next run takes the stale claim over
        assert _claim(db_url, object_id, f"run-{n}", stale_after=-1) == ([object_id], [])
        assert _row(db_url, object_id).attempts == n
    claimed, given_up = _claim(db_url, object_id, "run-4", stale_after=-1)
    assert claimed == []
    ((code, message),) = given_up
    assert code == "gave_up" and message.startswith("gave up after 3 attempts")
    assert _row(db_url, object_id).status == ObjectStatus.FAILED


def test_released_and_own_claims_do_not_count_as_attempts(db_url: str) -> None:
    object_id = _register(db_url)
    for _ in range(5):  # a store outage: the batch fails, its claims are released, the next run tries again
        _claim(db_url, object_id, "run")
        _claim(db_url, object_id, "run")  # the batch's retry re-takes its own claim
        with unit_of_work(db_url) as s:
            assert ObjectRepository(s).release([object_id], "run") == 1
    assert _row(db_url, object_id).attempts == 0
    assert _claim(db_url, object_id, "run", max_attempts=1)[0] == [object_id]


def _migrate_at_once(url: str, processes: int = 4) -> list[BaseException]:
    """Start `processes` migrations of `url` at the same instant; return what they raised."""
    barrier = threading.Barrier(processes)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            migrate(url)
        except BaseException as exc:  # collected and asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(processes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_migrations_on_an_empty_postgres(postgres: PostgresCluster) -> None:
    url = postgres.create_database("concurrent_migrations")
    assert _migrate_at_once(url) == []
    assert "source_objects" in inspect(get_engine(url)).get_table_names()


def test_concurrent_migrations_on_an_empty_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert _migrate_at_once(url) == []
    assert "source_objects" in inspect(get_engine(url)).get_table_names()
