"""Faults injected into real runs: a run killed with SIGKILL, a second run while the first is slow, two runs
started at once on an empty Postgres, an unwritable derived store, and Postgres stopping mid-run. Runs are real
`docflow` processes (or in-process flows) against the real Prefect server, Postgres and files made by the test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from flows.pipeline import RunFailed, nightly
from storage.db import get_engine, unit_of_work
from storage.tables import SourceObject, utcnow
from tasks.ops.waiting import wait_until
from tests.faults.conftest import Configure
from tests.services import PostgresCluster
from tests.support import hostile

pytestmark = pytest.mark.usefixtures("prefect_harness")
REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, ephemeral: bool = False, **settings: object) -> dict[str, str]:
    """The environment of a `docflow` process: the shared test Prefect server, or (ephemeral) a temporary one."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(tmp_path / "prefect-home"))
    if not ephemeral:
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    defaults = {
        "extract": False,
        "transcribe": False,
        "derived_store": tmp_path / "derived",
        "retries": 1,
        "retry_delay_s": 0.1,
        "review_min_class_probability": 0,
        "review_min_class_margin": 0,
    }
    for name, value in {**defaults, **settings}.items():
        env[f"DOCFLOW_{name.upper()}"] = str(value)
    return env


def _docflow(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _objects(url: str) -> dict[str, SourceObject]:
    with unit_of_work(url) as s:
        return {o.key: o for o in s.scalars(select(SourceObject))}


def _processing(url: str) -> bool:
    return any(o.status == "processing" for o in _objects(url).values())


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").glob("*"))
        except FileNotFoundError:  # the process exited while we walked the tree
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def test_a_second_run_does_not_take_over_an_object_the_first_is_still_working_on(
    configure: Configure, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    hostile.slow_page_pdf(inbox / "slow.pdf", fills=300)  # several seconds in poppler
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings: dict[str, Any] = dict(database_url=db, source=inbox, claim_ttl_s=3, render_timeout_s=300)
    first = _docflow(_env(tmp_path, **settings), "run")
    wait_until(lambda: _processing(db), timeout_s=120, interval_s=0.2, what="the first run to claim the object")
    time.sleep(4)  # longer than the claim TTL: only the heartbeat keeps the claim

    configure(**settings)
    second = nightly()

    assert second.processed == 0
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    obj = _objects(db)["slow.pdf"]
    assert obj.status in ("done", "review") and obj.attempts == 1


def test_a_killed_run_leaves_no_server_and_the_next_run_reports_its_claims(
    configure: Configure, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    hostile.slow_page_pdf(inbox / "slow.pdf")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings: dict[str, Any] = dict(database_url=db, source=inbox, temp_dir=scratch, render_timeout_s=300)
    run = _docflow(_env(tmp_path, ephemeral=True, **settings), "run")  # its own temporary Prefect server
    wait_until(lambda: _processing(db), timeout_s=180, interval_s=0.2, what="the run to claim the object")
    children = _descendants(run.pid)
    assert children, "the temporary Prefect server runs as a child process"
    left_behind = list(scratch.glob(f"docflow-work-{run.pid}-*"))
    assert left_behind

    run.send_signal(signal.SIGKILL)
    run.wait()
    wait_until(
        lambda: not any(_alive(pid) for pid in children),
        timeout_s=90,
        interval_s=0.2,
        what="the killed run's children to exit",
    )

    # Time passes: the dead run's claim is no longer renewed (but has not expired: TTL 900 s).
    with unit_of_work(db) as s:
        s.execute(update(SourceObject).values(claimed_at=utcnow() - timedelta(minutes=5)))
    configure(**settings)
    summary = nightly()
    assert summary.stale_claims == 1 and summary.processed == 0
    assert "1 object(s) are still claimed by a run that stopped without finishing" in summary.warnings[0]
    assert not [d for d in left_behind if d.exists()]  # the next run removed the dead run's scratch folders

    status = subprocess.run(
        [sys.executable, "-m", "flows.cli", "status", "--json"],
        env=_env(tmp_path, **settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    (claimed,) = json.loads(status.stdout)["in_progress"]
    assert claimed["key"] == "slow.pdf" and claimed["stale"] and claimed["claim_age_s"] >= 300


def test_two_runs_started_at_once_on_an_empty_postgres(
    postgres: PostgresCluster, sample_inbox: Path, tmp_path: Path
) -> None:
    url = postgres.create_database("two_runs_at_once")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(6):
        shutil.copy(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", inbox / f"doc-{i}.pdf")
        shutil.copy(sample_inbox / "images" / "photo_donut_coffee_122.jpg", inbox / f"photo-{i}.jpg")
    env = _env(tmp_path, database_url=url, source=inbox, batch_size=1)
    runs = [_docflow(env, "run") for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    objects = _objects(url)
    assert len(objects) == 12
    assert {(o.status, o.attempts) for o in objects.values()} == {("done", 1)}


def test_an_unwritable_derived_store_leaves_objects_pending(
    configure: Configure, sample_inbox: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", inbox)
    (tmp_path / "blocked").write_text("a file where the derived store's folder should be")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox), derived_store=str(tmp_path / "blocked" / "derived"))

    with pytest.raises(RunFailed) as excinfo:
        nightly()
    assert excinfo.value.summary.failed_windows == 1
    assert "cannot write" in excinfo.value.failures[0][1]
    assert {(o.status, o.attempts) for o in _objects(db).values()} == {("pending", 0)}

    configure(database_url=db, source=str(inbox), derived_store=str(tmp_path / "derived"))
    assert nightly().processed == 1
    assert {o.status for o in _objects(db).values()} == {"done"}


def test_postgres_stopping_mid_run_prints_one_line_per_failed_batch(postgres: PostgresCluster, tmp_path: Path) -> None:
    url = postgres.create_database("outage_mid_run")
    inbox = tmp_path / "inbox"
    for i in range(3):
        hostile.slow_page_pdf(inbox / f"slow-{i}.pdf", fills=120)
    run = _docflow(_env(tmp_path, database_url=url, source=inbox, batch_size=1, workers=1, render_timeout_s=300), "run")
    wait_until(lambda: _processing(url), timeout_s=120, interval_s=0.2, what="the run to start processing")
    get_engine(url).dispose()
    postgres.stop()
    try:
        _, err = run.communicate(timeout=300)
    finally:
        postgres.start()
    assert run.returncode == 1
    assert "Traceback" not in err
    assert len(err.splitlines()) < 15, err
