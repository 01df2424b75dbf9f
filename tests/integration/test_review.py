"""The review queue end to end through the CLI, on a real run over sample-inbox files (real models, SQLite):
review items opened by doubts and by the audit sample, CSV and JSONL round trips with malformed rows, corrections
stored beside the model's output and used by `docflow show` and `docflow export results`, a second import that
changes nothing, and a corrected class that teaches the classifier."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.main import app

runner = CliRunner()
INVOICE = "invoice2data_AzureInterior.pdf"
PHOTO = "photo_donut_coffee_122.jpg"


@pytest.fixture(scope="module")
def reviewed_run(sample_inbox: Path, tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[Path]:
    """A run over an invoice and a photo with the audit rate at 1 (every output gets a review item) and extraction
    by the smallest real text LLM; yields the database file, which each test copies."""
    work = tmp_path_factory.mktemp("review-run")
    inbox = work / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / INVOICE, inbox)
    shutil.copy(sample_inbox / "images" / PHOTO, inbox)
    settings = {
        "DOCFLOW_DATABASE_URL": f"sqlite:///{work / 'run.db'}",
        "DOCFLOW_SOURCE": str(inbox),
        "DOCFLOW_DERIVED_STORE": str(work / "derived"),
        "DOCFLOW_TEXT_LLM_MODEL": "pkg:smollm2-135m",
        "DOCFLOW_REVIEW_AUDIT_RATE": "1",
        "DOCFLOW_RETRIES": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        result = runner.invoke(app, ["run"])
        assert result.exit_code == 0, result.output
    yield work / "run.db"


@pytest.fixture
def db(reviewed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the run's database (SQLite's backup: the run's last writes may still be in its WAL file), with
    the settings that point at it."""
    copy = tmp_path / "review.db"
    with closing(sqlite3.connect(reviewed_run)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", f"sqlite:///{copy}")
    monkeypatch.setenv("DOCFLOW_CLASS_LEARNED_EXAMPLES", str(tmp_path / "learned"))
    return copy


def _invoke(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def _export_csv(tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / "review.csv"
    assert "review item(s)" in _invoke("review", "export", "--format", "csv", "--out", str(out))
    return list(csv.DictReader(out.open(encoding="utf-8")))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_every_output_of_the_run_is_a_review_item_with_the_models_value(db: Path, tmp_path: Path) -> None:
    rows = _export_csv(tmp_path)
    by_stage = {(r["key"], r["stage"]) for r in rows}
    assert by_stage == {(INVOICE, "classification"), (INVOICE, "extraction"), (PHOTO, "classification")}
    label_rows = [r for r in rows if r["field"] == "label"]
    assert {r["key"] for r in label_rows} == {INVOICE, PHOTO} and all(r["value"] for r in label_rows)
    fields = {r["field"] for r in rows if r["stage"] == "extraction"}
    assert {"vendor_name", "invoice_number", "total", "line_items"} <= fields
    # Every item says why it is there (a doubt naming its field, one about the whole output, or the audit sample).
    reasons: dict[str, list[str]] = {}
    for r in rows:
        reasons.setdefault(r["item_id"], []).append(r["reason"])
    assert all(any(item) for item in reasons.values())
    # Exported items are marked so, and show in the object's history.
    shown = json.loads(_invoke("show", INVOICE, "--json"))
    assert {(r["stage"], r["status"]) for r in shown["reviews"]} == {
        ("classification", "exported"),
        ("extraction", "exported"),
    }


def test_a_csv_round_trip_applies_valid_corrections_and_rejects_bad_rows(db: Path, tmp_path: Path) -> None:
    rows = _export_csv(tmp_path)
    invoice_total = next(r for r in rows if r["key"] == INVOICE and r["field"] == "total")
    invoice_total.update(correction="187.50", reviewer="ana")
    for r in rows:
        if r["key"] == INVOICE and r["field"] == "vendor_name":
            r["correction"] = "Azure Interior"
        if r["key"] == INVOICE and r["field"] == "subtotal":
            r["correction"] = "null"  # cleared: the invoice's totals then cannot disagree
        if r["key"] == INVOICE and r["field"] in ("tax", "due_date"):
            r["correction"] = "null"
        if r["key"] == INVOICE and r["field"] == "invoice_date":
            r["correction"] = "2023-03-15"
        if r["key"] == INVOICE and r["field"] == "line_items":
            r["correction"] = "[]"
    photo = next(r for r in rows if r["key"] == PHOTO and r["field"] == "label")
    photo.update(correction="banana", reviewer="ana")  # not a class: rejected with the reason
    rows.append({**photo, "item_id": "abc", "correction": "photo"})  # malformed id
    rows.append({**photo, "item_id": "9999", "correction": "photo"})  # unknown item
    edited = tmp_path / "edited.csv"
    _write_csv(edited, rows)

    output = _invoke("review", "import", str(edited), code=1)  # rows were rejected
    assert "1 item(s) resolved, 0 unchanged (already stored), 3 rejected" in output
    assert "unknown review item 'abc'" in output and "unknown review item '9999'" in output
    assert "unknown class 'banana'" in output

    shown = json.loads(_invoke("show", INVOICE, "--json"))
    extraction = shown["extraction"]
    assert extraction["corrected"]["total"] == "187.50" and extraction["corrected"]["vendor_name"] == "Azure Interior"
    assert extraction["data"] != extraction["corrected"]  # the model's output is kept beside the correction
    resolved = [r for r in shown["reviews"] if r["status"] == "resolved"]
    assert [(r["stage"], r["reviewer"]) for r in resolved] == [("extraction", "ana")]
    printed = _invoke("show", INVOICE)
    assert 'total: "187.50"  (corrected; the model said' in printed

    out = tmp_path / "results.jsonl"
    _invoke("export", "results", "--format", "jsonl", "--out", str(out))
    records = {r["key"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records[INVOICE]["data"]["total"] == "187.50" and records[INVOICE]["corrected"] == ["extraction"]
    assert records[PHOTO]["corrected"] == []
    table = tmp_path / "invoices.parquet"
    _invoke("export", "results", "--format", "parquet", "--out", str(table), "--schema", "invoice")
    import pyarrow.parquet as pq

    rows = pq.read_table(table).to_pylist()
    assert [(r["key"], r["total"], r["vendor_name"]) for r in rows] == [(INVOICE, "187.50", "Azure Interior")]
    table_csv = tmp_path / "all.csv"
    _invoke("export", "results", "--format", "csv", "--out", str(table_csv), "--kind", "image")
    assert [r["key"] for r in csv.DictReader(table_csv.open())] == [PHOTO]

    again = _invoke("review", "import", str(edited), code=1)
    assert "0 item(s) resolved, 1 unchanged (already stored), 3 rejected" in again


def test_a_jsonl_round_trip_and_a_corrected_class_teaches_the_classifier(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "review.jsonl"
    _invoke("review", "export", "--format", "jsonl", "--out", str(out))
    items = [json.loads(line) for line in out.read_text().splitlines()]
    invoice_class = next(i for i in items if i["key"] == INVOICE and i["stage"] == "classification")
    invoice_class.update(correction={"label": "receipt"}, reviewer="ben")
    photo = next(i for i in items if i["key"] == PHOTO)
    photo.update(reviewer="ben")  # checked: the model was right
    extraction = next(i for i in items if i["stage"] == "extraction")
    extraction.update(correction={"total": "not money"}, reviewer="ben")  # invalid: rejected with the reason
    lines = [json.dumps(i) for i in items] + ["{not json", json.dumps({"item_id": 777, "reviewer": "x"})]
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(lines) + "\n")

    output = _invoke("review", "import", str(edited), code=1)
    assert "2 item(s) resolved, 0 unchanged (already stored), 3 rejected" in output
    assert "not JSON" in output and "unknown review item 777" in output and "total:" in output
    assert "1 page(s) added to class examples" in output

    shown = json.loads(_invoke("show", INVOICE, "--json"))
    assert shown["classification"]["corrected"] == "receipt"
    assert shown["classification"]["label"] != "receipt"  # the model's class stays as it was
    learned = list((tmp_path / "learned" / "receipt").glob("review-*"))
    assert {p.suffix for p in learned} == {".png", ".json"} or {p.suffix for p in learned} == {".jpg", ".json"}
    provenance = json.loads(next(p for p in learned if p.suffix == ".json").read_text())
    assert provenance["object_key"] == INVOICE and provenance["reviewer"] == "ben"
    assert "0 item(s) resolved, 2 unchanged" in _invoke("review", "import", str(edited), code=1)


def test_label_config_names_every_schema_field() -> None:
    import xml.etree.ElementTree as ET

    config = ET.fromstring(_invoke("review", "label-config", "--schema", "invoice"))
    names = {e.get("name") for e in config.iter("TextArea")}
    assert {"vendor_name", "invoice_number", "total", "line_items"} <= names
    transcript = ET.fromstring(_invoke("review", "label-config", "--schema", "transcript"))
    assert transcript.find("Audio") is not None


def test_the_review_export_flow_writes_a_file_where_configured(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.review import review_export

    monkeypatch.setenv("DOCFLOW_REVIEW_EXPORT_TO", str(tmp_path / "outbox"))
    result = review_export()
    assert result.items_written == 3 and result.written is not None
    (written,) = (tmp_path / "outbox").glob("review-*.csv")
    assert {row["stage"] for row in csv.DictReader(written.open())} == {"classification", "extraction"}
    again = review_export()  # the items were exported, not answered: they are written again, for the next reviewer
    assert again.items_written == 3
    monkeypatch.delenv("DOCFLOW_REVIEW_EXPORT_TO")
    with pytest.raises(Exception, match="nowhere to send review items"):
        review_export()


def test_the_run_summary_counts_review_items_per_stage_and_reason(db: Path) -> None:
    from schemas.settings import load_settings
    from storage.db import unit_of_work
    from storage.review import ReviewRepository
    from storage.tables import Run

    with unit_of_work(load_settings().database_url) as session:
        (run_id,) = [r.id for r in session.query(Run)]
        summary = ReviewRepository(session).summary([run_id])
    opened = {(o.stage, o.reason): o.items for o in summary.opened}
    assert opened[("classification", "audit")] >= 1  # the photo's class, confident: the audit sample
    assert sum(n for (stage, _), n in opened.items() if stage == "classification") >= 2
    assert sum(n for (stage, _), n in opened.items() if stage == "extraction") >= 1
    assert summary.backlog == {"classification": 2, "extraction": 1} and summary.oldest_open_key is not None
