"""The model stages alone, on CUDA (bf16) and on CPU (float32): docflow's own wrappers, no Prefect, no database.

On a bare GPU machine (PyTorch with its matching torchvision installed; no network, no weights), in the repo root:

    python3 -m pip install --no-deps -r bench/gpu_models_requirements.txt && python3 bench/gpu_models.py

With no registry there, bring the wheels (about 60 MiB for Python 3.12 on x86-64; pip download as below).

Through this workplace's device tool (see /work/.library/device/README.md: nothing can be fetched there, wheels
travel with the working tree, 64 MiB in all, so leave out numpy and pillow, which its image has). Here, once, in the
repo root (37 MiB of wheels for the device's Python 3.12):

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
        -r <(grep -vE '^(numpy|pillow)==' bench/gpu_models_requirements.txt)

then one `run` with carry [".whl"] and timeout_s 420 (defaults: ~1 min of setup and CPU on a 2-core machine, less
on the device's 16 cores, then CUDA), this command:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
    PYTHONUNBUFFERED=1 python3 bench/gpu_models.py 2>&1 | tee $OUT/log

torch, torchvision and triton are the machine's own: never carry them (a torchvision built for another torch fails to
import). Here, on CPU only:

    .venv/bin/python bench/gpu_models.py [--pages 16] [--batch-size 4] [--clip-batch-size 16] [--max-new-tokens 128]
        [--devices cpu,cuda] [--vlm PATH_OR_HUB_ID] [--max-pixels 1003520] [--clip-model ViT-B-32]
        [--in-flight 8] [--vllm-url URL [--vllm-model NAME]] [--no-vllm] [--vllm-start-timeout 900]

What is measured, for each device, each stage timed after one warm-up batch:
  classify:  tasks.models.embedders' open_clip embedder (ViT-B-32, random weights) on the page JPEGs, in batches of
             --clip-batch-size, as the classifier calls it: decode (JPEG draft), transform, forward, normalise.
  extract:   tasks.models.generation's VLM backend (the tiny random Qwen2-VL of tests/support, built into a temp
             folder, or --vlm) on the same pages, --batch-size pages per generate() call, invoices and receipts
             mixed in one batch (each request with its own grammar), greedy decoding constrained by xgrammar, up to
             --max-new-tokens new tokens per page.
  vllm:      the same extraction requests (after one warm-up window) through a vLLM server, which batches them
             continuously, as docflow's OpenAI-compatible backend (tasks/models/generation/openai_server.py) sends
             them: chat completions, the page as a base64 JPEG image part, the schema as response_format
             json_schema (xgrammar), greedy, the chosen tokens' log-probabilities, --in-flight requests at once.
             Plain urllib: nothing beyond the requirements above. Needs CUDA and vLLM (`vllm` on PATH or importable;
             not in the requirements: pip install vllm==0.33.0, the release infra/compose.yaml pins, with its own
             torch; its wheel alone is 336 MB, too big to carry through the device tool). The bench then frees the
             in-process models' GPU memory and starts `vllm serve` on the same model (--vlm) on a free port, with
             --max-num-seqs = --in-flight and the same pixel budget. Or a server already running anywhere:
             --vllm-url http://host:8000/v1 (--vllm-model: the name it serves, default its first model).
             --no-vllm skips it. Its fill is the mean number of requests in flight / --in-flight.
Inputs are production-like: A4 pages at 150 dpi (1240x1754) with drawn text and rules, stored as JPEG quality 90
like rendered pages; the VLM's pixel budget is min 28*28*16, max --max-pixels (1280*28*28, ~1260 visual tokens per
page). The prompts have the shape of tasks.extract.extraction.build_prompt (that module is not imported: it pulls
in pydantic-settings through tasks.system_tools), the grammars are schema_json() of schemas.documents' Invoice and
Receipt with extraction's default bounds. A random model writes garbage, but valid-to-the-grammar garbage, usually until
--max-new-tokens cuts it: the timing is of the full decode budget.

Prints pages/s per stage and device, batch fill (mean pages per forward batch / configured batch size), new tokens
per second, peak CUDA memory, then the key figures on the last line (with a server: vllm_extract_pages_per_s and
vllm_vs_cuda_extract, its speed over the in-process path's on CUDA, or vllm_vs_cpu_extract without CUDA).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas.defaults import CLASSIFY_BATCH_SIZE, VLM_MIN_PIXELS  # noqa: E402
from schemas.documents import DocumentSchema, Invoice, Receipt  # noqa: E402
from storage.batching import chunked  # noqa: E402
from tasks.models.embedders import Embedder, EmbedderSpec, load_embedder  # noqa: E402
from tasks.models.generation.base import GenerationRequest, GeneratorSpec, StructuredGenerator  # noqa: E402
from tasks.models.generation.constrained import schema_json  # noqa: E402
from tasks.models.generation.registry import load_generator  # noqa: E402

PAGE_SIZE = (1240, 1754)  # A4 at 150 dpi, DOCFLOW_PDF_DPI's default
JPEG_QUALITY = 90  # DOCFLOW_JPEG_QUALITY's default
VLM_MAX_PIXELS = 1280 * 28 * 28
MAX_STRING, MAX_ITEMS = 100, 6  # extraction's default grammar bounds (DOCFLOW_EXTRACT_MAX_STRING, _MAX_ITEMS)
SCHEMAS: tuple[type[DocumentSchema], ...] = (Invoice, Receipt)
DTYPES = {"cpu": "float32", "cuda": "bfloat16"}
# The structured-outputs backend flag of `vllm serve` 0.33 (vLLM renamed --guided-decoding-backend into this config);
# tests/unit/test_gpu_models_bench.py checks it against that release's own parser options.
VLLM_XGRAMMAR = "--structured-outputs-config.backend=xgrammar"


@dataclass
class StageResult:
    device: str
    stage: str  # "classify" | "extract"
    pages: int
    seconds: float
    batch_sizes: list[int]
    configured_batch: int
    new_tokens: int = 0  # extract: generated tokens up to the first special one, all pages together
    finished: int = 0  # extract: answers that ended before max_new_tokens
    peak_gib: float | None = None  # CUDA only
    fill: float | None = None  # a server: mean requests in flight / configured_batch (it batches them itself)

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds

    @property
    def batch_fill(self) -> float:
        if self.fill is not None:
            return self.fill
        return statistics.mean(self.batch_sizes) / self.configured_batch


def make_pages(folder: Path, count: int) -> list[Path]:
    """Synthetic page scans: a header, a table of ruled lines with amounts, a total; JPEG like rendered pages."""
    from PIL import Image, ImageDraw, ImageFont

    folder.mkdir(parents=True, exist_ok=True)
    try:
        font: Any = ImageFont.load_default(size=24)  # scalable when Pillow has FreeType
    except (TypeError, OSError):
        font = ImageFont.load_default()
    width, height = PAGE_SIZE
    paths = []
    for index in range(count):
        image = Image.new("RGB", PAGE_SIZE, "white")
        draw = ImageDraw.Draw(image)
        kind = SCHEMAS[index % len(SCHEMAS)].__name__.upper()
        draw.text((100, 90), f"ACME Supplies Ltd.   {kind} No. {1000 + index}", fill="black", font=font)
        draw.text((100, 130), f"Date: 2024-03-{index % 28 + 1:02d}    Customer: Example GmbH", fill="black", font=font)
        draw.line((100, 200, width - 100, 200), fill="black", width=3)
        total = 0.0
        for row in range(30):
            y = 230 + row * 44
            amount = (index * 31 + row * 17) % 500 + 0.5
            total += amount
            draw.text((110, y), f"{row + 1:3d}  Item {row + 1} description, qty {row % 5 + 1}", fill="black", font=font)
            draw.text((width - 300, y), f"{amount:9.2f} EUR", fill="black", font=font)
            draw.line((100, y + 38, width - 100, y + 38), fill=(170, 170, 170), width=1)
        draw.text((width - 420, height - 200), f"TOTAL {total:11.2f} EUR", fill="black", font=font)
        path = folder / f"page-{index:04d}.jpg"
        image.save(path, quality=JPEG_QUALITY)
        paths.append(path)
    return paths


def extraction_prompt(schema: type[DocumentSchema]) -> str:
    """A prompt of the shape and length of tasks.extract.extraction.build_prompt(schema, None)."""
    fields = "\n".join(f"- {name}: {field.description or ''}" for name, field in schema.model_fields.items())
    return (
        f"Extract the data of {schema.description} as JSON with these fields:\n\n{fields}\n\n"
        "Use only values printed in the document; null when a value is absent. Dates as YYYY-MM-DD.\n\n"
        "The document is the image above.\n\nJSON:"
    )


def _timed(device: str, work: Callable[[], None]) -> tuple[float, float | None]:
    """Seconds for work() (CUDA synchronised), and the peak CUDA memory it reached in GiB."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    work()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, (torch.cuda.max_memory_allocated() / 2**30 if cuda else None)


