"""The deployment files no container engine runs here, kept honest: the compose file's services, ports and
environment names against docflow's settings, the deployments file against the deploy command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from schemas.settings import DeploySettings, environment_names
from tasks.ops.deployments import BACKFILL, NIGHTLY, PREFECT_FILE, REVIEW_EXPORT
from tasks.run.fanout import SHARD_FLOW

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((INFRA / "compose.yaml").read_text()))


def test_the_compose_file_has_every_part_of_a_deployment() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "seaweedfs", "prefect-server", "cpu-worker", "gpu-worker"}
    ports = {name: [p.split(":")[0] for p in s.get("ports", [])] for name, s in services.items()}
    assert ports["postgres"] == ["5432"] and ports["seaweedfs"] == ["8333"] and ports["prefect-server"] == ["4200"]
    gpu = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    pool = DeploySettings().work_pool
    for worker in ("cpu-worker", "gpu-worker"):
        command = services[worker]["command"]
        assert command[:2] == ["docflow", "worker"] and int(command[command.index("--runs") + 1]) >= 2
        assert services[worker]["environment"]["DOCFLOW_WORK_POOL"] == pool
    assert services["gpu-worker"]["command"][2:4] == ["--gpu", "0"]
    for dockerfile in {s["build"]["dockerfile"] for s in services.values() if "build" in s}:
        assert (INFRA.parent / dockerfile).is_file()


def test_every_docflow_variable_in_the_infra_files_is_a_real_setting() -> None:
    names = environment_names()
    text = "\n".join(
        path.read_text() for path in [INFRA / "compose.yaml", *(INFRA / "docker").glob("Dockerfile*"), PREFECT_FILE]
    )
    used = set(re.findall(r"\bDOCFLOW_[A-Z0-9_]+", text)) - {"DOCFLOW_HOME"}  # DOCFLOW_HOME: set by `docflow deploy`
    assert used and used <= names, sorted(used - names)


def test_the_deployments_file_declares_what_docflow_deploy_reports() -> None:
    declared = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    assert [d["name"] for d in declared] == [NIGHTLY, REVIEW_EXPORT, BACKFILL, SHARD_FLOW]
    for deployment in declared:
        module, function = deployment["entrypoint"].split(":")
        assert f"def {function}(" in (INFRA.parent / module).read_text()
    assert declared[2]["schedules"] == declared[3]["schedules"] == []  # backfills and shards only when asked for
    for deployment in declared:  # the zombie automation expects the heartbeats these set
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "{{ $DOCFLOW_HEARTBEAT_S }}"}
