"""What applying reviewers' answers does, on real SQLite and PostgreSQL (no models: the object's result is
recorded as a run would record it): a sign-off never undoes a correction and a different answer is a conflict,
also between two imports at once; learned class examples follow the transaction, one page under one label; an
object whose items are all answered is done; a corrected class queues the object for extraction under its
schema; only the values a person changed are corrections."""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from schemas.records import (
    BlobInfo,
    Classification,
    DocumentPage,
    Extraction,
    ObjectKind,
    ObjectResult,
    ReviewReason,
)
from schemas.settings import Settings, load_settings
from storage.db import migrate, unit_of_work
from storage.repositories import ObjectRepository
from storage.review import ReviewRepository
from storage.status import StatusQuery, object_view
from storage.tables import ReviewItem, SourceObject, utcnow
from tasks.results import ResultFilter, export_results
from tasks.review import queue
from tasks.review.answers import ReviewAnswer
from tasks.review.queue import ApplyReport, apply_answers, import_file
from tasks.run.claims import claim, record

KEY = "inbox/invoice.pdf"
MODEL_DATA = {
    "vendor_name": "ACME Ltd",
    "invoice_number": "INV-7",
    "invoice_date": "19/10/2018",  # as printed: normalised to 2018-10-19 when a person's answer is checked
    "total": "$1,234.50",  # normalised to 1234.50
}
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Loop:
    settings: Settings
    object_id: int
    class_item: int
    extraction_item: int
    page: Path
    learned: Path


@pytest.fixture
def loop(db_url: str, tmp_path: Path) -> Loop:
    """An invoice recorded in `review` (a doubt about its total, its class sampled for audit), with a page image."""
    learned = tmp_path / "learned"
    settings = load_settings(
        database_url=db_url, class_learned_examples=str(learned), review_audit_rate=1, derived_store=str(tmp_path)
    )
    migrate(db_url)
    page = tmp_path / "pages" / "page-1.png"
    page.parent.mkdir()
    page.write_bytes(b"\x89PNG\r\n\x1a\n" + b"page" * 10)
    blob = BlobInfo(source="s3://bucket", key=KEY, version="v1", size=10, last_modified=T0)
    with unit_of_work(db_url) as session:
        ObjectRepository(session).register([blob])
        object_id = session.query(SourceObject.id).one()[0]
    (ref,) = claim(settings, "run-1", [object_id], force=False, retry_failed=False)
    assert ref.person_class is None
    result = ObjectResult(
        kind=ObjectKind.PDF,
        sha256="cd" * 32,
        pages=(DocumentPage(page_number=1, width=10, height=10, uri=str(page)),),
        classification=Classification(
            label="invoice", probability=0.9, margin=0.6, runner_up="receipt", route="invoice", model_id="clip"
        ),
        extraction=Extraction(
            schema_id="invoice/v1", backend="text", model_id="llm", data=MODEL_DATA, valid=True, attempts=1
        ),
        review_reasons=(
            ReviewReason(stage="extract", code="ungrounded", message="total not found on the page", field="total"),
        ),
    )
    record(settings, "run-1", [(object_id, result)])
    with unit_of_work(db_url) as session:
        items = {i.stage: i.id for i in session.query(ReviewItem)}
        assert session.get(SourceObject, object_id).status == "review"  # type: ignore[union-attr]
    return Loop(settings, object_id, items["classification"], items["extraction"], page, learned)


