"""`docflow export results`: one record per current object with its trusted result (a reviewer's correction when
there is one, else the model's output), streamed from the database a chunk at a time into JSONL, CSV or Parquet,
so a million rows never sit in memory at once. Parquet columns have native types (a timestamp, lists, a struct of
the schema's fields); CSV cells a spreadsheet would run as formulas start with a single quote."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from sqlalchemy import BindParameter, Row, bindparam, literal, select, tuple_
from sqlalchemy.orm import Session

from schemas.documents import SCHEMAS
from schemas.errors import ConfigError
from schemas.review import ReviewStage, ReviewStatus
from storage.db import session_factory
from storage.outfiles import checked_target, spreadsheet_safe, staged_file, staged_text
from storage.review import Correction, recorded_changes
from storage.tables import (
    ClassificationRow,
    ExtractionRow,
    ReviewItem,
    SourceObject,
    TranscriptRow,
    TranscriptSegmentRow,
)

if TYPE_CHECKING:
    import pyarrow as pa

ResultFormat = Literal["jsonl", "csv", "parquet"]
CHUNK = 2000  # objects read (and written) at a time
COLUMNS = (
    "id",
    "source",
    "key",
    "version",
    "kind",
    "status",
    "reason",
    "error",
    "processed_at",
    "class_label",
    "class_probability",
    "schema_id",
    "data",
    "corrected",
    "corrected_fields",
    "language",
    "speakers",
    "transcript",
)


@dataclass(frozen=True)
class ResultFilter:
    schema: str | None = None  # a document schema name: invoice, receipt, generic
    kind: str | None = None
    since: datetime | None = None

    def check(self) -> None:
        if self.schema is not None and self.schema not in SCHEMAS:
            raise ConfigError(f"unknown schema {self.schema!r}: one of {', '.join(SCHEMAS)}")
        if self.kind is not None and self.kind not in ("pdf", "image", "audio"):
            raise ConfigError(f"unknown kind {self.kind!r}: pdf, image or audio")


def export_results(database_url: str, fmt: ResultFormat, out: Path, where: ResultFilter) -> int:
    """Write the results to `out`; returns the number of records. The target is checked before the database is
    read, and the file is written beside it and renamed into place once complete: a failure (a full disk, a size
    limit) leaves the old file, or none, never a truncated one."""
    where.check()
    checked_target(out)
    extra = list(SCHEMAS[where.schema].model_fields) if where.schema else []
    with session_factory(database_url)() as session:
        chunks = _chunks(session, where, extra)
        if fmt == "parquet":
            with staged_file(out) as staging:
                return _write_parquet(chunks, staging, where.schema)
        count = 0
        with staged_text(out) as stream:
            writer = csv.DictWriter(stream, fieldnames=[*COLUMNS, *extra]) if fmt == "csv" else None
            if writer is not None:
                writer.writeheader()
            for chunk in chunks:
                for record in chunk:
                    if writer is not None:
                        writer.writerow({k: spreadsheet_safe(_flat(v)) for k, v in record.items()})
                    else:
                        stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                count += len(chunk)
        return count


def _chunks(session: Session, where: ResultFilter, extra: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
    """Records a chunk of objects at a time: keyset pagination on the id (no offset scans, no cursor held open),
    plain rows rather than ORM objects (nothing accumulates in the session), the newest extraction and transcript
    of each object fetched for the chunk's ids. With `since`, the keyset is (processed_at, id), in that order, on
    its index: walking the ids instead read every older object to find the recent ones (0.7 s of a chunk on a
    million objects whose recent ones have the highest ids)."""
    obj, cls = SourceObject, ClassificationRow
    last_id = 0
    last_processed: datetime | None = None
    while True:
        query = (
            select(
                obj.id,
                obj.source,
                obj.key,
                obj.version,
                obj.kind,
                obj.status,
                obj.review_reason,
                obj.error_message,
                obj.processed_at,
                cls.label,
                cls.probability,
            )
            .outerjoin(cls, cls.object_id == obj.id)
            .where(obj.superseded_at.is_(None))
            .limit(CHUNK)
        )
        if where.kind:
            query = query.where(obj.kind == where.kind)
        if where.since:
            query = query.where(obj.processed_at >= where.since).order_by(obj.processed_at, obj.id)
            if last_processed is not None:
                query = query.where(
                    tuple_(obj.processed_at, obj.id)
                    > tuple_(literal(last_processed, obj.processed_at.type), literal(last_id))
                )
        else:
            query = query.where(obj.id > last_id).order_by(obj.id)
        rows = session.execute(query).all()
        if not rows:
            return
        last_id, last_processed = rows[-1].id, rows[-1].processed_at
        ids = [r.id for r in rows]
        extractions = _newest(session, ExtractionRow, ids, ExtractionRow.schema_id, ExtractionRow.data)
        transcripts = _newest(
            session, TranscriptRow, ids, TranscriptRow.id, TranscriptRow.language, TranscriptRow.speakers
        )
        lines = _dialogue(session, [t.id for t in transcripts.values()])
        corrections = _corrections(session, ids)
        records = [
            _record(row, extractions.get(row.id), transcripts.get(row.id), lines, corrections.get(row.id, {}), extra)
            for row in rows
        ]
        if where.schema:
            records = [r for r in records if (r["schema_id"] or "").split("/", 1)[0] == where.schema]
        yield records


def _inline(ids: list[int]) -> BindParameter[Any]:
    """A chunk's ids, written into the statement as numbers: as 2,000 bound parameters, the driver (psycopg) spent
    more time rewriting each statement's placeholders than the database took to answer it."""
    return bindparam("ids", ids, expanding=True, literal_execute=True)


