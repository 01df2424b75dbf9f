"""The staged flow against the old per-object order, on the same inputs, in one run.

The old order is a git ref (default: the commit before the staged pipeline), exported to a temporary folder and
run with this checkout's virtual environment. Each shape runs in a process of its own, against its own temporary
Prefect server and SQLite database; a first run over an empty inbox starts the server and creates the schema, so
the timings cover only the flow run itself.

(a) per-object overhead: N small generated images, extraction off, the keyword classifier (no model), so what is
    measured is the orchestration around preprocessing: objects/s.
(b) model batching: a mixed set of documents (one- and several-page PDFs, images) through the tiny random
    Qwen2-VL on CPU: pages/s, and the mean forward-batch fill (the staged flow records it per stage; the old order
    batched the pages of one document at a time, so its fill follows from the page counts). Both trees are timed
    from outside (bench/generate_probe.py): every generate() call (rows, decode steps, tokens written, padding)
    and OCR call, so the model's part shows apart from the OCR and orchestration around it. Both run with one
    torch thread (--torch-threads): the tiny model's matrices are too small to split across threads.

    .venv/bin/python bench/pipeline.py [--scenario a|b] [--images 300] [--copies 3] [--old-ref a985cc7]

Ends with one line of name=value figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OLD_REF = "a985cc7"  # main before the staged pipeline (one process-batch task running every stage per object)
SAMPLES = REPO / "infra" / "sample-inbox"
MIXED = [  # (file, pages)
    ("documents/invoice2data_AzureInterior.pdf", 1),
    ("documents/invoice2data_AmazonWebServices.pdf", 1),
    ("documents/pdfjs_sizes-mixed-page-sizes.pdf", 3),
    ("images/invoice2data_AmazonWebServices.png", 1),
    ("images/photo_donut_coffee_122.jpg", 1),
]

# Runs one flow in the exported tree: the first call (empty inbox) starts Prefect and migrates; the second is timed.
# With extraction on, bench/generate_probe.py times every generate() and OCR call, the same way in either tree.
RUNNER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.getcwd())
from flows.pipeline import nightly
flow = nightly
calls, ocr = [], []
if os.environ.get("DOCFLOW_EXTRACT") == "true":
    sys.path.append(os.environ["BENCH_DIR"])
    import generate_probe
    generate_probe.install(calls, ocr)
inbox = os.environ["DOCFLOW_SOURCE"]
os.environ["DOCFLOW_SOURCE"] = os.environ["BENCH_EMPTY"]
flow()
os.environ["DOCFLOW_SOURCE"] = inbox
start = time.perf_counter()
summary = flow()
seconds = time.perf_counter() - start
stages = [s.model_dump() for s in getattr(summary, "stages", ())]
print("BENCH" + json.dumps({"seconds": seconds, "processed": summary.processed, "by_status": summary.by_status,
                           "stages": stages, "generate_calls": calls, "ocr_seconds": ocr}))
"""


