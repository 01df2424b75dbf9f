"""PDF rendering throughput: docflow's preprocessing vs a bare `pdftoppm` call on the same pages, same run.

docflow's side is the real stage: pdfinfo geometry, per-range pdf2image calls with the pixel budget, and
publishing every page into a local derived store. The bare side is one `pdftoppm -r DPI -jpeg` per document.
Both write JPEG at the same quality. Prints a per-document table, then the key figures on the last line.

    .venv/bin/python bench/render.py [--corpus ../shared/corpus] [--dpi 150] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.local import process_local_file  # noqa: E402
from schemas.settings import RenderSettings, Settings, load_settings  # noqa: E402
from tasks.preprocess.pdf import read_geometry  # noqa: E402

# The later stages are not what this measures.
RENDER_ONLY: dict[str, Any] = {"extract": False, "classifier": "keywords"}


def docflow_render(path: Path, config: Settings, work: Path) -> int:
    result = process_local_file(path, config, work)
    return len(result.pages)


def bare_pdftoppm(path: Path, dpi: int, quality: int, last_page: int, work: Path) -> int:
    out = work / "bare"
    out.mkdir()
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            str(dpi),
            "-jpeg",
            "-jpegopt",
            f"quality={quality}",
            "-l",
            str(last_page),
            str(path),
            str(out / "p"),
        ],
        check=True,
        capture_output=True,
    )
    return len(list(out.iterdir()))


def timed(fn, *args) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pages = fn(*args, Path(tmp))
        return time.perf_counter() - start, pages


def measure_memory(path: Path, dpi: int) -> dict[str, float]:
    """Render one document in a fresh process; report that process's and its children's peak RSS."""
    code = (
        "import json,resource,sys,tempfile; from pathlib import Path; sys.path.insert(0, %r);"
        "from bench.render import docflow_render, load_settings, RENDER_ONLY;"
        "c = load_settings(pdf_dpi=%d, **RENDER_ONLY);"
        "t = tempfile.mkdtemp(); n = docflow_render(Path(%r), c, Path(t));"
        "print(json.dumps({'pages': n, 'self_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'child_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    ) % (str(REPO), dpi, str(path))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=RenderSettings().chunk_pages, help="pages per poppler call")
    args = parser.parse_args()
    if not shutil.which("pdftoppm"):
        sys.exit("pdftoppm not found: install poppler-utils (make setup does)")

    settings = load_settings(pdf_dpi=args.dpi, render_chunk_pages=args.chunk, **RENDER_ONLY)
    pdfs = sorted((args.corpus / "pdf").glob("*.pdf"))
    print(f"{'document':45s} {'pages':>5s} {'docflow s':>10s} {'pdftoppm s':>10s} {'ratio':>6s}")
    total_ours = total_bare = 0.0
    total_pages = 0
    for pdf in pdfs:
        count, _ = read_geometry(pdf, settings.render.max_pages, 60)
        last = min(count, settings.render.max_pages)
        ours, bare = [], []
        for _ in range(args.repeat):  # alternate so both sides see the same machine state
            t, n_ours = timed(docflow_render, pdf, settings)
            ours.append(t)
            t, n_bare = timed(bare_pdftoppm, pdf, args.dpi, settings.render.jpeg_quality, last)
            bare.append(t)
        if n_ours != n_bare:
            sys.exit(f"{pdf.name}: docflow rendered {n_ours} pages, pdftoppm {n_bare}")
        o, b = statistics.median(ours), statistics.median(bare)
        total_ours += o
        total_bare += b
        total_pages += n_ours
        print(f"{pdf.name[:45]:45s} {n_ours:5d} {o:10.3f} {b:10.3f} {b / o:6.2f}")
    ratio = total_bare / total_ours  # throughput ratio: docflow pages/s over pdftoppm pages/s
    print(f"{'TOTAL':45s} {total_pages:5d} {total_ours:10.3f} {total_bare:10.3f} {ratio:6.2f}")
    print(f"docflow {total_pages / total_ours:.1f} pages/s, pdftoppm {total_pages / total_bare:.1f} pages/s")

    big = args.corpus / "pdf" / "pypdfsf_GeoTopo-117pages.pdf"
    memory = measure_memory(big, args.dpi)
    print(
        f"{big.name}: {memory['pages']} pages, peak RSS python {memory['self_mb']:.0f} MB, "
        f"largest poppler process {memory['child_mb']:.0f} MB"
    )
    print(
        f"render_ratio={ratio:.2f} docflow_pages_per_s={total_pages / total_ours:.1f} "
        f"pdftoppm_pages_per_s={total_pages / total_bare:.1f} pages={total_pages} "
        f"peak_rss_mb={memory['self_mb']:.0f} poppler_peak_rss_mb={memory['child_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