def _csv(path: Path, *rows: tuple[object, str, str, str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["item_id", "field", "correction", "reviewer"])
        writer.writerows(rows)
    return path


def _item(loop: Loop, item_id: int) -> ReviewItem:
    with unit_of_work(loop.settings.database_url) as session:
        item = session.get(ReviewItem, item_id)
        assert item is not None
        return item


def _object(loop: Loop) -> SourceObject:
    with unit_of_work(loop.settings.database_url) as session:
        row = session.get(SourceObject, loop.object_id)
        assert row is not None
        return row


def _examples(loop: Loop) -> dict[str, list[str]]:
    """Files under the learned examples' folder, per label (staged ones included: there must be none left)."""
    found: dict[str, list[str]] = {}
    for path in sorted(loop.learned.rglob("*")) if loop.learned.exists() else []:
        if path.is_file():
            found.setdefault(path.parent.name, []).append(path.name)
    return found


# --- item 3: a sign-off never undoes a correction; a different answer is a conflict ----------------------------


def test_a_sign_off_never_undoes_a_correction(loop: Loop, tmp_path: Path) -> None:
    corrected = _csv(tmp_path / "ana.csv", (loop.extraction_item, "total", "99.00", "ana"))
    assert import_file(loop.settings, corrected).applied == [loop.extraction_item]

    report = import_file(loop.settings, _csv(tmp_path / "bob.csv", (loop.extraction_item, "", "", "bob")))
    (rejected,) = report.rejected
    assert report.applied == [] and "already corrected by ana" in rejected.reason
    assert "(total)" in rejected.reason and "a sign-off does not undo a correction" in rejected.reason
    item = _item(loop, loop.extraction_item)
    assert item.corrected is not None and item.corrected["total"] == "99.00" and item.reviewer == "ana"

    again = import_file(loop.settings, corrected)  # the same correction again: nothing to do
    assert (again.applied, again.unchanged, again.rejected) == ([], [loop.extraction_item], [])


def test_a_different_correction_is_a_conflict_reported_per_row(loop: Loop, tmp_path: Path) -> None:
    import_file(loop.settings, _csv(tmp_path / "ana.csv", (loop.extraction_item, "total", "99.00", "ana")))
    report = import_file(loop.settings, _csv(tmp_path / "bob.csv", (loop.extraction_item, "total", "77.00", "bob")))
    (rejected,) = report.rejected
    assert rejected.where == "row 2" and "conflict: already corrected by ana" in rejected.reason
    assert _item(loop, loop.extraction_item).corrected["total"] == "99.00"  # type: ignore[index]

    # A deliberate re-review replaces it (said so: the item is in `applied`).
    with unit_of_work(loop.settings.database_url) as session:
        repo = ReviewRepository(session)
        items = {i.id: i for i in repo.select()}
        answer = ReviewAnswer(loop.extraction_item, {**MODEL_DATA, "total": "77.00"}, "bob", "line 1")
        assert apply_answers(loop.settings, repo, items, [answer], replace=True).applied == [loop.extraction_item]
    assert _item(loop, loop.extraction_item).corrected["total"] == "77.00"  # type: ignore[index]


def test_two_imports_at_once_apply_one_after_the_other(
    loop: Loop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [
        _csv(tmp_path / "ana.csv", (loop.extraction_item, "total", "99.00", "ana")),
        _csv(tmp_path / "bob.csv", (loop.extraction_item, "total", "77.00", "bob")),
    ]
    both_read = threading.Barrier(2, timeout=60)
    real_apply = queue.apply_answers

    def apply_when_both_have_read(*args: object, **kwargs: object) -> ApplyReport:
        both_read.wait()  # each import has read the item as waiting before either writes
        return real_apply(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queue, "apply_answers", apply_when_both_have_read)
    reports: dict[int, ApplyReport] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            reports[index] = import_file(loop.settings, files[index])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    applied = [i for i, r in reports.items() if r.applied]
    conflicted = [i for i, r in reports.items() if r.rejected]
    assert len(applied) == 1 and len(conflicted) == 1, reports
    winner = ["99.00", "77.00"][applied[0]]
    assert "conflict: already corrected by" in reports[conflicted[0]].rejected[0].reason
    assert _item(loop, loop.extraction_item).corrected["total"] == winner  # type: ignore[index]


# --- item 5: learned class examples follow the transaction, one page under one label ----------------------------


def _apply(loop: Loop, *answers: ReviewAnswer, replace: bool = False, fail: bool = False) -> ApplyReport:
    with unit_of_work(loop.settings.database_url) as session:
        repo = ReviewRepository(session)
        report = apply_answers(loop.settings, repo, {i.id: i for i in repo.select()}, answers, replace=replace)
        if fail:
            raise RuntimeError("the process dies before the import commits")
    return report


def _label(loop: Loop, label: str, reviewer: str = "ana") -> ReviewAnswer:
    return ReviewAnswer(loop.class_item, {"label": label}, reviewer, "line 1")


def test_a_taught_page_appears_only_when_the_import_commits(loop: Loop) -> None:
    with pytest.raises(RuntimeError, match="process dies"):
        _apply(loop, _label(loop, "receipt"), fail=True)
    assert _examples(loop) == {}  # rolled back: no image, no staged file
    assert _item(loop, loop.class_item).corrected is None

    assert _apply(loop, _label(loop, "receipt")).taught == 1
    (name, provenance) = sorted(_examples(loop)["receipt"])
    assert name.startswith("review-") and name.endswith(".json") and provenance.endswith(".png")


def test_a_missing_page_image_keeps_the_correction_and_says_why(loop: Loop, tmp_path: Path) -> None:
    loop.page.unlink()
    report = import_file(loop.settings, _csv(tmp_path / "ana.csv", (loop.class_item, "label", "receipt", "ana")))
    assert report.applied == [loop.class_item] and report.taught == 0 and report.rejected == []
    (note,) = report.notes
    assert "the class correction is stored" in note and "could not be read" in note and str(loop.page) in note
    assert _item(loop, loop.class_item).corrected == {"label": "receipt"}
    assert _examples(loop) == {}


def test_correcting_a_class_again_moves_its_page(loop: Loop) -> None:
    _apply(loop, _label(loop, "receipt"))
    assert set(_examples(loop)) == {"receipt"}
    _apply(loop, _label(loop, "letter", "bob"), replace=True)
    examples = _examples(loop)
    assert set(examples) == {"letter"} and len(examples["letter"]) == 2
    assert json.loads((loop.learned / "letter" / examples["letter"][0]).read_text())["reviewer"] == "bob"
    _apply(loop, _label(loop, "invoice", "bob"), replace=True)  # back to the model's class: an example of nothing
    assert _examples(loop) == {}


# --- item 12: an object whose items are all answered is done, its history kept ----------------------------------


def test_an_object_whose_items_are_all_answered_is_done_and_keeps_its_history(loop: Loop, tmp_path: Path) -> None:
    import_file(loop.settings, _csv(tmp_path / "1.csv", (loop.extraction_item, "total", "99.00", "ana")))
    assert _object(loop).status == "review"  # its class still waits
    import_file(loop.settings, _csv(tmp_path / "2.csv", (loop.class_item, "", "", "bob")))  # signed off
    row = _object(loop)
    assert (row.status, row.review_reason, row.review_reasons) == ("done", "corrected by ana, bob", None)
    with unit_of_work(loop.settings.database_url) as session:
        report = StatusQuery(session).report(now=utcnow(), stale_after_s=900)
        view = object_view(session, KEY)
    assert report.objects == {"done": 1}
    assert view is not None and [(r.stage, r.status, r.reviewer) for r in view.reviews] == [
        ("classification", "resolved", "bob"),
        ("extraction", "resolved", "ana"),
    ]
    assert view.reviews[1].reasons == ["ungrounded"]  # why it was asked stays in the history


def test_an_object_checked_without_changes_is_done_as_checked(loop: Loop, tmp_path: Path) -> None:
    signed = _csv(tmp_path / "ok.csv", (loop.class_item, "", "", "bob"), (loop.extraction_item, "", "", "bob"))
    assert len(import_file(loop.settings, signed).applied) == 2
    row = _object(loop)
    assert (row.status, row.review_reason) == ("done", "checked by bob: the model's values confirmed")


# --- item 13: a corrected class queues the object for extraction under its schema -------------------------------


def test_a_corrected_class_queues_the_object_for_extraction_under_its_schema(loop: Loop, tmp_path: Path) -> None:
    import_file(loop.settings, _csv(tmp_path / "ana.csv", (loop.class_item, "label", "receipt", "ana")))
    row = _object(loop)
    assert row.status == "pending" and row.attempts == 0
    assert row.review_reason == (
        "class corrected to 'receipt' by ana: queued to be extracted as receipt by the next `docflow run`"
    )
    extraction = _item(loop, loop.extraction_item)  # it asked about the invoice extraction, which is to be redone
    assert extraction.status == "dismissed" and "queued to be extracted as receipt" in (extraction.note or "")
    # The next run takes it without --force, and the person's class goes with it to the classify stage.
    (ref,) = claim(loop.settings, "run-2", [loop.object_id], force=False, retry_failed=False)
    assert ref.person_class == "receipt"


# --- item 14: only the values a person changed are corrections --------------------------------------------------


def test_only_the_values_a_person_changed_are_corrections(
    loop: Loop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CSV carries every field as the model wrote it ("$1,234.50", "19/10/2018"); the reviewer changed one.
    rows = [(loop.extraction_item, name, "", "") for name in MODEL_DATA] + [(loop.class_item, "", "", "ana")]
    rows[0] = (loop.extraction_item, "vendor_name", "ACME Limited", "ana")
    import_file(loop.settings, _csv(tmp_path / "ana.csv", *rows))
    assert _item(loop, loop.extraction_item).changed_fields == ["vendor_name"]
    assert _item(loop, loop.class_item).changed_fields == []

    with unit_of_work(loop.settings.database_url) as session:
        view = object_view(session, KEY)
    assert view is not None and view.extraction is not None and view.classification is not None
    assert view.extraction.corrected_fields == ["vendor_name"]
    assert view.classification.corrected is None  # signed off: not a correction

    monkeypatch.setenv("DOCFLOW_DATABASE_URL", loop.settings.database_url)
    shown = CliRunner().invoke(app, ["show", KEY])
    assert shown.exit_code == 0, shown.output
    assert 'vendor_name: "ACME Limited"  (corrected; the model said "ACME Ltd")' in shown.output
    assert "total:" in shown.output and shown.output.count("corrected; the model said") == 1

    out = tmp_path / "results.jsonl"
    export_results(loop.settings.database_url, "jsonl", out, ResultFilter())
    (record_,) = map(json.loads, out.read_text().splitlines())
    assert record_["corrected"] == ["extraction"] and record_["corrected_fields"] == ["vendor_name"]
    assert record_["data"]["vendor_name"] == "ACME Limited" and record_["class_label"] == "invoice"