def bench_classify(device: str, pages: list[Path], batch_size: int, clip_model: str) -> tuple[StageResult, str]:
    spec = EmbedderSpec("clip", clip_model, None, device, DTYPES[device], batch_size)
    embedder: Embedder = load_embedder(spec)
    batches: list[int] = []
    forward = embedder._forward

    def counting_forward(batch: Any) -> Any:  # the forward batches the embedder really makes (torch or OpenVINO)
        batches.append(int(batch.shape[0]))
        return forward(batch)

    def work() -> None:
        embedder.embed_images(pages)

    embedder._forward = counting_forward  # type: ignore[method-assign]
    try:
        embedder.embed_images(pages[:batch_size])  # warm-up
        batches.clear()
        seconds, peak = _timed(device, work)
    finally:
        del embedder._forward  # the model cache keeps this embedder: leave it as it was
    result = StageResult(device, "classify", len(pages), seconds, batches, batch_size, peak_gib=peak)
    return result, f"{embedder.model_id} {embedder.dtype}"


def _visual_tokens(generator: StructuredGenerator, page: Path) -> int | None:
    """Visual tokens the VLM's processor makes of one page (after its 2x2 merge), when the generator has one."""
    from PIL import Image

    processor = getattr(generator, "processor", None)
    if processor is None:
        return None
    with Image.open(page) as image:
        grid = processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")["image_grid_thw"]
    merge = int(getattr(processor.image_processor, "merge_size", 2))
    return int(grid.prod()) // (merge * merge)


