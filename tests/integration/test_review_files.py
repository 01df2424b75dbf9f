"""Review and result files through the CLI, on a real SQLite database seeded with review items (no models run):
exports check their target and never leave a broken file (a folder, '', /dev/full, a file-size limit, a failed
Label Studio export), CSV exports neutralise formulas, `review import` exits non-zero on rejected rows and lists
only the first of them, and the Parquet export has native types."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows.cli.main import app
from flows.cli.review import REJECTED_SHOWN
from schemas.records import BlobInfo, Classification, Extraction, ObjectKind, ObjectResult, ObjectStatus
from storage.db import migrate, unit_of_work
from storage.repositories import ObjectRepository
from storage.review import ReviewRepository
from storage.tables import ExtractionRow, SourceObject
from tasks.review.items import AuditPolicy, review_drafts

runner = CliRunner()
FORMULA_KEY = '=HYPERLINK("http://evil.example/","x").pdf'
INVOICE = {
    "vendor_name": "@ACME",
    "invoice_number": "7",
    "invoice_date": "2024-03-01",
    "total": "-12.50",
    "line_items": [{"description": "tea", "quantity": None, "unit_price": None, "amount": "12.50"}],
}
PROCESSED = datetime(2024, 3, 2, 10, 30, tzinfo=UTC)


def _seed(url: str, keys: list[str]) -> None:
    """One processed invoice per key, with an extraction and a review item for its class and its data."""
    migrate(url)
    with unit_of_work(url) as session:
        ObjectRepository(session).register(
            [BlobInfo(source="file:///inbox", key=k, version="1", size=1, last_modified=PROCESSED) for k in keys]
        )
        session.flush()
        for row in session.scalars(select(SourceObject).order_by(SourceObject.id)):
            row.kind, row.status, row.processed_at = ObjectKind.PDF, ObjectStatus.REVIEW, PROCESSED
            extraction = Extraction(
                schema_id="invoice/v1", backend="text", model_id="m", data=INVOICE, valid=True, attempts=1
            )
            session.add(
                ExtractionRow(
                    object_id=row.id,
                    schema_id="invoice/v1",
                    backend="text",
                    model_id="m",
                    data=INVOICE,
                    valid=True,
                    attempts=1,
                    raw_output="",
                )
            )
            result = ObjectResult(
                kind=ObjectKind.PDF,
                sha256="ab" * 32,
                classification=Classification(
                    label="invoice", probability=0.9, margin=0.5, route="invoice", model_id="c"
                ),
                extraction=extraction,
            )
            ReviewRepository(session).open(row.id, review_drafts(result, row.key, AuditPolicy(rate=1.0)), None)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    _seed(url, ["a.pdf", FORMULA_KEY])
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", url)
    return url


def _written(folder: Path) -> list[str]:
    """The files in `folder` besides the database's own."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("review.db"))


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


# --- 7. exports never leave a broken file --------------------------------------------------------------------------

EXPORTS = [
    ("review", "export", "--format", "csv"),
    ("review", "export", "--format", "jsonl"),
    ("review", "export", "--format", "label-studio"),
    ("export", "results", "--format", "csv"),
    ("export", "results", "--format", "jsonl"),
    ("export", "results", "--format", "parquet"),
]


@pytest.mark.parametrize("command", EXPORTS, ids=lambda c: "-".join(c[:1] + c[-1:]))
@pytest.mark.parametrize("target", ["", "folder", "/dev/full"])
def test_an_export_to_something_that_is_not_a_file_is_one_clean_line(
    db: str, tmp_path: Path, command: tuple[str, ...], target: str
) -> None:
    out = str(tmp_path) if target == "folder" else target
    code, output = _run(*command, "--out", out)
    assert code == 2, output
    assert output.startswith("error: ") and output.count("\n") <= 2 and "Traceback" not in output
    assert "name a file to write" in output
    assert _written(tmp_path) == []  # nothing written, not even a temporary file


