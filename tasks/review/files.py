"""Review items as files, for teams without Label Studio, and reviewers' files read back.

- CSV: one row per item and field (value, confidence, page, grounding, reason); a reviewer fills `correction`
  where the model is wrong (`null` clears a value) and `reviewer` on every item they checked.
- JSONL: one item per line with the whole value under review; a reviewer sets `correction` (the whole corrected
  value) or only `reviewer` (the model was right).
- Label Studio tasks JSON (`tasks.review.label_studio`) for a by-hand import, and Label Studio's own JSON export
  read back.

Reading gives one `ReviewAnswer` per item a reviewer touched, or a `RejectedRow` with the reason; applying
them (validation included) is the caller's. Files are read a line at a time, with a cap on a line and on a cell,
so a huge or hostile file is rejected row by row rather than held in memory or ending the import."""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from schemas.documents import SCHEMAS
from schemas.records import ReviewReason
from schemas.review import ReviewItemView, ReviewStage
from storage.outfiles import FORMULA_FIRST, spreadsheet_safe, spreadsheet_value
from storage.review import ExportRow
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
    """The items as CSV rows (one per field); returns the number of items written. A cell a spreadsheet would
    run as a formula (=, +, -, @ first) starts with a single quote, which `read_csv` takes off again."""
    return write_csv_rows(([export_row(item)] for item in items), out)


def export_row(item: ReviewItemView) -> ExportRow:
    """The item as the review files write it (the stored form the export reads)."""
    return ExportRow(
        id=item.id,
        key=item.key,
        stage=item.stage,
        schema_id=item.schema_id,
        audit=item.audit,
        reasons=[r.model_dump(mode="json") for r in item.reasons],
        model_output=item.model_output,
        model_id=item.model_id,
        score=item.score,
        pages=item.pages,
    )


def write_csv_rows(chunks: Iterable[Sequence[ExportRow]], out: TextIO) -> int:
    """`write_csv` of the stored rows, a chunk at a time (what `docflow review export` writes: the same bytes)."""
    csv.writer(out).writerow(CSV_COLUMNS)
    count = 0
    for chunk in chunks:
        lines: list[str] = []
        for item in chunk:
            reasons = [(r.get("field"), r["message"]) for r in item.reasons]
            lines += _item_lines(item.id, item.key, item.stage, item.schema_id, item.audit, reasons, item.model_output)
        out.write("".join(lines))
        count += len(chunk)
    return count


def _safe(cell: str) -> str:
    """`spreadsheet_safe` of text, looked at only when its first character can start a formula."""
    return cell if cell[:1] not in FORMULA_FIRST else str(spreadsheet_safe(cell))


def _csv_text(cell: str) -> str:
    """A cell as csv.writer writes it inside a row (its default dialect, minimal quoting): quoted when it holds
    a delimiter, a quote or a line break, its quotes doubled. The rows are joined here, not by csv.writer, so
    that what half a million rows share is quoted once (tests/integration/test_review_export_rows.py checks the
    bytes against csv.writer's)."""
    if '"' in cell:
        return '"' + cell.replace('"', '""') + '"'
    if "," in cell or "\n" in cell or "\r" in cell:
        return '"' + cell + '"'
    return cell


def _item_lines(
    item_id: int,
    key: str,
    stage: ReviewStage,
    schema_id: str,
    audit: bool,
    reasons: list[tuple[str | None, str]],
    output: dict[str, Any],
) -> list[str]:
    """The item's CSV lines, their cells in CSV_COLUMNS order and spreadsheet-safe (`reasons`: (field, message)).
    A 50,000-item export writes half a million rows: the cells an item's rows share, and those of a field's
    reasons, confidence, pages and grounding, are made (and quoted) once; a schema's field names and empty
    defaults once."""
    value = model_value(stage, output) or {}
    confidence, pages, grounding = (
        output.get("field_confidence", {}),
        output.get("field_pages", {}),
        output.get("field_grounding", {}),
    )
    general = "; ".join(message for field, message in reasons if field is None) or ("audit sample" if audit else "")
    by_field: dict[str, list[str]] = {}
    for field, message in reasons:
        if field is not None:
            by_field.setdefault(field.split("[")[0], []).append(message)
    head = f"{item_id},{_csv_text(_safe(key))},{_csv_text(_safe(stage.value))},{_csv_text(_safe(schema_id))},"
    plain = f",,,,{_csv_text(_safe(general))},,\r\n"  # a field with no confidence, pages, grounding or reason
    of_top: dict[str, str] = {}
    lines = []
    for field_text, top, cell in _field_cells(stage, schema_id, value):
        tail = of_top.get(top)
        if tail is None:
            if top not in confidence and top not in pages and top not in grounding and top not in by_field:
                tail = plain
            else:
                field_reasons = by_field.get(top, [])
                ground = spreadsheet_safe(grounding.get(top, ""))  # stored by the model: not always text
                tail = ",".join(
                    (
                        "",
                        _csv_text(_safe(_number(confidence.get(top)))),
                        _csv_text(_safe(",".join(str(p) for p in pages.get(top, [])))),
                        "" if ground is None else _csv_text(ground if isinstance(ground, str) else str(ground)),
                        _csv_text(_safe("; ".join([*field_reasons, general] if general else field_reasons))),
                        "",  # correction
                        "\r\n",  # reviewer
                    )
                )
            of_top[top] = tail
        if '"' in cell or "," in cell or "\n" in cell or "\r" in cell:
            cell = _csv_text(cell)
        lines.append(f"{head}{field_text},{cell}{tail}")
    return lines


