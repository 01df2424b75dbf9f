"""Windows sized by work against real databases and a real Prefect server: a window's results written in a few
statements (same fence as one by one), discovery streaming through pages of the listing, small objects in few
windows, and the run's orchestration time beside its stages'."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import event, func, select

from flows.pipeline import nightly
from schemas.records import (
    BlobInfo,
    Classification,
    DiscoveryRequest,
    DocumentPage,
    ObjectKind,
    ObjectResult,
    PageLabel,
)
from schemas.review import ReviewDraft, ReviewStage, ReviewStatus
from schemas.settings import load_settings
from storage.db import get_engine, migrate, unit_of_work
from storage.repositories import ObjectRepository, eligible
from storage.review import ReviewRepository
from storage.tables import ClassificationRow, Page, ReviewItem, SourceObject, StageRun, utcnow
from tasks.run import discovery
from tasks.run.claims import record
from tests.integration.conftest import Configure

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _claimed(url: str, count: int, run_id: str) -> list[int]:
    migrate(url)
    blobs = [BlobInfo(source="s3://b", key=f"{n}.png", version="v1", size=10, last_modified=T0) for n in range(count)]
    condition = eligible(force=False, retry_failed=False, stale_before=utcnow(), run_id=run_id)
    with unit_of_work(url) as s:
        repo = ObjectRepository(s)
        repo.register(blobs)
        ids = [row.id for row in repo.find_current(blobs, condition)]
        repo.claim(ids, run_id, condition, max_attempts=3)
    return ids


def _result(label: str) -> ObjectResult:
    page = DocumentPage(page_number=1, uri="file:///p.png", width=10, height=10, dpi=None)
    classification = Classification(
        label=label,
        probability=0.9,
        margin=0.5,
        runner_up="other",
        scores={label: 0.9},
        route="none",
        model_id="m",
        pages=(PageLabel(page_number=1, label=label, probability=0.9),),
    )
    return ObjectResult(kind=ObjectKind.IMAGE, sha256="ab" * 32, pages=(page,), classification=classification)


class _Statements:
    """Counts the SELECTs an engine runs (a round trip each)."""

    def __init__(self, url: str) -> None:
        self.engine, self.selects = get_engine(url), 0

    def __enter__(self) -> _Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.selects += statement.lstrip().upper().startswith("SELECT")


def test_a_window_of_results_is_written_without_a_round_trip_per_object(db_url: str, tmp_path: Path) -> None:
    ids = _claimed(db_url, 60, "run-1")
    settings = load_settings(database_url=db_url)
    with _Statements(db_url) as statements:
        outcome = record(settings, "run-1", [(i, _result("receipt")) for i in ids])
    assert outcome.recorded == 60
    # Object rows, pages, speech segments, classifications, waiting review items: one query each, whatever the
    # window's size. One by one it was five per object (300 here).
    assert statements.selects <= 8, statements.selects

    # A second run takes them over (force) and records again: the old derived rows are replaced, not doubled.
    condition = eligible(force=True, retry_failed=False, stale_before=utcnow(), run_id="run-2")
    with unit_of_work(db_url) as s:
        ObjectRepository(s).claim(ids, "run-2", condition, max_attempts=3)
    outcome = record(settings, "run-2", [(i, _result("invoice")) for i in ids])
    assert outcome.recorded == 60
    with unit_of_work(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Page)) == 60
        labels = s.scalars(select(ClassificationRow.label)).all()
        assert sorted(labels) == ["invoice"] * 60


def test_the_batched_write_keeps_the_fence(db_url: str) -> None:
    ids = _claimed(db_url, 3, "slow-run")
    taken_over = ids[1]
    condition = eligible(force=False, retry_failed=False, stale_before=utcnow(), run_id="fast-run")
    with unit_of_work(db_url) as s:  # the claim of one object is treated as abandoned and taken over
        s.get(SourceObject, taken_over).claimed_at = T0  # type: ignore[union-attr]
    with unit_of_work(db_url) as s:
        ObjectRepository(s).claim([taken_over], "fast-run", condition, max_attempts=3)
    with unit_of_work(db_url) as s:
        fenced = ObjectRepository(s).record_results([(i, _result("receipt")) for i in ids], "v", "slow-run")
    assert fenced == [True, False, True]
    with unit_of_work(db_url) as s:
        rows = {row.id: row for row in s.scalars(select(SourceObject))}
        assert (rows[taken_over].status, rows[taken_over].run_id) == ("processing", "fast-run")
        assert {rows[i].status for i in ids if i != taken_over} == {"done"}
        assert s.scalar(select(func.count()).select_from(ClassificationRow)) == 2


def test_discovery_streams_through_pages_of_the_listing(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n in range(35):
        (inbox / f"{n:02d}.png").write_bytes(b"\x89PNG" + bytes(n))
    (inbox / "big.pdf").write_bytes(b"%PDF" + bytes(999_996))
    monkeypatch.setattr(discovery, "_REGISTER_CHUNK", 10)
    listed_so_far, registered_so_far, most_ahead = 0, 0, 0
    listing = discovery.list_candidates

    def counted(*args: Any) -> Iterator[BlobInfo]:
        nonlocal listed_so_far
        for blob in listing(*args):
            listed_so_far += 1
            yield blob

    register = ObjectRepository.register

    def registering(self: ObjectRepository, blobs: Any) -> int:
        nonlocal registered_so_far, most_ahead
        most_ahead = max(most_ahead, listed_so_far - registered_so_far)
        registered_so_far += len(blobs)
        return register(self, blobs)

    monkeypatch.setattr(discovery, "list_candidates", counted)
    monkeypatch.setattr(ObjectRepository, "register", registering)
    migrate(sqlite_url)
    settings = load_settings(database_url=sqlite_url, source=[str(inbox)])
    plan = discovery.discover(settings, DiscoveryRequest(sources=(str(inbox),)))

    assert (plan.listed, plan.new, len(plan.object_ids)) == (36, 36, 36)
    assert most_ahead <= 10  # never more than a page of the listing held before it was recorded
    costs = dict(zip(plan.object_ids, plan.costs, strict=True))
    with unit_of_work(sqlite_url) as s:
        big = s.scalars(select(SourceObject.id).where(SourceObject.key == "big.pdf")).one()
    assert costs[big] == 10.0 and sorted(costs.values())[:35] == [1.0] * 35


pytestmark_flow = pytest.mark.usefixtures("prefect_harness")


def _images(inbox: Path, count: int) -> Path:
    inbox.mkdir()
    for n in range(count):
        Image.new("RGB", (64, 48), (n * 5 % 255, 200, 100)).save(inbox / f"{n:03d}.png")
    return inbox


def _stage_rows(url: str) -> list[StageRun]:
    with unit_of_work(url) as s:
        rows = list(s.scalars(select(StageRun).order_by(StageRun.window)))
        s.expunge_all()
        return rows


@pytestmark_flow
def test_small_objects_travel_in_one_window_and_the_summary_shows_orchestration(
    configure: Configure, tmp_path: Path
) -> None:
    inbox = _images(tmp_path / "inbox", 40)
    db = f"sqlite:///{tmp_path / 'docflow.db'}"
    configure(database_url=db, source=str(inbox), classifier="keywords", transcribe=False, batch_size=64, workers=2)
    summary = nightly()
    assert summary.processed == 40
    rows = _stage_rows(db)
    # One window (40 pages of work is under DOCFLOW_WINDOW_PAGES), shared by the two workers: two task runs,
    # where windows of 16 objects made three windows and six.
    assert [(r.stage, r.window) for r in rows] == [("preprocess", 0), ("preprocess", 0)]
    assert summary.orchestration_s is not None and summary.orchestration_s >= 0
    assert summary.planning_s is not None and summary.planning_s >= 0


@pytestmark_flow
def test_windows_follow_the_work_budget(configure: Configure, tmp_path: Path) -> None:
    inbox = _images(tmp_path / "inbox", 12)
    db = f"sqlite:///{tmp_path / 'docflow.db'}"
    configure(
        database_url=db,
        source=str(inbox),
        classifier="keywords",
        transcribe=False,
        window_pages=5,
        workers=1,
        batch_size=64,
    )
    summary = nightly()
    assert summary.processed == 12
    assert [(r.window, r.items) for r in _stage_rows(db)] == [(0, 5), (1, 5), (2, 2)]


def _draft(audit: bool) -> ReviewDraft:
    return ReviewDraft(
        stage=ReviewStage.CLASSIFICATION,
        schema_id="classification/v1",
        reasons=(),
        audit=audit,
        model_output={"label": "receipt"},
        model_id="m",
        score=0.9,
    )


def test_opening_a_windows_review_items_at_once_keeps_opens_rules(db_url: str) -> None:
    waiting, answered, new = _claimed(db_url, 3, "run-1")
    with unit_of_work(db_url) as s:
        ReviewRepository(s).open(waiting, [_draft(audit=False)], "run-0")
        s.add(
            ReviewItem(
                object_id=answered,
                stage="classification",
                schema_id="classification/v1",
                reasons=[],
                model_output={"label": "invoice"},
                model_id="m",
                status=ReviewStatus.RESOLVED,
                corrected={"label": "receipt"},
                resolved_at=utcnow(),
            )
        )
    with unit_of_work(db_url) as s:
        ReviewRepository(s).open_many([(i, [_draft(audit=True)]) for i in (waiting, answered, new)], "run-1")
    with unit_of_work(db_url) as s:
        items = {(i.object_id, i.run_id, i.status) for i in s.scalars(select(ReviewItem))}
    assert items == {
        (waiting, "run-0", "dismissed"),  # the earlier result's item, superseded
        (waiting, "run-1", "open"),
        (answered, None, "resolved"),  # a person gave its class: not sampled for audit again
        (new, "run-1", "open"),
    }
