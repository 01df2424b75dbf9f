"""The review loop a person lives in, end to end through the CLI on the whole sample inbox (real models, SQLite):
run -> `status` names every file waiting for review and why -> `review export` CSV -> a person corrects one class
and one value and signs off another object -> `review import` -> the answered objects are `done` (corrected or
checked), the corrected class is extracted under its own schema by the next run, `show` marks only the changed
value, and `export results` carries the corrections."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from tasks.display import reason_sentence

runner = CliRunner()
INVOICE = "documents/invoice2data_AzureInterior.pdf"  # the value a person corrects
SCAN = "images/invoice2data_AmazonWebServices.png"  # done, audited: the class a person corrects
CHECKED = "documents/invoice2data_AmazonWebServices.pdf"  # signed off as the model left it
CORRECTED_TOTAL = "4321.00"


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _shown(key: str) -> dict[str, Any]:
    return json.loads(_invoke("show", key, "--json"))


@pytest.mark.usefixtures("prefect_harness")
def test_the_review_loop_closes_on_the_sample_inbox(
    sample_inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(sample_inbox, inbox)
    for name, value in {
        "DOCFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'docflow.db'}",
        "DOCFLOW_SOURCE": str(inbox),
        "DOCFLOW_DERIVED_STORE": str(tmp_path / "derived"),
        "DOCFLOW_TEXT_LLM_MODEL": "pkg:smollm2-135m",
        "DOCFLOW_REVIEW_AUDIT_RATE": "1",  # every output is an item: the person has a class, a value, a sign-off
        "DOCFLOW_RETRIES": "1",
        "DOCFLOW_CLASS_LEARNED_EXAMPLES": str(tmp_path / "learned"),
    }.items():
        monkeypatch.setenv(name, value)

    # 1. The run's end and `status` name each file waiting for review, why in words, and what to run next.
    ran = _invoke("run")
    report = json.loads(_invoke("status", "--json"))
    waiting = report["waiting_review"]["objects"]
    assert {INVOICE, CHECKED} <= {o["key"] for o in waiting}  # doubts; the scan is only audited, so done
    status = _invoke("status")
    for shown in (" ".join(ran.split()), " ".join(status.split())):  # lines the terminal wrapped joined again
        for brief in waiting:
            first = brief["review_reasons"][0]
            assert brief["key"] in shown
            assert reason_sentence(first["code"], first.get("field"), first.get("value")) in shown
        assert "docflow show" in shown and "docflow review export" in shown
    assert "docflow.db" in status  # which database it read

    # 2. The review file; a person corrects the scan's class, the invoice's total, and signs off the other invoice.
    scan_schema = _shown(SCAN)["extraction"]["schema_id"].split("/")[0]
    person_class = "receipt" if scan_schema != "receipt" else "invoice"
    out = tmp_path / "review.csv"
    _invoke("review", "export", "--format", "csv", "--out", str(out))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    for row in rows:
        if row["key"] == SCAN and row["field"] == "label":
            row["correction"] = person_class
        if row["key"] == INVOICE and row["field"] == "total":
            row["correction"] = CORRECTED_TOTAL
        if row["key"] in (SCAN, INVOICE, CHECKED):
            row["reviewer"] = "ana"  # every item of the three objects answered
    with out.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    imported = _invoke("review", "import", str(out))
    assert "0 rejected" in imported

    # 3. The corrected invoice is done, its one changed value marked and no other.
    invoice = _shown(INVOICE)
    assert invoice["status"] == "done" and invoice["note"].startswith("corrected by ana")
    assert invoice["extraction"]["corrected_fields"] == ["total"]
    assert invoice["extraction"]["corrected"]["total"] == CORRECTED_TOTAL  # beside the model's, which stays
    plain = _invoke("show", INVOICE)
    assert plain.count("corrected; the model said") == 1
    # The signed-off invoice leaves review as checked; nothing of it is a correction.
    checked = _shown(CHECKED)
    assert checked["status"] == "done" and checked["note"].startswith("checked by ana")
    assert checked["classification"]["corrected"] is None and checked["extraction"]["corrected_fields"] == []
    assert {r["status"] for r in checked["reviews"]} == {"resolved"}  # the history kept
    # The scan waits for the next run, which extracts it under the schema of the person's class.
    queued = _shown(SCAN)
    assert queued["status"] == "pending" and f"extracted as {person_class}" in queued["note"]
    monkeypatch.setenv("DOCFLOW_REVIEW_AUDIT_RATE", "0")
    _invoke("run")
    scan = _shown(SCAN)
    assert scan["extraction"]["schema_id"] == f"{person_class}/v1"
    assert scan["classification"]["corrected"] == person_class
    assert scan["status"] in ("done", "review")
    assert _shown(INVOICE)["status"] == "done"  # the second run leaves the answered objects as they are

    # 4. The results carry the corrections, and say which values they are.
    results = tmp_path / "results.jsonl"
    _invoke("export", "results", "--format", "jsonl", "--out", str(results))
    records = {r["key"]: r for r in map(json.loads, results.read_text(encoding="utf-8").splitlines())}
    assert records[INVOICE]["data"]["total"] == CORRECTED_TOTAL and records[INVOICE]["corrected_fields"] == ["total"]
    assert records[SCAN]["class_label"] == person_class and "class_label" in records[SCAN]["corrected_fields"]
    assert records[CHECKED]["corrected_fields"] == [] and records[CHECKED]["status"] == "done"
    assert "queued" not in (_shown(SCAN)["note"] or "")  # the second run's result replaced the note
