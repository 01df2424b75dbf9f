"""`docflow review export` reads the queue as plain rows (JSON parsed by orjson, no view per item) and writes the
CSV a chunk at a time: on SQLite and PostgreSQL the CSV and JSONL files are byte for byte what the code before
did (its writers are kept below as the reference) on a mixed, hostile queue: every stage, audit samples, reasons
with and without a field, formula-looking text, negative numbers, integers beyond 64 bits, non-text values,
partial outputs, an unknown schema."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select

from schemas.documents import SCHEMAS
from schemas.records import BlobInfo, ReviewReason
from schemas.review import ReviewDraft, ReviewItemView, ReviewStage
from schemas.settings import load_settings
from storage.db import migrate, unit_of_work
from storage.outfiles import spreadsheet_safe
from storage.repositories import ObjectRepository
from storage.review import ReviewRepository
from storage.tables import Page, SourceObject
from tasks.review.files import CSV_COLUMNS
from tasks.review.items import model_value
from tasks.review.queue import WAITING, export_file

HOSTILE = ["=1+2", "+SUM(A1)", "-12.50", "-1e3", "@x", "\tTab", "\rCR", "'=quoted", 'a "quote", a comma', "line\nbreak"]
HOSTILE += ["naïve ünïcode ✓", "", " -5", "-", "--1", "-0.5"]


def _reason(message: str, field: str | None = None) -> ReviewReason:
    return ReviewReason(stage="extract", code="low", message=message, value=0.4, field=field)


def _drafts(n: int) -> list[ReviewDraft]:
    """A few items of each kind, their text drawn from HOSTILE."""
    text = HOSTILE[n % len(HOSTILE)]
    invoice = {
        "vendor_name": text,
        "invoice_number": 2**70 + n if n % 4 == 0 else f"INV-{n}",  # beyond 64 bits: orjson would round it
        "total": -12.5 if n % 3 else f"-{n}.50",
        "currency": None,
        "line_items": [{"description": text, "amount": "-3.25", "quantity": 1e300}],
        'a "field", odd\n': text,  # shown only under a schema this version does not know
    }
    if n % 5 == 0:
        del invoice["vendor_name"]  # a partial output: the schema's default
    extraction = ReviewDraft(
        stage=ReviewStage.EXTRACTION,
        schema_id="invoice/v1" if n % 7 else "unknown/v9",
        reasons=(_reason(f"{text} total", "total"), _reason("items", "line_items[0].amount"), _reason(text))
        if n % 2
        else (),
        audit=not n % 2,
        model_output={
            "data": invoice,
            "field_confidence": {"total": -0.25 if n % 3 else 0.4, "vendor_name": 1},
            "field_pages": {"total": [1, 2], "vendor_name": [-1]},
            "field_grounding": {"total": text, "vendor_name": {"box": [1, 2]}, "currency": None},
        },
        model_id="m",
        score=0.4,
    )
    classification = ReviewDraft(
        stage=ReviewStage.CLASSIFICATION,
        schema_id="class/v1",
        reasons=(_reason(text),),
        audit=False,
        model_output={"label": text or "invoice", "probability": 0.5},
        model_id="c",
        score=None,
    )
    transcript = ReviewDraft(
        stage=ReviewStage.TRANSCRIPTION,
        schema_id="transcript/v1",
        reasons=(_reason(text, "segments[0].text"),),
        audit=False,
        model_output={"segments": [{"speaker": "=S0", "text": text, "start_s": 0}, {"speaker": "S1", "text": "-2"}]},
        model_id="w",
        score=0.1,
    )
    return [[extraction], [classification, extraction], [transcript]][n % 3]


def _seed(url: str, count: int) -> None:
    migrate(url)
    when = datetime(2024, 3, 2, tzinfo=UTC)
    with unit_of_work(url) as session:
        ObjectRepository(session).register(
            [
                BlobInfo(
                    source="file:///inbox",
                    key=f"{HOSTILE[n % len(HOSTILE)]}{n}.pdf",
                    version="1",
                    size=1,
                    last_modified=when,
                )
                for n in range(count)
            ]
        )
        session.flush()
        repo = ReviewRepository(session)
        for n, row in enumerate(session.scalars(select(SourceObject).order_by(SourceObject.id))):
            if n % 2:
                session.add_all(
                    Page(object_id=row.id, page_number=p, uri=f"s3://d/{row.id}/{p}.png", width=1, height=1, dpi=72)
                    for p in (2, 1)
                )
            repo.open(row.id, _drafts(n), "run-1")


def test_review_files_are_byte_for_byte_the_old_writers_output(db_url: str, tmp_path: Path) -> None:
    _seed(db_url, 60)
    with unit_of_work(db_url) as session:
        views = [view for view, _ in ReviewRepository(session).views(WAITING)]
    want_csv, want_jsonl = io.StringIO(newline=""), io.StringIO(newline="")
    assert _old_write_csv(views, want_csv) == len(views) == _old_write_jsonl(views, want_jsonl)
    settings = load_settings(database_url=db_url)
    assert export_file(settings, "csv", tmp_path / "queue.csv") == len(views)
    assert export_file(settings, "jsonl", tmp_path / "queue.jsonl") == len(views)
    assert (tmp_path / "queue.csv").read_bytes() == want_csv.getvalue().encode()
    assert (tmp_path / "queue.jsonl").read_bytes() == want_jsonl.getvalue().encode()
    assert f"{2**70}" in want_csv.getvalue()  # the long integer kept, not rounded
    assert ",'=1+2," in want_csv.getvalue() and ",-12.50," in want_csv.getvalue()


# --- the writers as they were before the export read plain rows (commit 1465fc3) --------------------------------


def _old_write_csv(items: Iterable[ReviewItemView], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for item in items:
        writer.writerows(_old_csv_rows(item))
        count += 1
    return count


def _old_csv_rows(item: ReviewItemView) -> Iterator[list[object]]:
    value = model_value(item.stage, item.model_output) or {}
    output = item.model_output
    confidence, pages, grounding = (
        output.get("field_confidence", {}),
        output.get("field_pages", {}),
        output.get("field_grounding", {}),
    )
    item_cells = [spreadsheet_safe(cell) for cell in (item.id, item.key, item.stage.value, item.schema_id)]
    general = "; ".join(r.message for r in item.reasons if r.field is None) or ("audit sample" if item.audit else "")
    by_field: dict[str, list[str]] = {}
    for r in item.reasons:
        if r.field is not None:
            by_field.setdefault(r.field.split("[")[0], []).append(r.message)
    for field, field_value in _old_fields(item, value):
        top = field.split("[", 1)[0].split(".", 1)[0]
        reasons = by_field.get(top, [])
        yield [
            *item_cells,
            spreadsheet_safe(field),
            spreadsheet_safe(_old_cell(field_value)),
            spreadsheet_safe(f"{v:.3f}" if isinstance(v := confidence.get(top), int | float) else ""),
            spreadsheet_safe(",".join(str(p) for p in pages.get(top, []))),
            spreadsheet_safe(grounding.get(top, "")),
            spreadsheet_safe("; ".join([*reasons, general] if general else reasons)),
            "",
            "",
        ]


def _old_fields(item: ReviewItemView, value: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if item.stage is ReviewStage.TRANSCRIPTION:
        for i, segment in enumerate(value.get("segments", [])):
            yield f"segments[{i}].speaker", segment["speaker"]
            yield f"segments[{i}].text", segment["text"]
        return
    schema = SCHEMAS.get(item.schema_id.split("/", 1)[0]) if item.stage is ReviewStage.EXTRACTION else None
    if schema is None:
        yield from value.items()
        return
    for name, field in schema.model_fields.items():
        yield name, value[name] if value.get(name) is not None else field.get_default(call_default_factory=True)


def _old_cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _old_write_jsonl(items: Iterable[ReviewItemView], out: TextIO) -> int:
    count = 0
    for item in items:
        record = {
            "item_id": item.id,
            "key": item.key,
            "stage": item.stage.value,
            "schema": item.schema_id,
            "audit": item.audit,
            "reasons": [r.model_dump(mode="json") for r in item.reasons],
            "model_id": item.model_id,
            "score": item.score,
            "value": model_value(item.stage, item.model_output),
            "field_confidence": item.model_output.get("field_confidence"),
            "field_pages": item.model_output.get("field_pages"),
            "pages": item.pages,
            "correction": None,
            "reviewer": None,
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count
