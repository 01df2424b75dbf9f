"""Extraction on any server that speaks OpenAI's chat-completions API with structured outputs (vLLM, SGLang,
llama.cpp's llama-server, Ollama, a hosted API), over HTTP.

Each request carries the schema as `response_format: json_schema` (the server constrains decoding), greedy
decoding, and asks for the chosen tokens' log-probabilities, which become the Generation's token scores (per-field
confidence) when the server returns them. A VLM's page images go as base64 data-URL image parts. The requests of
one generate() call go out together, at most DOCFLOW_LLM_SERVER_IN_FLIGHT at once, so a batching server fills its
batches. A server away or overloaded (no connection, a timeout, 429, 5xx) is a TransientError: the task is retried
and the window's objects stay pending. Any other 4xx is a ConfigError naming the setting to fix."""

from __future__ import annotations

import base64
import codecs
import json
import logging
import mimetypes
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from schemas.errors import ConfigError, TransientError
from tasks.display import first_line
from tasks.models.generation.base import Generation, GenerationRequest, GeneratorSpec, ServerEndpoint
from tasks.models.generation.constrained import TokenScore

logger = logging.getLogger(__name__)

URL_SETTING = "DOCFLOW_LLM_SERVER_URL"
KEY_SETTING = "DOCFLOW_LLM_SERVER_API_KEY"
TIMEOUT_SETTING = "DOCFLOW_LLM_SERVER_TIMEOUT_S"
MODEL_SETTINGS = {"vlm": "DOCFLOW_VLM_MODEL", "text": "DOCFLOW_TEXT_LLM_MODEL"}

_warning_lock = threading.Lock()
_warned_without_logprobs = False


def _warn_once_without_logprobs(url: str) -> None:
    global _warned_without_logprobs
    with _warning_lock:
        if _warned_without_logprobs:
            return
        _warned_without_logprobs = True
    logger.warning(
        "the inference server at %s returns no token log-probabilities: per-field confidence comes from grounding "
        "in the page text alone",
        url,
    )


