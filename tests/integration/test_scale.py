"""The database at scale: bench/scale.py's database part at a tiny size on real PostgreSQL (every query returns what
it should; no timings asserted), the statement cache discovery relies on, and the indexes the big queries use."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect

from bench.scale import bench, figures
from schemas.records import BlobInfo
from storage.db import get_engine, migrate, unit_of_work
from storage.repositories import ObjectRepository
from storage.status import StatusQuery
from tasks.results import ResultFilter, export_results

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _blobs(prefix: str, count: int) -> list[BlobInfo]:
    return [
        BlobInfo(source="s3://bucket", key=f"{prefix}/{n:05d}.pdf", version="v1", size=10, last_modified=T0)
        for n in range(count)
    ]


def test_registering_a_listing_compiles_one_row_of_insert(db_url: str) -> None:
    """register() sends its rows as parameters of one single-row INSERT (SQLAlchemy pages them into multi-row
    VALUES): compiling a 500-row VALUES statement afresh for each chunk took most of the time of discovering 10,000
    objects (ON CONFLICT statements are not cached)."""
    migrate(db_url)
    compiled_binds: list[int] = []

    def inserts(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SOURCE_OBJECTS"):
            compiled_binds.append(len(context.compiled.binds))

    engine = get_engine(db_url)
    event.listen(engine, "before_cursor_execute", inserts)
    try:
        with unit_of_work(db_url) as session:
            assert ObjectRepository(session).register(_blobs("first", 700)) == 700
        with unit_of_work(db_url) as session:
            assert ObjectRepository(session).register([*_blobs("first", 10), *_blobs("second", 690)]) == 690
    finally:
        event.remove(engine, "before_cursor_execute", inserts)
    assert compiled_binds
    assert max(compiled_binds) <= 9, compiled_binds  # one row's columns


def test_the_big_queries_have_their_indexes(db_url: str) -> None:
    migrate(db_url)
    indexes = {
        table: {ix["name"] for ix in inspect(get_engine(db_url)).get_indexes(table)}
        for table in ("source_objects", "review_items")
    }
    assert {"ix_source_objects_key", "ix_source_objects_processed_at"} <= indexes["source_objects"]
    assert "ix_review_items_waiting" in indexes["review_items"]


def test_the_scale_bench_database_part_answers_every_query_right(pg_url: str) -> None:
    counts, measured = bench(pg_url, rows=2000, repeats=1, listed=300)
    assert counts["source_objects"] == 2000
    assert counts["review_items"] > 0 and counts["transcripts"] > 0
    names = [m.name for m in measured]
    assert names == [
        "claim",
        "discover_300_new",
        "upsert_300",
        "status",
        "status_json",
        "review_list",
        "review_list_table",
        "review_export",
        "review_export_read",
        "export_since",
        "show",
    ]
    wrong = [(m.name, m.check) for m in measured if not m.ok]
    assert not wrong
    # Every query but the single discovery had its statements captured and explained.
    assert all(
        m.plans and all(p.key_line and p.nodes for p in m.plans) for m in measured if m.name != "discover_300_new"
    )
    assert "rows=" not in figures(measured) and "status_s=" in figures(measured)


def _statements(db_url: str, call: Any) -> list[str]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        seen.append(" ".join(statement.split()))

    engine = get_engine(db_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_status_counts_the_objects_in_one_pass(db_url: str) -> None:
    """`docflow status` reads the counts per kind, class label and status in one pass over the objects (each pass
    over a million rows takes about a second), not three; the totals are the same."""
    migrate(db_url)
    with unit_of_work(db_url) as session:
        objects = ObjectRepository(session)
        objects.register(_blobs("docs", 5))
        first = objects.get_by_key("docs/00000.pdf")
        assert first is not None
        objects.set_kind(first.id, "pdf", "PDF document")
    reports = []

    def status() -> None:
        with unit_of_work(db_url) as session:
            reports.append(StatusQuery(session).report(now=datetime.now(UTC), stale_after_s=60))

    statements = _statements(db_url, status)
    with unit_of_work(db_url) as session:
        assert reports[0].objects == ObjectRepository(session).count_by_status() == {"pending": 5}
    assert reports[0].by_kind == {"pdf": {"pending": 1}, "unknown": {"pending": 4}}
    assert reports[0].by_label["pdf"]["unclassified"].objects == 1 and set(reports[0].by_label) == {"pdf"}
    whole_counts = [s for s in statements if "count(*)" in s and "FROM source_objects" in s and "GROUP BY" in s]
    assert len(whole_counts) == 1, whole_counts


def test_the_review_queue_can_read_its_partial_index(pg_url: str) -> None:
    """The queue's query, as SQLAlchemy sends it (its statuses as parameters), matches the partial index's
    predicate: with sorting and other scans ruled out, Postgres reads the queue from ix_review_items_waiting."""
    migrate(pg_url)

    def queue() -> None:
        with unit_of_work(pg_url) as session:
            StatusQuery(session).review_queue(limit=50)

    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, params))

    engine = get_engine(pg_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        queue()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    statements = [(s, p) for s, p in seen if "ORDER BY review_items.created_at" in s]
    assert statements
    with engine.connect() as connection:
        for setting in ("enable_seqscan", "enable_sort", "enable_bitmapscan"):
            connection.exec_driver_sql(f"SET {setting} = off")
        statement, params = statements[0]
        plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, params))
    assert "ix_review_items_waiting" in plan, plan


def test_export_results_writes_a_chunks_ids_into_its_statements(db_url: str, tmp_path: Path) -> None:
    """The results export fetches each chunk's extractions, transcripts and corrections with the chunk's ids written
    as numbers: bound one by one (2,000 a chunk), rewriting the placeholders cost the driver more than the query."""
    migrate(db_url)
    with unit_of_work(db_url) as session:
        ObjectRepository(session).register(_blobs("docs", 60))
    parameters: list[int] = []

    def record(_conn: Any, _cursor: Any, _statement: str, params: Any, _context: Any, _many: bool) -> None:
        parameters.append(len(params or ()))

    engine = get_engine(db_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        count = export_results(db_url, "jsonl", tmp_path / "results.jsonl", ResultFilter())
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert count == 60
    assert parameters and max(parameters) < 10, parameters
