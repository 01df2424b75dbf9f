"""bench/scale.py part (c): one inbox run by fan-out in shards and in-process, in one invocation, on one stack.

A `docflow stack` of its own (PostgreSQL, SeaweedFS, a Prefect server, N workers; bench/workers.py's Stack) gets
`docflow deploy`; the same N small images (bench/small_objects.py's generator) are uploaded under two prefixes.
Then one docflow-nightly deployment run per prefix, each limited to its prefix by the flow's `source` parameter,
models off (keyword classifier, extraction off): first the whole run in its one flow process (fan_out false),
then fanned out in S shards (DOCFLOW_SHARD_SIZE = N / S). Times are the parent flow run's start to end as the
Prefect server recorded them.

Where a shard's own time goes, from the server's state history of each shard flow run and the shard's own row in
the runs table: waiting for a worker (created -> Pending: the worker's poll, or its slots busy with other shards),
process start (Pending -> Running: a new Python process importing Prefect and docflow and loading the flow),
preparation (Running -> the shard's run row: the prepare task's checks, migrations, concurrency limit), the work
(its run row's start to finish) and the end (the run row's finish -> Completed: the summary, the flow's end); and
the parent's wait after its last shard completed (its polling).

Run through `bench/scale.py --part c [--objects 2000] [--shards 4] [--workers 2]`.
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale_objects import image_files, upload  # noqa: E402
from bench.small_objects import small_images  # noqa: E402
from bench.workers import BUCKET, Stack  # noqa: E402

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
PHASES = ("waiting", "process_start", "preparation", "work", "end")


@dataclass(frozen=True)
class ShardTimes:
    name: str
    seconds: dict[str, float]  # by phase (PHASES)
    completed_at: datetime

    @property
    def own_s(self) -> float:
        """What the shard costs beyond its work and its wait for a worker."""
        return self.seconds["process_start"] + self.seconds["preparation"] + self.seconds["end"]


@dataclass(frozen=True)
class NightlyRun:
    seconds: float  # the parent flow run's start to end (server clock)
    statuses: dict[str, int]  # the run's objects by status afterwards
    shards: list[ShardTimes]
    parent_wait_s: float  # the parent's end after its last shard completed


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _api(api: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{api}{path}", json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def _shard_times(api: str, database_url: str, child: dict[str, Any]) -> ShardTimes:
    """One shard's phases: the server's state history and the shard's own run row."""
    from storage.db import unit_of_work
    from storage.repositories import RunRepository

    states = sorted(_api(api, "GET", f"/flow_run_states/?flow_run_id={child['id']}"), key=lambda s: s["timestamp"])
    first: dict[str, datetime] = {}
    for state in states:
        first.setdefault(state["type"], _when(state["timestamp"]))
    with unit_of_work(database_url) as session:
        row = RunRepository(session).get(child["id"])
        if row is None or row.finished_at is None:
            raise RuntimeError(f"shard {child['name']} has no finished run row")
        started, finished = row.started_at, row.finished_at
    created, pending, running, completed = (
        _when(child["created"]),
        first["PENDING"],
        first["RUNNING"],
        first["COMPLETED"],
    )
    utc = running.tzinfo
    started, finished = started.replace(tzinfo=started.tzinfo or utc), finished.replace(tzinfo=finished.tzinfo or utc)
    seconds = {
        "waiting": (pending - created).total_seconds(),
        "process_start": (running - pending).total_seconds(),
        "preparation": (started - running).total_seconds(),
        "work": (finished - started).total_seconds(),
        "end": (completed - finished).total_seconds(),
    }
    return ShardTimes(child["name"], seconds, completed)


