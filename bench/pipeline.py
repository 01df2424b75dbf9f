"""The staged flow against the old per-object order, on the same inputs, in one run.

The old order is a git ref (default: the commit before the staged pipeline), exported to a temporary folder and
run with this checkout's virtual environment. Each shape runs in a process of its own, against its own temporary
Prefect server and SQLite database; a first run over an empty inbox starts the server and creates the schema, so
the timings cover only the flow run itself.

(a) per-object overhead: N small generated images, extraction off, the keyword classifier (no model), so what is
    measured is the orchestration around preprocessing: objects/s.
(b) model batching: a mixed set of documents (one- and several-page PDFs, images) through the tiny random
    Qwen2-VL on CPU: pages/s, and the mean forward-batch fill (the staged flow records it per stage; the old order
    batched the pages of one document at a time, so its fill follows from the page counts).

    .venv/bin/python bench/pipeline.py [--images 300] [--copies 3] [--old-ref a985cc7]

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
RUNNER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.getcwd())
from flows.pipeline import nightly
flow = nightly
inbox = os.environ["DOCFLOW_SOURCE"]
os.environ["DOCFLOW_SOURCE"] = os.environ["BENCH_EMPTY"]
flow()
os.environ["DOCFLOW_SOURCE"] = inbox
start = time.perf_counter()
summary = flow()
seconds = time.perf_counter() - start
stages = [s.model_dump() for s in getattr(summary, "stages", ())]
print("BENCH" + json.dumps({"seconds": seconds, "processed": summary.processed, "by_status": summary.by_status,
                           "stages": stages}))
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


def vlm_env(model: Path, inbox: Path, batch_size: int) -> dict[str, str]:
    return {
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="small images for the overhead measurement")
    parser.add_argument("--copies", type=int, default=3, help="copies of the mixed document set (7 pages each)")
    parser.add_argument("--batch-size", type=int, default=4, help="DOCFLOW_EXTRACT_BATCH_SIZE for (b)")
    parser.add_argument("--old-ref", default=OLD_REF, help="git ref of the old per-object order")
    parser.add_argument("--new-ref", help="git ref of the staged flow (default: this checkout, as it is)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    from tests.support.tiny_qwen2vl import build_tiny_qwen2vl

    tmp = Path(tempfile.mkdtemp(prefix="docflow-bench-pipeline-"))
    try:
        old_tree = export_tree(args.old_ref, tmp / "old")
        new_tree = export_tree(args.new_ref, tmp / "new") if args.new_ref else REPO
        images = tmp / "images"
        small_images(images, args.images)
        documents = tmp / "documents"
        page_counts = mixed_documents(documents, args.copies)
        model = build_tiny_qwen2vl(tmp / "tiny-qwen2-vl")
        pages = sum(page_counts)

        print(f"(a) {args.images} small images, extraction off")
        overhead: dict[str, float] = {}
        plain = {"DOCFLOW_SOURCE": str(images), "DOCFLOW_EXTRACT": "false"}
        shapes = [
            ("old", old_tree, plain, "defaults: 4 objects per task"),
            ("new", new_tree, plain, "defaults: windows by work, shared among the workers"),
            ("new_same_tasks", new_tree, {**plain, "DOCFLOW_BATCH_SIZE": "4"}, "4 objects per task, as the old"),
        ]
        for shape, tree, env, what in shapes:
            result = run_shape(tree, tmp / f"a-{shape}", env)
            overhead[shape] = result["processed"] / result["seconds"]
            print(
                f"  {shape}: {result['processed']} objects in {result['seconds']:.1f} s = {overhead[shape]:.2f}/s "
                f"({what})"
            )

        print(f"(b) {len(page_counts)} documents, {pages} pages, tiny random Qwen2-VL on CPU")
        batching: dict[str, float] = {}
        new_fill = 0.0
        for shape, tree in (("old", old_tree), ("new", new_tree)):
            result = run_shape(tree, tmp / f"b-{shape}", vlm_env(model, documents, args.batch_size))
            batching[shape] = pages / result["seconds"]
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
        old_calls = sum(math.ceil(n / args.batch_size) for n in page_counts)
        old_fill = pages / (old_calls * args.batch_size)
        print(
            f"images_objects_per_s_old={overhead['old']:.2f} images_objects_per_s_new={overhead['new']:.2f} "
            f"overhead_speedup={overhead['new'] / overhead['old']:.2f} "
            f"overhead_speedup_same_tasks={overhead['new_same_tasks'] / overhead['old']:.2f} "
            f"vlm_pages_per_s_old={batching['old']:.3f} vlm_pages_per_s_new={batching['new']:.3f} "
            f"vlm_speedup={batching['new'] / batching['old']:.2f} batch_fill_old={old_fill:.2f} "
            f"batch_fill_new={new_fill:.2f}"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