def export_tree(ref: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def small_images(inbox: Path, count: int) -> None:
    from PIL import Image, ImageDraw

    inbox.mkdir(parents=True)
    for n in range(count):
        img = Image.new("RGB", (320, 240), (255 - n % 200, 240, 230))
        draw = ImageDraw.Draw(img)
        draw.rectangle((20 + n % 50, 30, 200, 120), outline=(0, 0, 0), width=3)
        draw.text((30, 150), f"receipt {n}", fill=(0, 0, 0))
        img.save(inbox / f"img-{n:04d}.jpg", quality=85)


def mixed_documents(inbox: Path, copies: int) -> list[int]:
    inbox.mkdir(parents=True)
    pages = []
    for copy in range(copies):
        for name, count in MIXED:
            source = SAMPLES / name
            shutil.copy(source, inbox / f"{copy}-{source.name}")
            pages.append(count)
    return pages


def run_shape(tree: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    work.mkdir(parents=True)
    (work / "empty").mkdir()
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_"))},
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DOCFLOW_DATABASE_URL": f"sqlite:///{work / 'docflow.db'}",
        "DOCFLOW_DERIVED_STORE": str(work / "derived"),
        "DOCFLOW_TEMP_DIR": str(work),
        "DOCFLOW_CLASSIFIER": "keywords",
        "DOCFLOW_TRANSCRIBE": "false",
        "BENCH_EMPTY": str(work / "empty"),
        "BENCH_DIR": str(Path(__file__).resolve().parent),
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER], cwd=tree, env=full, capture_output=True, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the run in {tree} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH"))
    return result


def vlm_env(model: Path, inbox: Path, batch_size: int, torch_threads: int) -> dict[str, str]:
    return {
        # The tiny model's matrices (hidden size 64) are too small to split: with torch's default of one thread per
        # core on a shared 2-core machine, each multiplication of a batch waits at a barrier for a descheduled
        # thread (measured: a [4, 64] x [64, 128] product 15 ms instead of microseconds), while one row at a time
        # (a matrix-vector product) is not split. The figure would measure the machine's load, not batching.
        "OMP_NUM_THREADS": str(torch_threads),
        "DOCFLOW_SOURCE": str(inbox),
        "DOCFLOW_EXTRACT": "true",
        "DOCFLOW_VLM_MODEL": str(model),
        "DOCFLOW_MAX_PIXELS": str(28 * 28 * 64),
        "DOCFLOW_VLM_MIN_PIXELS": str(28 * 28 * 4),
        "DOCFLOW_EXTRACT_BATCH_SIZE": str(batch_size),
        "DOCFLOW_EXTRACT_MAX_ATTEMPTS": "1",
        "DOCFLOW_EXTRACT_MAX_NEW_TOKENS": "48",
        "DOCFLOW_EXTRACT_MAX_STRING": "8",
        "DOCFLOW_EXTRACT_MAX_ITEMS": "2",
    }


def scenario_overhead(args: argparse.Namespace, tmp: Path, trees: dict[str, Path]) -> dict[str, float]:
    """(a) objects/s on small images, extraction off."""
    images = tmp / "images"
    small_images(images, args.images)
    print(f"(a) {args.images} small images, extraction off")
    overhead: dict[str, float] = {}
    plain = {"DOCFLOW_SOURCE": str(images), "DOCFLOW_EXTRACT": "false"}
    shapes = [
        ("old", trees["old"], plain, "defaults: 4 objects per task"),
        ("new", trees["new"], plain, "defaults: windows by work, shared among the workers"),
        ("new_same_tasks", trees["new"], {**plain, "DOCFLOW_BATCH_SIZE": "4"}, "4 objects per task, as the old"),
    ]
    for shape, tree, env, what in shapes:
        result = run_shape(tree, tmp / f"a-{shape}", env)
        overhead[shape] = result["processed"] / result["seconds"]
        print(
            f"  {shape}: {result['processed']} objects in {result['seconds']:.1f} s = {overhead[shape]:.2f}/s ({what})"
        )
    return {
        "images_objects_per_s_old": overhead["old"],
        "images_objects_per_s_new": overhead["new"],
        "overhead_speedup": overhead["new"] / overhead["old"],
        "overhead_speedup_same_tasks": overhead["new_same_tasks"] / overhead["old"],
    }


def scenario_batching(args: argparse.Namespace, tmp: Path, trees: dict[str, Path]) -> dict[str, float]:
    """(b) pages/s through the tiny random Qwen2-VL, with a profile of its generate() calls."""
    from bench import generate_probe
    from tests.support.tiny_qwen2vl import build_tiny_qwen2vl

    documents = tmp / "documents"
    page_counts = mixed_documents(documents, args.copies)
    model = build_tiny_qwen2vl(tmp / "tiny-qwen2-vl")
    pages = sum(page_counts)
    print(f"(b) {len(page_counts)} documents, {pages} pages, tiny random Qwen2-VL on CPU")
    batching: dict[str, float] = {}
    profiles: dict[str, dict[str, float]] = {}
    new_fill = 0.0
    for shape in ("old", "new"):
        result = run_shape(
            trees[shape], tmp / f"b-{shape}", vlm_env(model, documents, args.batch_size, args.torch_threads)
        )
        batching[shape] = pages / result["seconds"]
        profile = profiles[shape] = generate_probe.profile(result["generate_calls"], result["ocr_seconds"])
        if shape == "new":
            (extract,) = [s for s in result["stages"] if s["stage"] == "extract"]
            new_fill = extract["batch_rows"] / (extract["batches"] * extract["batch_capacity"])
            fill, how = new_fill, f"{extract['batches']} forward batches, as recorded"
        else:  # one document's pages per generate() call
            calls = sum(math.ceil(n / args.batch_size) for n in page_counts)
            fill, how = pages / (calls * args.batch_size), f"{calls} forward batches, from the page counts"
        print(
            f"  {shape}: {pages} pages in {result['seconds']:.1f} s = {batching[shape]:.2f} pages/s, "
            f"mean batch fill {fill:.0%} of {args.batch_size} ({how}); {result['by_status']}"
        )
        print(
            f"    generate(): {profile['calls']} calls, {profile['rows']} rows, {profile['generate_wall_s']:.1f} s "
            f"({profile['generate_s']:.1f} s summed over {profile['threads']} thread(s)); "
            f"{profile['steps']} decode steps, {profile['row_steps']} row-steps computed for {profile['written']} "
            f"tokens written ({profile['decode_waste']:.0%} spent on rows already stopped); prompt "
            f"{profile['prompt_tokens']:.0f} tokens/row, {profile['pad_share']:.0%} padding; "
            f"OCR {profile['ocr_calls']} pages {profile['ocr_s']:.1f} s; the rest "
            f"{result['seconds'] - profile['generate_wall_s'] - profile['ocr_s']:.1f} s (preprocessing, orchestration, "
            "loading the models)"
        )
    old_calls = sum(math.ceil(n / args.batch_size) for n in page_counts)
    old, new = profiles["old"], profiles["new"]
    return {
        "vlm_pages_per_s_old": batching["old"],
        "vlm_pages_per_s_new": batching["new"],
        "vlm_speedup": batching["new"] / batching["old"],
        "vlm_generate_speedup": old["generate_wall_s"] / new["generate_wall_s"] if new["generate_wall_s"] else 0.0,
        "vlm_ocr_s_old": old["ocr_s"],
        "vlm_ocr_s_new": new["ocr_s"],
        "batch_fill_old": pages / (old_calls * args.batch_size),
        "batch_fill_new": new_fill,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="small images for the overhead measurement")
    parser.add_argument("--copies", type=int, default=3, help="copies of the mixed document set (7 pages each)")
    parser.add_argument("--batch-size", type=int, default=4, help="DOCFLOW_EXTRACT_BATCH_SIZE for (b)")
    parser.add_argument("--old-ref", default=OLD_REF, help="git ref of the old per-object order")
    parser.add_argument("--new-ref", help="git ref of the staged flow (default: this checkout, as it is)")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch's intra-op threads in (b) (OMP_NUM_THREADS), both trees"
    )
    parser.add_argument(
        "--scenario", choices=("a", "b", "all"), default="all", help="run one scenario only (default: both)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="docflow-bench-pipeline-"))
    try:
        trees = {
            "old": export_tree(args.old_ref, tmp / "old"),
            "new": export_tree(args.new_ref, tmp / "new") if args.new_ref else REPO,
        }
        figures: dict[str, float] = {}
        if args.scenario in ("a", "all"):
            figures |= scenario_overhead(args, tmp, trees)
        if args.scenario in ("b", "all"):
            figures |= scenario_batching(args, tmp, trees)
        print(
            " ".join(
                f"{name}={value:.3f}" if name.startswith("vlm_pages") else f"{name}={value:.2f}"
                for name, value in figures.items()
            )
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