def nightly(stack: Stack, prefix: str, fan_out: bool) -> NightlyRun:
    """One docflow-nightly deployment run over the stack bucket's `prefix`, to its end; its time, the objects'
    outcomes and the shards' phases."""
    from sqlalchemy import func, select

    from storage.db import unit_of_work
    from storage.tables import SourceObject

    api = stack.env["PREFECT_API_URL"]
    (deployment,) = _api(api, "POST", "/deployments/filter", {"deployments": {"name": {"any_": ["docflow-nightly"]}}})
    parameters = {"fan_out": fan_out, "source": [f"s3://{BUCKET}/{prefix}/"]}
    run = _api(api, "POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})
    while run["state_type"] not in FINAL:
        time.sleep(1)
        run = _api(api, "GET", f"/flow_runs/{run['id']}")
    if run["state_type"] != "COMPLETED":
        raise RuntimeError(f"nightly run {run['name']} ended {run['state_name']}: {run['state']['message']}")
    children = _api(api, "POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}})
    database_url = stack.env["DOCFLOW_DATABASE_URL"]
    shards = [_shard_times(api, database_url, child) for child in sorted(children, key=lambda c: c["created"])]
    end = _when(run["end_time"])
    with unit_of_work(database_url) as session:
        statuses: dict[str, int] = {
            status: count
            for status, count in session.execute(
                select(SourceObject.status, func.count())
                .where(SourceObject.key.startswith(f"{prefix}/"))
                .group_by(SourceObject.status)
            ).tuples()
        }
    return NightlyRun(
        seconds=(end - _when(run["start_time"])).total_seconds(),
        statuses=statuses,
        shards=shards,
        parent_wait_s=(end - max(s.completed_at for s in shards)).total_seconds() if shards else 0.0,
    )


def import_seconds() -> float:
    """A fresh Python process importing the flows' module (Prefect and docflow), as a shard's process does first."""
    import os
    import subprocess

    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", "import flows.pipeline"], cwd=REPO, env=env, check=True)
    return time.perf_counter() - start


def _s3_client(env: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def run(
    objects: int, shards: int, workers: int, keep: bool = False, out: Any = print
) -> tuple[dict[str, Any], dict[str, str]]:
    """The two runs over the same images; what each measured and the key figures."""
    shard_size = math.ceil(objects / shards)
    tmp = Path(tempfile.mkdtemp(prefix="docflow-scale-c-"))
    tmp.chmod(0o755)  # as root the stack runs PostgreSQL as `postgres`: its folder must be reachable
    try:
        images = tmp / "images"
        small_images(images, objects)
        files = image_files(images)
        started = time.perf_counter()
        with Stack(workers, shard_size, tmp / "stack") as stack:
            out(
                f"{objects} small PNG images, keyword classifier, extraction off; docflow stack with {workers} "
                f"worker(s) up and deployed in {time.perf_counter() - started:.0f} s"
            )
            client = _s3_client(stack.env)
            measured: dict[str, NightlyRun] = {}
            for name, fan_out in (("in_process", False), ("fan_out", True)):
                prefix = name.replace("_", "-")
                upload(client, BUCKET, prefix, files, images)
                measured[name] = result = nightly(stack, prefix, fan_out)
                what = f"{len(result.shards)} shards of up to {shard_size}" if fan_out else "in one flow process"
                out(f"  {name.replace('_', '-')}: {result.seconds:.1f} s, {what}; objects by status {result.statuses}")
        values = {
            "objects": str(objects),
            "shards": str(len(measured["fan_out"].shards)),
            "workers": str(workers),
            "seconds_in_process": f"{measured['in_process'].seconds:.1f}",
            "seconds_fan_out": f"{measured['fan_out'].seconds:.1f}",
            "fan_out_over_in_process": f"{measured['fan_out'].seconds / measured['in_process'].seconds:.2f}",
        }
        out(f"  fan-out took {values['fan_out_over_in_process']} times as long as in-process")
        fanned = measured["fan_out"].shards
        if fanned:
            out("  where each shard's time went (seconds): " + ", ".join(PHASES))
            for shard in fanned:
                out(f"    {shard.name}: " + ", ".join(f"{shard.seconds[p]:.1f}" for p in PHASES))
            for phase in PHASES:
                values[f"shard_{phase}_s_median"] = f"{statistics.median(s.seconds[phase] for s in fanned):.1f}"
            values["shard_own_s_median"] = f"{statistics.median(s.own_s for s in fanned):.1f}"
            values["parent_wait_after_last_shard_s"] = f"{measured['fan_out'].parent_wait_s:.1f}"
            values["import_flows_s"] = f"{import_seconds():.1f}"
            out(
                f"  a shard's own cost (process start + preparation + end), median {values['shard_own_s_median']} s; "
                f"the parent ended {values['parent_wait_after_last_shard_s']} s after its last shard (it polls every "
                f"5 s); a fresh Python process importing flows.pipeline (Prefect and docflow) takes "
                f"{values['import_flows_s']} s here, most of a shard's process start"
            )
        return {"runs": measured}, values
    finally:
        if keep:
            out(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
