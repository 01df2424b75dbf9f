"""Every hostile input at once: one `docflow run` (a real process, default settings, SQLite, a local inbox) over an
inbox holding all the entries that once hung a run, exhausted memory or crashed the CLI, then `docflow status`.
Prints each object's final state and reason, the exit codes, and the run's peak RSS.

    .venv/bin/python bench/hostile.py [--silent-hours 2] [--keep]

The slow-page PDF takes poppler about 25 s; DOCFLOW_RENDER_TIMEOUT_S=10 makes it a render timeout without waiting
for the 120 s default. Extraction and transcription run as configured by default (offline models).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import hostile  # noqa: E402

TERMINAL = {"done", "failed", "review"}


def build_inbox(inbox: Path, silent_hours: float) -> None:
    shutil.copy(REPO / "infra/sample-inbox/documents/invoice2data_AzureInterior.pdf", inbox / "good.pdf")
    hostile.one_hz_wav(inbox / "calls" / "one-hertz-32k.wav", kilobytes=32)
    hostile.silent_wav(inbox / "calls" / "silent-long.wav", seconds=silent_hours * 3600)
    hostile.fifo(inbox / "b.pdf")
    hostile.symlink_loop(inbox / "loop.pdf")
    hostile.dangling_symlink(inbox / "dangling.pdf")
    hostile.long_path(inbox)
    hostile.empty_files(inbox)
    hostile.many_page_tiff(inbox / "fax-1000.tiff", pages=1000)
    hostile.slow_page_pdf(inbox / "flate-bomb.pdf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silent-hours", type=float, default=2.0, help="length of the silent recording")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="docflow-bench-hostile-"))
    inbox = work / "inbox"
    inbox.mkdir()
    build_inbox(inbox, args.silent_hours)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
    env.update(
        DOCFLOW_DATABASE_URL=f"sqlite:///{work / 'docflow.db'}",
        DOCFLOW_SOURCE=str(inbox),
        DOCFLOW_DERIVED_STORE=str(work / "derived"),
        DOCFLOW_RENDER_TIMEOUT_S="10",
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    env.pop("PREFECT_API_URL", None)
    docflow = [sys.executable, "-m", "flows.cli"]
    started = time.monotonic()
    run = subprocess.run([*docflow, "run"], env=env, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    # ru_maxrss of the children: the largest resident set of any process the run started (the CLI itself works).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    status = subprocess.run(
        [*docflow, "status", "--json"], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    print(run.stderr[-4000:])
    report = json.loads(status.stdout) if status.returncode == 0 else {}

    import sqlite3

    with sqlite3.connect(work / "docflow.db") as db:
        rows = db.execute(
            "SELECT key, kind, status, error_code, error_message, page_count FROM source_objects ORDER BY key"
        ).fetchall()
    print(f"{'object':<46} {'kind':<7} {'status':<8} reason")
    for key, kind, state, code, message, pages in rows:
        reason = f"{code}: {message}" if code else (f"{pages} pages" if pages else "")
        print(f"{key.encode('unicode_escape').decode()[:46]:<46} {kind or '-':<7} {state:<8} {reason[:110]}")
    terminal = sum(1 for row in rows if row[2] in TERMINAL)
    warnings = report.get("runs", [{}])[0].get("warnings", []) if report else []
    for warning in warnings:
        print(f"run warning: {warning}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")
    print(
        f"exit_code={run.returncode} status_exit_code={status.returncode} objects={len(rows)} terminal={terminal} "
        f"run_warnings={len(warnings)} peak_rss_mb={peak_mb:.0f} seconds={seconds:.0f}"
    )


if __name__ == "__main__":
    main()
