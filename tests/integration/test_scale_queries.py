"""The statements behind discovery and `review export` at scale, on real SQLite and PostgreSQL (no timings asserted):
discovery registers a page of the listing in statements whose text does not grow with the page (PostgreSQL parses
nothing per object), and a review export streams plain rows into the file, never loading the queue as ORM objects,
and marks the items in one UPDATE (a thousand at a time on SQLite)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from schemas.errors import ConfigError
from schemas.records import BlobInfo, DiscoveryRequest, ObjectKind, ReviewReason
from schemas.review import ReviewDraft, ReviewStage, ReviewStatus
from schemas.settings import load_settings
from storage.db import get_engine, migrate, unit_of_work
from storage.repositories import ObjectRepository, eligible
from storage.review import ReviewRepository, item_view
from storage.tables import Page, ReviewItem, SourceObject, utcnow
from tasks.results import ResultFilter, export_results
from tasks.review.queue import WAITING, export_file
from tasks.run.discovery import discover
from tests.support import hostile

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _blobs(count: int, version: str = "v1") -> list[BlobInfo]:
    return [
        BlobInfo(
            source="s3://bucket",
            key=f"docs/{n:05d}.pdf",
            version=version,
            size=10 + n,
            last_modified=T0 + timedelta(seconds=n),
        )
        for n in range(count)
    ]


@contextmanager
def _statements(url: str) -> Iterator[list[str]]:
    """The SQL text of each statement the engine sends meanwhile."""
    sent: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(" ".join(statement.split()))

    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def _discover_page(url: str, blobs: list[BlobInfo]) -> tuple[int, list[SourceObject]]:
    condition = eligible(force=False, retry_failed=False, stale_before=utcnow())
    with unit_of_work(url) as session:
        repo = ObjectRepository(session)
        added = repo.register(blobs)
        return added, repo.find_current(blobs, condition)


def test_discovery_on_postgres_sends_a_page_in_statements_that_do_not_grow_with_it(pg_url: str) -> None:
    """10 listed objects and 1,000 send the very same statements (the listing travels as array parameters): an
    IN list or a multi-row VALUES of a placeholder per object cost psycopg more to parse than the statement took
    to run on a million rows."""
    migrate(pg_url)
    with _statements(pg_url) as small:
        added, rows = _discover_page(pg_url, _blobs(10))
    assert added == 10 and len(rows) == 10
    with _statements(pg_url) as large:
        added, rows = _discover_page(pg_url, _blobs(1000))
    assert added == 990 and [r.key for r in rows] == [b.key for b in _blobs(1000)]
    assert large == small
    assert len([s for s in large if not s.startswith(("BEGIN", "COMMIT"))]) == 3  # insert, supersede, find


def test_discovery_pages_record_sizes_times_and_supersede_old_versions(db_url: str) -> None:
    """What a page of the listing leaves in the table, the same on both databases."""
    migrate(db_url)
    _discover_page(db_url, _blobs(600))
    newer = [b.model_copy(update={"version": "v2", "size": 1}) for b in _blobs(600)[:3]]
    added, rows = _discover_page(db_url, [*newer, *_blobs(600)[3:]])
    assert added == 3
    assert [(r.key, r.version) for r in rows[:4]] == [
        ("docs/00000.pdf", "v2"),
        ("docs/00001.pdf", "v2"),
        ("docs/00002.pdf", "v2"),
        ("docs/00003.pdf", "v1"),
    ]
    with unit_of_work(db_url) as session:
        found = session.execute(
            select(SourceObject.key, SourceObject.version, SourceObject.size, SourceObject.last_modified)
            .where(SourceObject.superseded_at.is_not(None))
            .order_by(SourceObject.key)
        ).all()
        current = session.scalar(select(SourceObject).where(SourceObject.key == "docs/00599.pdf"))
        assert current is not None
        assert (current.size, current.last_modified, current.status) == (609, T0 + timedelta(seconds=599), "pending")
    assert [(k, v) for k, v, *_ in found] == [(f"docs/{n:05d}.pdf", "v1") for n in range(3)]


# --- review export ---------------------------------------------------------------------------------------------------


def _seed_queue(url: str, count: int, pages_at: str = "s3://derived") -> list[int]:
    """`count` objects with a waiting extraction item each (every third one already exported once), and two pages
    each, the second object without pages; returns the item ids."""
    migrate(url)
    blobs = _blobs(count)
    with unit_of_work(url) as session:
        ObjectRepository(session).register(blobs)
        session.flush()
        objects = list(session.scalars(select(SourceObject).order_by(SourceObject.id)))
        repo = ReviewRepository(session)
        for n, row in enumerate(objects):
            row.kind, row.status = "pdf", "review"
            if n != 1:
                session.add_all(
                    Page(object_id=row.id, page_number=p, uri=f"{pages_at}/{row.id}/{p}.png", width=1, height=1)
                    for p in (2, 1)
                )
            data = {"vendor_name": f"=cmd|{n}", "total": f"{n}.50"}
            draft = ReviewDraft(
                stage=ReviewStage.EXTRACTION,
                schema_id="invoice/v1",
                reasons=(ReviewReason(stage="extract", code="low", message="total unsure", value=0.4, field="total"),),
                audit=False,
                model_output={"data": data, "field_confidence": {"total": 0.4}},
                model_id="m",
                score=0.4,
            )
            repo.open(row.id, [draft], "run-1")
        session.flush()
        items = list(session.scalars(select(ReviewItem).order_by(ReviewItem.id)))
        for item in items[::3]:
            item.status = ReviewStatus.EXPORTED
        return [item.id for item in items]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_review_views_are_the_items_views_with_their_sources(db_url: str, chunk: int) -> None:
    """The streamed views (plain rows, pages read per chunk) equal what the ORM items give, in order."""
    _seed_queue(db_url, 20)
    with unit_of_work(db_url) as session:
        repo = ReviewRepository(session)
        expected = [(item_view(item), item.source_object.source) for item in repo.select(WAITING)]
        assert list(repo.views(WAITING, chunk=chunk)) == expected
    assert expected[0][0].pages == [f"s3://derived/{expected[0][0].object_id}/{p}.png" for p in (1, 2)]
    assert expected[1][0].pages == []
    assert len(expected) == 20


def test_a_review_export_streams_rows_and_marks_items_a_chunk_at_a_time(db_url: str, tmp_path: Path) -> None:
    """1,500 waiting items: none is loaded as an ORM object (the queue is read as plain rows, a chunk at a time),
    every one is in the file and marked exported with its time, by one UPDATE per thousand items that sets both
    columns (on PostgreSQL one per chunk read, as it is read); items already resolved stay as they were."""
    ids = _seed_queue(db_url, 1500)
    with unit_of_work(db_url) as session:
        resolved = session.get(ReviewItem, ids[5])
        assert resolved is not None
        resolved.status = ReviewStatus.RESOLVED
    settings = load_settings(database_url=db_url)
    loaded: list[int] = []

    def on_load(target: ReviewItem, _context: Any) -> None:
        loaded.append(target.id)

    event.listen(ReviewItem, "load", on_load)
    try:
        with _statements(db_url) as sent:
            count = export_file(settings, "csv", tmp_path / "queue.csv")
    finally:
        event.remove(ReviewItem, "load", on_load)
    assert count == 1499
    assert loaded == []
    updates = [s for s in sent if s.startswith("UPDATE review_items")]
    assert len(updates) == 2
    with (tmp_path / "queue.csv").open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert {int(r["item_id"]) for r in rows} == set(ids) - {ids[5]}
    vendor = next(r for r in rows if r["field"] == "vendor_name")
    assert vendor["value"].startswith("'=cmd|")  # still spreadsheet-safe
    with unit_of_work(db_url) as session:
        states = dict(session.execute(select(ReviewItem.id, ReviewItem.status)).tuples().all())
        unmarked = session.scalars(
            select(ReviewItem.id).where(ReviewItem.exported_at.is_(None), ReviewItem.id != ids[5])
        ).all()
    assert states[ids[5]] == ReviewStatus.RESOLVED
    assert {s for i, s in states.items() if i != ids[5]} == {ReviewStatus.EXPORTED}
    assert unmarked == []


def test_a_label_studio_export_takes_each_items_first_page(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Label Studio file links each item's first page, read with the streamed rows; an item without a page
    stops the export with its key, and then nothing is written and no item is marked."""
    monkeypatch.chdir(tmp_path)  # local pages are served from the working folder
    ids = _seed_queue(db_url, 5, pages_at=str(tmp_path / "derived"))
    settings = load_settings(database_url=db_url)
    with pytest.raises(ConfigError, match=r"docs/00001\.pdf"):
        export_file(settings, "label-studio", tmp_path / "tasks.json")
    assert not (tmp_path / "tasks.json").exists()
    with unit_of_work(db_url) as session:
        assert session.scalar(select(func.count()).where(ReviewItem.exported_at.is_not(None))) == 0
        session.add(Page(object_id=2, page_number=1, uri=str(tmp_path / "derived/2/1.png"), width=1, height=1))
    assert export_file(settings, "label-studio", tmp_path / "tasks.json") == len(ids)
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    links = [json.dumps(t) for t in tasks]
    assert [f"derived/{n}/1.png" in link for n, link in enumerate(links, start=1)] == [True] * 5


