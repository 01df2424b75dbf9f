"""The package map holds: every package and shared module of tasks/ sits on a floor of the import contracts that
`make lint` checks (lint-imports), and docs/architecture.md says what each one owns."""

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return config


def _contracts() -> list[dict[str, Any]]:
    contracts: list[dict[str, Any]] = _config()["contracts"]
    return contracts


def _parts_of_tasks() -> set[str]:
    tasks = ROOT / "tasks"
    packages = {p.name for p in tasks.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in tasks.glob("*.py") if p.stem != "__init__"}
    return packages | modules


def test_every_part_of_tasks_is_on_a_floor_of_the_import_contracts() -> None:
    (inside,) = [c for c in _contracts() if c.get("containers") == ["tasks"]]
    on_a_floor = {name.strip() for layer in inside["layers"] for name in layer.split("|")}
    assert _parts_of_tasks() - on_a_floor == set(), "a new part of tasks/ must be placed on a floor in pyproject.toml"
    assert on_a_floor - _parts_of_tasks() == set(), "a floor names a part of tasks/ that no longer exists"


def test_every_import_of_the_product_is_covered_by_the_cycle_contract() -> None:
    (acyclic,) = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    assert set(acyclic["ancestors"]) == set(_config()["root_packages"]) == {"schemas", "storage", "tasks", "flows"}


def test_the_architecture_page_names_every_part_of_tasks() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`tasks/(\w+)(?:/|\.py)`", page))
    assert _parts_of_tasks() - named == set(), "docs/architecture.md: one line per part of tasks/"
