"""The device concurrency limit: a Prefect global concurrency limit named after the device the models run on,
which every model stage holds a slot of, so runs sharing a machine never load or run models on one GPU at once."""

from __future__ import annotations

from contextlib import suppress

from schemas.settings import Settings
from tasks.models.devices import torch_device


def model_limit_name(settings: Settings) -> str:
    """DOCFLOW_MODEL_CONCURRENCY_LIMIT, else docflow-gpu-<index> for CUDA devices and docflow-cpu otherwise."""
    if settings.device.concurrency_limit:
        return settings.device.concurrency_limit
    device = torch_device(settings.device.device)
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        return f"docflow-gpu-{index}"
    return f"docflow-{device.split(':')[0]}"


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
