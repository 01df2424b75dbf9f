"""Where a torch model runs and in which precision, from the 'auto' settings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def torch_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # half precision on CPU is slower, not faster


def cuda_present() -> bool:
    """Whether torch models would find a GPU, asked of torch only if something already imported it: importing torch
    just to know costs a process that runs no torch model half a gigabyte."""
    if "torch" in sys.modules:
        return torch_device("auto") == "cuda"
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def runs_on_cpu(device: str) -> bool:
    """Whether a model with the `device` setting runs on the CPU, without importing torch where it can be told."""
    return device == "cpu" or (device == "auto" and not cuda_present())
