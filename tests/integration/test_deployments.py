"""docflow on a Prefect server of its own (on Postgres), as it is operated: `docflow deploy` declares the work pool,
the device limit and the deployments of infra/prefect.yaml; a real worker polling the pool runs the scheduled
nightly run (a cron of every minute) and a backfill started with `docflow backfill --deployment`. Everything runs
in processes of its own, through the CLI and Prefect's REST API, as a user would."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.services import REPO, PrefectServer
from tests.support.browser import Page

BIN = Path(sys.executable).parent
POOL = "docflow-test"
INVOICE = "invoice2data_AzureInterior.pdf"
ARTIFACTS = REPO / "tests" / "artifacts"


def _docflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "docflow"), *args], env=env, capture_output=True, text=True, timeout=300)


def _api(server: PrefectServer, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{server.api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _wait_for_completed_run(server: PrefectServer, deployment_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = _api(
            server,
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


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """A worker needs two SIGTERMs to its process group (the first starts a graceful shutdown)."""
    for _ in range(2):
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                continue
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


def _screenshot_ui(server: PrefectServer, run: dict[str, Any], artifact: dict[str, Any]) -> None:
    """What an operator sees: the scheduled run in the Prefect UI (headless Chromium), and its summary artifact."""
    ui = server.api_url.removesuffix("/api")
    with Page() as page:
        text = page.open(f"{ui}/runs/flow-run/{run['id']}", wait_for_text=run["name"])
        assert "Completed" in text
        page.screenshot(ARTIFACTS / "prefect-nightly-run.png")
        text = page.open(f"{ui}/artifacts/artifact/{artifact['id']}", wait_for_text="Listed 1 objects")
        assert "docflow nightly run: completed" in text
        page.screenshot(ARTIFACTS / "prefect-nightly-artifact.png")


def test_deploy_then_a_worker_runs_the_scheduled_nightly_and_a_backfill(
    prefect_server: PrefectServer, sample_inbox: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / INVOICE).write_bytes((sample_inbox / "documents" / INVOICE).read_bytes())
    env = {
        **{k: v for k, v in prefect_server.env().items() if not k.startswith("DOCFLOW_")},
        "DOCFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'docflow.db'}",
        "DOCFLOW_SOURCE": str(inbox),
        "DOCFLOW_DERIVED_STORE": str(tmp_path / "derived"),
        "DOCFLOW_EXTRACT": "false",
        "DOCFLOW_WORK_POOL": POOL,
        "DOCFLOW_NIGHTLY_CRON": "* * * * *",  # every minute: the test waits for the next one
        "DOCFLOW_TIMEZONE": "Europe/Berlin",
    }
    deployed = _docflow(env, "deploy")
    assert deployed.returncode == 0, deployed.stderr
    assert f"work pool {POOL} (process)" in deployed.stderr
    assert "docflow-nightly/docflow-nightly: * * * * * (Europe/Berlin)" in deployed.stderr
    assert "docflow-backfill/docflow-backfill: no schedule" in deployed.stderr
    deployments = {d["name"]: d for d in _api(prefect_server, "/deployments/filter", {})}
    assert set(deployments) == {"docflow-nightly", "docflow-review-export", "docflow-backfill"}
    assert {d["work_pool_name"] for d in deployments.values()} == {POOL}
    assert [s["schedule"]["timezone"] for s in deployments["docflow-nightly"]["schedules"]] == ["Europe/Berlin"]

    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--limit", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        nightly = _wait_for_completed_run(prefect_server, deployments["docflow-nightly"]["id"])
        assert nightly["state_type"] == "COMPLETED", nightly["state"]
        artifacts = _api(
            prefect_server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["docflow-nightly-summary"]}}}
        )
        summary = next(a for a in artifacts if a["flow_run_id"] == nightly["id"])
        assert "Listed **1** objects" in summary["data"]
        with sqlite3.connect(tmp_path / "docflow.db") as db:
            assert db.execute("select key, status from source_objects").fetchall() == [(INVOICE, "done")]
        _screenshot_ui(prefect_server, nightly, summary)

        started = _docflow(env, "backfill", "--since", "2000-01-01", "--force", "--deployment")
        assert started.returncode == 0, started.stderr
        assert "/runs/flow-run/" in started.stderr and f"on work pool {POOL}" in started.stderr
        backfill = _wait_for_completed_run(prefect_server, deployments["docflow-backfill"]["id"])
        assert backfill["state_type"] == "COMPLETED" and backfill["id"] in started.stderr.replace("\n", "")
    finally:
        _stop(worker)


def test_backfill_deployment_without_a_server_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "DOCFLOW_"))}
    env["DOCFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    started = _docflow(env, "backfill", "--since", "2000-01-01", "--deployment")
    assert started.returncode == 2 and "PREFECT_API_URL" in started.stderr
    refused = _docflow({**env, "DOCFLOW_NIGHTLY_CRON": "every night"}, "deploy")
    assert refused.returncode == 2 and "DOCFLOW_NIGHTLY_CRON" in refused.stderr
