"""The inference-server settings and what they turn into: the generator spec (the model cache key, its key kept out
of every repr), the pages per generate() call, and the server's log-probabilities read as token scores. The server
itself is tested for real in tests/integration/test_llm_server.py."""

from __future__ import annotations

import pytest

from schemas.errors import ConfigError
from schemas.settings import load_settings
from tasks.extract.extraction import field_confidences
from tasks.extract.stage import ExtractStage, generator_spec
from tasks.models.generation.constrained import TokenScore
from tasks.models.generation.openai_server import aligned, token_scores

KEY = "sk-secret-0123456789"


def test_the_server_settings_are_read_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCFLOW_LLM_SERVER_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("DOCFLOW_LLM_SERVER_API_KEY", KEY)
    monkeypatch.setenv("DOCFLOW_LLM_SERVER_IN_FLIGHT", "16")
    monkeypatch.setenv("DOCFLOW_LLM_SERVER_TIMEOUT_S", "30")
    settings = load_settings()
    server = settings.llm_server
    assert (server.url, server.in_flight, server.timeout_s) == ("http://gpu-box:8000/v1", 16, 30.0)
    assert server.api_key is not None and server.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in settings.model_dump_json()
    assert load_settings(llm_server_url="").llm_server.url is None  # blank is unset


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DOCFLOW_LLM_SERVER_URL", "gpu-box:8000/v1"), ("DOCFLOW_LLM_SERVER_IN_FLIGHT", "0")],
)
def test_a_bad_server_setting_is_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_a_server_url_makes_the_server_run_the_backends_model() -> None:
    local = load_settings()
    spec = generator_spec(local.extraction, local.device, local.render.max_pixels, local.llm_server)
    assert (spec.engine, spec.server) == (local.extraction.text_llm_engine, None)

    served = load_settings(llm_server_url="http://gpu-box:8000/v1", llm_server_api_key=KEY, llm_server_in_flight=12)
    text = generator_spec(served.extraction, served.device, served.render.max_pixels, served.llm_server)
    assert (text.kind, text.model, text.engine) == ("text", "pkg:qwen2.5-coder-0.5b", "openai")
    assert text.server is not None and text.server.url == "http://gpu-box:8000/v1" and text.server.in_flight == 12
    assert KEY not in repr(text) and KEY not in str(text)
    vlm_settings = served.model_copy(update={"extraction": load_settings(vlm_model="qwen2.5-vl").extraction})
    vlm = generator_spec(vlm_settings.extraction, served.device, served.render.max_pixels, served.llm_server)
    assert (vlm.kind, vlm.model, vlm.engine) == ("vlm", "qwen2.5-vl", "openai")

    # A server works on every request in flight at once: each generate() call sends that many pages.
    assert ExtractStage(served.extraction, text).config.batch_size == 12
    assert ExtractStage(local.extraction, spec).config.batch_size == local.extraction.batch_size


def test_the_servers_log_probabilities_become_token_scores() -> None:
    # "é" (two bytes) split across two tokens, as a byte-level tokenizer writes it.
    content = [
        {"token": '{"', "logprob": -0.1, "bytes": list(b'{"')},
        {"token": 'name":"', "logprob": 0.0, "bytes": list(b'name":"')},
        {"token": "Caf", "logprob": -0.2, "bytes": list(b"Caf")},
        {"token": "\\xc3", "logprob": -0.3, "bytes": [0xC3]},
        {"token": "\\xa9", "logprob": -0.4, "bytes": [0xA9]},
        {"token": '"}', "logprob": -0.05, "bytes": list(b'"}')},
    ]
    scores = token_scores({"content": content})
    assert "".join(s.text for s in scores) == '{"name":"Café"}'
    assert [s.logprob for s in scores] == [-0.1, 0.0, -0.2, -0.3, -0.4, -0.05]
    assert set(field_confidences(scores)) == {"name"}
    assert token_scores(None) == [] and token_scores({"content": None}) == []
    without_bytes = token_scores({"content": [{"token": "{}", "logprob": -0.5}]})
    assert [(s.text, s.logprob) for s in without_bytes] == [("{}", -0.5)]


def test_the_tokens_are_cut_to_the_answer_the_server_returns() -> None:
    """llama-server lets the model fence its JSON (```json ... ```) and returns the JSON alone."""
    pieces = [("```", -8.9), ("json", -0.9), ("\n", 0.0), ('{"a', -0.1), ('": "', -0.2), ("x", -0.3), ('"}\n', -0.4)]
    fenced = [TokenScore(text, logprob) for text, logprob in [*pieces, ("```", -0.01), ("", 0.0)]]
    kept = aligned(fenced, '{"a": "x"}')
    assert [(s.text, s.logprob) for s in kept] == [('{"a', -0.1), ('": "', -0.2), ("x", -0.3), ('"}', -0.4)]
    assert field_confidences(kept) == {"a": 0.7408}
    assert aligned(kept, '{"a": "x"}') == kept
    assert aligned(fenced, "something else") == fenced  # no way to line them up: as the server gave them


def test_a_server_without_log_probabilities_is_said_once_per_process(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.models.generation import openai_server

    monkeypatch.setattr(openai_server, "_warned_without_logprobs", False)
    for _ in range(3):
        openai_server._warn_once_without_logprobs("http://gpu-box:8000/v1")
    (record,) = [r for r in caplog.records if r.name == openai_server.__name__]
    assert record.levelname == "WARNING"
    assert "per-field confidence comes from grounding in the page text alone" in record.getMessage()
