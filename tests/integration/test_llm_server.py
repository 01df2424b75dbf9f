"""Extraction on an OpenAI-compatible inference server: llama.cpp's own llama-server (built by `make llama-server`)
serving the bundled Qwen2.5-Coder-0.5B GGUF behind an API key. The answers follow the request's JSON schema, the
server's token log-probabilities give per-field confidence, a whole `docflow run` extracts through it, a server
that goes away mid-run is retried and leaves the objects pending, a wrong key or model name stops the run with one
line naming the setting, and the key shows up in no output."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from pydantic import SecretStr
from sqlalchemy import MetaData, create_engine, select
from typer.testing import CliRunner

from flows.cli.main import app
from schemas.documents import Invoice, Receipt
from schemas.errors import ConfigError
from storage.db import unit_of_work
from storage.tables import ExtractionRow, SourceObject
from tasks.extract.extraction import build_prompt, field_confidences
from tasks.models.generation.base import GenerationRequest, GeneratorSpec, ServerEndpoint
from tasks.models.generation.constrained import generation_schema
from tasks.models.generation.registry import load_generator
from tests.integration.conftest import Configure
from tests.services import LlamaServer
from tests.support.prefect_logs import flow_run_logs
from tests.support.receipts import RECEIPT_TEXT

runner = CliRunner()
# Two busy cores decode about five tokens a second: a request waits its turn behind others.
TIMEOUT_S = 300


def _spec(server: LlamaServer, kind: str = "text", model: str | None = None) -> GeneratorSpec:
    endpoint = ServerEndpoint(server.url, SecretStr(server.api_key), in_flight=2, timeout_s=TIMEOUT_S)
    return GeneratorSpec(kind, model or server.alias, engine="openai", server=endpoint)


def _inbox(tmp_path: Path, sample_inbox: Path, *names: str) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in names:
        shutil.copy(sample_inbox / "documents" / name, inbox)
    return inbox


def _configure_server(configure: Configure, server: LlamaServer, tmp_path: Path, inbox: Path, **more: object) -> str:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings: dict[str, object] = {
        "database_url": db,
        "source": str(inbox),
        "extract": True,
        "classifier": "keywords",  # extraction is the subject here
        "text_llm_model": server.alias,
        "llm_server_url": server.url,
        "llm_server_api_key": server.api_key,
        "llm_server_in_flight": 2,
        "llm_server_timeout_s": TIMEOUT_S,
        "extract_max_new_tokens": 256,
    }
    configure(**{**settings, **more})
    return db


def _statuses(db: str) -> list[str]:
    with unit_of_work(db) as s:
        return sorted(s.scalars(select(SourceObject.status)).all())


def test_answers_follow_each_requests_schema_with_confidence_from_the_servers_log_probabilities(
    llama_server: LlamaServer,
) -> None:
    spec = _spec(llama_server)
    assert llama_server.api_key not in repr(spec) and llama_server.api_key not in str(spec)
    generator = load_generator(spec)
    assert generator.reads_images is False and generator.model_id == "docflow-extractor"
    receipt = generation_schema(Receipt.model_json_schema(), max_string=60, max_items=0)
    total = {"type": "object", "properties": {"total": {"type": "string", "maxLength": 12}}, "required": ["total"]}
    requests = [
        GenerationRequest(build_prompt(Receipt, RECEIPT_TEXT), json.dumps(receipt)),
        GenerationRequest(f"What is the total of this receipt?\n{RECEIPT_TEXT}\nJSON:", json.dumps(total)),
    ]
    answers = generator.generate(requests, max_new_tokens=200)
    for answer, schema in zip(answers, (receipt, total), strict=True):
        assert answer.finished
        jsonschema.validate(json.loads(answer.text), schema)  # in request order, each under its own schema
        assert answer.text == "".join(t.text for t in answer.tokens)
        assert answer.tokens and all(t.logprob <= 0 for t in answer.tokens)
    data = json.loads(answers[0].text)
    assert data["merchant_name"] == "SANYU STATIONERY SHOP"  # the real model read the page
    assert json.loads(answers[1].text) == {"total": "2.90"}
    confidence = field_confidences(answers[0].tokens)
    assert set(confidence) == set(receipt["properties"])
    assert all(0 < c <= 1 for c in confidence.values())
    (cut,) = generator.generate(requests[:1], max_new_tokens=4)
    assert not cut.finished  # finish_reason "length"


def test_the_servers_log_probabilities_are_taken_before_the_grammar_mask(llama_server: LlamaServer) -> None:
    """What docs/models.md says of llama-server's confidence: the chosen token's log-probability under the model's
    own distribution, the tokens the grammar forbids included (as docflow's in-process backends do)."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    body = {
        "model": llama_server.alias,
        "messages": [{"role": "user", "content": "Say hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
        "temperature": 0,
        "max_tokens": 1,
        "logprobs": True,
        "top_logprobs": 3,
    }
    headers = {"Authorization": f"Bearer {llama_server.api_key}"}
    answer = httpx.post(f"{llama_server.url}/chat/completions", json=body, headers=headers, timeout=60).json()
    (first,) = answer["choices"][0]["logprobs"]["content"]
    assert first["token"].startswith(("{", "`"))  # what the grammar allows: JSON, or a markdown fence before it
    assert first["logprob"] < -2  # far from the certainty the masked distribution gives it
    assert not any(t["token"].startswith(("{", "`")) for t in first["top_logprobs"])  # the model's own: prose


def test_a_vlm_sends_its_page_images_as_image_parts(llama_server: LlamaServer, sample_inbox: Path) -> None:
    """The text model behind this server takes no images: its refusal shows the page went as an image part, and
    an error no retry can fix is a setting to fix, named."""
    generator = load_generator(_spec(llama_server, kind="vlm"))
    assert generator.reads_images is True
    page = sample_inbox / "images" / "invoice2data_AmazonWebServices.png"
    schema = json.dumps(generation_schema(Invoice.model_json_schema(), max_string=60, max_items=0))
    with pytest.raises(ConfigError, match=r"image input is not supported.*DOCFLOW_VLM_MODEL"):
        generator.generate([GenerationRequest(build_prompt(Invoice, None), schema, (page,))], max_new_tokens=32)


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_extracts_through_the_server_and_its_key_appears_in_no_output(
    configure: Configure,
    llama_server: LlamaServer,
    sample_inbox: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    inbox = _inbox(tmp_path, sample_inbox, "invoice2data_AzureInterior.pdf", "invoice2data_AmazonWebServices.pdf")
    # One try, and answers cut at 160 tokens (Azure Interior's takes 124): Amazon's page sends the small model into a
    # loop it never closes.
    db = _configure_server(configure, llama_server, tmp_path, inbox, extract_max_attempts=1, extract_max_new_tokens=160)

    result = runner.invoke(app, ["run"])
    assert result.exit_code == 0, result.output
    assert len(_statuses(db)) == 2 and set(_statuses(db)) <= {"done", "review"}
    with unit_of_work(db) as s:
        rows = s.scalars(select(ExtractionRow)).all()
        assert len(rows) == 2
        for row in rows:
            assert (row.backend, row.model_id, row.schema_id) == ("text", "docflow-extractor", "invoice/v1")
            assert row.raw_output.startswith("[page 1] {")
        # The 0.5B model reads Azure Interior's vendor and number right (its totals do not add up: review); the
        # confidence of what it wrote comes from the server's log-probabilities.
        azure = next(r for r in rows if "Global Wholesaler" in r.raw_output)
        assert '"invoice_number": "INV/2023/03/0008"' in azure.raw_output
        assert azure.field_confidence and set(azure.field_confidence) >= {"vendor_name", "invoice_number"}
        assert all(0 < c <= 1 for c in azure.field_confidence.values())
    assert "extract window 0: 2 object(s), 2 page(s), 1 forward batch" in "\n".join(
        flow_run_logs(_newest_run_id(), "extract window 0")
    )

    status = runner.invoke(app, ["status", "--json"])
    exported = tmp_path / "results.jsonl"
    export = runner.invoke(app, ["export", "results", "--format", "jsonl", "--out", str(exported)])
    assert export.exit_code == 0, export.output
    run_id = _newest_run_id()
    outputs = {
        "run output": result.output,
        "status": status.output,
        "export output": export.output,
        "exported results": exported.read_text(),
        "captured logs": caplog.text,
        "flow run logs": "\n".join(flow_run_logs(run_id, "extract window 0")),
        "artifacts": _artifacts_text(),
        "database": _database_text(db),
    }
    for where, text in outputs.items():
        assert text, where
        assert llama_server.api_key not in text, f"the API key leaked into the {where}"


@pytest.mark.usefixtures("prefect_harness")
def test_a_server_stopped_mid_run_is_retried_then_its_objects_stay_pending(
    configure: Configure, llama_server: LlamaServer, sample_inbox: Path, tmp_path: Path
) -> None:
    inbox = _inbox(tmp_path, sample_inbox, "invoice2data_AzureInterior.pdf")
    db = _configure_server(configure, llama_server, tmp_path, inbox, retries=1, retry_delay_s=0.1)
    watcher = threading.Thread(target=_stop_at_first_completion, args=(llama_server,), daemon=True)
    try:
        watcher.start()
        result = runner.invoke(app, ["run"])
        watcher.join(30)
    finally:
        llama_server.stop()
        llama_server.start()  # the other tests of the session share it
    assert result.exit_code == 1, result.output
    assert "cannot reach the inference server" in result.output
    assert "objects stay pending" in result.output
    assert _statuses(db) == ["pending"]  # not failed: nothing was wrong with the file
    logs = "\n".join(flow_run_logs(_newest_run_id(), "Retry 1/1"))
    assert "Retry 1/1 will start" in logs  # the extraction task was retried (Prefect's own message)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    ("wrong", "setting"),
    [("model", "DOCFLOW_TEXT_LLM_MODEL"), ("key", "DOCFLOW_LLM_SERVER_API_KEY")],
)
def test_a_wrong_model_name_or_key_stops_the_run_with_one_line_naming_the_setting(
    configure: Configure, llama_server: LlamaServer, sample_inbox: Path, tmp_path: Path, wrong: str, setting: str
) -> None:
    inbox = _inbox(tmp_path, sample_inbox, "invoice2data_AzureInterior.pdf")
    bad_key = "sk-not-the-key-0123456789"
    override = {"text_llm_model": "qwen-no-such-model"} if wrong == "model" else {"llm_server_api_key": bad_key}
    _configure_server(configure, llama_server, tmp_path, inbox, **override)
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and setting in errors[0], result.output
    assert errors[0] == result.output.strip().splitlines()[-1]
    if wrong == "model":
        assert "'docflow-extractor'" in errors[0]  # what the server does serve
    assert "Traceback" not in result.output
    assert llama_server.api_key not in result.output and bad_key not in result.output
    report = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert report["failures"] == [] and report["objects"] == {}  # stopped before any object was claimed


def _stop_at_first_completion(server: LlamaServer, timeout_s: float = 120) -> None:
    """Kill the server once a slot starts working on the run's first chat completion: mid-run, mid-request."""
    seen = server.log.stat().st_size  # what earlier tests made it write
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with server.log.open("rb") as log:
            log.seek(seen)
            if b"launch_slot_" in log.read():
                server.stop()
                return
        time.sleep(0.05)


def _newest_run_id() -> str:
    status = runner.invoke(app, ["status", "--json"])
    run_id: str = json.loads(status.stdout)["runs"][0]["id"]
    return run_id


def _artifacts_text() -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    return "\n".join(json.dumps(a.model_dump(mode="json")) for a in artifacts)


def _database_text(url: str) -> str:
    """Every row of every table, as text."""
    engine = create_engine(url)
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as connection:
        rows = [str(row) for table in tables.sorted_tables for row in connection.execute(table.select())]
    engine.dispose()
    return "\n".join(rows)