def test_discovery_fails_unreadable_entries_and_keeps_the_kinds_asked_for(db_url: str, tmp_path: Path) -> None:
    """Discovery plans from plain rows: an entry that cannot be an object (a FIFO, a dangling link) is recorded as
    failed by the run, a never-seen object gets its kind from its first bytes, and only the kinds asked for are
    planned, each with its cost."""
    migrate(db_url)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.pdf").write_bytes(b"%PDF-1.4\n" + b"0" * (300_000 - 9))
    (inbox / "b.pdf").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)  # an image, whatever its name says
    hostile.fifo(inbox / "c.pdf")
    hostile.dangling_symlink(inbox / "d.pdf")
    settings = load_settings(database_url=db_url)
    request = DiscoveryRequest(sources=(str(inbox),), kinds=(ObjectKind.PDF,))
    result = discover(settings, request, run_id="run-1")
    assert (result.listed, result.new, result.failed) == (4, 4, 2)
    with unit_of_work(db_url) as session:
        rows = {r.key: r for r in session.scalars(select(SourceObject))}
        assert result.object_ids == (rows["a.pdf"].id,)
        assert result.costs == (3.0,)  # 300 KB of PDF: about three pages
        assert (rows["a.pdf"].kind, rows["b.pdf"].kind) == ("pdf", "image")
        assert {k: (r.status, r.error_code, r.run_id) for k, r in rows.items() if r.status == "failed"} == {
            "c.pdf": ("failed", "not_regular_file", "run-1"),
            "d.pdf": ("failed", "broken_symlink", "run-1"),
        }
    again = discover(settings, request, run_id="run-2")  # nothing new; the failed ones are not taken again
    assert (again.new, again.failed, again.object_ids) == (0, 0, result.object_ids)