def bench_extract(
    device: str, pages: list[Path], batch_size: int, max_new_tokens: int, vlm: str, max_pixels: int
) -> tuple[StageResult, int | None]:
    spec = GeneratorSpec("vlm", vlm, device, DTYPES[device], VLM_MIN_PIXELS, max_pixels)
    generator = load_generator(spec)
    grammars = {s: schema_json(s.model_json_schema(), MAX_STRING, MAX_ITEMS) for s in SCHEMAS}
    requests = []
    for index, page in enumerate(pages):  # invoices and receipts alternate, so batches mix grammars
        schema = SCHEMAS[index % len(SCHEMAS)]
        requests.append(GenerationRequest(extraction_prompt(schema), grammars[schema], (page,)))
    # Warm-up: at least one batch, and every schema's grammar compiled (it is cached per generator).
    warm = [requests[i % len(requests)] for i in range(max(batch_size, len(SCHEMAS)))]
    for chunk in chunked(warm, batch_size):
        generator.generate(list(chunk), max_new_tokens)
    batches: list[int] = []
    counts = {"tokens": 0, "finished": 0}

    def work() -> None:
        for chunk in chunked(requests, batch_size):
            generations = generator.generate(list(chunk), max_new_tokens)
            batches.append(len(chunk))
            counts["tokens"] += sum(len(g.tokens) for g in generations)
            counts["finished"] += sum(g.finished for g in generations)

    seconds, peak = _timed(device, work)
    result = StageResult(
        device, "extract", len(pages), seconds, batches, batch_size, counts["tokens"], counts["finished"], peak
    )
    return result, _visual_tokens(generator, pages[0])


