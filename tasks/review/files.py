"""Review items as files, for teams without Label Studio, and reviewers' files read back.

- CSV: one row per item and field (value, confidence, page, grounding, reason); a reviewer fills `correction`
  where the model is wrong (`null` clears a value) and `reviewer` on every item they checked.
- JSONL: one item per line with the whole value under review; a reviewer sets `correction` (the whole corrected
  value) or only `reviewer` (the model was right).
- Label Studio tasks JSON (`tasks.review.label_studio`) for a by-hand import, and Label Studio's own JSON export
  read back.

Reading gives one `ReviewAnswer` per item a reviewer touched, or a `RejectedRow` with the reason; applying
them (validation included) is the caller's."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from schemas.documents import SCHEMAS
from schemas.review import ReviewItemView, ReviewStage
from tasks.review.answers import RejectedRow, ReviewAnswer
from tasks.review.items import model_value

CSV_COLUMNS = (
    "item_id",
    "key",
    "stage",
    "schema",
    "field",
    "value",
    "confidence",
    "page",
    "grounding",
    "reason",
    "correction",
    "reviewer",
)
CLEAR = "null"  # a CSV correction that empties the field


# --- writing -------------------------------------------------------------------------------------------------


def write_csv(items: Iterable[ReviewItemView], out: TextIO) -> int:
    """The items as CSV rows (one per field); returns the number of items written."""
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    count = 0
    for item in items:
        for row in _csv_rows(item):
            writer.writerow(row)
        count += 1
    return count


def _csv_rows(item: ReviewItemView) -> Iterator[dict[str, Any]]:
    value = model_value(item.stage, item.model_output) or {}
    base = {"item_id": item.id, "key": item.key, "stage": item.stage.value, "schema": item.schema_id}
    general = "; ".join(r.message for r in item.reasons if r.field is None) or ("audit sample" if item.audit else "")
    for field, field_value in _fields(item, value):
        top = field.split("[", 1)[0].split(".", 1)[0]
        reasons = [r.message for r in item.reasons if r.field is not None and r.field.split("[")[0] == top]
        yield {
            **base,
            "field": field,
            "value": _cell(field_value),
            "confidence": _number(item.model_output.get("field_confidence", {}).get(top)),
            "page": ",".join(str(p) for p in item.model_output.get("field_pages", {}).get(top, [])),
            "grounding": item.model_output.get("field_grounding", {}).get(top, ""),
            "reason": "; ".join([*reasons, general] if general else reasons),
            "correction": "",
            "reviewer": "",
        }


def _fields(item: ReviewItemView, value: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if item.stage is ReviewStage.TRANSCRIPTION:
        for i, segment in enumerate(value.get("segments", [])):
            yield f"segments[{i}].speaker", segment["speaker"]
            yield f"segments[{i}].text", segment["text"]
        return
    yield from _complete(item, value).items()


def _complete(item: ReviewItemView, value: dict[str, Any]) -> dict[str, Any]:
    """An extraction's value with every field of its schema (an invalid or partial output lacks some)."""
    if item.stage is not ReviewStage.EXTRACTION:
        return value
    schema = SCHEMAS.get(item.schema_id.split("/", 1)[0])
    if schema is None:
        return value
    return {
        name: value[name] if value.get(name) is not None else field.get_default(call_default_factory=True)
        for name, field in schema.model_fields.items()
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else ""


def write_jsonl(items: Iterable[ReviewItemView], out: TextIO) -> int:
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


# --- reading -------------------------------------------------------------------------------------------------


def read_jsonl(text: str, items: dict[int, ReviewItemView]) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    answers, rejected = [], []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"line {number}"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rejected.append(RejectedRow(where, f"not JSON: {exc.msg}"))
            continue
        if not isinstance(record, dict):
            rejected.append(RejectedRow(where, "not a JSON object"))
            continue
        item_id = _item_id(record.get("item_id"))
        if item_id is None or item_id not in items:
            rejected.append(RejectedRow(where, f"unknown review item {record.get('item_id')!r}"))
            continue
        correction, reviewer = record.get("correction"), record.get("reviewer")
        if correction is None and not reviewer:
            continue  # not reviewed yet
        answers.append(ReviewAnswer(item_id, correction, _text(reviewer), where))
    return answers, rejected


def read_csv(text: str, items: dict[int, ReviewItemView]) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    reader = csv.DictReader(text.splitlines())
    missing = {"item_id", "field", "correction", "reviewer"} - set(reader.fieldnames or ())
    if missing:
        return [], [RejectedRow("header", f"not a docflow review CSV: no column {', '.join(sorted(missing))}")]
    edits: dict[int, dict[str, str]] = {}
    reviewers: dict[int, str | None] = {}
    first_row: dict[int, str] = {}
    rejected: list[RejectedRow] = []
    bad: set[int] = set()
    for number, row in enumerate(reader, 2):
        where = f"row {number}"
        item_id = _item_id(row.get("item_id"))
        if item_id is None or item_id not in items:
            rejected.append(RejectedRow(where, f"unknown review item {row.get('item_id')!r}"))
            continue
        field = (row.get("field") or "").strip()
        correction = row.get("correction") or ""
        first_row.setdefault(item_id, where)
        if correction.strip():
            if not field:
                rejected.append(RejectedRow(where, "a correction without a field name"))
                bad.add(item_id)
                continue
            edits.setdefault(item_id, {})[field] = correction
        if (row.get("reviewer") or "").strip():
            reviewers[item_id] = row["reviewer"].strip()
        elif correction.strip():
            reviewers.setdefault(item_id, None)
    answers = []
    for item_id in reviewers:
        if item_id in bad:
            continue
        where = first_row[item_id]
        try:
            corrected = _apply_edits(items[item_id], edits.get(item_id, {}))
        except ValueError as exc:
            rejected.append(RejectedRow(where, str(exc)))
            continue
        answers.append(ReviewAnswer(item_id, corrected, reviewers[item_id], where))
    return answers, rejected


def _apply_edits(item: ReviewItemView, edits: dict[str, str]) -> dict[str, Any] | None:
    """The item's value with the CSV's edited fields replaced (None when nothing was edited)."""
    if not edits:
        return None
    value = json.loads(json.dumps(_complete(item, model_value(item.stage, item.model_output) or {})))  # a deep copy
    for field, cell in edits.items():
        if item.stage is ReviewStage.TRANSCRIPTION:
            index, _, name = field.removeprefix("segments[").partition("].")
            segments = value.get("segments", [])
            if not index.isdigit() or int(index) >= len(segments) or name not in ("speaker", "text"):
                raise ValueError(f"no field {field!r} in this transcript")
            segments[int(index)][name] = cell
            continue
        if field not in value:
            raise ValueError(f"no field {field!r} in {item.schema_id}")
        value[field] = _parsed(cell, value[field])
    return value


def _parsed(cell: str, model: Any) -> Any:
    """A CSV cell as the field's value: `null` clears it; lists and objects (and a model value that was not
    text) are JSON; anything else is the text as typed."""
    text = cell.strip()
    if text == CLEAR:
        return None
    if isinstance(model, list | dict | int | float | bool) or text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            if isinstance(model, list | dict):
                raise ValueError(f"{text[:40]!r} is not valid JSON for a list or object field") from None
    return text


def _item_id(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    return str(value).strip() or None if value is not None else None