# --- export results --since ------------------------------------------------------------------------------------------


def test_an_export_since_pages_through_the_recent_objects_in_processing_order(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--since` pages by (processed_at, id) on its index, in chunks (3 here): every object processed since then
    once, in the order they were processed (ties by id), and none older, whatever their ids."""
    import tasks.results

    monkeypatch.setattr(tasks.results, "CHUNK", 3)
    migrate(db_url)
    since = T0 + timedelta(days=10)
    # processed at: ids 1-3 long ago, then newer objects with lower times on higher ids, and ties
    days = [1, 2, 3, 20, 12, 12, 12, 11, 15, 10, 12]
    with unit_of_work(db_url) as session:
        ObjectRepository(session).register(_blobs(len(days)))
        session.flush()
        for row, day in zip(session.scalars(select(SourceObject).order_by(SourceObject.id)), days, strict=True):
            row.kind, row.status, row.processed_at = "pdf", "done", T0 + timedelta(days=day)
    out = tmp_path / "since.jsonl"
    count = export_results(db_url, "jsonl", out, ResultFilter(since=since))
    keys = [json.loads(line)["key"] for line in out.read_text(encoding="utf-8").splitlines()]
    expected = sorted((day, n) for n, day in enumerate(days) if T0 + timedelta(days=day) >= since)
    assert keys == [f"docs/{n:05d}.pdf" for _, n in expected]
    assert count == len(keys) == 8
    everything = tmp_path / "all.jsonl"
    assert export_results(db_url, "jsonl", everything, ResultFilter()) == len(days)  # by id without --since
    all_keys = [json.loads(line)["key"] for line in everything.read_text(encoding="utf-8").splitlines()]
    assert all_keys == [b.key for b in _blobs(len(days))]
