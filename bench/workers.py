"""Scale-out: the same nightly run with fan-out on one worker and on two, on the local stack, in one run.

The scenario is (a) of bench/pipeline.py: N small generated images, extraction and transcription off, the
keyword classifier. For each worker count a fresh `docflow stack` (PostgreSQL, SeaweedFS, a Prefect server, the
workers, each carrying two flow runs at once) gets `docflow deploy`, the images in its bucket, and one
docflow-nightly deployment run with DOCFLOW_FAN_OUT on; on the one-worker stack the same run without fan-out
(the whole run in one flow process) is timed first, on images of its own. Times are the parent flow run's own
start to end, as the Prefect server recorded them.

This machine has 2 cores: two workers share them, so the ratio says what fan-out costs and gains here, not what
two machines would give.

    .venv/bin/python bench/workers.py [--images 300] [--shard-size 75]

Ends with one line of name=value figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pipeline import small_images  # noqa: E402

BIN = Path(sys.executable).parent
BUCKET = "docflow-bench-workers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "docflow"), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


class Stack:
    """A `docflow stack` of its own on free ports, the deployments applied."""

    def __init__(self, workers: int, shard_size: int, work: Path) -> None:
        work.mkdir(parents=True)
        work.chmod(0o755)  # as root the stack runs PostgreSQL as `postgres`: its folder must be reachable
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_API_URL", "AWS_"))}
        self.env |= {
            "DOCFLOW_STACK_DIR": str(work / "stack"),
            "DOCFLOW_STACK_PG_PORT": str(_free_port()),
            "DOCFLOW_STACK_S3_PORT": str(_free_port()),
            "DOCFLOW_STACK_PREFECT_PORT": str(_free_port()),
            "DOCFLOW_STACK_BUCKET": BUCKET,
            "DOCFLOW_FAN_OUT": "true",
            "DOCFLOW_SHARD_SIZE": str(shard_size),
            "DOCFLOW_EXTRACT": "false",
            "DOCFLOW_TRANSCRIBE": "false",
            "DOCFLOW_CLASSIFIER": "keywords",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        self.workers = workers

    def __enter__(self) -> Stack:
        _docflow(self.env, "stack", "up", "--workers", str(self.workers))
        exported = _docflow(self.env, "stack", "env").splitlines()
        self.env |= dict(line.removeprefix("export ").split("=", 1) for line in exported)
        _docflow(self.env, "deploy")
        return self

    def __exit__(self, *exc: object) -> None:
        _docflow(self.env, "stack", "down")

    def upload(self, folder: Path, prefix: str) -> None:
        import boto3
        from botocore.config import Config

        s3 = boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        for path in sorted(folder.iterdir()):
            s3.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")

    def nightly(self, fan_out: bool) -> dict[str, Any]:
        """One docflow-nightly deployment run; its own duration (server clock) and the shards' workers."""
        api = self.env["PREFECT_API_URL"]
        (deployment,) = httpx.post(
            f"{api}/deployments/filter", json={"deployments": {"name": {"any_": ["docflow-nightly"]}}}, timeout=30
        ).json()
        run = httpx.post(
            f"{api}/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"fan_out": fan_out}},
            timeout=30,
        ).json()
        while run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            time.sleep(1)
            run = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()
        if run["state_type"] != "COMPLETED":
            raise RuntimeError(f"nightly run {run['name']} ended {run['state_name']}: {run['state']['message']}")
        children = httpx.post(
            f"{api}/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}}, timeout=30
        ).json()
        seconds = (datetime.fromisoformat(run["end_time"]) - datetime.fromisoformat(run["start_time"])).total_seconds()
        return {"seconds": seconds, "shards": len(children)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="small generated images per timed run")
    parser.add_argument("--shard-size", type=int, default=75, help="DOCFLOW_SHARD_SIZE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="docflow-bench-workers-"))
    tmp.chmod(0o755)
    try:
        images = tmp / "images"
        small_images(images, args.images)
        print(f"{args.images} small images, keyword classifier, shards of {args.shard_size}; 2 runs per worker")
        timed: dict[str, float] = {}
        with Stack(1, args.shard_size, tmp / "one") as stack:
            stack.upload(images, "in-process")
            result = stack.nightly(fan_out=False)
            timed["in_process"] = result["seconds"]
            print(f"  1 worker, no fan-out: {result['seconds']:.1f} s")
            stack.upload(images, "fan-out")
            result = stack.nightly(fan_out=True)
            timed["one"] = result["seconds"]
            print(f"  1 worker, fan-out: {result['seconds']:.1f} s over {result['shards']} shards")
        with Stack(2, args.shard_size, tmp / "two") as stack:
            stack.upload(images, "fan-out")
            result = stack.nightly(fan_out=True)
            timed["two"] = result["seconds"]
            print(f"  2 workers, fan-out: {result['seconds']:.1f} s over {result['shards']} shards")
        print(
            f"images={args.images} seconds_in_process={timed['in_process']:.1f} seconds_1_worker={timed['one']:.1f} "
            f"seconds_2_workers={timed['two']:.1f} speedup_2_over_1={timed['one'] / timed['two']:.2f} "
            f"fan_out_cost_1_worker={timed['one'] / timed['in_process']:.2f} cores={os.cpu_count()}"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
