"""`docflow export results`: one record per current object with its trusted result (a reviewer's correction when
there is one, else the model's output), streamed from the database a chunk at a time into JSONL, CSV or Parquet,
so a million rows never sit in memory at once."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from schemas.documents import SCHEMAS
from schemas.errors import ConfigError
from schemas.review import ReviewStage, ReviewStatus
from storage.db import session_factory
from storage.tables import ReviewItem, SourceObject, TranscriptRow

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
    """Write the results to `out`; returns the number of records."""
    where.check()
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = list(SCHEMAS[where.schema].model_fields) if where.schema else []
    with session_factory(database_url)() as session:
        chunks = _chunks(session, where, extra)
        if fmt == "parquet":
            return _write_parquet(chunks, out, extra)
        count = 0
        with out.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=[*COLUMNS, *extra]) if fmt == "csv" else None
            if writer is not None:
                writer.writeheader()
            for chunk in chunks:
                for record in chunk:
                    if writer is not None:
                        writer.writerow({k: _flat(v) for k, v in record.items()})
                    else:
                        stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                count += len(chunk)
        return count


def _chunks(session: Session, where: ResultFilter, extra: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
    """Records a chunk of objects at a time (keyset pagination on the id: no offset scans, no open cursor)."""
    last_id = 0
    while True:
        query = (
            select(SourceObject)
            .where(SourceObject.superseded_at.is_(None), SourceObject.id > last_id)
            .options(
                selectinload(SourceObject.classification),
                selectinload(SourceObject.extractions),
                selectinload(SourceObject.transcripts).selectinload(TranscriptRow.segments),
            )
            .order_by(SourceObject.id)
            .limit(CHUNK)
        )
        if where.kind:
            query = query.where(SourceObject.kind == where.kind)
        if where.since:
            query = query.where(SourceObject.processed_at >= where.since)
        rows = list(session.scalars(query))
        if not rows:
            return
        last_id = rows[-1].id
        corrections = _corrections(session, [r.id for r in rows])
        records = [_record(row, corrections.get(row.id, {}), extra) for row in rows]
        if where.schema:
            records = [r for r in records if (r["schema_id"] or "").split("/", 1)[0] == where.schema]
        session.expunge_all()  # what was written need not stay in the session's identity map
        yield records


def _corrections(session: Session, ids: list[int]) -> dict[int, dict[ReviewStage, dict[str, Any]]]:
    found: dict[int, dict[ReviewStage, dict[str, Any]]] = {}
    query = (
        select(ReviewItem.object_id, ReviewItem.stage, ReviewItem.corrected)
        .where(ReviewItem.object_id.in_(ids), ReviewItem.status == ReviewStatus.RESOLVED)
        .order_by(ReviewItem.resolved_at)
    )
    for object_id, stage, corrected in session.execute(query).tuples():
        if corrected is not None:
            found.setdefault(object_id, {})[ReviewStage(stage)] = corrected
    return found


def _record(row: SourceObject, corrections: dict[ReviewStage, dict[str, Any]], extra: Sequence[str]) -> dict[str, Any]:
    classification = row.classification
    extraction = max(row.extractions, key=lambda e: e.created_at, default=None)
    transcript = max(row.transcripts, key=lambda t: t.created_at, default=None)
    data = extraction.data if extraction else None
    if ReviewStage.EXTRACTION in corrections:
        data = corrections[ReviewStage.EXTRACTION]
    segments: list[dict[str, Any]] = []
    if transcript is not None:
        segments = corrections.get(ReviewStage.TRANSCRIPTION, {}).get("segments") or [
            {"start_s": s.start_s, "end_s": s.end_s, "speaker": s.speaker, "text": s.text} for s in transcript.segments
        ]
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
        "class_label": corrections.get(ReviewStage.CLASSIFICATION, {}).get("label")
        or (classification.label if classification else None),
        "class_probability": classification.probability if classification else None,
        "schema_id": extraction.schema_id if extraction else None,
        "data": data,
        "corrected": sorted(stage.value for stage in corrections),
        "language": transcript.language if transcript else None,
        "speakers": [s["speaker"] for s in transcript.speakers or []] if transcript else [],
        "transcript": "\n".join(f"{s['speaker']}: {s['text']}" for s in segments) if transcript else None,
    }
    for name in extra:
        record[name] = (data or {}).get(name)
    return record


def _flat(value: Any) -> Any:
    """A CSV cell: lists and objects as JSON."""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _write_parquet(chunks: Iterator[list[dict[str, Any]]], out: Path, extra: Sequence[str]) -> int:
    """One row group per chunk; nested values (data, lists) as JSON text, so every schema fits one table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pa.string()
    schema = pa.schema(
        [
            ("id", pa.int64()),
            *((name, text) for name in ("source", "key", "version", "kind", "status", "reason", "error")),
            ("processed_at", text),
            ("class_label", text),
            ("class_probability", pa.float64()),
            ("schema_id", text),
            ("data", text),
            ("corrected", text),
            ("language", text),
            ("speakers", text),
            ("transcript", text),
            *((name, text) for name in extra),
        ]
    )
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in chunks:
            if not chunk:
                continue
            columns = {
                name: [
                    _flat(r[name]) if name in ("data", "corrected", "speakers") or name in extra else r[name]
                    for r in chunk
                ]
                for name in schema.names
            }
            for name in extra:  # a schema field's value as text (numbers too), JSON for lists
                columns[name] = [v if v is None or isinstance(v, str) else json.dumps(v) for v in columns[name]]
            writer.write_table(pa.table(columns, schema=schema))
            count += len(chunk)
    return count
