"""The device concurrency limit: a Prefect global concurrency limit named after the device the models run on and
its machine, which every model stage holds a slot of, so runs sharing a machine never load or run models on one GPU
at once, while workers on other machines (their own GPUs) never wait for it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from uuid import UUID

from schemas.settings import Settings
from tasks.models.devices import cuda_present


def model_limit_name(settings: Settings) -> str:
    """DOCFLOW_MODEL_CONCURRENCY_LIMIT, else docflow-gpu-<index>-<host> for CUDA devices and docflow-cpu-<host>
    otherwise (Prefect's limits are global to the server: the host keeps two machines' GPU 0 apart)."""
    if settings.device.concurrency_limit:
        return settings.device.concurrency_limit
    device = settings.device.device
    if device == "auto":
        device = "cuda" if cuda_present() else "cpu"
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        return f"docflow-gpu-{index}-{host_name()}"
    return f"docflow-{device.split(':')[0]}-{host_name()}"


def host_name() -> str:
    """The machine's short name, in characters any Prefect object name accepts."""
    name = socket.gethostname().split(".")[0].lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in name) or "localhost"


def ensure_limit(name: str, slots: int) -> int:
    """Create the limit with `slots` if it does not exist yet; returns the slots in effect (an operator may have
    changed them since)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            pass
        with suppress(ObjectAlreadyExists):  # another run created it first
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
        return client.read_global_concurrency_limit_by_name(name).limit


# How long a model stage waits for the server to record its start before it asks for the device's slot anyway:
# half the 2 s back-off that the wait avoids (see device_slot), so a server slow to record costs less than it.
RECORDED_START_WAIT_S = 1.0
_POLL_S = 0.05


@contextmanager
def device_slot(limit: str) -> Iterator[None]:
    """Hold a slot of the device's concurrency limit (strict: a missing limit is an error, never an unguarded
    device). In a task run, the lease names the task run as its holder, and the slot is asked for only once the
    server has recorded the task run as Running: Prefect 3.8's server takes a slot in a deferred SQLite transaction
    (read, then write), which fails with "database is locked" when the server is writing the task's own Running
    state at that moment, and the client then retries 2 s later. Measured on the transcription bench: 4 of 5 runs
    lost those 2 s; waiting for the record (about 70 ms) avoided it in every run since. On a Postgres-backed server
    the wait costs the same 70 ms and nothing else."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency.sync import concurrency
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    holder = None
    if context is not None:
        holder = ConcurrencyLeaseHolder(type="task_run", id=context.task_run.id)
        _wait_until_recorded_running(context.task_run.id, RECORDED_START_WAIT_S)
    with concurrency(limit, occupy=1, strict=True, holder=holder):
        yield


def _wait_until_recorded_running(task_run_id: UUID, timeout_s: float) -> bool:
    """Whether the server recorded the task run as Running within `timeout_s` (its start reaches the server as an
    event, recorded a few tens of milliseconds later)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            with suppress(ObjectNotFound):  # not recorded at all yet
                if client.read_task_run(task_run_id).state_type is StateType.RUNNING:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
