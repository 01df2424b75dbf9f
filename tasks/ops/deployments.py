"""docflow on a Prefect server: the work pool, the device's concurrency limit and the deployments of
infra/prefect.yaml (applied with Prefect's own `prefect deploy`), and backfills started as deployment runs."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from schemas.errors import ConfigError
from schemas.settings import Settings
from tasks.run.concurrency import ensure_limit, model_limit_name
from tasks.run.fanout import SHARD_FLOW

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "infra" / "prefect.yaml"
NIGHTLY, REVIEW_EXPORT, BACKFILL = "docflow-nightly", "docflow-review-export", "docflow-backfill"
ZOMBIE_AUTOMATION = "docflow: crash runs that stopped sending heartbeats"
TAG = "prefect.tag.docflow"  # infra/prefect.yaml tags every deployment (and so its runs) `docflow`


@dataclass(frozen=True)
class Deployed:
    name: str  # flow/deployment, as `prefect deployment run` takes it
    schedules: tuple[str, ...]  # "cron (time zone)"


@dataclass(frozen=True)
class DeployReport:
    work_pool: str
    concurrency_limit: str
    deployments: tuple[Deployed, ...]
    zombie_after_s: int  # a run silent this long is marked Crashed


def deploy(settings: Settings) -> DeployReport:
    """Create the process work pool, the device limit and the zombie-run automation when missing, then apply
    infra/prefect.yaml."""
    _ensure_work_pool(settings.deploy.work_pool)
    limit = model_limit_name(settings)
    ensure_limit(limit, settings.device.slots)
    env = {
        **os.environ,
        "DOCFLOW_HOME": str(REPO),
        "DOCFLOW_WORK_POOL": settings.deploy.work_pool,
        "DOCFLOW_NIGHTLY_CRON": settings.deploy.nightly_cron,
        "DOCFLOW_REVIEW_EXPORT_CRON": settings.deploy.review_export_cron,
        "DOCFLOW_TIMEZONE": settings.deploy.timezone,
        "DOCFLOW_HEARTBEAT_S": str(settings.deploy.heartbeat_s),
    }
    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect), "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise ConfigError(f"prefect deploy failed:\n{tail}")
    zombie_after_s = 3 * settings.deploy.heartbeat_s
    _ensure_zombie_automation(zombie_after_s)
    return DeployReport(settings.deploy.work_pool, limit, tuple(_deployed()), zombie_after_s)


def _ensure_work_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # created by another `docflow deploy` meanwhile
                client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return
        if pool.type != "process":
            raise ConfigError(f"work pool {name!r} is of type {pool.type!r}; docflow's deployments need a process pool")


def _ensure_zombie_automation(silent_s: int) -> None:
    """Prefect's recipe for zombie runs (docs: "detect zombie flows"): a docflow run (tagged `docflow` by its
    deployment) that went Pending, Running or sent a heartbeat and then nothing, not even a final state, for
    `silent_s` is set Crashed. Beyond the recipe: Pending and Running start the clock too, so a run whose worker
    died before its first heartbeat is caught; the tag keeps runs of other heartbeat settings (an in-process
    `docflow run`) out. Replaced when the interval changed."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    final = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    alive = {"prefect.flow-run.heartbeat", "prefect.flow-run.Running"}
    wanted = Automation(
        name=ZOMBIE_AUTOMATION,
        description="Set by `docflow deploy`: a run whose worker died stops sending heartbeats; mark it Crashed.",
        trigger=EventTrigger(
            after={*alive, "prefect.flow-run.Pending"},
            expect={*alive, *final},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "tag", "prefect.resource.id": TAG}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silent_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {silent_s} s: its worker or machine died; claimed objects expire for the "
                "next run",
            )
        ],
    )
    try:
        # Typed as "Automation or coroutine" (async_dispatch); called from sync code it is the Automation.
        existing: Automation | None = cast(Automation, Automation.read(name=ZOMBIE_AUTOMATION))
    except ValueError:  # not there yet
        existing = None
    if existing is not None:
        if existing.trigger.model_dump(exclude={"id"}) == wanted.trigger.model_dump(exclude={"id"}):
            return
        existing.delete()
    wanted.create()


def _deployed() -> list[Deployed]:
    from prefect.client.orchestration import get_client

    found = []
    with get_client(sync_client=True) as client:
        for flow_name in (NIGHTLY, REVIEW_EXPORT, BACKFILL, SHARD_FLOW):
            deployment = client.read_deployment_by_name(f"{flow_name}/{flow_name}")
            schedules = tuple(
                f"{getattr(s.schedule, 'cron', s.schedule)} ({getattr(s.schedule, 'timezone', None) or 'UTC'})"
                for s in deployment.schedules
            )
            found.append(Deployed(f"{flow_name}/{flow_name}", schedules))
    return found


def start_backfill(parameters: dict[str, Any]) -> tuple[str, str]:
    """A docflow-backfill run on the work pool (a worker picks it up); returns its id and its page in the UI."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    if not PREFECT_API_URL.value():
        raise ConfigError("--deployment needs a Prefect server: set PREFECT_API_URL (see `docflow deploy`)")
    values = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in parameters.items() if v is not None}
    # Typed as "FlowRun or coroutine" (it also works in async code); called from sync code it is the FlowRun.
    run = cast(FlowRun, run_deployment(f"{BACKFILL}/{BACKFILL}", parameters=values, timeout=0))
    ui = (PREFECT_UI_URL.value() or str(PREFECT_API_URL.value()).removesuffix("/api")).rstrip("/")
    return str(run.id), f"{ui}/runs/flow-run/{run.id}"