def _field_cells(stage: ReviewStage, schema_id: str, value: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(the field's cell as CSV text, its top-level name, its value's cell) of every field a reviewer sees, the
    cells spreadsheet-safe."""
    if stage is ReviewStage.TRANSCRIPTION:
        cells = []
        for i, segment in enumerate(value.get("segments", [])):
            cells.append((f"segments[{i}].speaker", "segments", _safe(_cell(segment["speaker"]))))
            cells.append((f"segments[{i}].text", "segments", _safe(_cell(segment["text"]))))
        return cells
    fields = _schema_fields(schema_id) if stage is ReviewStage.EXTRACTION else None
    if fields is None:
        return [
            (_csv_text(_safe(field)), field.split("[", 1)[0].split(".", 1)[0], _safe(_cell(field_value)))
            for field, field_value in value.items()
        ]
    return [  # every field of the schema (a partial output lacks some); most values are plain text
        (
            field_cell,
            top,
            empty
            if (field_value := value.get(name)) is None
            else field_value
            if type(field_value) is str and field_value[:1] not in FORMULA_FIRST
            else _safe(_cell(field_value)),
        )
        for name, field_cell, top, empty in fields
    ]


@functools.lru_cache(maxsize=64)
def _schema_fields(schema_id: str) -> tuple[tuple[str, str, str, str], ...] | None:
    """(name, its cell as CSV text, its top-level name, its default's cell) of each field of the schema
    `schema_id` names; None for a schema this version does not know (its output's own fields are shown)."""
    schema = SCHEMAS.get(schema_id.split("/", 1)[0])
    if schema is None:
        return None
    return tuple(
        (
            name,
            _csv_text(_safe(name)),
            name.split("[", 1)[0].split(".", 1)[0],
            _safe(_cell(field.get_default(call_default_factory=True))),
        )
        for name, field in schema.model_fields.items()
    )


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
    return _json_text(value)


_json_text = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(value, ensure_ascii=False), made once


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else ""


def write_jsonl(items: Iterable[ReviewItemView], out: TextIO) -> int:
    return write_jsonl_rows(([export_row(item)] for item in items), out)


def write_jsonl_rows(chunks: Iterable[Sequence[ExportRow]], out: TextIO) -> int:
    """`write_jsonl` of the stored rows (with their pages), a chunk at a time: the same bytes."""
    count = 0
    for chunk in chunks:
        out.writelines(
            _jsonl_line(
                item.id,
                item.key,
                item.stage,
                item.schema_id,
                item.audit,
                [ReviewReason.model_validate(r).model_dump(mode="json") for r in item.reasons],
                item.model_id,
                item.score,
                item.model_output,
                item.pages,
            )
            for item in chunk
        )
        count += len(chunk)
    return count


def _jsonl_line(
    item_id: int,
    key: str,
    stage: ReviewStage,
    schema_id: str,
    audit: bool,
    reasons: list[dict[str, Any]],
    model_id: str,
    score: float | None,
    output: dict[str, Any],
    pages: list[str],
) -> str:
    record = {
        "item_id": item_id,
        "key": key,
        "stage": stage.value,
        "schema": schema_id,
        "audit": audit,
        "reasons": reasons,
        "model_id": model_id,
        "score": score,
        "value": model_value(stage, output),
        "field_confidence": output.get("field_confidence"),
        "field_pages": output.get("field_pages"),
        "pages": pages,
        "correction": None,
        "reviewer": None,
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


# --- reading -------------------------------------------------------------------------------------------------

CELL_LIMIT = 128 * 1024  # characters in one CSV cell: a longer one is a mistake, never a correction
LINE_LIMIT = 8 * 1024 * 1024  # characters in one line of a reviewer's file (a JSONL item, a CSV row)
REVIEWER_LIMIT = 256  # the width of the reviewer column
_ID_DIGITS = 18  # an item id fits a 64-bit integer
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, as the surrogateescape handler reads them


class LineTooLong(Exception):
    """A line longer than LINE_LIMIT; it was skipped whole."""


class _Lines:
    """The lines of a text stream, read one at a time and at most LINE_LIMIT characters each: a longer line is
    skipped (never held whole) and raises LineTooLong, and the next call goes on with the line after it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.number = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.stream.readline(LINE_LIMIT + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > LINE_LIMIT:
            while line and not line.endswith(("\n", "\r")):
                line = self.stream.readline(LINE_LIMIT)
            raise LineTooLong
        return line


def read_jsonl(stream: TextIO, items: dict[int, ReviewItemView]) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    """The lines of a reviewer's JSONL, read one at a time: each names its item, and sets `correction` (the whole
    value) or only `reviewer`; a line that is not such an object is rejected with the reason."""
    answers, rejected = [], []
    lines = _Lines(stream)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            break
        except LineTooLong:
            rejected.append(RejectedRow(f"line {lines.number}", f"longer than {LINE_LIMIT >> 20} M characters"))
            continue
        where = f"line {lines.number}"
        if not line.strip():
            continue
        if _NOT_UTF8.search(line):
            rejected.append(RejectedRow(where, "not UTF-8 text"))
            continue
        try:
            record = json.loads(line)
        except RecursionError:
            rejected.append(RejectedRow(where, "not JSON: nested too deeply"))
            continue
        except json.JSONDecodeError as exc:
            rejected.append(RejectedRow(where, f"not JSON: {exc.msg}"))
            continue
        except ValueError:  # Python's limit on the digits of an integer
            rejected.append(RejectedRow(where, "not JSON: a number with too many digits"))
            continue
        if not isinstance(record, dict):
            rejected.append(RejectedRow(where, "not a JSON object"))
            continue
        item_id = _item_id(record.get("item_id"))
        if item_id is None or item_id not in items:
            rejected.append(RejectedRow(where, f"unknown review item {_shown(record.get('item_id'))}"))
            continue
        correction, reviewer = record.get("correction"), record.get("reviewer")
        problem = _key_problem(record.get("key"), items[item_id]) if "key" in record else None
        problem = problem or _reviewer_problem(reviewer) or (_nul_problem(correction))
        if problem:
            rejected.append(RejectedRow(where, f"item {item_id}: {problem}"))
            continue
        if correction is None and not reviewer:
            continue  # not reviewed yet
        answers.append(ReviewAnswer(item_id, correction, _text(reviewer), where))
    return answers, rejected


def read_csv(stream: TextIO, items: dict[int, ReviewItemView]) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    """A reviewer's CSV, read a row at a time: per item, the fields with a `correction` replace the model's value
    and `reviewer` signs it off. A row that names no known item, whose key is not its item's, with more cells than
    the header, a cell over CELL_LIMIT, or a correction that contradicts another row's is rejected, and its item
    is left as it was."""
    lines = _Lines(stream)
    reader = csv.reader(lines)
    try:
        header = [spreadsheet_value(name.strip()) for name in next(reader)]
    except StopIteration:
        return [], [RejectedRow("header", "an empty file")]
    except (csv.Error, LineTooLong):
        header = []
    missing = {"item_id", "field", "correction", "reviewer"} - set(header)
    if missing or _NOT_UTF8.search("".join(header)):
        reason = f"no column {', '.join(sorted(missing))}" if missing else "the header is not UTF-8 text"
        return [], [RejectedRow("header", f"not a docflow review CSV: {reason}")]
    column = {name: header.index(name) for name in set(header)}  # the first of a repeated name
    edits: dict[int, dict[str, tuple[str, str]]] = {}  # item -> field -> (correction, the row it came from)
    reviewers: dict[int, str | None] = {}
    first_row: dict[int, str] = {}
    rejected: list[RejectedRow] = []
    bad: set[int] = set()
    number = 1
    while True:
        number += 1
        where = f"row {number}"
        try:
            cells = next(reader)
        except StopIteration:
            break
        except LineTooLong:
            rejected.append(RejectedRow(where, f"a line longer than {LINE_LIMIT >> 20} M characters"))
            continue
        except csv.Error as exc:
            too_long = "field limit" in str(exc)
            rejected.append(
                RejectedRow(where, f"a cell longer than {CELL_LIMIT >> 10} K characters" if too_long else f"{exc}")
            )
            continue
        if not cells:
            continue
        row = {name: spreadsheet_value(cells[i]) if i < len(cells) else "" for name, i in column.items()}
        item_id = _item_id(row["item_id"])
        if item_id is None or item_id not in items:
            rejected.append(RejectedRow(where, f"unknown review item {_shown(row['item_id'])}"))
            continue
        field = row["field"].strip()
        correction = row["correction"].strip()
        problem = (
            _cells_problem(cells, len(header))
            or (_key_problem(row["key"], items[item_id]) if "key" in column else None)
            or _reviewer_problem(row["reviewer"].strip() or None)
        )
        if not problem and correction and not field:
            problem = "a correction without a field name"
        earlier = edits.get(item_id, {}).get(field)
        if not problem and correction and earlier and earlier[0] != correction:
            problem = f"{field}: {_shown(correction)} here, {_shown(earlier[0])} on {earlier[1]}"
        first_row.setdefault(item_id, where)
        if problem:
            rejected.append(RejectedRow(where, f"item {item_id}: {problem}"))
            bad.add(item_id)
            continue
        if correction:
            edits.setdefault(item_id, {}).setdefault(field, (correction, where))
        if row["reviewer"].strip():
            reviewers[item_id] = row["reviewer"].strip()
        elif correction:
            reviewers.setdefault(item_id, None)
    answers = []
    for item_id in reviewers:
        if item_id in bad:
            continue
        where = first_row[item_id]
        try:
            corrected = _apply_edits(items[item_id], {f: c for f, (c, _) in edits.get(item_id, {}).items()})
        except ValueError as exc:
            rejected.append(RejectedRow(where, str(exc)))
            continue
        answers.append(ReviewAnswer(item_id, corrected, reviewers[item_id], where))
    return answers, rejected


def _cells_problem(cells: list[str], columns: int) -> str | None:
    if len(cells) > columns:
        return f"{len(cells)} cells, but the header has {columns} columns"
    if any(len(cell) > CELL_LIMIT for cell in cells):
        return f"a cell longer than {CELL_LIMIT >> 10} K characters"
    if any(_NOT_UTF8.search(cell) for cell in cells):
        return "not UTF-8 text"
    if any("\x00" in cell for cell in cells):
        return "a NUL character in a cell"
    return None


def _key_problem(key: object, item: ReviewItemView) -> str | None:
    """A row names its item by id and its object by key: both must agree (a row copied from another export, or
    from another database, would otherwise correct another document)."""
    if key != item.key:
        return f"the key {_shown(key)} is not this item's object ({_shown(item.key)})"
    return None


def _reviewer_problem(reviewer: object) -> str | None:
    if reviewer is None:
        return None
    if not isinstance(reviewer, str):
        return "the reviewer is not text"
    if len(reviewer) > REVIEWER_LIMIT:
        return f"a reviewer name longer than {REVIEWER_LIMIT} characters"
    return _nul_problem(reviewer)


def _nul_problem(value: object) -> str | None:
    """NUL characters cannot be stored (PostgreSQL refuses them in text and JSON)."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str) and "\x00" in current:
            return "a NUL character in a value"
        if isinstance(current, dict):
            stack += [*current.keys(), *current.values()]
        elif isinstance(current, list):
            stack += current
    return None


def _shown(value: object, limit: int = 60) -> str:
    """A value quoted for a message, cut short (a rejected cell may be 128 K characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _apply_edits(item: ReviewItemView, edits: dict[str, str]) -> dict[str, Any] | None:
    """The item's value with the CSV's edited fields replaced (None when nothing was edited)."""
    if not edits:
        return None
    value = json.loads(json.dumps(_complete(item, model_value(item.stage, item.model_output) or {})))  # a deep copy
    for field, cell in edits.items():
        if item.stage is ReviewStage.TRANSCRIPTION:
            index, _, name = field.removeprefix("segments[").partition("].")
            segments = value.get("segments", [])
            if not _is_number(index) or int(index) >= len(segments) or name not in ("speaker", "text"):
                raise ValueError(f"no field {_shown(field)} in this transcript")
            segments[int(index)][name] = cell
            continue
        if field not in value:
            raise ValueError(f"no field {_shown(field)} in {item.schema_id}")
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
        except RecursionError:
            raise ValueError(f"{text[:40]!r}: JSON nested too deeply") from None
        except ValueError:  # not JSON, or an integer of too many digits
            if isinstance(model, list | dict):
                raise ValueError(f"{text[:40]!r} is not valid JSON for a list or object field") from None
    return text


def _is_number(text: str) -> bool:
    """ASCII digits only (int() also reads Arabic-Indic and other digits), few enough for an id."""
    return text.isascii() and text.isdigit() and len(text) <= _ID_DIGITS


def _item_id(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and _is_number(value.strip()):
        return int(value.strip())
    return None


def _text(value: object) -> str | None:
    return str(value).strip() or None if value is not None else None
