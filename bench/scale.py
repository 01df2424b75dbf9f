"""docflow at scale: the database with a million objects on PostgreSQL.

(b) A fresh PostgreSQL (started as the tests start it) is migrated and gets N `source_objects` rows in bulk (COPY),
    with what runs would have left them: classifications, extractions and pages of the documents, transcripts of the
    recordings, review items (most objects done, some in review, failed, pending or claimed by a dead run; about 5 %
    with a review item waiting for a person, 2 % with a resolved one). Then each of these is timed several times
    (the median is reported), through the functions a run calls or through the CLI itself (typer's CliRunner):
    a claim of one window of objects, discovery of 10,000 listed objects (first new, then already known),
    `status`, `status --json`, `review list`, `review export` (CSV; and its database part alone, the waiting items
    read as the export reads them), `export results --since` (the last ~1 % of the objects processed) and
    `show KEY`. Every SQL statement each of them sends is captured and run again under
    EXPLAIN ANALYZE: the slowest one's plan is printed, and a sequential scan of a big table is flagged.

    .venv/bin/python bench/scale.py [--rows 1000000] [--repeats 3]      # --rows 20000: a quick check
    .venv/bin/python bench/scale.py --before 0012    # first at schema 0012, then migrated to head (timed), again

`--database-url URL --built` measures a database an earlier run built (with the same --rows) again, e.g. with
another checkout's code: the bench runs the code of the tree it lies in.

(a) and (c) live in bench/scale_objects.py and bench/scale_fanout.py (their docstrings say what they measure):

    .venv/bin/python bench/scale.py --part a [--objects 2000 --objects 20000]   # small objects end to end, S3 + PG
    .venv/bin/python bench/scale.py --part c [--objects 2000 --shards 4 --workers 2]   # fan-out against in-process

Ends with one line of name=value figures (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Tables that grow with the objects: a sequential scan of one of them is what does not scale.
BIG_TABLES = (
    "source_objects",
    "classifications",
    "extractions",
    "pages",
    "transcripts",
    "transcript_segments",
    "review_items",
)
SOURCE = "s3://bench-inbox"
DEAD_RUN = "bench-dead-run"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
HISTORY = timedelta(days=365)  # objects were processed evenly over the last year, in id order
RECENT = timedelta(days=3)  # `export results --since`: about the last 1 % of the processed objects
LABELS = ("invoice", "receipt", "other")


# -- the synthetic database ------------------------------------------------------------------------------------


_KINDS = ("pdf",) * 7 + ("image",) * 2 + ("audio",)


def kind_of(i: int) -> str:
    """70 % PDFs, 20 % images, 10 % recordings."""
    return _KINDS[i % 10]


def status_of(i: int) -> str:
    """4 % pending, 5 % in review, 3 % failed, 1 % claimed by a run that died, the rest done."""
    bucket = i % 100
    if bucket < 4:
        return "pending"
    if bucket < 9:
        return "review"
    if bucket < 12:
        return "failed"
    if bucket == 12:
        return "processing"
    return "done"


def processed_at(i: int, rows: int) -> datetime:
    return NOW - HISTORY + HISTORY * (i / rows)


def key_of(i: int) -> str:
    kind = kind_of(i)
    ext = {"pdf": "pdf", "image": "png", "audio": "wav"}[kind]
    return f"{kind}s/{i // 1000:04d}/{i:07d}.{ext}"


def review_item_status(i: int) -> str | None:
    """The review item an object has: objects in review wait (one in three already exported to a file), one done
    object in 50 has a resolved audit item, one in 100 a dismissed one."""
    status = status_of(i)
    if status == "review":
        return "exported" if i % 3 == 0 else "open"
    if status == "done" and i % 50 == 13:
        return "resolved"
    if status == "done" and i % 100 == 14:
        return "dismissed"
    return None


def has_results(i: int) -> bool:
    return status_of(i) in ("done", "review")


@dataclass(frozen=True)
class Expected:
    """What the queries must return on a database built by `build`."""

    rows: int
    waiting: int  # review items waiting for a person
    since: datetime
    exported_since: int  # `export results --since` records
    show_key: str


def expected(rows: int) -> Expected:
    since = (NOW - RECENT).replace(hour=0, minute=0, second=0, microsecond=0)
    ids = range(1, rows + 1)
    return Expected(
        rows=rows,
        waiting=sum(1 for i in ids if review_item_status(i) in ("open", "exported")),
        since=since,
        exported_since=sum(
            1 for i in ids if status_of(i) not in ("pending", "processing") and processed_at(i, rows) >= since
        ),
        show_key=key_of(
            next(i for i in range(rows // 2, rows + 1) if review_item_status(i) == "resolved" and kind_of(i) == "pdf")
        ),
    )


def _invoice(i: int) -> dict[str, Any]:
    return {
        "vendor_name": f"Vendor {i % 977}",
        "invoice_number": f"INV-{i}",
        "invoice_date": "2026-11-01",
        "currency": "EUR",
        "total": f"{i % 1000}.50",
        "line_items": [{"description": "item", "amount": f"{i % 100}.25"}],
    }


def _objects(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, rows + 1):
        status, kind = status_of(i), kind_of(i)
        done = status in ("done", "review", "failed")
        reasons = [{"stage": "extract", "code": "low_confidence", "message": "total is unsure", "value": 0.4}]
        yield (
            i,
            SOURCE,
            key_of(i),
            "v1",
            40_000 + i % 5000,
            NOW - HISTORY + HISTORY * (i / rows) - timedelta(hours=1),
            f"{i:064x}" if status != "pending" else None,
            kind if status != "pending" else None,
            status,
            0 if status == "pending" else 1,
            "preprocess" if status == "failed" else None,
            "corrupt" if status == "failed" else None,
            "the PDF cannot be opened" if status == "failed" else None,
            "total is unsure" if status == "review" else None,
            json.dumps(reasons) if status == "review" else None,
            1 if kind != "audio" and done else None,
            30.0 if kind == "audio" and done else None,
            "v-bench" if done else None,
            f"bench-run-{i // 1000}" if status != "pending" else None,
            NOW - timedelta(hours=6) if status == "processing" else None,
            processed_at(i, rows) if done else None,
            NOW - HISTORY + HISTORY * (i / rows) - timedelta(minutes=30),
            processed_at(i, rows) if done else NOW - HISTORY,
        )


OBJECT_COLUMNS = (
    "id, source, key, version, size, last_modified, sha256, kind, status, attempts, error_stage, error_code, "
    "error_message, review_reason, review_reasons, page_count, duration_s, pipeline_version, run_id, claimed_at, "
    "processed_at, created_at, updated_at"
)


def _classifications(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, rows + 1):
        if has_results(i) and kind_of(i) != "audio":
            label = LABELS[i % 3]
            scores = json.dumps({name: (0.8 if name == label else 0.1) for name in LABELS})
            yield (i, label, 0.8, 0.7, LABELS[(i + 1) % 3], scores, label, "bench-clip", 1, processed_at(i, rows))


def _pages(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, rows + 1):
        if has_results(i) and kind_of(i) != "audio":
            yield (i, 1, f"s3://bench-derived/pages/{i}/1.png", 1240, 1754, 150.0, LABELS[i % 3], 0.8)


def _extractions(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, rows + 1):
        if has_results(i) and kind_of(i) != "audio":
            data = _invoice(i)
            confidence = json.dumps({name: 0.9 for name in data})
            yield (
                i,
                "invoice/v1",
                "text",
                "bench-llm",
                json.dumps(data),
                True,
                1,
                confidence,
                json.dumps(data),
                processed_at(i, rows),
            )


def _transcripts(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, rows + 1):
        if has_results(i) and kind_of(i) == "audio":
            speakers = json.dumps(
                [{"speaker": "SPEAKER_0", "talk_s": 12.0, "words": 20, "first_s": 0.0, "last_s": 14.0}]
            )
            yield (
                i,
                i,
                "bench-whisper",
                "1",
                "en",
                0.99,
                30.0,
                24.0,
                False,
                -0.2,
                False,
                0,
                "hello, this is a call about an invoice",
                speakers,
                json.dumps(["en"]),
                processed_at(i, rows),
            )


def _segments(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, rows + 1):
        if has_results(i) and kind_of(i) == "audio":
            for k in range(2):
                yield (i, k, 12.0 * k, 12.0 * k + 10.0, f"SPEAKER_{k}", "hello, this is a call", -0.2, 0.01, 1.2)


def _review_items(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, rows + 1):
        status = review_item_status(i)
        if status is None:
            continue
        audio = kind_of(i) == "audio"
        stage, schema = ("transcription", "transcript") if audio else ("extraction", "invoice/v1")
        output = (
            {"segments": [{"start_s": 0.0, "end_s": 10.0, "speaker": "SPEAKER_0", "text": "hello"}]}
            if audio
            else {"data": _invoice(i)}
        )
        waiting = status in ("open", "exported")
        reasons = (
            [
                {
                    "stage": "extract",
                    "code": "low_confidence",
                    "message": "total is unsure",
                    "value": 0.4,
                    "field": "total",
                }
            ]
            if waiting
            else []
        )
        corrected = None
        if status == "resolved":
            corrected = {**output, "segments": output["segments"]} if audio else {**_invoice(i), "total": "1.00"}
        created = processed_at(i, rows)
        yield (
            i,
            stage,
            schema,
            json.dumps(reasons),
            not waiting,
            json.dumps(output),
            "bench-model",
            0.4 if waiting else 0.95,
            status,
            f"bench-run-{i // 1000}",
            created,
            created + timedelta(hours=1) if status == "exported" else None,
            json.dumps(corrected) if corrected is not None else None,
            json.dumps([] if audio else ["total"]) if status == "resolved" else None,
            "bench-reviewer" if status == "resolved" else None,
            created + timedelta(days=1) if status == "resolved" else None,
            "superseded: the object was processed again" if status == "dismissed" else None,
        )


def _runs(rows: int) -> Iterator[tuple[Any, ...]]:
    for k in range(rows // 1000 + 1):
        started = processed_at(k * 1000, rows) if k else NOW - HISTORY
        yield (
            f"bench-run-{k}",
            "nightly",
            "{}",
            "completed",
            started,
            started + timedelta(minutes=20),
            1000,
            1000,
            1000,
            0,
        )
    yield (DEAD_RUN, "nightly", "{}", "running", NOW - timedelta(hours=7), None, 0, 0, 0, 0)


COPIES: tuple[tuple[str, str, Callable[[int], Iterator[tuple[Any, ...]]]], ...] = (
    ("source_objects", OBJECT_COLUMNS, _objects),
    ("runs", "id, kind, parameters, status, started_at, finished_at, discovered, planned, processed, failed", _runs),
    (
        "classifications",
        "object_id, label, probability, margin, runner_up, scores, route, model_id, pages_classified, created_at",
        _classifications,
    ),
    ("pages", "object_id, page_number, uri, width, height, dpi, label, label_probability", _pages),
    (
        "extractions",
        "object_id, schema_id, backend, model_id, data, valid, attempts, field_confidence, raw_output, created_at",
        _extractions,
    ),
    (
        "transcripts",
        "id, object_id, model_id, model_version, language, language_probability, duration_s, speech_s, no_speech, "
        "avg_logprob, channels_split, dropped_segments, text, speakers, languages, created_at",
        _transcripts,
    ),
    (
        "transcript_segments",
        "transcript_id, segment_index, start_s, end_s, speaker, text, avg_logprob, no_speech_prob, compression_ratio",
        _segments,
    ),
    (
        "review_items",
        "object_id, stage, schema_id, reasons, audit, model_output, model_id, score, status, run_id, created_at, "
        "exported_at, corrected, changed_fields, reviewer, resolved_at, note",
        _review_items,
    ),
)


def build(url: str, rows: int, revision: str = "head") -> dict[str, int]:
    """Migrate the (empty) database at `url` to `revision` and fill it with `rows` objects and their results, by
    COPY; then VACUUM ANALYZE, as autovacuum would have done by the time a table is this big. Returns the rows per
    table."""
    import psycopg
    from alembic import command

    from storage.db import alembic_config, get_engine

    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    counts: dict[str, int] = {}
    with psycopg.connect(_libpq(url)) as connection:
        for table, columns, rows_of in COPIES:
            n = 0
            with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows_of(rows):
                    copy.write_row(row)
                    n += 1
            counts[table] = n
        for table in ("source_objects", "transcripts"):  # their ids were given: the sequences go on after them
            connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 1) FROM {table}))"
            )
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")
    return counts


def _revision(url: str) -> str:
    from sqlalchemy import text

    from storage.db import get_engine

    with get_engine(url).connect() as connection:
        return str(connection.scalar(text("SELECT version_num FROM alembic_version")))


def _libpq(url: str) -> str:
    """The psycopg connection string of a SQLAlchemy URL."""
    from sqlalchemy import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# -- the timed queries -----------------------------------------------------------------------------------------


@dataclass
class Statement:
    sql: str
    parameters: Any


@dataclass
class Plan:
    seconds: float  # the execution time EXPLAIN ANALYZE reports
    sql: str
    key_line: str  # the plan's top node
    seq_scans: list[str]  # big tables read whole
    nodes: list[str] = field(default_factory=list)  # the plan, compact (`compact_plan`)


@dataclass
class Measured:
    name: str
    seconds: list[float]
    check: str  # what the query returned, in words
    ok: bool
    plans: list[Plan] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def slowest_plan(self) -> Plan | None:
        return max(self.plans, key=lambda p: p.seconds, default=None)

    @property
    def seq_scans(self) -> list[str]:
        return sorted({t for p in self.plans for t in p.seq_scans})


class Capture:
    """The statements every engine sends while it is open (SQLAlchemy's before_cursor_execute event)."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []

    def __enter__(self) -> Capture:
        from sqlalchemy import Engine, event

        event.listen(Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import Engine, event

        event.remove(Engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        ours = "pg_catalog" not in statement and "alembic_version" not in statement
        if ours and not many and re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", statement, re.I):
            self.statements.append(Statement(statement, parameters))


_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")
_EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


_COST = re.compile(r"\s*\(cost=[^)]*\)")
_ACTUAL = re.compile(r"\(actual time=[\d.]+\.\.([\d.]+) rows=(\d+) loops=(\d+)\)")
_PLAN_DETAIL = ("Index Cond:", "Filter:", "Hash Cond:", "Join Filter:", "Sort Key:", "Group Key:", "Recheck Cond:")
PLAN_LINES = 14  # a plan longer than this is cut (the rest are the lower nodes' details)


def compact_plan(lines: Sequence[str], width: int = 110) -> list[str]:
    """An EXPLAIN ANALYZE plan as docs can show it: each node with its actual rows and time (no cost estimates,
    buffers, worker or planning lines), the conditions it used, long lines cut to `width`, at most PLAN_LINES."""
    kept: list[str] = []
    for line in lines:
        stripped = line.strip()
        is_node = "(actual" in line or "(never executed)" in line
        if not is_node and not stripped.startswith(_PLAN_DETAIL):
            continue
        text = _ACTUAL.sub(
            lambda m: f"(rows={m.group(2)}{'x' + m.group(3) if m.group(3) != '1' else ''}, {float(m.group(1)):.1f} ms)",
            _COST.sub("", line.rstrip()),
        )
        kept.append(text if len(text) <= width else text[: width - 3] + "...")
    if len(kept) > PLAN_LINES:
        kept = [*kept[: PLAN_LINES - 1], f"   ... {len(kept) - PLAN_LINES + 1} more plan lines"]
    return kept


def explain(url: str, statements: Sequence[Statement]) -> list[Plan]:
    """EXPLAIN ANALYZE each distinct statement once (with the parameters it was first sent with), in a transaction
    that is rolled back: what a write would change is undone."""
    import psycopg

    plans: list[Plan] = []
    seen: set[str] = set()
    with psycopg.connect(_libpq(url)) as connection:
        for statement in statements:
            if statement.sql in seen:
                continue
            seen.add(statement.sql)
            try:
                lines = [r[0] for r in connection.execute("EXPLAIN ANALYZE " + statement.sql, statement.parameters)]
            finally:
                connection.rollback()
            executed = next((m for line in lines if (m := _EXECUTION.search(line))), None)
            plans.append(
                Plan(
                    seconds=float(executed.group(1)) / 1000 if executed else 0.0,
                    sql=" ".join(statement.sql.split()),
                    key_line=lines[0].strip(),
                    seq_scans=sorted({t for line in lines for t in _SEQ_SCAN.findall(line) if t in BIG_TABLES}),
                    nodes=compact_plan(lines),
                )
            )
    return plans


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def _measure(
    name: str, url: str, repeats: int, call: Callable[[int], Any], check: Callable[[Any], tuple[bool, str]]
) -> Measured:
    """`call(n)` `repeats` times, timed; the first run's statements are captured (which costs microseconds) and
    then explained, and its result checked."""
    with Capture() as capture:
        took, first = _timed(lambda: call(0))
    seconds = [took]
    for n in range(1, repeats):
        start = time.perf_counter()
        call(n)
        seconds.append(time.perf_counter() - start)
    ok, said = check(first)
    return Measured(name, seconds, said, ok, explain(url, capture.statements))


def _cli(url: str, *args: str) -> str:
    """The docflow CLI, in this process; its stdout. A non-zero exit is an error."""
    from typer.testing import CliRunner

    from flows.cli.main import app

    result = CliRunner().invoke(app, list(args), env={"DOCFLOW_DATABASE_URL": url})
    if result.exit_code != 0:
        raise RuntimeError(f"docflow {' '.join(args)} exited {result.exit_code}: {result.output[-2000:]}")
    return result.stdout


def _inbox(folder: Path, count: int) -> str:
    """A local source of `count` small files: the listing discovery records."""
    from storage.blobstore import LocalDirStore

    for n in range(count):
        sub = folder / f"{n // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{n:06d}.pdf").write_bytes(b"%PDF-1.4\n")
    return LocalDirStore(folder).uri


def run_queries(url: str, rows: int, repeats: int, listed: int, work: Path) -> list[Measured]:
    """Time every listed query on the database `build` filled (with `rows` objects). Runs again on the same
    database claim other windows (the first still pending ones) and list another inbox."""
    import importlib

    from sqlalchemy import text

    from schemas.records import DiscoveryRequest
    from schemas.settings import load_settings
    from storage.db import unit_of_work
    from storage.repositories import RunRepository
    from tasks.run.claims import claim
    from tasks.run.discovery import discover

    for module in ("flows.cli.main", "flows.status", "tasks.results", "tasks.review.queue"):
        importlib.import_module(module)  # the commands' imports are not timed
    want = expected(rows)
    settings = load_settings(database_url=url)
    window = settings.runner.window_size
    run_id = f"bench-claims-{time.time_ns()}"
    with unit_of_work(url) as session:
        RunRepository(session).start(run_id, "nightly", {})
        pending = list(
            session.scalars(
                text(
                    "SELECT id FROM source_objects WHERE source = :source AND status = 'pending' ORDER BY id LIMIT :n"
                ),
                {"source": SOURCE, "n": window * repeats},
            )
        )
        known = session.scalar(text("SELECT count(*) FROM source_objects")) or 0
    window = min(window, len(pending) // repeats)  # a small database has fewer pending objects than a window
    measured: list[Measured] = []

    def claim_window(n: int) -> int:
        return len(
            claim(
                settings,
                run_id,
                pending[n * window : (n + 1) * window],
                force=False,
                retry_failed=False,
            )
        )

    measured.append(
        _measure(
            "claim", url, repeats, claim_window, lambda got: (got == window, f"claimed {got} of a window of {window}")
        )
    )

    size = f"{listed // 1000}k" if listed % 1000 == 0 else str(listed)  # in the figures' names: upsert_10k_s
    inbox = _inbox(work / f"inbox-{time.time_ns()}", listed)
    request = DiscoveryRequest(sources=(inbox,))
    took, first = _timed(lambda: discover(settings, request, run_id=None))
    ok = first.new == listed and len(first.object_ids) == listed
    measured.append(Measured(f"discover_{size}_new", [took], f"{first.new} new of {first.listed} listed", ok))

    def rediscover(_n: int) -> Any:
        return discover(settings, request, run_id=None)

    measured.append(
        _measure(
            f"upsert_{size}",
            url,
            repeats,
            rediscover,
            lambda got: (
                got.new == 0 and len(got.object_ids) == listed,
                f"{got.listed} listed, {got.new} new, {len(got.object_ids)} to process",
            ),
        )
    )

    total = known + listed
    measured.append(
        _measure(
            "status",
            url,
            repeats,
            lambda _n: _cli(url, "status"),
            lambda out: ("objects: " + str(total) in out, out.splitlines()[1] if len(out.splitlines()) > 1 else out),
        )
    )

    def status_check(out: str) -> tuple[bool, str]:
        report = json.loads(out)
        objects = sum(report["objects"].values())
        waiting = report["waiting_review"]["total"]
        expected_review = sum(1 for i in range(1, rows + 1) if status_of(i) == "review")
        return objects == total and waiting == expected_review, f"{objects} objects, {waiting} waiting for review"

    measured.append(_measure("status_json", url, repeats, lambda _n: _cli(url, "status", "--json"), status_check))

    def queue_check(out: str) -> tuple[bool, str]:
        queue = json.loads(out)
        return queue["total"] == want.waiting and len(queue["items"]) == 50, (
            f"{queue['total']} waiting, {len(queue['items'])} listed"
        )

    measured.append(
        _measure("review_list", url, repeats, lambda _n: _cli(url, "review", "list", "--json"), queue_check)
    )
    measured.append(
        _measure(
            "review_list_table",
            url,
            repeats,
            lambda _n: _cli(url, "review", "list"),
            lambda out: (str(want.waiting) in out, out.splitlines()[0] if out else ""),
        )
    )

    review_csv = work / "review.csv"

    def export_review(_n: int) -> Path:
        _cli(url, "review", "export", "--format", "csv", "--out", str(review_csv))
        return review_csv

    def exported_items(path: Path) -> tuple[bool, str]:  # read back outside the timed call
        import csv

        with path.open(newline="", encoding="utf-8") as stream:
            n = len({row["item_id"] for row in csv.DictReader(stream)})
        return n == want.waiting, f"{n} items in the CSV"

    measured.append(_measure("review_export", url, repeats, export_review, exported_items))

    def read_queue(_n: int) -> int:  # the export's database part alone: the waiting items read as it reads them
        from storage.review import ReviewRepository
        from tasks.review.queue import WAITING

        with unit_of_work(url) as session:
            return sum(len(chunk) for chunk in ReviewRepository(session).export_chunks(WAITING, pages=False))

    measured.append(
        _measure("review_export_read", url, repeats, read_queue, lambda n: (n == want.waiting, f"{n} items read"))
    )

    results = work / "results.jsonl"

    def export_since(_n: int) -> int:
        _cli(url, "export", "results", "--format", "jsonl", "--out", str(results), "--since", f"{want.since:%Y-%m-%d}")
        with results.open(encoding="utf-8") as stream:
            return sum(1 for _ in stream)

    measured.append(
        _measure(
            "export_since",
            url,
            repeats,
            export_since,
            lambda n: (n == want.exported_since, f"{n} records since {want.since:%Y-%m-%d}"),
        )
    )
    measured.append(
        _measure(
            "show",
            url,
            repeats,
            lambda _n: _cli(url, "show", want.show_key, "--json"),
            lambda out: (
                json.loads(out)["key"] == want.show_key and len(json.loads(out)["reviews"]) == 1,
                f"{want.show_key}: {json.loads(out)['status']}, {len(json.loads(out)['reviews'])} review",
            ),
        )
    )
    return measured


# -- the report ------------------------------------------------------------------------------------------------


def report(measured: Sequence[Measured], title: str) -> list[str]:
    """A table of the medians and what each query returned, then for each query its slowest statement and that
    statement's plan (compact: it can go in the docs as it is), with the sequential scans of big tables."""
    lines = [title, f"{'query':22s} {'median s':>9s} {'runs':>5s}  returned", "-" * 80]
    for m in measured:
        mark = "" if m.ok else "  << WRONG"
        lines.append(f"{m.name:22s} {m.median:9.3f} {len(m.seconds):5d}  {m.check}{mark}")
    lines += ["", "plans: each query's slowest statement under EXPLAIN ANALYZE (rows x loops, ms of actual time)"]
    for m in measured:
        slowest = m.slowest_plan
        if slowest is None:
            continue
        scans = f"; SEQ SCAN of {', '.join(m.seq_scans)}" if m.seq_scans else ""
        lines.append("")
        lines.append(
            f"{m.name}: median {m.median:.3f} s; {len(m.plans)} distinct statements, the slowest "
            f"{slowest.seconds * 1000:.1f} ms{scans}"
        )
        lines.append(f"    {slowest.sql[:200]}")
        lines += [f"    {node}" for node in slowest.nodes or [slowest.key_line]]
        for plan in m.plans:
            if plan.seq_scans and plan is not slowest:
                lines.append(f"    also a seq scan ({plan.seconds * 1000:.1f} ms): {plan.sql[:160]}")
    return lines


def figures(measured: Sequence[Measured], prefix: str = "") -> str:
    """name=value: each query's median seconds, how many queries scan a big table whole, whether all were right."""
    values = [f"{prefix}{m.name}_s={m.median:.3f}" for m in measured]
    values.append(f"{prefix}queries_with_seq_scans={sum(1 for m in measured if m.seq_scans)}")
    values.append(f"{prefix}all_returned_right={all(m.ok for m in measured)}")
    return " ".join(values)


def bench(url: str, rows: int, repeats: int = 3, listed: int = 10_000) -> tuple[dict[str, int], list[Measured]]:
    """Build the database at `url` (an empty PostgreSQL database) and time the queries on it: the rows per table,
    and each query's measurement."""
    counts = build(url, rows)
    with tempfile.TemporaryDirectory(prefix="docflow-scale-") as tmp:
        return counts, run_queries(url, rows, repeats, listed, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="source_objects rows (20000: a quick check)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each query (the median is reported)")
    parser.add_argument("--listed", type=int, default=10_000, help="objects discovery lists")
    parser.add_argument(
        "--before",
        metavar="REVISION",
        help="first measure at this schema revision (e.g. 0012, before the indexes of 0013), then migrate the same "
        "database to head (timed) and measure again",
    )
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    parser.add_argument(
        "--built", action="store_true", help="--database-url already holds this bench's --rows objects: only measure"
    )
    parser.add_argument(
        "--part",
        choices=("a", "b", "c"),
        default="b",
        help="a: small objects end to end in SeaweedFS + PostgreSQL at two inbox sizes (bench/scale_objects.py); "
        "b: the database at --rows objects (the default); c: fan-out in shards against in-process "
        "(bench/scale_fanout.py)",
    )
    parser.add_argument(
        "--objects", type=int, action="append", help="part a: inbox sizes (default 2000 and 20000); part c: one size"
    )
    parser.add_argument("--shards", type=int, default=4, help="part c: shards the objects are split into")
    parser.add_argument("--workers", type=int, default=2, help="part c: Prefect workers on the local stack")
    args = parser.parse_args()
    if args.part != "b":
        _other_part(args)
        return
    cluster = None
    url = args.database_url
    if url is None:
        from tests.services import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
        url = cluster.create_database("scale")
    os.environ.pop("DOCFLOW_DATABASE_URL", None)
    try:
        if not args.built:
            start = time.perf_counter()
            counts = build(url, args.rows, args.before or "head")
            built = time.perf_counter() - start
            print(f"built in {built:.0f} s: " + ", ".join(f"{t} {n}" for t, n in counts.items()), flush=True)
        with tempfile.TemporaryDirectory(prefix="docflow-scale-") as tmp:
            before: list[Measured] = []
            if args.before:
                before = run_queries(url, args.rows, args.repeats, args.listed, Path(tmp))
                print("\n".join(report(before, f"schema {args.before}, {args.rows} objects")), flush=True)
                from storage.db import migrate

                took, _ = _timed(lambda: migrate(url))
                print(f"\nmigrated to head in {took:.1f} s\n", flush=True)
            after = run_queries(url, args.rows, args.repeats, args.listed, Path(tmp))
        print("\n".join(report(after, f"schema {_revision(url)}, {args.rows} objects")))
        line = f"rows={args.rows} listed={args.listed} " + figures(after)
        if before:
            line += f" migrate_s={took:.1f} " + figures(before, "before_")
        print(line)
    finally:
        if cluster is not None:
            cluster.destroy()


def _other_part(args: argparse.Namespace) -> None:
    """Parts (a) and (c) live in modules of their own; each prints its lines and ends with one of name=value."""
    if args.part == "a":
        from bench import scale_objects

        _, values = scale_objects.run(args.objects or [2000, 20_000])
    else:
        from bench import scale_fanout

        _, values = scale_fanout.run((args.objects or [2000])[0], args.shards, args.workers)
    print(" ".join(f"{k}={v}" for k, v in values.items()), flush=True)


if __name__ == "__main__":
    main()
