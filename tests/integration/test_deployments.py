"""docflow operated as a user would, every part a process of its own: `docflow stack up` (PostgreSQL, SeaweedFS, a
Prefect server on that Postgres, two workers), `docflow deploy` (the work pool, the device limit, the deployments of
infra/prefect.yaml), a file put in the inbox bucket, the scheduled nightly run (a cron of every minute) executed
by a worker and seen in the Prefect UI by headless Chromium, a backfill started with `docflow backfill
--deployment`, and `docflow stack down` leaving no process behind. Checked through the CLI and Prefect's REST API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from storage.tables import ClassificationRow, Run, SourceObject
from tests.services import REPO, free_port
from tests.support.browser import Page

pytestmark = pytest.mark.stack  # mostly waiting (a cron minute, a dead worker's heartbeats): run beside the rest

BIN = Path(sys.executable).parent
POOL = "docflow-test"
BUCKET = "docflow-stack-test"
FINISHED = {"done", "review"}  # recorded results (an uncertain class waits for review)
FAN_OUT_FILES = [
    "documents/invoice2data_AzureInterior.pdf",
    "documents/invoice2data_AmazonWebServices.pdf",
    "documents/pdfjs_sizes-mixed-page-sizes.pdf",
    "images/invoice2data_AmazonWebServices.png",
    "images/photo_donut_coffee_122.jpg",
    "images/photo_pillow_hopper_exif-orientation-6.jpg",
]
INVOICE = "invoice2data_AzureInterior.pdf"
ARTIFACTS = REPO / "tests" / "artifacts"


def _docflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "docflow"), *args], env=env, capture_output=True, text=True, timeout=300)


def _api(api_url: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _wait_for_final_run(api_url: str, deployment_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = _api(
            api_url,
            "/flow_runs/filter",
            {
                "flow_runs": {
                    "deployment_id": {"any_": [deployment_id]},
                    "state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}},
                }
            },
        )
        if runs:
            return dict(runs[0])
        time.sleep(3)
    raise TimeoutError(f"no run of deployment {deployment_id} finished in {timeout_s:.0f} s")


def _screenshot_ui(api_url: str, run: dict[str, Any], artifact: dict[str, Any]) -> None:
    """What an operator sees: the scheduled run in the Prefect UI (headless Chromium), and its summary artifact."""
    ui = api_url.removesuffix("/api")
    with Page() as page:
        text = page.open(f"{ui}/runs/flow-run/{run['id']}", wait_for_text=run["name"])
        assert "Completed" in text
        page.screenshot(ARTIFACTS / "prefect-nightly-run.png")
        text = page.open(f"{ui}/artifacts/artifact/{artifact['id']}", wait_for_text="Listed 1 objects")
        assert "docflow nightly run: completed" in text
        page.screenshot(ARTIFACTS / "prefect-nightly-artifact.png")


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class RunningStack:
    env: dict[str, str]  # the test's environment with `docflow stack env` in it
    dir: Path

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def s3(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )


@contextmanager
def _stack(workers: int, **settings: str) -> Iterator[RunningStack]:
    """`docflow stack up` on free ports; on the way out `docflow stack down`, which must leave no process."""
    # The stack runs PostgreSQL as the `postgres` user when the tests run as root: its folder must be reachable.
    stack_dir = Path(tempfile.mkdtemp(prefix="docflow-stack-"))
    stack_dir.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_API_URL", "AWS_"))}
    env |= {
        "DOCFLOW_STACK_DIR": str(stack_dir),
        "DOCFLOW_STACK_PG_PORT": str(free_port()),
        "DOCFLOW_STACK_S3_PORT": str(free_port()),
        "DOCFLOW_STACK_PREFECT_PORT": str(free_port()),
        "DOCFLOW_STACK_BUCKET": BUCKET,
        "DOCFLOW_WORK_POOL": POOL,
        "DOCFLOW_EXTRACT": "false",  # the workers' settings: they inherit the environment of `stack up`
        **settings,
    }
    up = _docflow(env, "stack", "up", "--workers", str(workers))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert all(f"worker-{n}" in up.stdout for n in range(workers)) and "UI http://127.0.0.1:" in up.stdout
        exported = dict(
            line.removeprefix("export ").split("=", 1) for line in _docflow(env, "stack", "env").stdout.splitlines()
        )
        yield RunningStack(env | exported, stack_dir)
    finally:
        pids = [int(p.read_text()) for p in stack_dir.glob("*.pid")]
        down = _docflow(env, "stack", "down")
    # (A worker a test killed is already gone: `down` names the services it stopped.)
    assert down.returncode == 0 and "worker-" in down.stderr and "postgres" in down.stderr
    assert pids and not [pid for pid in pids if _alive(pid)]  # nothing `up` started is left running
    assert "stopped" in _docflow(env, "stack", "status").stdout


def test_stack_deploy_and_a_scheduled_nightly_run_by_a_worker(sample_inbox: Path) -> None:
    with _stack(2) as stack:
        env = stack.env | {
            "DOCFLOW_NIGHTLY_CRON": "* * * * *",  # every minute: the test waits for the next one
            "DOCFLOW_TIMEZONE": "Europe/Berlin",
        }
        api_url = stack.api_url
        deployed = _docflow(env, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        assert f"work pool {POOL} (process)" in deployed.stderr
        assert "docflow-nightly/docflow-nightly: * * * * * (Europe/Berlin)" in deployed.stderr
        assert "docflow-backfill/docflow-backfill: no schedule" in deployed.stderr
        deployments = {d["name"]: d for d in _api(api_url, "/deployments/filter", {})}
        assert set(deployments) == {"docflow-nightly", "docflow-review-export", "docflow-backfill", "docflow-shard"}
        assert {d["work_pool_name"] for d in deployments.values()} == {POOL}
        stack.s3().upload_file(str(sample_inbox / "documents" / INVOICE), BUCKET, f"docs/{INVOICE}")

        nightly = _wait_for_final_run(api_url, deployments["docflow-nightly"]["id"])
        assert nightly["state_type"] == "COMPLETED", nightly["state"]
        artifacts = _api(api_url, "/artifacts/filter", {"artifacts": {"key": {"any_": ["docflow-nightly-summary"]}}})
        summary = next(a for a in artifacts if a["flow_run_id"] == nightly["id"])
        assert "Listed **1** objects" in summary["data"]
        # Runs start every minute and two workers take them: the object may be another run's claim; it ends done.
        deadline = time.monotonic() + 240
        while ": done" not in (shown := _docflow(env, "show", f"docs/{INVOICE}").stdout):
            assert time.monotonic() < deadline, shown
            time.sleep(3)
        _screenshot_ui(api_url, nightly, summary)

        started = _docflow(env, "backfill", "--since", "2000-01-01", "--force", "--deployment")
        assert started.returncode == 0, started.stderr
        assert "/runs/flow-run/" in started.stderr and f"on work pool {POOL}" in started.stderr
        backfill = _wait_for_final_run(api_url, deployments["docflow-backfill"]["id"])
        assert backfill["state_type"] == "COMPLETED" and backfill["id"] in started.stderr


def test_backfill_deployment_without_a_server_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "DOCFLOW_"))}
    env["DOCFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    started = _docflow(env, "backfill", "--since", "2000-01-01", "--deployment")
    assert started.returncode == 2 and "PREFECT_API_URL" in started.stderr
    joined = _docflow({**env, "DOCFLOW_SOURCE": str(tmp_path / "no-such-inbox")}, "worker")
    assert joined.returncode == 2 and "PREFECT_API_URL is not set" in joined.stderr
    assert "no-such-inbox" in joined.stderr
    refused = _docflow({**env, "DOCFLOW_NIGHTLY_CRON": "every night"}, "deploy")
    assert refused.returncode == 2 and "DOCFLOW_NIGHTLY_CRON" in refused.stderr


def test_fan_out_without_the_shard_deployment_fails_the_run_with_a_clear_line(
    sample_inbox: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "DOCFLOW_"))}
    db = f"sqlite:///{tmp_path / 'x.db'}"
    env |= {
        "DOCFLOW_DATABASE_URL": db,
        "DOCFLOW_SOURCE": str(sample_inbox / "images"),
        "DOCFLOW_FAN_OUT": "true",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    ran = _docflow(env, "run")
    assert ran.returncode == 2 and "docflow deploy" in ran.stderr, ran.stderr
    with Session(create_engine(db)) as s:
        (run,) = s.scalars(select(Run)).all()
        assert run.status == "failed" and "fan-out failed" in (run.error or "")
        assert set(s.scalars(select(SourceObject.status))) <= {"pending", "failed"}  # listed, none claimed


def _start_run(api_url: str, deployment_id: str) -> str:
    return str(_api(api_url, f"/deployments/{deployment_id}/create_flow_run", {})["id"])


def _wait_for(api_url: str, run_id: str, timeout_s: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=30).json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        time.sleep(2)
    raise TimeoutError(f"flow run {run_id} not finished in {timeout_s:.0f} s")


def _upload(stack: RunningStack, sample_inbox: Path, prefix: str) -> list[str]:
    """Each of six sample documents and images four times, under `prefix`: twenty-four objects."""
    s3, keys = stack.s3(), []
    for copy in range(4):
        for name in FAN_OUT_FILES:
            key = f"{prefix}/{copy}-{Path(name).name}"
            s3.upload_file(str(sample_inbox / name), BUCKET, key)
            keys.append(key)
    return keys


def _kill_worker(stack: RunningStack, worker: str) -> int:
    """The machine under `worker` dies: the worker (`stack-worker-1` runs from worker-1.pid) and every flow run it
    started (they carry its name in their environment, PREFECT__WORKER_NAME) are killed at once, no cleanup."""
    pids = [int((stack.dir / f"{worker.removeprefix('stack-')}.pid").read_text())]
    for proc in Path("/proc").iterdir():
        with suppress(OSError):
            if proc.name.isdigit() and f"PREFECT__WORKER_NAME={worker}".encode() in (
                (proc / "environ").read_bytes().split(b"\0")
            ):
                pids.append(int(proc.name))
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _running_shard_beside(engine: Engine, parent_id: str, timeout_s: float = 300) -> tuple[str, str]:
    """A shard of the run holding claims on objects it has not finished, on a worker other than the parent's: (its
    id, its worker)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with Session(engine) as s:
                family = s.scalars(select(Run).where((Run.id == parent_id) | (Run.parent_id == parent_id))).all()
                processing = select(SourceObject.run_id, func.count()).where(SourceObject.status == "processing")
                claims = {run_id: n for run_id, n in s.execute(processing.group_by(SourceObject.run_id)).tuples()}
        except ProgrammingError:  # the run has not created the schema yet
            time.sleep(0.5)
            continue
        workers = {r.id: (r.worker or "").split("@")[0] for r in family}
        boss = workers.get(parent_id)
        for run in family:
            if boss and run.parent_id and claims.get(run.id) and workers[run.id] != boss:
                return run.id, workers[run.id]
        time.sleep(0.3)
    raise TimeoutError("no shard started on the other worker")