_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from flows.cli.main import app
app(sys.argv[2:])
"""


@pytest.mark.parametrize("command", [EXPORTS[0], EXPORTS[4], EXPORTS[5]], ids=lambda c: "-".join(c[:1] + c[-1:]))
def test_a_full_disk_leaves_the_old_file_and_no_partial_one(db: str, tmp_path: Path, command: tuple[str, ...]) -> None:
    """A file-size limit (RLIMIT_FSIZE, what a full disk looks like to a writer) stops the export half-way: one
    line, exit 1, the file that was there before untouched, no temporary file left, the items still waiting."""
    out = tmp_path / "out" / "export.file"
    out.parent.mkdir()
    out.write_text("the previous export\n")
    limit = 400  # bytes: less than any of these exports, more than the old file
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(limit), *command, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "cannot write" in output and "File too large" in output and "Traceback" not in output
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in out.parent.iterdir()] == ["export.file"]
    if command[0] == "review":  # the items were not marked exported: the next export writes them again
        code, output = _run("show", "a.pdf", "--json")
        assert code == 0, output
        assert {r["status"] for r in json.loads(output)["reviews"]} == {"open"}


def test_a_failed_label_studio_export_keeps_the_existing_file(db: str, tmp_path: Path) -> None:
    out = tmp_path / "tasks.json"
    out.write_text("[]\n")
    code, output = _run("review", "export", "--format", "label-studio", "--out", str(out))
    assert code == 2 and "has no page image to show" in output, output  # the seeded items have no page image
    assert out.read_text() == "[]\n"
    assert _written(tmp_path) == ["tasks.json"]


def test_an_export_keeps_the_permissions_a_new_file_gets(db: str, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "review.csv"  # folders are created
    code, output = _run("review", "export", "--format", "csv", "--out", str(out))
    assert code == 0, output
    assert out.stat().st_mode & 0o644 == 0o644  # readable by others, as any file written by open() (not 0600)


# --- 1. formula injection, through the CLI ---------------------------------------------------------------------------


def test_csv_exports_neutralise_formulas_and_the_import_reads_them_back(db: str, tmp_path: Path) -> None:
    review = tmp_path / "review.csv"
    assert _run("review", "export", "--format", "csv", "--out", str(review))[0] == 0
    results = tmp_path / "results.csv"
    assert _run("export", "results", "--format", "csv", "--out", str(results))[0] == 0
    for path in (review, results):
        cells = [c for row in csv.reader(path.open(encoding="utf-8")) for c in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and c != "-12.50"]  # a refund
        assert "'" + FORMULA_KEY in cells
    rows = list(csv.DictReader(review.open(encoding="utf-8")))
    row = next(r for r in rows if r["key"] == "'" + FORMULA_KEY and r["field"] == "vendor_name")
    row.update(correction="'=cmd|' /C calc'!A0", reviewer="'@ana")
    with (tmp_path / "edited.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(row)
    code, output = _run("review", "import", str(tmp_path / "edited.csv"))
    assert code == 0 and "1 item(s) resolved" in output, output
    shown = json.loads(_run("show", FORMULA_KEY, "--json")[1])
    assert shown["extraction"]["corrected"]["vendor_name"] == "=cmd|' /C calc'!A0"
    assert {r["reviewer"] for r in shown["reviews"] if r["status"] == "resolved"} == {"@ana"}


# --- 8. rejected rows: exit 1 and a capped list ----------------------------------------------------------------------


def test_an_import_with_rejected_rows_exits_1_and_lists_only_the_first(db: str, tmp_path: Path) -> None:
    path = tmp_path / "unknown.jsonl"
    path.write_text("".join(json.dumps({"item_id": 1000 + i, "reviewer": "ana"}) + "\n" for i in range(100_000)))
    code, output = _run("review", "import", str(path))
    assert code == 1, output
    assert "0 item(s) resolved, 0 unchanged (already stored), 100000 rejected" in output
    assert output.count("rejected line") == REJECTED_SHOWN
    assert f"... and {100_000 - REJECTED_SHOWN} more rejected" in output
    assert len(output.splitlines()) < REJECTED_SHOWN + 5
    signed_off = tmp_path / "signed.jsonl"
    signed_off.write_text(json.dumps({"item_id": 1, "reviewer": "ana"}) + "\n")
    assert _run("review", "import", str(signed_off))[0] == 0  # nothing rejected: success


# --- 18. Parquet with native types ----------------------------------------------------------------------------------


def test_the_parquet_export_has_native_types(db: str, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    everything, invoices = tmp_path / "all.parquet", tmp_path / "invoices.parquet"
    assert _run("export", "results", "--format", "parquet", "--out", str(everything))[0] == 0
    assert _run("export", "results", "--format", "parquet", "--out", str(invoices), "--schema", "invoice")[0] == 0
    table = pq.read_table(everything)
    assert table.schema.field("processed_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("corrected").type == pa.list_(pa.string())
    assert table.schema.field("speakers").type == pa.list_(pa.string())
    data = table.schema.field("data").type
    assert pa.types.is_struct(data) and pa.types.is_list(data.field("line_items").type)
    assert pa.types.is_struct(data.field("line_items").type.value_type)
    record = table.to_pylist()[0]
    assert record["processed_at"] == PROCESSED
    assert record["data"]["line_items"] == INVOICE["line_items"] and record["data"]["total"] == "-12.50"
    assert record["data"]["merchant_name"] is None  # a receipt's field: every schema shares the one struct
    only = pq.read_table(invoices)
    assert pa.types.is_list(only.schema.field("line_items").type)
    assert only.to_pylist()[0]["line_items"] == INVOICE["line_items"]
    assert "merchant_name" not in only.schema.field("data").type.names
