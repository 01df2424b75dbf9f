"""The deployment files no container engine runs here, kept honest: the compose file's services, ports and
environment names against docflow's settings, the deployments file against the deploy command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from schemas.settings import DeploySettings, environment_names
from tasks.ops.deployments import BACKFILL, NIGHTLY, PREFECT_FILE, REVIEW_EXPORT
from tasks.run.fanout import SHARD_FLOW
from tests.support import vllm_options

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((INFRA / "compose.yaml").read_text()))


def test_the_compose_file_has_every_part_of_a_deployment() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "seaweedfs", "prefect-server", "cpu-worker", "gpu-worker", "vllm"}
    ports = {name: [p.split(":")[0] for p in s.get("ports", [])] for name, s in services.items()}
    assert ports["postgres"] == ["5432"] and ports["seaweedfs"] == ["8333"] and ports["prefect-server"] == ["4200"]
    assert ports["vllm"] == ["8000"]
    # A plain `up` starts what needs no GPU; `--profile gpu` adds the server and the worker that uses it.
    assert {name for name, s in services.items() if "gpu" in s.get("profiles", [])} == {"vllm", "gpu-worker"}
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


def _vllm() -> tuple[dict[str, Any], list[str], dict[str, str | None]]:
    """The vllm service, and its `vllm serve` arguments as positionals and options."""
    service = _compose()["services"]["vllm"]
    assert service["entrypoint"] == ["vllm", "serve"]
    positional, options = vllm_options.split_command(service["command"])
    return service, positional, options


def test_the_vllm_service_serves_the_model_the_gpu_worker_names() -> None:
    service, positional, options = _vllm()
    worker = _compose()["services"]["gpu-worker"]["environment"]
    assert len(positional) == 1  # the model
    served = options.get("--served-model-name") or positional[0]  # vLLM serves the model under its tag by default
    assert served == worker["DOCFLOW_VLM_MODEL"]  # the name docflow's requests carry
    assert re.fullmatch(r"Qwen/Qwen2(\.5)?-VL-\d+B-Instruct", served), served
    # Pinned to the release whose parser the options file was read from.
    assert service["image"] == f"vllm/vllm-openai:v{vllm_options.load().version}"


def test_the_vllm_flags_are_ones_its_pinned_release_accepts() -> None:
    _, _, options = _vllm()
    accepted = vllm_options.load()
    assert accepted.version and len(accepted.options) > 100
    unknown = {name.split(".")[0] for name in options} - accepted.options  # --config.key: the config's flag
    assert not unknown, f"vllm serve {accepted.version} has no {sorted(unknown)}"
    # Guided decoding with xgrammar; 0.33 has no --guided-decoding-backend (it became this config key).
    assert options["--structured-outputs-config.backend"] == "xgrammar" in accepted.structured_outputs_backends
    assert "--guided-decoding-backend" not in accepted.options
    assert int(str(options["--max-model-len"])) >= 4096
    assert yaml.safe_load(str(options["--limit-mm-per-prompt"]))["image"] >= 1  # a page per request
    assert int(str(options["--max-num-seqs"])) >= 8


def test_the_gpu_worker_sends_its_extraction_to_the_vllm_service() -> None:
    services = _compose()["services"]
    vllm, _, options = _vllm()
    worker = services["gpu-worker"]
    url = urlsplit(worker["environment"]["DOCFLOW_LLM_SERVER_URL"])
    port = int(options.get("--port") or 8000)
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "vllm", port, "/v1")
    assert [p.split(":")[1] for p in vllm["ports"]] == [str(port)]
    assert worker["depends_on"]["vllm"] == {"condition": "service_healthy"}
    assert f"localhost:{port}/health" in " ".join(vllm["healthcheck"]["test"])
    # The server's batch is shared by every worker that points at it: together they keep at most that many busy.
    clients = [s for s in services.values() if "DOCFLOW_LLM_SERVER_URL" in s.get("environment", {})]
    in_flight = sum(int(s["environment"]["DOCFLOW_LLM_SERVER_IN_FLIGHT"]) for s in clients)
    assert 0 < in_flight <= int(str(options["--max-num-seqs"]))
    # Weights: the shared model volume, a token passed through for gated models.
    assert "HF_TOKEN" in vllm["environment"] and vllm["environment"]["HF_HOME"].startswith("/models/")
    assert "models:/models" in vllm["volumes"]
    for name in ("vllm", "gpu-worker"):
        gpu = services[name]["deploy"]["resources"]["reservations"]["devices"][0]
        assert gpu == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}


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
