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

What is measured, for each device, each stage timed after one warm-up batch:
  classify:  tasks.models.embedders' open_clip embedder (ViT-B-32, random weights) on the page JPEGs, in batches of
             --clip-batch-size, as the classifier calls it: decode (JPEG draft), transform, forward, normalise.
  extract:   tasks.models.generation's VLM backend (the tiny random Qwen2-VL of tests/support, built into a temp
             folder, or --vlm) on the same pages, --batch-size pages per generate() call, invoices and receipts
             mixed in one batch (each request with its own grammar), greedy decoding constrained by xgrammar, up to
             --max-new-tokens new tokens per page.
Inputs are production-like: A4 pages at 150 dpi (1240x1754) with drawn text and rules, stored as JPEG quality 90
like rendered pages; the VLM's pixel budget is min 28*28*16, max --max-pixels (1280*28*28, ~1260 visual tokens per
page). The prompts have the shape of tasks.extract.extraction.build_prompt (that module is not imported: it pulls
in pydantic-settings through tasks.system_tools), the grammars are schema_json() of schemas.documents' Invoice and
Receipt with extraction's default bounds. A random model writes garbage, but valid-to-the-grammar garbage, usually until
--max-new-tokens cuts it: the timing is of the full decode budget.

Prints pages/s per stage and device, batch fill (mean pages per forward batch / configured batch size), new tokens
per second, peak CUDA memory, then the key figures on the last line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds

    @property
    def batch_fill(self) -> float:
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
    encode = embedder._encode

    def counting_encode(batch: Any) -> Any:  # the forward batches the embedder really makes
        batches.append(int(batch.shape[0]))
        return encode(batch)

    def work() -> None:
        embedder.embed_images(pages)

    embedder._encode = counting_encode  # type: ignore[method-assign]
    try:
        embedder.embed_images(pages[:batch_size])  # warm-up
        batches.clear()
        seconds, peak = _timed(device, work)
    finally:
        del embedder._encode  # the model cache keeps this embedder: leave it as it was
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
    return " ".join(f"{name}={value:.3g}" for name, value in figures.items())


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
    args = parser.parse_args(argv)
    if min(args.pages, args.batch_size, args.clip_batch_size, args.max_new_tokens) < 1:
        parser.error("--pages, --batch-size, --clip-batch-size and --max-new-tokens must be at least 1")

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
