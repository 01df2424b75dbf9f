"""docflow operated as a user would, every part a process of its own: `docflow stack up` (PostgreSQL, SeaweedFS, a
Prefect server on that Postgres, two workers), `docflow deploy` (the work pool, the device limit, the deployments of
infra/prefect.yaml), a file put in the inbox bucket, the scheduled nightly run (a cron of every minute) executed
by a worker and seen in the Prefect UI by headless Chromium, a backfill started with `docflow backfill
--deployment`, and `docflow stack down` leaving no process behind. Checked through the CLI and Prefect's REST API."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.services import REPO, free_port
from tests.support.browser import Page

BIN = Path(sys.executable).parent
POOL = "docflow-test"
INVOICE = "invoice2data_AzureInterior.pdf"
ARTIFACTS = REPO / "tests" / "artifacts"


def _docflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "docflow"), *args], env=env, capture_output=True, text=True, timeout=300)


def _api(api_url: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _wait_for_completed_run(api_url: str, deployment_id: str, timeout_s: float = 300) -> dict[str, Any]:
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


def test_stack_deploy_and_a_scheduled_nightly_run_by_a_worker(sample_inbox: Path, tmp_path: Path) -> None:
    # The stack runs PostgreSQL as the `postgres` user when the tests run as root: its folder must be reachable.
    stack_dir = Path(tempfile.mkdtemp(prefix="docflow-stack-"))
    stack_dir.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_API_URL", "AWS_"))}
    env |= {
        "DOCFLOW_STACK_DIR": str(stack_dir),
        "DOCFLOW_STACK_PG_PORT": str(free_port()),
        "DOCFLOW_STACK_S3_PORT": str(free_port()),
        "DOCFLOW_STACK_PREFECT_PORT": str(free_port()),
        "DOCFLOW_STACK_BUCKET": "docflow-stack-test",
        "DOCFLOW_WORK_POOL": POOL,
        "DOCFLOW_EXTRACT": "false",  # the workers' settings: they inherit the environment of `stack up`
    }
    up = _docflow(env, "stack", "up", "--workers", "2")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "worker-0" in up.stdout and "worker-1" in up.stdout and "UI http://127.0.0.1:" in up.stdout
        exported = dict(
            line.removeprefix("export ").split("=", 1) for line in _docflow(env, "stack", "env").stdout.splitlines()
        )
        env |= exported | {
            "DOCFLOW_NIGHTLY_CRON": "* * * * *",  # every minute: the test waits for the next one
            "DOCFLOW_TIMEZONE": "Europe/Berlin",
        }
        api_url = exported["PREFECT_API_URL"]
        deployed = _docflow(env, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        assert f"work pool {POOL} (process)" in deployed.stderr
        assert "docflow-nightly/docflow-nightly: * * * * * (Europe/Berlin)" in deployed.stderr
        assert "docflow-backfill/docflow-backfill: no schedule" in deployed.stderr
        deployments = {d["name"]: d for d in _api(api_url, "/deployments/filter", {})}
        assert set(deployments) == {"docflow-nightly", "docflow-review-export", "docflow-backfill"}
        assert {d["work_pool_name"] for d in deployments.values()} == {POOL}
        import boto3
        from botocore.config import Config

        s3 = boto3.client(
            "s3",
            endpoint_url=exported["AWS_ENDPOINT_URL"],
            aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.upload_file(str(sample_inbox / "documents" / INVOICE), "docflow-stack-test", f"docs/{INVOICE}")

        nightly = _wait_for_completed_run(api_url, deployments["docflow-nightly"]["id"])
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
        backfill = _wait_for_completed_run(api_url, deployments["docflow-backfill"]["id"])
        assert backfill["state_type"] == "COMPLETED" and backfill["id"] in started.stderr
    finally:
        pids = [int(p.read_text()) for p in stack_dir.glob("*.pid")]
        down = _docflow(env, "stack", "down")
    assert down.returncode == 0 and "worker-0" in down.stderr and "postgres" in down.stderr
    assert pids and not [pid for pid in pids if _alive(pid)]  # nothing `up` started is left running
    assert "stopped" in _docflow(env, "stack", "status").stdout


def test_backfill_deployment_without_a_server_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "DOCFLOW_"))}
    env["DOCFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    started = _docflow(env, "backfill", "--since", "2000-01-01", "--deployment")
    assert started.returncode == 2 and "PREFECT_API_URL" in started.stderr
    refused = _docflow({**env, "DOCFLOW_NIGHTLY_CRON": "every night"}, "deploy")
    assert refused.returncode == 2 and "DOCFLOW_NIGHTLY_CRON" in refused.stderr