def _server_message(response: httpx.Response) -> str:
    """What the server said about a refused request: OpenAI's error.message, FastAPI's detail, or the body."""
    try:
        body = response.json()
    except ValueError:
        return first_line(response.text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return first_line(str(error["message"]))
        if isinstance(error, str):
            return first_line(error)
        if body.get("detail"):
            return first_line(str(body["detail"]))
        if body.get("message"):
            return first_line(str(body["message"]))
    return first_line(response.text)


def _image_part(path: Path) -> dict[str, Any]:
    mime = mimetypes.guess_type(path.name)[0] or "image/jpeg"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def token_scores(logprobs: Any) -> list[TokenScore]:
    """The chosen tokens of `choices[0].logprobs` with their log-probabilities; [] when the server sent none. Each
    token's text is rebuilt from its bytes where the server gives them, so a character split across tokens comes
    out whole (the tokens then spell the answer exactly, as field_confidences needs)."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content or any(not isinstance(i, dict) or i.get("logprob") is None for i in content):
        return []
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    scores = []
    for item in content:
        raw = item.get("bytes")
        text = decoder.decode(bytes(raw)) if isinstance(raw, list) else str(item.get("token", ""))
        scores.append(TokenScore(text, float(item["logprob"])))
    tail = decoder.decode(b"", final=True)
    if tail:
        scores[-1] = TokenScore(scores[-1].text + tail, scores[-1].logprob)
    return scores


def aligned(scores: list[TokenScore], text: str) -> list[TokenScore]:
    """The tokens that wrote `text`, cut to it: llama-server's grammar lets the model wrap its JSON in a markdown
    fence (```json ... ```) that the answer's content leaves out, while its log-probabilities keep every token."""
    written = "".join(s.text for s in scores)
    start = written.find(text) if text else -1
    if written == text or start < 0:
        return scores
    end = start + len(text)
    kept, position = [], 0
    for score in scores:
        first, last = position, position + len(score.text)
        position = last
        if last > start and first < end:
            kept.append(TokenScore(score.text[max(start - first, 0) : end - first], score.logprob))
    return kept


class OpenAIServerGenerator:
    """A model served by an OpenAI-compatible server; `spec.model` is the name it serves the model under."""

    def __init__(self, spec: GeneratorSpec) -> None:
        if spec.server is None:
            raise ConfigError(f"engine 'openai' needs {URL_SETTING} (the server's base URL, ending in /v1)")
        self.model_id = spec.model
        self.reads_images = spec.kind == "vlm"
        self._model_setting = MODEL_SETTINGS.get(spec.kind, "the model setting")
        self._server: ServerEndpoint = spec.server
        self._base_url = spec.server.url.rstrip("/")
        # Where messages say the server is: without any user:password@ the URL may carry.
        self.url = str(httpx.URL(self._base_url).copy_with(username=None, password=None))
        headers = {}
        if spec.server.api_key is not None:
            headers["Authorization"] = f"Bearer {spec.server.api_key.get_secret_value()}"
        # No pool timeout: a request waits for a connection, never fails for the lack of one.
        timeout = httpx.Timeout(spec.server.timeout_s, pool=None)
        limits = httpx.Limits(max_connections=spec.server.in_flight, max_keepalive_connections=spec.server.in_flight)
        self._client = httpx.Client(base_url=self._base_url, headers=headers, timeout=timeout, limits=limits)
        # One pool per model and process: at most `in_flight` requests out at once, whoever calls generate().
        self._pool = ThreadPoolExecutor(max_workers=spec.server.in_flight, thread_name_prefix="llm-server")
        self.served = self._check_server()

    # --- HTTP and its faults -------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"the inference server at {self.url} did not answer within {self._server.timeout_s:g} s "
                f"({TIMEOUT_SETTING})"
            ) from exc
        except httpx.TransportError as exc:  # refused, reset, dropped mid-answer
            raise TransientError(f"cannot reach the inference server at {self.url} ({URL_SETTING}): {exc}") from exc
        self._raise_for_status(response)
        try:
            return response.json()
        except ValueError:
            raise ConfigError(
                f"{self.url}{path} did not answer JSON: is {URL_SETTING} an OpenAI-compatible API (ending in /v1)?"
            ) from None

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        said = _server_message(response)
        where = f"the inference server at {self.url}"
        if status == 501 or (status >= 500 and "not supported" in said.lower()):
            # llama-server answers 500 to input its model cannot take (an image for a text model): no retry helps.
            raise ConfigError(
                f"{where} cannot serve this request with {self.model_id!r} ({status}: {said}): check "
                f"{self._model_setting}"
            )
        if status == 429 or status >= 500:
            raise TransientError(f"{where} answered {status}: {said}")
        if status in (401, 403):
            raise ConfigError(f"{where} refused the API key ({status}: {said}): check {KEY_SETTING}")
        if status == 404:
            raise ConfigError(
                f"{where} answered 404 ({said}): check {self._model_setting} (a model name the server serves) and "
                f"{URL_SETTING} (its base URL, ending in /v1)"
            )
        raise ConfigError(f"{where} refused the request ({status}): {said}")

    def _check_server(self) -> list[str]:
        """The server answers, takes the key and serves the configured model. Returns the models it serves."""
        body = self._send("GET", "/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ConfigError(f"{self.url}/models is not an OpenAI model list: is {URL_SETTING} right (ending in /v1)?")
        served = [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
        if self.model_id not in served:
            raise ConfigError(
                f"the inference server at {self.url} does not serve {self.model_id!r} ({self._model_setting}); it "
                f"serves: {', '.join(map(repr, served)) or 'nothing'}"
            )
        return served

    # --- generation ----------------------------------------------------------------------------------------------

    def _body(self, request: GenerationRequest, max_new_tokens: int) -> dict[str, Any]:
        content: str | list[dict[str, Any]] = request.prompt
        if self.reads_images:
            content = [*(_image_part(p) for p in request.images), {"type": "text", "text": request.prompt}]
        schema = {"name": "extraction", "schema": json.loads(request.schema_json), "strict": True}
        return {
            "model": self.model_id,
            "messages": [{"role": "user", "content": content}],
            "response_format": {"type": "json_schema", "json_schema": schema},
            "temperature": 0,
            "max_tokens": max_new_tokens,
            "logprobs": True,
        }

    def _generate_one(self, request: GenerationRequest, max_new_tokens: int) -> Generation:
        answer = self._send("POST", "/chat/completions", self._body(request, max_new_tokens))
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ConfigError(
                f"the inference server at {self.url} answered no chat completion: is {URL_SETTING} an "
                "OpenAI-compatible API?"
            ) from None
        tokens = aligned(token_scores(choice.get("logprobs")), text)
        if not tokens and text:
            _warn_once_without_logprobs(self.url)
        return Generation(text, tokens, finished=choice.get("finish_reason") != "length")

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]:
        """Every request at once (up to the in-flight limit); the answers in request order. The first fault stops
        the requests not yet sent and is raised."""
        futures: list[Future[Generation]] = [
            self._pool.submit(self._generate_one, request, max_new_tokens) for request in requests
        ]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()
