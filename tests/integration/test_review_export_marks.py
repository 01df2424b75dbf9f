"""`docflow review export` marks the items it wrote `exported` only once the file is in place. On PostgreSQL the
marks are made while the file is written, from a second connection whose transaction is committed after the file
replaced the old one: until then no other session sees them, and a failed export leaves every item `open` and no
transaction open behind it. SQLite marks them at the end, in the export's own session."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import pytest
from sqlalchemy import select, text

from schemas.records import BlobInfo
from schemas.review import ReviewDraft, ReviewStage
from schemas.settings import load_settings
from storage.db import migrate, unit_of_work
from storage.outfiles import WriteFailed
from storage.repositories import ObjectRepository
from storage.review import ExportMarks, ExportRow, ReviewRepository
from storage.tables import ReviewItem, SourceObject
from tasks.review import queue
from tasks.review.queue import export_file


def _seed(url: str, count: int) -> list[int]:
    migrate(url)
    when = datetime(2024, 3, 2, tzinfo=UTC)
    with unit_of_work(url) as session:
        ObjectRepository(session).register(
            [
                BlobInfo(source="file:///inbox", key=f"{n}.png", version="1", size=1, last_modified=when)
                for n in range(count)
            ]
        )
        session.flush()
        draft = ReviewDraft(
            stage=ReviewStage.CLASSIFICATION,
            schema_id="class/v1",
            reasons=(),
            audit=True,
            model_output={"label": "receipt", "probability": 0.5},
            model_id="c",
            score=None,
        )
        repo = ReviewRepository(session)
        repo.open_many([(object_id, [draft]) for object_id in session.scalars(select(SourceObject.id))], "run-1")
    with unit_of_work(url) as session:
        return list(session.scalars(select(ReviewItem.id).order_by(ReviewItem.id)))


def _statuses(url: str) -> set[str]:
    with unit_of_work(url) as session:
        return {str(status) for status in session.scalars(select(ReviewItem.status))}


def _open_marking_transactions(url: str) -> int:
    """PostgreSQL backends idle inside a transaction whose last statement marked review items."""
    with unit_of_work(url) as session:
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction' AND query LIKE 'UPDATE review_items%'"
                )
            )
            or 0
        )


def _wait_for_marking(url: str) -> None:
    """On PostgreSQL, until the marker's UPDATE has run and its transaction waits (so that what the test sees
    next is not just an UPDATE that had not started)."""
    if not url.startswith("postgresql"):
        return
    deadline = time.monotonic() + 30
    while _open_marking_transactions(url) == 0:
        assert time.monotonic() < deadline, "the marks were never made"
        time.sleep(0.05)


def test_marks_are_seen_only_once_kept(db_url: str) -> None:
    ids = _seed(db_url, 30)
    with unit_of_work(db_url) as session, ExportMarks(session) as marks:
        marks.add(ids[:10])
        marks.add(ids[10:])
        _wait_for_marking(db_url)
        assert _statuses(db_url) == {"open"}
        marks.keep()
    assert _statuses(db_url) == {"exported"}


def test_marks_not_kept_are_rolled_back_and_leave_no_transaction_open(db_url: str) -> None:
    ids = _seed(db_url, 30)
    with (
        pytest.raises(RuntimeError, match="the file could not be moved"),
        unit_of_work(db_url) as session,
        ExportMarks(session) as marks,
    ):
        marks.add(ids)
        _wait_for_marking(db_url)
        raise RuntimeError("the file could not be moved")
    assert _statuses(db_url) == {"open"}
    if db_url.startswith("postgresql"):
        assert _open_marking_transactions(db_url) == 0


def test_an_export_that_fails_while_writing_marks_nothing_and_keeps_the_old_file(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db_url, 2500)  # three chunks: the first ones are marked while the third is read

    def failing_writer(chunks: Iterable[list[ExportRow]], out: TextIO) -> int:
        for n, _chunk in enumerate(chunks):
            if n == 2:
                _wait_for_marking(db_url)
                raise OSError(28, "No space left on device")
        raise AssertionError("fewer chunks than seeded")

    monkeypatch.setattr(queue, "write_csv_rows", failing_writer)
    out = tmp_path / "queue.csv"
    out.write_text("the previous export\n")
    with pytest.raises(WriteFailed, match="No space left"):
        export_file(load_settings(database_url=db_url), "csv", out)
    assert out.read_text() == "the previous export\n"
    assert _statuses(db_url) == {"open"}
    if db_url.startswith("postgresql"):
        assert _open_marking_transactions(db_url) == 0


def test_an_export_marks_every_item_it_wrote(db_url: str, tmp_path: Path) -> None:
    ids = _seed(db_url, 2500)
    out = tmp_path / "queue.csv"
    assert export_file(load_settings(database_url=db_url), "csv", out) == len(ids)
    assert _statuses(db_url) == {"exported"}
    with unit_of_work(db_url) as session:
        assert session.scalar(select(ReviewItem.id).where(ReviewItem.exported_at.is_(None))) is None
