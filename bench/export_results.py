"""`docflow export results`: peak memory and time of the streamed export of many result rows, against reading the
same rows whole with pandas and writing them with pyarrow (what a script would do), each in a fresh process.

A SQLite database gets N synthetic documents (done, classified, with an invoice extraction of a few fields and
line items, one in ten corrected by a reviewer); both sides write Parquet. Key figures on the last line.

    .venv/bin/python bench/export_results.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(database: Path, rows: int) -> None:
    """N objects with their classification, extraction and, for one in ten, a resolved review item."""
    from sqlalchemy import insert

    from storage.db import get_engine, migrate
    from storage.tables import ClassificationRow, ExtractionRow, ReviewItem, SourceObject

    url = f"sqlite:///{database}"
    migrate(url)
    now = datetime.now(UTC)
    chunk = 5000
    with get_engine(url).begin() as connection:
        for first in range(1, rows + 1, chunk):
            ids = range(first, min(first + chunk, rows + 1))
            connection.execute(
                insert(SourceObject),
                [
                    {
                        "id": i,
                        "source": "s3://bench/in",
                        "key": f"docs/{i:07d}.pdf",
                        "version": "v1",
                        "size": 50_000,
                        "last_modified": now,
                        "kind": "pdf",
                        "status": "done",
                        "attempts": 1,
                        "processed_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
            connection.execute(
                insert(ClassificationRow),
                [
                    {
                        "object_id": i,
                        "label": "invoice",
                        "probability": 0.9,
                        "margin": 0.5,
                        "scores": {"invoice": 0.9, "receipt": 0.1},
                        "route": "invoice",
                        "model_id": "bench",
                        "pages_classified": 1,
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
            connection.execute(
                insert(ExtractionRow),
                [
                    {
                        "object_id": i,
                        "schema_id": "invoice/v1",
                        "backend": "text",
                        "model_id": "bench",
                        "data": _invoice(i),
                        "valid": True,
                        "attempts": 1,
                        "field_confidence": {"total": 0.9, "vendor_name": 0.8},
                        "raw_output": json.dumps(_invoice(i)),
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
            connection.execute(
                insert(ReviewItem),
                [
                    {
                        "object_id": i,
                        "stage": "extraction",
                        "schema_id": "invoice/v1",
                        "reasons": [],
                        "audit": True,
                        "model_output": {"data": _invoice(i)},
                        "model_id": "bench",
                        "status": "resolved",
                        "corrected": {**_invoice(i), "total": "1.00"},
                        "created_at": now,
                        "resolved_at": now,
                    }
                    for i in ids
                    if i % 10 == 0
                ],
            )


def _invoice(i: int) -> dict[str, object]:
    return {
        "vendor_name": f"Vendor {i % 977}",
        "invoice_number": f"INV-{i}",
        "invoice_date": "2026-11-01",
        "currency": "EUR",
        "total": f"{i % 1000}.50",
        "line_items": [{"description": f"item {k}", "amount": f"{k}.25"} for k in range(3)],
    }


OURS = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tasks.results import ResultFilter, export_results
t = time.perf_counter()
n = export_results({url!r}, "parquet", Path({out!r}), ResultFilter())
hwm = int([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1])
print(json.dumps({{"rows": n, "seconds": time.perf_counter() - t, "peak_mb": hwm / 1024}}))
"""

PANDAS = """
import json, sqlite3, time
import pandas as pd
t = time.perf_counter()
with sqlite3.connect({path!r}) as c:
    frame = pd.read_sql(
        "select o.id, o.key, o.kind, o.status, c.label, e.schema_id, e.data from source_objects o "
        "left join classifications c on c.object_id = o.id left join extractions e on e.object_id = o.id", c)
frame.to_parquet({out!r})
hwm = int([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1])
print(json.dumps({{"rows": len(frame), "seconds": time.perf_counter() - t, "peak_mb": hwm / 1024}}))
"""


def measure(code: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "results.db"
        start = time.perf_counter()
        build(database, args.rows)
        print(f"built {args.rows} synthetic results in {time.perf_counter() - start:.0f} s")
        ours = measure(OURS.format(repo=str(REPO), url=f"sqlite:///{database}", out=str(Path(tmp) / "ours.parquet")))
        whole = measure(PANDAS.format(path=str(database), out=str(Path(tmp) / "pandas.parquet")))
    print(f"{'':28s} {'rows':>8s} {'seconds':>8s} {'peak RSS MB':>12s}")
    print(f"{'docflow export results':28s} {ours['rows']:8.0f} {ours['seconds']:8.1f} {ours['peak_mb']:12.0f}")
    print(f"{'pandas read_sql + pyarrow':28s} {whole['rows']:8.0f} {whole['seconds']:8.1f} {whole['peak_mb']:12.0f}")
    print(
        f"rows={ours['rows']:.0f} peak_rss_mb={ours['peak_mb']:.0f} seconds={ours['seconds']:.1f} "
        f"pandas_peak_rss_mb={whole['peak_mb']:.0f} memory_ratio={ours['peak_mb'] / whole['peak_mb']:.2f} "
        f"time_ratio={ours['seconds'] / whole['seconds']:.2f}"
    )


if __name__ == "__main__":
    main()
