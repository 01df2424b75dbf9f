"""bench/scale.py part (a): small objects in SeaweedFS + PostgreSQL through `docflow run`, at two inbox sizes.

One SeaweedFS and one PostgreSQL are started the way the tests start them (tests/services.py). The largest inbox
of small PNG images is generated once (bench/small_objects.py's generator, seeded: the smaller inboxes are its
first images) and uploaded under one prefix per size. For each size, on a fresh database of its own:

- discovery alone, in this process (tasks/run/discovery.py, the function a run calls): its time, then again on
  another fresh database under tracemalloc for the peak of what it allocated;
- `docflow run` (the real CLI, a subprocess, models off: the keyword classifier, extraction off) over the
  size's prefix: objects/s end to end and the peak resident memory of the docflow process (its VmHWM; the
  temporary Prefect server is a process of its own), with its own planning line (checks and discovery).

Run through `bench/scale.py --part a [--objects 2000 --objects 20000]`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.small_objects import RunResult, docflow_run, small_images, timing_lines  # noqa: E402

BUCKET = "docflow-scale"
MODELS_OFF = {"DOCFLOW_CLASSIFIER": "keywords", "DOCFLOW_EXTRACT": "false", "DOCFLOW_TRANSCRIBE": "false"}


def upload(client: Any, bucket: str, prefix: str, files: Sequence[Path], root: Path, threads: int = 8) -> None:
    """`files` (under `root`) to s3://bucket/prefix/<path under root>, a few at a time."""

    def put(path: Path) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(root).as_posix()}", Body=path.read_bytes())

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(put, files):
            pass


def image_files(folder: Path) -> list[Path]:
    """The generated images in generation order (their names carry the number)."""
    return sorted(folder.rglob("*.png"))


@dataclass(frozen=True)
class SizeResult:
    objects: int
    discovery_s: float  # discovery alone, in this process, on a fresh database
    discovery_peak_mb: float  # what discovery allocated at its peak (tracemalloc), on another fresh database
    run: RunResult  # `docflow run` over the same objects, on a third fresh database
    planning_s: float | None  # the run's own planning line: checks and discovery before the first window
    statuses: dict[str, int]  # the run's database afterwards: objects by status
    run_wall_s: float | None  # the run's own wall time, printed by it: without the start-up before its clock

    @property
    def run_per_s(self) -> float | None:
        """Objects a second of the run's own wall time: the rate without the fixed start-up (Prefect's server)."""
        return self.objects / self.run_wall_s if self.run_wall_s else None


def _discover(url: str, source: str) -> Any:
    from schemas.records import DiscoveryRequest
    from schemas.settings import load_settings
    from tasks.run.discovery import discover

    settings = load_settings(database_url=url, source=[source])
    return discover(settings, DiscoveryRequest(sources=(source,)), run_id=None)


