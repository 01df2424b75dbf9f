"""A swarm of small objects through `docflow run`, end to end: what orchestration costs beside the stages.

Generates N small PNG images (seeded, varied: paper with a few lines of receipt- and letter-like words, forms,
photo-like gradients with blobs), then runs the `docflow run` command over them, extraction off, every other
setting at its default (SQLite, a local folder, the offline embedder classifier with OCR'd words), in a fresh folder
with a Prefect home of its own: start-up, the temporary Prefect server, model loading and the end-of-run report
included. The same inbox goes through the code of a baseline git ref (exported to a temporary folder, run with this
checkout's virtual environment) and through this checkout, in one invocation, so the ratio is measured on one
machine under one load.

Each tree is timed twice by default (--prefect-home both), each time with a new database: a first run, whose
Prefect home is new (Prefect's temporary server migrates its database first: seconds), and a steady-state run,
whose Prefect home was warmed by a run over an empty inbox first, as a nightly run finds it.

    .venv/bin/python bench/small_objects.py [--objects 500] [--baseline-ref 274ede3] [--no-baseline]
        [--prefect-home first|steady|both]
    .venv/bin/python bench/small_objects.py --objects 2000 --objects 20000 --models-off --no-baseline  # memory

--models-off uses the keyword classifier (no model): what is left is listing, discovery, claims, preprocessing and
the database writes; with several --objects it shows whether peak memory follows the inbox size.

Ends with one line of name=value figures.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "274ede3"  # main before windows were sized by work (16 objects each)

WORDS = [
    "TOTAL", "CASH", "CHANGE", "INVOICE", "BILL TO", "DUE DATE", "QTY", "PRICE", "TAX", "SUBTOTAL", "Dear Sir",
    "Regards", "Name:", "Date:", "Signature", "Amount", "Coffee", "Bread", "Milk", "Order #", "Account",
]  # fmt: skip


def small_images(inbox: Path, count: int, seed: int = 27) -> int:
    """`count` small PNGs of varied content in `inbox`; returns their total size in bytes."""
    return sum(path.stat().st_size for path, _ in drawn_images(inbox, count, seed))


def drawn_images(inbox: Path, count: int, seed: int = 27) -> list[tuple[Path, str]]:
    """`count` small PNGs of varied content in `inbox`, each with the text drawn on it (its lines; '' for a photo)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    inbox.mkdir(parents=True, exist_ok=True)
    drawn = []
    for n in range(count):
        width, height = rng.choice([(240, 320), (320, 240), (400, 300), (300, 420), (480, 360)])
        shape = n % 4
        lines = []
        if shape == 3:  # photo-like: a gradient with blobs
            image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
            draw = ImageDraw.Draw(image)
            for _ in range(6):
                x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(10, 60)
                colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:  # paper: lines of words (receipt, letter) or boxes (form)
            image = Image.new("RGB", (width, height), (250 - rng.randrange(20), 248, 240))
            draw = ImageDraw.Draw(image)
            y = 10 + rng.randrange(40)
            for _ in range(rng.randrange(1, 6)):  # a few lines: a label, a total, a heading
                if shape == 2:
                    draw.rectangle((10, y, width - 10, y + 18), outline=(0, 0, 0))
                words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 4)))
                lines.append(f"{words} {rng.randrange(1, 999)}.{rng.randrange(100):02d}")
                draw.text((14, y + 3), lines[-1], fill=(0, 0, 0))
                y += 22 + rng.randrange(30)
            if y + 20 < height:  # a box below the text: a stamp, a logo, a table
                draw.rectangle((rng.randrange(width // 2), y + 10, width - 10, min(height - 5, y + 60)), outline=90)
        path = inbox / f"{n // 1000:03d}" / f"img-{n:06d}.png"
        path.parent.mkdir(exist_ok=True)
        image.save(path, optimize=False)
        drawn.append((path, "\n".join(lines)))
    return drawn


def export_tree(ref: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


@dataclass(frozen=True)
class RunResult:
    objects: int
    seconds: float  # the `docflow run` command, start to exit
    peak_rss_mb: float  # the command's own process (the Prefect server is a child of its own)
    output: str

    @property
    def per_s(self) -> float:
        return self.objects / self.seconds


def _watch_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    """The process's peak resident memory (Linux's VmHWM), read until it exits."""
    status = Path(f"/proc/{pid}/status")
    while not stop.wait(0.05):
        try:
            text = status.read_text()
        except OSError:
            return
        match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
        if match:
            peak[0] = max(peak[0], int(match.group(1)) / 1024)


def docflow_run(
    tree: Path,
    work: Path,
    inbox: Path | str,
    objects: int,
    env: dict[str, str],
    prefect_home: Path | None = None,
) -> RunResult:
    """`docflow run` of `tree`'s code in the empty folder `work` (its own SQLite file and derived store) over `inbox`
    (a folder or a source URI such as s3://bucket/prefix/), with the Prefect home `prefect_home` (default: a new one
    in `work`); `env` may set the database and more."""
    work.mkdir(parents=True)
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_"))},
        "PYTHONPATH": str(tree),
        "PREFECT_HOME": str(prefect_home or work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DOCFLOW_SOURCE": str(inbox),
        "DOCFLOW_EXTRACT": "false",
        "COLUMNS": "200",
        **env,
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run"],
        cwd=work,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stop, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=_watch_rss, args=(proc.pid, stop, peak), daemon=True)
    watcher.start()
    output, _ = proc.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    (work / "run-output.txt").write_text(output)
    if proc.returncode != 0:
        raise RuntimeError(f"`docflow run` in {work} exited {proc.returncode}:\n{output[-4000:]}")
    match = re.search(r"processed (\d+)", output)
    processed = int(match.group(1)) if match else 0
    if processed != objects:
        raise RuntimeError(f"`docflow run` in {work} processed {processed} of {objects} objects:\n{output[-4000:]}")
    return RunResult(processed, seconds, peak[0], output)


def warmed_prefect_home(tree: Path, folder: Path, env: dict[str, str]) -> Path:
    """A Prefect home that one `docflow run` over an empty inbox has set up (its database migrated), as the home of
    a nightly run that ran before; returns its path."""
    empty = folder / "empty-inbox"
    empty.mkdir(parents=True)
    docflow_run(tree, folder / "warm-up", empty, 0, env, folder / "prefect")
    return folder / "prefect"


def timing_lines(output: str) -> list[str]:
    """The stage lines (and, where the code prints it, the orchestration line) of the end of a run."""
    return [
        line.strip() for line in output.splitlines() if line.strip().startswith(("stage ", "orchestration", "start-up"))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, action="append", help="inbox size; repeatable (default 500)")
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref to compare with (default %(default)s)")
    parser.add_argument("--no-baseline", action="store_true", help="run this checkout only")
    parser.add_argument("--models-off", action="store_true", help="keyword classifier: no model at all")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for both runs; repeatable")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--prefect-home",
        choices=["first", "steady", "both"],
        default="both",
        help="time a first run (a new Prefect home), the steady state (a home warmed by an empty run), or both",
    )
    args = parser.parse_args()
    sizes = args.objects or [500]
    homes = ["first", "steady"] if args.prefect_home == "both" else [args.prefect_home]
    env = dict(item.split("=", 1) for item in args.env)
    if args.models_off:
        env["DOCFLOW_CLASSIFIER"] = "keywords"

    tmp = Path(tempfile.mkdtemp(prefix="docflow-bench-small-"))
    figures: dict[str, str] = {}
    try:
        trees = [("after", REPO)]
        if not args.no_baseline:
            trees.insert(0, ("before", export_tree(args.baseline_ref, tmp / "before")))
        for size in sizes:
            inbox = tmp / f"inbox-{size}"
            size_bytes = small_images(inbox, size)
            print(f"{size} small PNG images ({size_bytes / size / 1024:.1f} KiB each on average), extraction off")
            rates = {}
            for name, tree in trees:
                for home in homes:
                    work = tmp / f"{name}-{size}-{home}"
                    prefect_home = (
                        warmed_prefect_home(tree, tmp / f"home-{name}-{size}", env) if home == "steady" else None
                    )
                    result = docflow_run(tree, work, inbox, size, env, prefect_home)
                    label = f"{name}_{size}" if home == "first" and len(homes) == 1 else f"{name}_{size}_{home}"
                    rates[(name, home)] = result.per_s
                    what = "first run, new Prefect home" if home == "first" else "steady state, Prefect home warmed"
                    print(
                        f"  {name} ({what}): {result.objects} objects in {result.seconds:.1f} s = "
                        f"{result.per_s:.2f} objects/s end to end, peak RSS {result.peak_rss_mb:.0f} MiB"
                    )
                    stage_s = sum(
                        float(s) for s in re.findall(r"^\s*stage \S+: .* in ([\d.]+) s over", result.output, re.M)
                    )
                    print(
                        f"    outside the stages' device time: {result.seconds - stage_s:.1f} s of "
                        f"{result.seconds:.1f} s"
                    )
                    for line in timing_lines(result.output):
                        print(f"    {line}")
                    figures[f"outside_stages_s_{label}"] = f"{result.seconds - stage_s:.1f}"
                    figures[f"objects_per_s_{label}"] = f"{result.per_s:.2f}"
                    figures[f"peak_rss_mb_{label}"] = f"{result.peak_rss_mb:.0f}"
            for home in homes:
                if ("before", home) in rates:
                    key = f"speedup_{size}" if len(homes) == 1 and home == "first" else f"speedup_{size}_{home}"
                    figures[key] = f"{rates[('after', home)] / rates[('before', home)]:.2f}"
        if len(sizes) > 1:
            small, large = min(sizes), max(sizes)
            suffix = "" if homes == ["first"] else f"_{homes[0]}"
            rss = [float(figures[f"peak_rss_mb_after_{n}{suffix}"]) for n in (large, small)]
            figures["rss_ratio_largest_to_smallest"] = f"{rss[0] / rss[1]:.2f}"
        print(" ".join(f"{k}={v}" for k, v in figures.items()))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
