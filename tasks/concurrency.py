"""The device concurrency limit: a Prefect global concurrency limit named after the device the models run on and
its machine, which every model stage holds a slot of, so runs sharing a machine never load or run models on one GPU
at once, while workers on other machines (their own GPUs) never wait for it."""

from __future__ import annotations

import socket
import sys
from contextlib import suppress
from pathlib import Path

from schemas.settings import Settings
from tasks.models.devices import torch_device


def model_limit_name(settings: Settings) -> str:
    """DOCFLOW_MODEL_CONCURRENCY_LIMIT, else docflow-gpu-<index>-<host> for CUDA devices and docflow-cpu-<host>
    otherwise (Prefect's limits are global to the server: the host keeps two machines' GPU 0 apart)."""
    if settings.device.concurrency_limit:
        return settings.device.concurrency_limit
    device = settings.device.device
    if device == "auto":
        device = "cuda" if _has_cuda() else "cpu"
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        return f"docflow-gpu-{index}-{host_name()}"
    return f"docflow-{device.split(':')[0]}-{host_name()}"


def host_name() -> str:
    """The machine's short name, in characters any Prefect object name accepts."""
    name = socket.gethostname().split(".")[0].lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in name) or "localhost"


def _has_cuda() -> bool:
    """Whether the models will find a GPU, asked of torch only if something already imported it: importing torch
    just to name the limit costs a run that uses no torch model (transcription only) half a gigabyte."""
    if "torch" in sys.modules:
        return torch_device("auto") == "cuda"
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())


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