def measure_size(pg: Any, s3_env: dict[str, str], source: str, count: int, work: Path) -> SizeResult:
    """Discovery alone (timed; then under tracemalloc) and `docflow run` over `source`, each on a fresh database."""
    from storage.db import migrate, unit_of_work
    from storage.repositories import ObjectRepository

    tag = f"n{count}_{time.time_ns() % 10**9}"
    timed_url = pg.create_database(f"discover_{tag}")
    migrate(timed_url)
    start = time.perf_counter()
    found = _discover(timed_url, source)
    discovery_s = time.perf_counter() - start
    if len(found.object_ids) != count:
        raise RuntimeError(f"discovery of {source} found {len(found.object_ids)} objects to process, not {count}")
    traced_url = pg.create_database(f"traced_{tag}")
    migrate(traced_url)
    tracemalloc.start()
    try:
        _discover(traced_url, source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    run_url = pg.create_database(f"run_{tag}")
    env = {**s3_env, **MODELS_OFF, "DOCFLOW_DATABASE_URL": run_url}
    result = docflow_run(REPO, work / f"run-{count}", source, count, env)
    planning = re.search(r"planning ([\d.]+) s", result.output)
    wall = re.search(r"of ([\d.]+) s run wall time", result.output)
    with unit_of_work(run_url) as session:
        statuses = ObjectRepository(session).count_by_status()
    return SizeResult(
        count,
        discovery_s,
        peak / 2**20,
        result,
        float(planning.group(1)) if planning else None,
        statuses,
        float(wall.group(1)) if wall else None,
    )


def run(sizes: Sequence[int], keep: bool = False, out: Any = print) -> tuple[list[SizeResult], dict[str, str]]:
    """Start the services, then `measure`; the results and the key figures."""
    from tests.services import PostgresCluster, SeaweedS3

    tmp = Path(tempfile.mkdtemp(prefix="docflow-scale-a-"))
    pg = PostgresCluster()
    s3 = SeaweedS3()
    try:
        pg.start()
        s3.start()
        os.environ.update(s3.env())  # discovery in this process lists the bucket through boto3's standard chain
        results = measure(pg, s3, sizes, tmp, out=out)
        return results, figures(results)
    finally:
        pg.destroy()
        s3.destroy()
        if keep:
            out(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(
    pg: Any, s3: Any, sizes: Sequence[int], work: Path, bucket: str = BUCKET, out: Any = print
) -> list[SizeResult]:
    """Generate and upload the inboxes to `bucket` of the started SeaweedFS `s3` (whose AWS_* variables this process
    has), measure each size on fresh databases of the started PostgreSQL `pg`, smallest first."""
    sizes = sorted(set(sizes))
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    images = work / "images"
    start = time.perf_counter()
    size_bytes = small_images(images, max(sizes))
    files = image_files(images)
    out(
        f"{max(sizes)} small PNG images ({size_bytes / max(sizes) / 1024:.1f} KiB on average) made in "
        f"{time.perf_counter() - start:.0f} s; SeaweedFS + PostgreSQL, keyword classifier, extraction off"
    )
    results: list[SizeResult] = []
    for count in sizes:
        prefix = f"inbox-{count}"
        start = time.perf_counter()
        upload(client, bucket, prefix, files[:count], images)
        out(f"  {count} objects uploaded to s3://{bucket}/{prefix}/ in {time.perf_counter() - start:.0f} s")
        result = measure_size(pg, s3.env(), f"s3://{bucket}/{prefix}/", count, work)
        results.append(result)
        planning = f"{result.planning_s:.1f} s" if result.planning_s is not None else "not printed"
        out(
            f"  {count}: discovery {result.discovery_s:.2f} s ({count / result.discovery_s:.0f} objects/s), "
            f"its peak allocations {result.discovery_peak_mb:.1f} MiB; docflow run {result.run.seconds:.1f} s = "
            f"{result.run.per_s:.2f} objects/s end to end ({result.run_per_s or 0:.2f} in the run's own wall time), "
            f"peak RSS {result.run.peak_rss_mb:.0f} MiB, "
            f"planning {planning}; objects by status {result.statuses}"
        )
        for line in timing_lines(result.run.output):
            out(f"      {line}")
    return results


def figures(results: Sequence[SizeResult]) -> dict[str, str]:
    """Per size: objects/s, peak RSS, discovery; then the largest against the smallest (the "done when" ratios)."""
    values: dict[str, str] = {}
    for r in results:
        values[f"objects_per_s_{r.objects}"] = f"{r.run.per_s:.2f}"
        values[f"peak_rss_mb_{r.objects}"] = f"{r.run.peak_rss_mb:.0f}"
        if r.run_per_s is not None:
            values[f"run_wall_objects_per_s_{r.objects}"] = f"{r.run_per_s:.2f}"
        values[f"discovery_s_{r.objects}"] = f"{r.discovery_s:.2f}"
        values[f"discovery_peak_mb_{r.objects}"] = f"{r.discovery_peak_mb:.1f}"
    if len(results) > 1:
        small, large = results[0], results[-1]
        values["rate_ratio_largest_to_smallest"] = f"{large.run.per_s / small.run.per_s:.2f}"
        values["rss_ratio_largest_to_smallest"] = f"{large.run.peak_rss_mb / small.run.peak_rss_mb:.2f}"
        if small.run_per_s and large.run_per_s:
            values["run_wall_rate_ratio"] = f"{large.run_per_s / small.run_per_s:.2f}"
        values["discovery_rate_ratio"] = (
            f"{(large.objects / large.discovery_s) / (small.objects / small.discovery_s):.2f}"
        )
    return values