def key_figures(results: list[StageResult]) -> str:
    figures: dict[str, float] = {}
    for r in sorted(results, key=lambda r: (r.device != "cpu", r.device, r.stage != "extract")):
        figures[f"{r.device}_{r.stage}_pages_per_s"] = r.pages_per_s
        figures[f"{r.device}_{r.stage}_batch_fill"] = r.batch_fill
    by_key = {(r.device, r.stage): r for r in results}
    for stage in ("extract", "classify"):
        if ("cpu", stage) in by_key and ("cuda", stage) in by_key:
            figures[f"cuda_speedup_{stage}"] = by_key["cuda", stage].pages_per_s / by_key["cpu", stage].pages_per_s
    if ("vllm", "extract") in by_key:  # the server against the in-process path, on CUDA when that was measured
        for device in ("cuda", "cpu"):
            if (device, "extract") in by_key:
                ratio = by_key["vllm", "extract"].pages_per_s / by_key[device, "extract"].pages_per_s
                figures[f"vllm_vs_{device}_extract"] = ratio
                break
    return " ".join(f"{name}={value:.3g}" for name, value in figures.items())


def chat_request(
    model: str, prompt: str, schema_name: str, grammar: str, page_jpeg: bytes, max_tokens: int
) -> dict[str, Any]:
    """An OpenAI chat-completions body as docflow's server backend sends it for a VLM: the page first (the prompt
    says "the image above"), the schema as json_schema, greedy, log-probabilities of the chosen tokens."""
    image = "data:image/jpeg;base64," + base64.b64encode(page_jpeg).decode("ascii")
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": prompt}],
            }
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": json.loads(grammar), "strict": True},
        },
        "max_tokens": max_tokens,
        "temperature": 0,
        "logprobs": True,
    }


def vllm_serve_command(
    executable: list[str], model: str, served_name: str, port: int, max_num_seqs: int, min_pixels: int, max_pixels: int
) -> list[str]:
    """`vllm serve` as infra/compose.yaml runs it (xgrammar, one image per prompt), on localhost, decoding as many
    sequences at once as the bench keeps in flight, with the in-process path's pixel budget."""
    return [
        *executable,
        "serve",
        model,
        "--served-model-name",
        served_name,
        "--host=127.0.0.1",
        f"--port={port}",
        VLLM_XGRAMMAR,
        '--limit-mm-per-prompt={"image": 1, "video": 0}',
        f"--max-num-seqs={max_num_seqs}",
        "--mm-processor-kwargs=" + json.dumps({"min_pixels": min_pixels, "max_pixels": max_pixels}),
        "--gpu-memory-utilization=0.5",  # this process's CUDA context stays on the same GPU
    ]


def vllm_executable() -> list[str] | None:
    """How to run vLLM's CLI here: the `vllm` on PATH (its own environment), else this Python's vllm module."""
    found = shutil.which("vllm")
    if found:
        return [found]
    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerError(Exception):
    """The server scenario failed (vllm serve did not start, a request was refused): the in-process figures are
    still printed."""


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 600.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # the server's own words: a wrong model name, a schema it refuses
        raise ServerError(f"{url}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:500]}") from exc
    except OSError as exc:  # refused, reset, timed out
        raise ServerError(f"{url}: {exc}") from exc


