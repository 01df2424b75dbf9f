"""Smoke test of bench/gpu_models.py: the model stages run on CPU through docflow's wrappers with tiny numbers, the
server scenario against a stand-in OpenAI-compatible server, and the key-figures line parses. Timings are only
checked to be positive."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench.gpu_models import (
    VLLM_XGRAMMAR,
    ServerError,
    StageResult,
    bench_server,
    chat_request,
    free_port,
    key_figures,
    main,
    make_pages,
    vllm_serve_command,
)
from tasks.models import cache
from tests.support import vllm_options


class StandInServer(ThreadingHTTPServer):
    """Answers /v1/models and /v1/chat/completions like an OpenAI-compatible server (always `{}`), slowly enough
    that requests overlap, and keeps what it was sent and how many requests it held at once."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.active = self.most_active = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: StandInServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _answer(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        assert self.path == "/v1/models"
        self._answer({"object": "list", "data": [{"id": "stand-in-vlm", "object": "model"}]})

    def do_POST(self) -> None:
        assert self.path == "/v1/chat/completions"
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
            self.server.active += 1
            self.server.most_active = max(self.server.most_active, self.server.active)
        time.sleep(0.05)
        with self.server.lock:
            self.server.active -= 1
        choice = {"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}
        self._answer({"choices": [choice], "usage": {"prompt_tokens": 1300, "completion_tokens": 2}})


@pytest.fixture
def stand_in() -> Iterator[StandInServer]:
    server = StandInServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_gpu_models_bench_runs_on_cpu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stand_in: StandInServer
) -> None:
    monkeypatch.setattr(cache, "_loaded", {})  # the bench's models stay out of the process-wide model cache
    tiny = ["--pages", "3", "--batch-size", "2", "--clip-batch-size", "2", "--max-new-tokens", "8"]
    server = ["--vllm-url", stand_in.url, "--in-flight", "2"]
    main(["--devices", "cpu", *tiny, "--max-pixels", str(28 * 28 * 64), *server])  # small VLM pages: a smoke test

    lines = capsys.readouterr().out.strip().splitlines()
    figures = {name: float(value) for name, value in (item.split("=") for item in lines[-1].split())}
    assert set(figures) == {
        "cpu_classify_pages_per_s",
        "cpu_classify_batch_fill",
        "cpu_extract_pages_per_s",
        "cpu_extract_batch_fill",
        "vllm_extract_pages_per_s",
        "vllm_extract_batch_fill",
        "vllm_vs_cpu_extract",
    }
    assert figures["cpu_classify_pages_per_s"] > 0
    assert figures["cpu_extract_pages_per_s"] > 0
    assert figures["vllm_extract_pages_per_s"] > 0
    # 3 pages in batches of 2: one full batch and one half-full one.
    assert figures["cpu_classify_batch_fill"] == pytest.approx(0.75)
    assert figures["cpu_extract_batch_fill"] == pytest.approx(0.75)
    assert all(0 < figures[name] <= 1.05 for name in figures if name.endswith("_batch_fill"))
    assert figures["vllm_vs_cpu_extract"] == pytest.approx(
        figures["vllm_extract_pages_per_s"] / figures["cpu_extract_pages_per_s"], rel=0.01
    )
    # The model name came from the server's /v1/models; every page went out once after the warm-up window.
    assert {b["model"] for b in stand_in.bodies} == {"stand-in-vlm"}
    assert len(stand_in.bodies) == 3 + 2
    assert any("vllm: " in line and "1300 prompt tokens per page" in line for line in lines)


def test_the_server_scenario_keeps_its_requests_in_flight(tmp_path: Path, stand_in: StandInServer) -> None:
    pages = make_pages(tmp_path, 8)
    result, prompt_tokens = bench_server(stand_in.url, "stand-in-vlm", pages, 4, 16)
    assert stand_in.most_active == 4  # the window is filled, never overfilled
    assert (result.device, result.stage, result.pages, result.configured_batch) == ("vllm", "extract", 8, 4)
    assert result.new_tokens == 16 and result.finished == 8 and prompt_tokens == 1300
    assert 0.5 < result.batch_fill <= 1.05  # requests overlapped: ~4 at a time for the whole timed part
    schemas = {b["response_format"]["json_schema"]["name"] for b in stand_in.bodies}
    assert schemas == {"invoice", "receipt"}  # both grammars, alternating as in the in-process stage


def test_a_server_that_does_not_answer_is_a_server_error(tmp_path: Path) -> None:
    # main() catches it: the in-process figures, measured first, are printed all the same.
    with pytest.raises(ServerError, match="refused"):
        bench_server(f"http://127.0.0.1:{free_port()}/v1", "m", make_pages(tmp_path, 1), 1, 8)


def test_a_chat_request_is_what_docflows_server_backend_sends(tmp_path: Path) -> None:
    body = chat_request("m", "Extract...", "invoice", '{"type": "object"}', b"\xff\xd8jpeg", 64)
    image, text = body["messages"][0]["content"]
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(image["image_url"]["url"].split(",", 1)[1]) == b"\xff\xd8jpeg"
    assert text == {"type": "text", "text": "Extract..."}  # the page first: the prompt says "the image above"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "invoice", "schema": {"type": "object"}, "strict": True},
    }
    assert (body["model"], body["max_tokens"], body["temperature"], body["logprobs"]) == ("m", 64, 0, True)


def test_the_bench_starts_vllm_with_flags_its_release_accepts() -> None:
    command = vllm_serve_command(["vllm"], "/tmp/model", "bench-vlm", 18000, 8, 3136, 1003520)
    assert command[:3] == ["vllm", "serve", "/tmp/model"]
    positional, options = vllm_options.split_command(command[2:])
    accepted = vllm_options.load()
    assert positional == ["/tmp/model"]
    assert {name.split(".")[0] for name in options} <= accepted.options
    assert VLLM_XGRAMMAR in command and options["--structured-outputs-config.backend"] == "xgrammar"
    assert "xgrammar" in accepted.structured_outputs_backends
    assert (options["--served-model-name"], options["--port"], options["--max-num-seqs"]) == ("bench-vlm", "18000", "8")
    assert json.loads(str(options["--mm-processor-kwargs"])) == {"min_pixels": 3136, "max_pixels": 1003520}


def _extract(device: str, pages_per_s: float) -> StageResult:
    return StageResult(device, "extract", 10, 10 / pages_per_s, [2] * 5, 2)


def test_the_key_figures_compare_the_server_with_the_in_process_path_on_cuda_first() -> None:
    server = StageResult("vllm", "extract", 10, 1.0, [], 8, fill=0.5)
    both = key_figures([_extract("cpu", 1.0), _extract("cuda", 4.0), server])
    figures = dict(item.split("=") for item in both.split())
    assert figures["vllm_vs_cuda_extract"] == "2.5" and "vllm_vs_cpu_extract" not in figures
    assert figures["vllm_extract_batch_fill"] == "0.5" and figures["cuda_speedup_extract"] == "4"
    assert list(figures).index("vllm_extract_pages_per_s") > list(figures).index("cuda_extract_pages_per_s")
    cpu_only = dict(item.split("=") for item in key_figures([_extract("cpu", 2.0), server]).split())
    assert cpu_only["vllm_vs_cpu_extract"] == "5"
    assert "vllm" not in key_figures([_extract("cpu", 2.0)])
