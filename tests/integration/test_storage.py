"""Repositories against real SQLite and real PostgreSQL (the db_url fixture runs each test on both)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, inspect, select

from schemas.records import (
    BlobInfo,
    Classification,
    DocumentPage,
    ObjectKind,
    ObjectResult,
    ObjectStatus,
    ReviewReason,
    SpeechSegment,
)
from storage.db import get_engine, migrate, unit_of_work
from storage.repositories import ObjectRepository, RunRepository, eligible
from storage.status import StatusQuery
from storage.tables import Page, SourceObject, SpeechSegmentRow, utcnow

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _blob(key: str, version: str = "v1") -> BlobInfo:
    return BlobInfo(source="s3://bucket", key=key, version=version, size=10, last_modified=T0)


def _eligible(**kw):  # type: ignore[no-untyped-def]
    return eligible(
        force=kw.get("force", False),
        retry_failed=kw.get("retry_failed", False),
        stale_before=kw.get("stale_before", utcnow() - timedelta(minutes=15)),
        run_id=kw.get("run_id"),
    )


def test_migrations_create_tables_and_are_idempotent(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)
    tables = set(inspect(get_engine(db_url)).get_table_names())
    assert {"source_objects", "runs", "pages", "speech_segments", "alembic_version"} <= tables


def test_register_is_an_upsert_and_new_versions_supersede(db_url: str) -> None:
    migrate(db_url)
    with unit_of_work(db_url) as s:
        assert ObjectRepository(s).register([_blob("a.pdf"), _blob("b.pdf")]) == 2
    with unit_of_work(db_url) as s:
        assert ObjectRepository(s).register([_blob("a.pdf"), _blob("b.pdf")]) == 0
    with unit_of_work(db_url) as s:
        assert ObjectRepository(s).register([_blob("a.pdf", "v2"), _blob("b.pdf")]) == 1
    with unit_of_work(db_url) as s:
        rows = s.scalars(select(SourceObject).order_by(SourceObject.id)).all()
        assert [(r.key, r.version, r.superseded_at is None) for r in rows] == [
            ("a.pdf", "v1", False),
            ("b.pdf", "v1", True),
            ("a.pdf", "v2", True),
        ]
        assert ObjectRepository(s).count_by_status() == {"pending": 2}


def _record(db_url: str, object_id: int, result: ObjectResult, run_id: str = "run-1") -> None:
    with unit_of_work(db_url) as s:
        assert ObjectRepository(s).record_result(object_id, result, "test-1", run_id)


def _claim(repo: ObjectRepository, ids: list[int], owner: str, **eligible: object) -> list[SourceObject]:
    claimed, given_up = repo.claim(ids, owner, _eligible(**eligible), max_attempts=3)
    assert given_up == []
    return claimed


def test_claim_respects_status_and_recording_replaces_children(db_url: str) -> None:
    migrate(db_url)
    blobs = [_blob("a.pdf"), _blob("b.wav")]
    with unit_of_work(db_url) as s:
        repo = ObjectRepository(s)
        repo.register(blobs)
        ids = [r.id for r in repo.find_current(blobs, _eligible())]
        claimed = _claim(repo, ids, "run-1", run_id="run-1")
        assert [r.status for r in claimed] == [ObjectStatus.PROCESSING] * 2
    with unit_of_work(db_url) as s:  # another run cannot take fresh claims
        assert _claim(ObjectRepository(s), ids, "run-2", run_id="run-2") == []
    pages = tuple(DocumentPage(page_number=n, uri=f"file:///p{n}", width=10, height=20, dpi=150) for n in (1, 2))
    pdf = ObjectResult(kind=ObjectKind.PDF, sha256="ab" * 32, pages=pages)
    wav = ObjectResult(kind=ObjectKind.AUDIO, sha256="cd" * 32, segments=(SpeechSegment(start_s=0, end_s=1),))
    for attempt in range(2):  # recording twice (a forced re-run) must not duplicate child rows
        if attempt:
            with unit_of_work(db_url) as s:
                _claim(ObjectRepository(s), ids, "run-1", run_id="run-1", force=True)
        _record(db_url, ids[0], pdf)
        _record(db_url, ids[1], wav)
    with unit_of_work(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Page)) == 2
        assert s.scalar(select(func.count()).select_from(SpeechSegmentRow)) == 1
        a = s.get_one(SourceObject, ids[0])
        assert (a.status, a.kind, a.page_count, a.claimed_at) == ("done", "pdf", 2, None)
        repo = ObjectRepository(s)
        assert repo.find_current(blobs, _eligible()) == []  # done: nothing to do
        assert len(repo.find_current(blobs, _eligible(force=True))) == 2


def test_abandoned_claims_expire_and_release_returns_them(db_url: str) -> None:
    migrate(db_url)
    blobs = [_blob("x.png")]
    with unit_of_work(db_url) as s:
        repo = ObjectRepository(s)
        repo.register(blobs)
        (row,) = repo.find_current(blobs, _eligible())
        _claim(repo, [row.id], "dead-run")
    with unit_of_work(db_url) as s:
        repo = ObjectRepository(s)
        assert repo.find_current(blobs, _eligible()) == []
        assert len(repo.find_current(blobs, _eligible(stale_before=utcnow() + timedelta(seconds=1)))) == 1
        assert repo.release([row.id], "other-run") == 0
        assert repo.release([row.id], "dead-run") == 1
        assert s.get_one(SourceObject, row.id).status == "pending"


def test_failed_objects_wait_for_retry_failed(db_url: str) -> None:
    migrate(db_url)
    blobs = [_blob("bad.pdf")]
    with unit_of_work(db_url) as s:
        ObjectRepository(s).register(blobs)
    with unit_of_work(db_url) as s:
        (row,) = ObjectRepository(s).find_current(blobs, _eligible())
        _claim(ObjectRepository(s), [row.id], "run-1")
    from schemas.records import StageError

    _record(
        db_url,
        row.id,
        ObjectResult(
            kind=ObjectKind.PDF,
            sha256="",
            error=StageError(stage="render", code="encrypted", message="encrypted PDF: password required"),
        ),
    )
    with unit_of_work(db_url) as s:
        repo = ObjectRepository(s)
        assert repo.find_current(blobs, _eligible()) == []
        assert len(repo.find_current(blobs, _eligible(retry_failed=True))) == 1
        (failure,) = repo.failures()
        assert failure.error_message == "encrypted PDF: password required"


def test_postgres_claims_skip_rows_locked_by_another_worker(pg_url: str) -> None:
    migrate(pg_url)
    blobs = [_blob(f"k{i}") for i in range(4)]
    with unit_of_work(pg_url) as s:
        ObjectRepository(s).register(blobs)
    with unit_of_work(pg_url) as s:
        ids = [r.id for r in ObjectRepository(s).find_current(blobs, _eligible())]
    with unit_of_work(pg_url) as first:
        taken = _claim(ObjectRepository(first), ids[:2], "run-a", run_id="run-a")
        assert len(taken) == 2
        with unit_of_work(pg_url) as second:  # while the first transaction still holds its row locks
            others = _claim(ObjectRepository(second), ids, "run-b", run_id="run-b")
            assert sorted(r.id for r in others) == ids[2:]


def test_migrations_match_the_table_models(db_url: str) -> None:
    """Drift check: the schema the migrations build is the one storage/tables.py declares (types included)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.tables import Base

    migrate(db_url)
    with get_engine(db_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def _classified(reasons: tuple[ReviewReason, ...]) -> ObjectResult:
    page = DocumentPage(page_number=1, uri="file:///p1", width=10, height=20, dpi=150)
    classification = Classification(
        label="invoice", probability=0.45, margin=0.1, runner_up="receipt", route="invoice", model_id="m"
    )
    return ObjectResult(
        kind=ObjectKind.PDF, sha256="ab" * 32, pages=(page,), classification=classification, review_reasons=reasons
    )


def test_structured_review_reasons_round_trip_through_the_status_query(db_url: str) -> None:
    migrate(db_url)
    blobs = [_blob("unsure.pdf")]
    with unit_of_work(db_url) as s:
        repo = ObjectRepository(s)
        repo.register(blobs)
        (row,) = repo.find_current(blobs, _eligible())
        _claim(repo, [row.id], "run-1")
    reasons = (
        ReviewReason(
            stage="classify", code="uncertain_class", message="uncertain document class: 'invoice'", value=0.45
        ),
        ReviewReason(stage="extract", code="invalid_extraction", message="extraction not valid; total", value=2),
        ReviewReason(stage="extract", code="no_text", message="no readable text found (OCR): nothing to extract"),
    )
    _record(db_url, row.id, _classified(reasons))
    now = utcnow()
    with unit_of_work(db_url) as s:
        obj = s.get_one(SourceObject, row.id)
        assert obj.status == "review"
        assert obj.review_reason == (
            "uncertain document class: 'invoice'; extraction not valid; total; "
            "no readable text found (OCR): nothing to extract"
        )
        report = StatusQuery(s).report(now=now, stale_after_s=60)
    (document,) = report.documents
    assert tuple(document.review_reasons) == reasons
    assert document.review_reason == obj.review_reason
    (entry,) = report.model_dump(mode="json")["documents"]
    assert entry["review_reasons"] == [
        {
            "stage": "classify",
            "code": "uncertain_class",
            "message": "uncertain document class: 'invoice'",
            "value": 0.45,
            "field": None,
        },
        {
            "stage": "extract",
            "code": "invalid_extraction",
            "message": "extraction not valid; total",
            "value": 2.0,
            "field": None,
        },
        {
            "stage": "extract",
            "code": "no_text",
            "message": "no readable text found (OCR): nothing to extract",
            "value": None,
            "field": None,
        },
    ]

    # A forced re-run that finds nothing to doubt clears both the text and the structured reasons.
    with unit_of_work(db_url) as s:
        _claim(ObjectRepository(s), [row.id], "run-2", force=True)
    _record(db_url, row.id, _classified(()), run_id="run-2")
    with unit_of_work(db_url) as s:
        obj = s.get_one(SourceObject, row.id)
        assert (obj.status, obj.review_reason, obj.review_reasons) == ("done", None, None)
        (document,) = StatusQuery(s).report(now=now, stale_after_s=60).documents
        assert (document.status, document.review_reason, document.review_reasons) == ("done", None, [])


def test_run_bookkeeping_goes_through_the_repository_and_reads_back_through_the_status_query(db_url: str) -> None:
    migrate(db_url)
    started = utcnow().replace(microsecond=0)
    with unit_of_work(db_url) as s:
        runs = RunRepository(s)
        runs.start("run-1", "nightly", {})
        runs.record_plan("run-1", listed=5, planned=3, warnings=["cannot list folder x"])
        runs.add_counts("run-1", processed=3, failed=1)
    with unit_of_work(db_url) as s:
        progress = StatusQuery(s).progress(started_since=started)
        assert progress is not None
        assert progress.model_dump() == {
            "id": "run-1",
            "status": "running",
            "listed": 5,
            "planned": 3,
            "processed": 3,
            "failed": 1,
        }
        finished = RunRepository(s).finish("run-1", "completed", None)
        assert finished.finished_at is not None
    with unit_of_work(db_url) as s:
        assert StatusQuery(s).progress(started_since=utcnow() + timedelta(hours=1)) is None
        (run,) = StatusQuery(s).report(now=utcnow(), stale_after_s=60).model_dump(mode="json")["runs"]
        with pytest.raises(LookupError, match="run never-started was never started"):
            RunRepository(s).finish("never-started", "completed", None)
    assert run == {
        "id": "run-1",
        "kind": "nightly",
        "status": "completed",
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "listed": 5,
        "processed": 3,
        "failed": 1,
        "warnings": ["cannot list folder x"],
    }
    # Times are written as isoformat() writes them, as `docflow status --json` always did.
    assert datetime.fromisoformat(run["started_at"]) >= started and run["finished_at"].endswith("+00:00")


def test_migration_0007_keeps_earlier_review_text_as_one_reason(db_url: str) -> None:
    from alembic import command

    from storage.db import alembic_config

    command.upgrade(alembic_config(db_url), "0006")
    text = "little speech: 1% of the recording; 1 segment(s) look like a repetition loop"
    with get_engine(db_url).begin() as connection:
        connection.execute(
            insert(SourceObject).values(
                source="s3://bucket",
                key="old.wav",
                version="v1",
                size=1,
                last_modified=T0,
                status="review",
                attempts=1,
                review_reason=text,
                created_at=T0,
                updated_at=T0,
            )
        )
    migrate(db_url)
    with unit_of_work(db_url) as s:
        (obj,) = s.scalars(select(SourceObject)).all()
        assert obj.review_reason == text
        assert obj.review_reasons == [{"stage": "unknown", "code": "unstructured", "message": text, "value": None}]