@contextlib.contextmanager
def vllm_server(command: list[str], port: int, log: Path, timeout_s: float) -> Iterator[str]:
    """Start `vllm serve` in its own process group, wait for /health, yield its /v1 URL; stop it and its engine
    processes afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise ServerError(f"vllm serve exited with {process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise ServerError(f"vllm serve did not answer /health in {timeout_s:.0f} s:\n{tail}") from None
                time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def bench_server(
    url: str, model: str, pages: list[Path], in_flight: int, max_new_tokens: int
) -> tuple[StageResult, int]:
    """The extraction requests through an OpenAI-compatible server, `in_flight` at a time, after one warm-up window
    (grammars compiled, the image path exercised); also the mean prompt tokens per page (image and text)."""
    grammars = {s: schema_json(s.model_json_schema(), MAX_STRING, MAX_ITEMS) for s in SCHEMAS}
    bodies = []
    for index, page in enumerate(pages):  # invoices and receipts alternate, as in bench_extract
        schema = SCHEMAS[index % len(SCHEMAS)]
        bodies.append(
            chat_request(
                model,
                extraction_prompt(schema),
                schema.__name__.lower(),
                grammars[schema],
                page.read_bytes(),
                max_new_tokens,
            )
        )
    endpoint = url.rstrip("/") + "/chat/completions"
    lock = threading.Lock()
    counts = {"tokens": 0, "finished": 0, "prompt_tokens": 0, "busy_s": 0.0}

    def send(body: dict[str, Any]) -> None:
        start = time.perf_counter()
        answer = _http_json(endpoint, body)
        busy = time.perf_counter() - start
        usage = answer.get("usage") or {}
        with lock:
            counts["busy_s"] += busy
            counts["tokens"] += int(usage.get("completion_tokens", 0))
            counts["prompt_tokens"] += int(usage.get("prompt_tokens", 0))
            counts["finished"] += sum(c.get("finish_reason") == "stop" for c in answer["choices"])

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        warm = [bodies[i % len(bodies)] for i in range(max(in_flight, len(SCHEMAS)))]
        list(pool.map(send, warm))
        counts.update(tokens=0, finished=0, prompt_tokens=0, busy_s=0.0)
        start = time.perf_counter()
        list(pool.map(send, bodies))
        seconds = time.perf_counter() - start
    result = StageResult(
        "vllm",
        "extract",
        len(pages),
        seconds,
        [],
        in_flight,
        int(counts["tokens"]),
        int(counts["finished"]),
        fill=counts["busy_s"] / seconds / in_flight,
    )
    return result, int(counts["prompt_tokens"]) // len(pages)


def parse_devices(text: str | None) -> list[str]:
    import torch

    if text is None:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for device in devices:
        if device not in DTYPES:
            raise SystemExit(f"--devices: unknown device {device!r} (cpu, cuda)")
        if device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--devices: CUDA was asked for but torch.cuda.is_available() is False")
    return devices


def _bench_own_server(
    executable: list[str], vlm: str, pages: list[Path], args: argparse.Namespace, work: Path
) -> tuple[StageResult, int]:
    """Free the in-process models' GPU memory, start `vllm serve` on the same model, measure it, stop it."""
    import gc

    import torch

    from tasks.models import cache

    cache._loaded.clear()  # the bench's process is its own: nothing else needs these models
    gc.collect()
    torch.cuda.empty_cache()
    port = free_port()
    command = vllm_serve_command(
        executable, vlm, "docflow-bench-vlm", port, args.in_flight, VLM_MIN_PIXELS, args.max_pixels
    )
    print("starting: " + " ".join(command), flush=True)
    started = time.perf_counter()
    with vllm_server(command, port, work / "vllm.log", args.vllm_start_timeout) as url:
        print(f"vllm serve answered after {time.perf_counter() - started:.0f} s", flush=True)
        return bench_server(url, "docflow-bench-vlm", pages, args.in_flight, args.max_new_tokens)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=16, help="pages through each stage per device")
    parser.add_argument("--batch-size", type=int, default=4, help="pages per generate() call (extraction)")
    parser.add_argument(
        "--clip-batch-size", type=int, default=CLASSIFY_BATCH_SIZE, help="images per forward (classification)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="decode budget per page")
    parser.add_argument("--devices", default=None, help="comma-separated, of cpu,cuda (default: cpu, and cuda if any)")
    parser.add_argument("--vlm", default=None, help="VLM checkpoint (path or hub id); default: the tiny random one")
    parser.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture, random weights")
    parser.add_argument("--max-pixels", type=int, default=VLM_MAX_PIXELS, help="the VLM's pixel budget per page")
    parser.add_argument("--vllm-url", default=None, help="a running OpenAI-compatible server, base URL ending in /v1")
    parser.add_argument("--vllm-model", default=None, help="the model name it serves (default: its first model)")
    parser.add_argument("--no-vllm", action="store_true", help="skip the server scenario")
    parser.add_argument("--in-flight", type=int, default=8, help="server requests in flight (and its --max-num-seqs)")
    parser.add_argument("--vllm-start-timeout", type=float, default=900, help="seconds for vllm serve to come up")
    args = parser.parse_args(argv)
    if min(args.pages, args.batch_size, args.clip_batch_size, args.max_new_tokens, args.in_flight) < 1:
        parser.error("--pages, --batch-size, --clip-batch-size, --max-new-tokens and --in-flight must be at least 1")

    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    devices = parse_devices(args.devices)
    results: list[StageResult] = []
    with tempfile.TemporaryDirectory(prefix="docflow-bench-gpu-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        if args.vlm is None:
            from tests.support.tiny_qwen2vl import build_tiny_qwen2vl

            vlm = str(build_tiny_qwen2vl(work / "tiny-qwen2-vl"))
            vlm_name = "tiny random Qwen2-VL (tests/support/tiny_qwen2vl.py)"
        else:
            vlm = vlm_name = args.vlm
        pages = make_pages(work / "pages", args.pages)
        print(f"setup (model build, {len(pages)} pages): {time.perf_counter() - start:.1f} s")
        print(
            f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"CPU threads {torch.get_num_threads()}"
            + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else "")
        )
        notes = []
        for device in devices:
            classified, clip_name = bench_classify(device, pages, args.clip_batch_size, args.clip_model)
            extracted, visual = bench_extract(device, pages, args.batch_size, args.max_new_tokens, vlm, args.max_pixels)
            results += [classified, extracted]
            notes.append(
                f"{device}: classify {clip_name}; extract {vlm_name} {DTYPES[device]}, "
                f"{visual if visual is not None else '?'} visual tokens per page"
            )
        executable = vllm_executable() if "cuda" in devices else None  # vLLM serves on a GPU
        try:
            if args.no_vllm:
                pass
            elif args.vllm_url is not None:
                url = args.vllm_url
                model = args.vllm_model or _http_json(url.rstrip("/") + "/models")["data"][0]["id"]
                served, prompt_tokens = bench_server(url, model, pages, args.in_flight, args.max_new_tokens)
                results.append(served)
                notes.append(f"vllm: {url} serving {model}, {prompt_tokens} prompt tokens per page (image and text)")
            elif executable is not None:
                served, prompt_tokens = _bench_own_server(executable, vlm, pages, args, work)
                results.append(served)
                notes.append(
                    f"vllm: vllm serve {vlm_name} on this GPU, {prompt_tokens} prompt tokens per page (image and text)"
                )
            else:
                notes.append("vllm: not measured (needs CUDA and vLLM installed, or --vllm-url)")
        except ServerError as exc:
            print(f"vllm: {exc}", flush=True)
            notes.append("vllm: failed (above)")

    print()
    print(
        f"{'device':6s} {'stage':8s} {'pages':>5s} {'batch':>5s} {'fill':>5s} {'seconds':>8s} {'pages/s':>8s} "
        f"{'tokens/s':>8s} {'finished':>8s} {'peak GiB':>8s}"
    )
    for r in results:
        tokens = f"{r.new_tokens / r.seconds:8.1f}" if r.stage == "extract" else f"{'':8s}"
        finished = f"{r.finished:4d}/{r.pages:<3d}" if r.stage == "extract" else f"{'':8s}"
        peak = f"{r.peak_gib:8.2f}" if r.peak_gib is not None else f"{'':8s}"
        row = (
            f"{r.device:6s} {r.stage:8s} {r.pages:5d} {r.configured_batch:5d} {r.batch_fill:5.2f} "
            f"{r.seconds:8.2f} {r.pages_per_s:8.2f} {tokens} {finished} {peak}"
        )
        print(row.rstrip())
    print()
    for note in notes:
        print(note)
    print(f"{len(pages)} pages {PAGE_SIZE[0]}x{PAGE_SIZE[1]} JPEG, max {args.max_new_tokens} new tokens per page")
    print(key_figures(results))


if __name__ == "__main__":
    main()
