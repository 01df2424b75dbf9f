"""What a process needs to run a timm image embedder's converted vision tower without torch: the OpenVINO IR an
earlier process converted and checked (tasks/models/openvino_vision.py), and the transform the tower was converted
behind (input side, mean, std), kept as a small JSON recipe beside the IR.

Why: importing torch, torchvision and timm and building the model cost a run's process about 3 CPU-s and 400 MiB
here, on the path of the first window's classification, to compute what the kept IR computes alone. The recipe is
named by everything the vectors depend on: the architecture, the weights file's content, the input side and the
versions of timm, torch and OpenVINO (read from the installed packages' metadata, without importing them). New
weights or versions find no recipe, and the torch path converts and writes a new one."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from storage.blobstore import file_sha256

log = logging.getLogger(__name__)

RECIPE_FOLDER = "openvino"


@dataclass(frozen=True)
class TowerRecipe:
    ir: str  # the IR's file name (.xml, its .bin beside it) in the same folder
    input_side: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def recipe_path(model: str, weights_file: Path, cache_dir: Path) -> Path:
    """Where the recipe for `model` with the weights in `weights_file` lives under `cache_dir`."""
    digest = hashlib.sha256(f"timm:{model}".encode())
    digest.update(file_sha256(weights_file).encode())
    for package in ("timm", "torch", "openvino"):
        digest.update(f"{package} {_version(package)}".encode())
    return cache_dir / RECIPE_FOLDER / f"recipe-{model}-{digest.hexdigest()[:24]}.json"


def read_recipe(path: Path) -> tuple[TowerRecipe, Path] | None:
    """The recipe at `path` and its IR, or None where either is missing or unreadable (the torch path then)."""
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        recipe = TowerRecipe(
            ir=str(fields["ir"]),
            input_side=int(fields["input_side"]),
            mean=_triple(fields["mean"]),
            std=_triple(fields["std"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ir = path.parent / recipe.ir
    if ir.name != recipe.ir or not ir.is_file() or not ir.with_suffix(".bin").is_file():
        return None
    return recipe, ir


def write_recipe(path: Path, recipe: TowerRecipe) -> None:
    """Write the recipe whole (a reader never sees half of one); a cache that cannot be written costs the next
    process the torch path again, with a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".recipe-", delete=False) as staged:
            json.dump(asdict(recipe), staged)
        os.replace(staged.name, path)
    except OSError as exc:
        log.warning("cannot keep the image embedder's recipe in %s (%s): the next process loads torch again", path, exc)


def _triple(values: object) -> tuple[float, float, float]:
    if not isinstance(values, list) or len(values) != 3:
        raise ValueError(f"not three channel values: {values!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
