"""`docflow review export --format csv` of a built database's waiting queue, this checkout against a baseline
checkout (e.g. a `git worktree` of main) in one invocation, on the same database, alternating, each in its own
process: the whole export (what a user waits for), and its parts: the read (the database through Python into
items), the mark alone (the UPDATE, rolled back), and the rest (writing the file; and the mark where a checkout
makes it after the file, not while the file is written as PostgreSQL's export does now).

    .venv/bin/python bench/review_export.py --database-url postgresql+psycopg://.../scale1m --baseline ../main

Build the database with `bench/scale.py --rows N` (5% of the objects are waiting review items). Figures on a
shared machine are rough: compare the ratio, measured here in one run."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# Run in the checkout measured (its code on PYTHONPATH): the export, then its parts, each timed alone.
_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from schemas.settings import load_settings
from storage.db import unit_of_work
from storage.review import ReviewRepository
from tasks.review.queue import WAITING, export_file

url = sys.argv[1]
settings = load_settings(database_url=url)
out = Path(tempfile.mkdtemp()) / "review.csv"
start = time.perf_counter()
count = export_file(settings, "csv", out)
total = time.perf_counter() - start
with unit_of_work(url) as session:
    repo = ReviewRepository(session)
    start = time.perf_counter()
    if hasattr(repo, "export_chunks"):  # this branch: what the CSV export reads
        ids = [row.id for chunk in repo.export_chunks(WAITING, pages=False) for row in chunk]
    else:  # before it: views
        ids = [view.id for view, _source in repo.views(WAITING)]
    read = time.perf_counter() - start
    start = time.perf_counter()
    repo.mark_all_exported(ids)
    session.flush()
    mark = time.perf_counter() - start
    session.rollback()
print(json.dumps({"items": count, "rows": sum(1 for _ in out.open(encoding="utf-8")) - 1, "total": total,
                  "read": read, "mark": mark, "bytes": out.stat().st_size}))
"""


def _run(checkout: Path, url: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, url], cwd=checkout, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the code to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ours, baseline = Path(__file__).resolve().parent.parent, args.baseline.resolve()
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "baseline": []}
    _run(ours, args.database_url)  # the first export marks the open items: every timed one then sees the same queue
    for i in range(args.repeats):
        for name in ("baseline", "ours") if i % 2 == 0 else ("ours", "baseline"):
            runs[name].append(_run(ours if name == "ours" else baseline, args.database_url))
            print(name, json.dumps(runs[name][-1]), flush=True)
    median = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]} for name, results in runs.items()
    }
    for name, m in median.items():
        print(
            f"{name}: total {m['total']:.2f} s: read {m['read']:.2f}, the rest {m['total'] - m['read']:.2f} "
            f"(the file, and the mark where it is not made while the file is written: {m['mark']:.2f} alone)"
        )
    b, o = median["baseline"], median["ours"]
    same = b["items"] == o["items"] and b["rows"] == o["rows"] and b["bytes"] == o["bytes"]
    print(
        f"items={int(o['items'])} rows={int(o['rows'])} baseline_s={b['total']:.3f} ours_s={o['total']:.3f} "
        f"speedup={b['total'] / o['total']:.2f} read_s={o['read']:.3f} rest_s={o['total'] - o['read']:.3f} "
        f"mark_alone_s={o['mark']:.3f} baseline_read_s={b['read']:.3f} same_size={same}"
    )


if __name__ == "__main__":
    main()