def test_fan_out_two_workers_take_shards_each_object_once_and_a_killed_worker_loses_nothing(
    sample_inbox: Path,
) -> None:
    settings = {
        "DOCFLOW_FAN_OUT": "true",
        "DOCFLOW_SHARD_SIZE": "4",
        "DOCFLOW_HEARTBEAT_S": "30",  # Prefect's shortest: a dead shard is marked Crashed 90 s after its last beat
        "DOCFLOW_CLAIM_TTL_S": "20",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    with _stack(2, **settings) as stack:
        deployed = _docflow(stack.env, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        assert "runs silent for 90 s are marked Crashed" in deployed.stderr
        (automation,) = _api(stack.api_url, "/automations/filter", {})
        assert automation["trigger"]["posture"] == "Proactive" and automation["actions"][0]["state"] == "CRASHED"
        joined = _docflow(stack.env, "worker", "--check", "--gpu", "1", "--name", "gpu-box")
        assert joined.returncode == 0 and f"worker gpu-box on pool {POOL}, 2 runs at once, GPU 1" in joined.stderr
        nightly_id = next(
            d["id"] for d in _api(stack.api_url, "/deployments/filter", {}) if d["name"] == "docflow-nightly"
        )
        engine = create_engine(stack.env["DOCFLOW_DATABASE_URL"])

        # Twenty-four objects, six shards of four. Each worker carries two runs (the waiting parent takes one slot
        # on one of them); the worker not running the parent dies in the middle of a shard, with all it started.
        keys = _upload(stack, sample_inbox, "inbox")
        parent_id = _start_run(stack.api_url, nightly_id)
        victim_id, victim_worker = _running_shard_beside(engine, parent_id)
        assert _kill_worker(stack, victim_worker) >= 2  # the worker and its shard's processes
        parent = _wait_for(stack.api_url, parent_id, timeout_s=400)
        assert parent["state_type"] == "FAILED"
        assert "did not complete" in parent["state"]["message"] and "Crashed" in parent["state"]["message"]
        assert re.fullmatch(r"nightly \d{4}-\d\d-\d\d \d\d:\d\d UTC", parent["name"]), parent["name"]
        children = _api(
            stack.api_url, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}}
        )
        assert sorted(c["name"] for c in children) == [f"process-shard-{n} (4 objects)" for n in range(1, 7)]
        with Session(engine) as s:
            shards = s.scalars(select(Run).where(Run.parent_id == parent_id)).all()
            left = s.scalars(
                select(SourceObject).where(SourceObject.run_id.in_([r.id for r in shards if r.status == "crashed"]))
            ).all()
        # Both workers took shards; every shard the dead worker carried is closed as crashed, the others completed;
        # what the dead ones claimed is still claimed (not lost, not half-recorded).
        assert {(r.worker or "").split("@")[0] for r in shards} == {"stack-worker-0", "stack-worker-1"}
        assert {r.status for r in shards} == {"completed", "crashed"} and victim_id in {r.id for r in shards}
        assert left and {o.status for o in left} == {"processing"}
        artifacts = _api(stack.api_url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [parent_id]}}})
        summary = next(a for a in artifacts if a["key"] == "docflow-nightly-summary")
        assert "## Shards (6)" in summary["data"] and "| Crashed: no heartbeat for 90 s" in summary["data"]
        with Page() as page:  # what an operator sees: the run's summary with its shards, their workers, the crash
            page.open(
                f"{stack.api_url.removesuffix('/api')}/artifacts/artifact/{summary['id']}", wait_for_text="Shards"
            )
            page.screenshot(ARTIFACTS / "prefect-fan-out-artifact.png")

        # The next run (one worker left) takes over the expired claims: every object recorded, each exactly once.
        parent = _wait_for(stack.api_url, _start_run(stack.api_url, nightly_id))
        assert parent["state_type"] == "COMPLETED", parent["state"]
        with Session(engine) as s:
            objects = s.scalars(select(SourceObject).where(SourceObject.key.in_(keys))).all()
            results = s.scalars(select(ClassificationRow.object_id)).all()
        assert len(objects) == 24 and {o.status for o in objects} <= FINISHED
        assert sorted(results) == sorted(o.id for o in objects)  # one result per object
        retaken = {o.key for o in objects if o.attempts == 2}
        assert retaken == {o.key for o in left}
        assert all(o.attempts == 1 for o in objects if o.key not in retaken)
