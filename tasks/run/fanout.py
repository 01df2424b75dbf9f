"""Fan-out over a work pool: a run's planned objects split into shards, each submitted as a flow run of the
docflow-shard deployment (Prefect's run_deployment), so every worker polling the pool, on any machine, takes
shards. The parent waits for them; Prefect's zombie automation (created by `docflow deploy`) marks a shard whose
worker died as Crashed, and the database claims its objects held expire for the next run."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast
from uuid import UUID

from schemas.errors import ConfigError
from schemas.records import ShardSummary
from schemas.settings import Settings
from storage.db import unit_of_work
from storage.repositories import RunRepository

SHARD_FLOW = "docflow-shard"
SHARD_DEPLOYMENT = f"{SHARD_FLOW}/{SHARD_FLOW}"


@dataclass(frozen=True)
class SubmittedShard:
    run_id: str
    name: str
    objects: int


def plan_shards(object_ids: Sequence[int], shard_size: int) -> list[list[int]]:
    """Consecutive slices of at most `shard_size` objects, in planning order (listing order: oldest first)."""
    return [list(object_ids[start : start + shard_size]) for start in range(0, len(object_ids), shard_size)]


def shard_name(index: int, objects: int) -> str:
    """The name a person reads in the UI: `process-shard-3 (212 objects)`."""
    return f"process-shard-{index} ({objects} object{'s' if objects != 1 else ''})"


def worker_identity() -> str:
    """Where this shard runs: the Prefect worker that started it (the worker sets PREFECT__WORKER_NAME in the flow
    run's environment) and the machine."""
    host = socket.gethostname()
    worker = os.environ.get("PREFECT__WORKER_NAME")
    return f"{worker}@{host}" if worker else f"{host}:{os.getpid()}"


def submit_shards(
    parent_run_id: str, shards: Sequence[Sequence[int]], *, force: bool, retry_failed: bool
) -> list[SubmittedShard]:
    """One docflow-shard flow run per shard, scheduled now on the pool, shown in the UI as the parent's subflows."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigError(
            "DOCFLOW_FAN_OUT needs a Prefect server with docflow's deployments (set PREFECT_API_URL and run `docflow "
            "deploy`); without fan-out the run does everything in its own process"
        )
    submitted = []
    for index, ids in enumerate(shards, 1):
        name = shard_name(index, len(ids))
        parameters = {
            "parent_run_id": parent_run_id,
            "shard": index,
            "object_ids": list(ids),
            "force": force,
            "retry_failed": retry_failed,
        }
        try:
            # Typed as "FlowRun or coroutine" (it also works in async code); called from sync code it is the FlowRun.
            run = cast(
                FlowRun,
                run_deployment(SHARD_DEPLOYMENT, parameters=parameters, flow_run_name=name, timeout=0, as_subflow=True),
            )
        except ObjectNotFound:
            raise ConfigError(
                f"deployment {SHARD_DEPLOYMENT} not found on {PREFECT_API_URL.value()}: run `docflow deploy`"
            ) from None
        submitted.append(SubmittedShard(str(run.id), name, len(ids)))
    return submitted


def wait_for_shards(
    settings: Settings,
    shards: Sequence[SubmittedShard],
    on_progress: Callable[[int], None],
    poll_s: float = 5.0,
) -> list[ShardSummary]:
    """Until every shard's flow run is final: report the objects the shards have recorded so far, then each
    shard's final state and message."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    finished: dict[str, ShardSummary] = {}
    by_id = {s.run_id: s for s in shards}
    with get_client(sync_client=True) as client:
        while len(finished) < len(shards):
            waiting = [UUID(i) for i in by_id if i not in finished]
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=waiting))):
                if run.state is not None and run.state.is_final():
                    shard = by_id[str(run.id)]
                    finished[shard.run_id] = ShardSummary(
                        name=shard.name,
                        run_id=shard.run_id,
                        objects=shard.objects,
                        state=run.state.name,
                        message=run.state.message or None,
                    )
            on_progress(_recorded(settings, list(by_id)))
            if len(finished) < len(shards):
                time.sleep(poll_s)
    return [finished[s.run_id] for s in shards]


def _recorded(settings: Settings, run_ids: Sequence[str]) -> int:
    with unit_of_work(settings.database_url) as session:
        runs = RunRepository(session)
        return sum(run.processed for run_id in run_ids if (run := runs.get(run_id)) is not None)


def shard_errors(shards: Sequence[ShardSummary]) -> list[str]:
    """What went wrong, one line per shard that did not complete, for the parent's state and summary."""
    return [f"{s.name}: {s.state}" + (f" ({s.message})" if s.message else "") for s in shards if not s.ok]