def _newest(
    session: Session, table: type[ExtractionRow] | type[TranscriptRow], ids: list[int], *columns: Any
) -> dict[int, Row[Any]]:
    """The newest row of `table` per object, with `columns`."""
    query = (
        select(table.object_id, *columns).where(table.object_id.in_(_inline(ids))).order_by(table.created_at, table.id)
    )
    return {row.object_id: row for row in session.execute(query)}


def _dialogue(session: Session, transcript_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """(speaker, text) per segment, in order, per transcript."""
    lines: dict[int, list[tuple[str, str]]] = {}
    if not transcript_ids:
        return lines
    seg = TranscriptSegmentRow
    query = (
        select(seg.transcript_id, seg.speaker, seg.text)
        .where(seg.transcript_id.in_(_inline(transcript_ids)))
        .order_by(seg.transcript_id, seg.segment_index)
    )
    for transcript_id, speaker, text in session.execute(query).tuples():
        lines.setdefault(transcript_id, []).append((speaker, text))
    return lines


def _corrections(session: Session, ids: list[int]) -> dict[int, dict[ReviewStage, Correction]]:
    """Per object, the newest answer of each stage that changed something (a sign-off is not a correction, and it
    stands over an older correction of an earlier result)."""
    newest: dict[int, dict[ReviewStage, Correction]] = {}
    item = ReviewItem
    query = (
        select(item.object_id, item.stage, item.schema_id, item.corrected, item.changed_fields, item.model_output)
        .where(item.object_id.in_(_inline(ids)), item.status == ReviewStatus.RESOLVED)
        .order_by(item.resolved_at, item.id)
    )
    for object_id, stage, schema_id, corrected, recorded, model_output in session.execute(query).tuples():
        if corrected is not None:
            fields = tuple(recorded_changes(ReviewStage(stage), recorded, model_output, corrected))
            newest.setdefault(object_id, {})[ReviewStage(stage)] = Correction(
                ReviewStage(stage), schema_id, corrected, fields, None
            )
    return {
        object_id: {stage: answer for stage, answer in answers.items() if answer.changed}
        for object_id, answers in newest.items()
    }


def _record(
    row: Row[Any],
    extraction: Row[Any] | None,
    transcript: Row[Any] | None,
    lines: dict[int, list[tuple[str, str]]],
    corrections: dict[ReviewStage, Correction],
    extra: Sequence[str],
) -> dict[str, Any]:
    extracted = corrections.get(ReviewStage.EXTRACTION)
    if extracted is not None and (extraction is None or extracted.schema_id != extraction.schema_id):
        corrections = {s: c for s, c in corrections.items() if s is not ReviewStage.EXTRACTION}  # of another schema
        extracted = None
    data = extracted.value if extracted else extraction.data if extraction else None
    dialogue: list[tuple[str, str]] = []
    if transcript is not None:
        told = corrections.get(ReviewStage.TRANSCRIPTION)
        dialogue = [(s["speaker"], s["text"]) for s in told.value["segments"]] if told else lines.get(transcript.id, [])
    told_class = corrections.get(ReviewStage.CLASSIFICATION)
    record: dict[str, Any] = {
        "id": row.id,
        "source": row.source,
        "key": row.key,
        "version": row.version,
        "kind": row.kind,
        "status": row.status,
        "reason": row.review_reason,
        "error": row.error_message,
        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
        "class_label": told_class.value["label"] if told_class else row.label,
        "class_probability": row.probability,
        "schema_id": extraction.schema_id if extraction else None,
        "data": data,
        "corrected": sorted(stage.value for stage in corrections),
        "corrected_fields": _corrected_fields(corrections),
        "language": transcript.language if transcript else None,
        "speakers": [s["speaker"] for s in transcript.speakers or []] if transcript else [],
        "transcript": "\n".join(f"{speaker}: {text}" for speaker, text in dialogue) if transcript else None,
    }
    for name in extra:
        record[name] = (data or {}).get(name)
    return record


def _corrected_fields(corrections: dict[ReviewStage, Correction]) -> list[str]:
    """The record's values a person changed: `class_label`, `transcript`, and the names of the fields of `data`."""
    fields = ["class_label"] if ReviewStage.CLASSIFICATION in corrections else []
    fields += ["transcript"] if ReviewStage.TRANSCRIPTION in corrections else []
    extraction = corrections.get(ReviewStage.EXTRACTION)
    return fields + sorted({f.split("[", 1)[0] for f in extraction.fields} if extraction else ())


def _flat(value: Any) -> Any:
    """A CSV cell: lists and objects as JSON."""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


# --- Parquet: native Arrow types --------------------------------------------------------------------------------


def _arrow_type(annotation: Any) -> pa.DataType:
    """A schema field's Arrow type, as its value is stored (JSON): a list is a list, a model is a struct, and a
    scalar is text (amounts and dates are stored as the text the schema normalised them to)."""
    import pyarrow as pa

    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is Annotated:
        return _arrow_type(args[0])
    if origin in (list, tuple, set, frozenset) and args:
        return pa.list_(_arrow_type(args[0]))
    if origin in (Union, UnionType) and len(args) == 1:
        return _arrow_type(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _struct(annotation.model_fields.items())
    return pa.string()


def _struct(fields: Iterable[tuple[str, FieldInfo]]) -> pa.DataType:
    import pyarrow as pa

    return pa.struct([(name, _arrow_type(field.annotation)) for name, field in fields])


def _data_type(schema: str | None) -> pa.DataType:
    """The `data` column's struct: the fields of `schema`, or of every document schema (a field two schemas
    type differently is text)."""
    import pyarrow as pa

    names = [schema] if schema else list(SCHEMAS)
    types: dict[str, pa.DataType] = {}
    for name in names:
        for field_name, field in SCHEMAS[name].model_fields.items():
            arrow = _arrow_type(field.annotation)
            types[field_name] = arrow if types.get(field_name, arrow) == arrow else pa.string()
    return pa.struct(list(types.items()))


def _conform(value: Any, arrow: pa.DataType) -> Any:
    """`value` (JSON) in the shape of `arrow`: text for a scalar (JSON for anything else), a list's and a struct's
    members conformed in turn. A value of another shape (a model output that failed its schema) is null there."""
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_struct(arrow):
        if not isinstance(value, dict):
            return None
        return {f.name: _conform(value.get(f.name), f.type) for f in arrow}
    if pa.types.is_list(arrow):
        if not isinstance(value, list):
            return None
        return [_conform(v, arrow.value_type) for v in value]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _write_parquet(chunks: Iterator[list[dict[str, Any]]], out: Path, schema_name: str | None) -> int:
    """One row group per chunk, every column a native type: `processed_at` a UTC timestamp, `data` a struct of the
    schema's fields (line items a list of structs), `corrected` and `speakers` lists of text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pa.string()
    data = _data_type(schema_name)
    extra = [(f.name, f.type) for f in data] if schema_name else []
    schema = pa.schema(
        [
            ("id", pa.int64()),
            *((name, text) for name in ("source", "key", "version", "kind", "status", "reason", "error")),
            ("processed_at", pa.timestamp("us", tz="UTC")),
            ("class_label", text),
            ("class_probability", pa.float64()),
            ("schema_id", text),
            ("data", data),
            ("corrected", pa.list_(text)),
            ("corrected_fields", pa.list_(text)),
            ("language", text),
            ("speakers", pa.list_(text)),
            ("transcript", text),
            *extra,
        ]
    )
    typed = {name: arrow for name, arrow in [("data", data), *extra]}
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in chunks:
            if not chunk:
                continue
            columns: dict[str, list[Any]] = {}
            for name in schema.names:
                values = [r[name] for r in chunk]
                if name == "processed_at":
                    values = [datetime.fromisoformat(v) if v else None for v in values]
                elif name in typed:
                    values = [_conform(v, typed[name]) for v in values]
                columns[name] = values
            writer.write_table(pa.table(columns, schema=schema))
            count += len(chunk)
    return count
