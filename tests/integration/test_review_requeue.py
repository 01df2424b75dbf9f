"""A corrected class re-extracts, end to end through the CLI on a real run (real models, SQLite): the class item
corrected in the review CSV queues the invoice again, and the next `docflow run` extracts it under the schema of
the person's class, with learning off (the stored correction decides, not a taught exemplar)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.main import app

runner = CliRunner()
INVOICE = "invoice2data_AzureInterior.pdf"
PHOTO = "photo_donut_coffee_122.jpg"


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.usefixtures("prefect_harness")
def test_a_corrected_class_is_extracted_under_its_schema_by_the_next_run(
    sample_inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / INVOICE, inbox)
    shutil.copy(sample_inbox / "images" / PHOTO, inbox)
    settings = {
        "DOCFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "DOCFLOW_SOURCE": str(inbox),
        "DOCFLOW_DERIVED_STORE": str(tmp_path / "derived"),
        "DOCFLOW_TEXT_LLM_MODEL": "pkg:smollm2-135m",
        "DOCFLOW_REVIEW_AUDIT_RATE": "1",
        "DOCFLOW_RETRIES": "1",
        "DOCFLOW_CLASS_LEARNED_EXAMPLES": "",  # learning off: only the stored correction can carry the class
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    _invoke("run")
    before = json.loads(_invoke("show", INVOICE, "--json"))
    extracted_as = before["extraction"]["schema_id"].split("/")[0]
    person = "receipt" if extracted_as != "receipt" else "invoice"  # a class whose schema is another one

    out = tmp_path / "review.csv"
    _invoke("review", "export", "--format", "csv", "--out", str(out), "--stage", "classification")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    for row in rows:
        if row["key"] == INVOICE:
            row.update(correction=person, reviewer="ana")
    with out.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert "1 item(s) resolved" in _invoke("review", "import", str(out))

    queued = json.loads(_invoke("show", INVOICE, "--json"))
    assert queued["status"] == "pending"  # not done for extraction until a run redoes it
    assert queued["classification"]["corrected"] == person
    assert not [r for r in queued["reviews"] if r["stage"] == "extraction" and r["status"] in ("open", "exported")]

    second = _invoke("run")  # no --force: the queued object is pending, the photo is left as it was
    after = json.loads(_invoke("show", INVOICE, "--json"))
    assert after["extraction"]["schema_id"] == f"{person}/v1", second
    assert after["status"] in ("done", "review")
    assert after["classification"]["corrected"] == person
    # The class is not asked again; the model's label stays on record beside the person's.
    assert [r["status"] for r in after["reviews"] if r["stage"] == "classification"] == ["resolved"]
    assert after["classification"]["label"] == before["classification"]["label"]
    results = tmp_path / "results.jsonl"
    _invoke("export", "results", "--format", "jsonl", "--out", str(results))
    records = {r["key"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert records[INVOICE]["class_label"] == person and records[INVOICE]["schema_id"] == f"{person}/v1"
    assert records[INVOICE]["corrected_fields"][:1] == ["class_label"]
