"""`docflow worker`: this machine joins the work pool. A preflight first (the Prefect server, the database, every
source and the derived store must answer from here, or the worker would only fail runs), then Prefect's own process
worker on DOCFLOW_WORK_POOL, named after the machine and its GPU."""

from __future__ import annotations

import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from schemas.redaction import redact_urls, redacted_url
from schemas.settings import Settings
from storage.blobstore import open_store
from storage.db import get_engine
from tasks.run.concurrency import host_name


@dataclass(frozen=True)
class WorkerCommand:
    name: str
    argv: list[str]
    env: dict[str, str]


def worker_command(settings: Settings, gpu: int | None, runs: int, name: str | None) -> WorkerCommand:
    """`prefect worker start` on the pool, carrying `runs` flow runs at once; with `gpu`, only that GPU is seen
    (CUDA_VISIBLE_DEVICES) and the models run on CUDA."""
    host = host_name()
    name = name or (f"{host}-gpu{gpu}" if gpu is not None else host)
    env = dict(os.environ)
    if gpu is not None:
        env |= {"CUDA_VISIBLE_DEVICES": str(gpu), "DOCFLOW_MODEL_DEVICE": "cuda"}
    prefect = str(Path(sys.executable).parent / "prefect")
    argv = [prefect, "worker", "start", "--pool", settings.deploy.work_pool, "--name", name, "--limit", str(runs)]
    return WorkerCommand(name, argv, env)


@dataclass(frozen=True)
class Check:
    """One thing a worker needs to reach, and what went wrong (None: it answered)."""

    what: str
    problem: str | None


def preflight(settings: Settings) -> list[str]:
    """What this machine cannot reach, one line each (empty: ready)."""
    return [check.problem for check in preflight_checks(settings) if check.problem is not None]


def preflight_checks(settings: Settings) -> list[Check]:
    """Each thing a worker needs, checked from here: the Prefect server, the database, every source and a shared
    derived store."""
    from prefect.settings import PREFECT_API_URL

    checks = []
    api = PREFECT_API_URL.value()
    if not api:
        checks.append(
            Check("Prefect server", "PREFECT_API_URL is not set: point it at the Prefect server (http://HOST:4200/api)")
        )
    else:
        problem = None
        try:
            with urllib.request.urlopen(f"{str(api).rstrip('/')}/health", timeout=10) as response:
                if response.status != 200:
                    problem = f"Prefect server answered {response.status}"
        except OSError as exc:
            problem = f"Prefect server cannot be reached: {redact_urls(str(exc))}"
        checks.append(Check(f"Prefect server {redacted_url(str(api))}", problem))
    database = redacted_url(settings.database_url)
    problem = None
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # the driver's own error says why (host, password, database)
        problem = f"database: {redact_urls(str(exc).splitlines()[0])}"
    checks.append(Check(f"database {database}", problem))
    shared = [settings.derived_store] if settings.derived_store.startswith("s3://") else []  # a folder is made
    for location in (*settings.source, *shared):
        problem = None
        try:
            next(iter(open_store(location).list()), None)
        except Exception as exc:
            problem = f"store {location}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        checks.append(Check(f"store {location}", problem))
    return checks
