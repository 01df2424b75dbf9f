"""RapidOCR as docflow runs it (both models on OpenVINO, in OpenVINO's own precision for this CPU or in float32)
against the library as it ships (onnxruntime, float32): speed and accuracy, one process, one run.

Accuracy against what people outside docflow wrote or drew:
- drawn: the small-object bench's images (bench/small_objects.py, seed 27), whose drawn lines are known: character
  error rate of the whole page's text (whitespace collapsed);
- transcribed: the corpus scans with a published transcription (ocrmypdf's linn scan rendered at 150 dpi, two FUNSD
  forms, SROIE 019 and 086): word recall and precision (upper-cased words, counted with repeats);
- receipts: the 40 labelled SROIE receipts of ../shared/corpus/extraction/: how many of their labelled values
  (merchant name, address, date as printed, total) appear verbatim in the page's text.
Speed: CPU milliseconds a page (every thread of the process: OpenVINO's included), one call at a time, after three
warm-up pages. Also: pages whose text differs from onnxruntime's.

    .venv/bin/python bench/ocr.py [--drawn 200] [--corpus ../shared/corpus]

Ends with one line of name=value figures.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rapidfuzz.distance import Levenshtein  # noqa: E402

from bench.small_objects import drawn_images  # noqa: E402
from tasks.preprocess import ocr  # noqa: E402


@dataclass(frozen=True)
class Page:
    path: Path
    truth: str  # drawn or transcribed text; a receipt's labelled values, one a line


def _collapsed(text: str) -> str:
    return " ".join(text.split())


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.upper()))


def character_error_rate(pages: list[Page], texts: list[str]) -> float:
    errors = sum(Levenshtein.distance(_collapsed(t), _collapsed(p.truth)) for p, t in zip(pages, texts, strict=True))
    return errors / max(1, sum(len(_collapsed(p.truth)) for p in pages))


def word_recall_precision(pages: list[Page], texts: list[str]) -> tuple[float, float]:
    right = read = truth = 0
    for page, text in zip(pages, texts, strict=True):
        got, want = _words(text), _words(page.truth)
        right, read, truth = right + sum((got & want).values()), read + got.total(), truth + want.total()
    return right / max(1, truth), right / max(1, read)


def values_found(pages: list[Page], texts: list[str]) -> tuple[int, int]:
    found = total = 0
    for page, text in zip(pages, texts, strict=True):
        for value in page.truth.splitlines():
            total += 1
            found += _collapsed(value).upper() in _collapsed(text).upper()
    return found, total


def drawn_pages(folder: Path, count: int) -> list[Page]:
    return [Page(path, text) for path, text in drawn_images(folder, count)]


def transcribed_pages(corpus: Path, folder: Path) -> list[Page]:
    truth = corpus / "ground_truth"
    linn = folder / "linn"
    scan = corpus / "pdf" / "ocrmypdf_linn-scan.pdf"
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", str(scan), str(linn)], check=True)
    pages = [Page(linn.with_suffix(".png"), (truth / "pdf" / "ocrmypdf_linn.reference.txt").read_text())]
    for name in ("funsd_82092117", "funsd_83594639"):
        form = json.loads((truth / "image" / f"{name}.annotation.json").read_text())["form"]
        pages.append(Page(corpus / "image" / f"{name}.png", " ".join(w["text"] for e in form for w in e["words"])))
    for name in ("sroie_019", "sroie_086"):
        rows = (truth / "image" / f"{name}.ocr-boxes.csv").read_text(errors="replace").splitlines()
        text = "\n".join(row.split(",", 8)[8] for row in rows if row.count(",") >= 8)  # x1,y1,...,y4,text
        pages.append(Page(corpus / "image" / f"{name}.jpg", text))
    return pages


def receipt_pages(corpus: Path) -> list[Page]:
    pages = []
    for line in (corpus / "extraction" / "truth.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["schema"] != "receipt":
            continue
        fields = record["fields"]
        total = f"{fields['total']:.2f}" if fields.get("total") is not None else None
        values = [fields.get("merchant_name"), fields.get("merchant_address"), fields.get("date_raw"), total]
        pages.append(Page(corpus / "extraction" / record["file"], "\n".join(v for v in values if v)))
    return pages


def reader(engine: Any) -> Callable[[Path], str]:
    """A page's text as docflow puts it together (rows rebuilt from the boxes), from the given RapidOCR engine."""
    return lambda path: ocr.page_text(engine(str(path)))


def timed(read: Callable[[Path], str], pages: list[Page]) -> tuple[list[str], float]:
    """The pages' texts and the CPU milliseconds a page, after three warm-up pages."""
    for page in pages[:3]:
        read(page.path)
    started = time.process_time()
    texts = [read(page.path) for page in pages]
    return texts, (time.process_time() - started) * 1000 / len(pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawn", type=int, default=200, help="drawn small images (default %(default)s)")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    args = parser.parse_args()

    engines = {
        "onnxruntime": ocr.rapidocr_on_onnxruntime(),
        "openvino_f32": ocr._rapidocr("f32"),
        "openvino_auto": ocr._rapidocr("auto"),
    }
    auto = engines["openvino_auto"].text_det.session
    auto_precision = getattr(auto, "precision", "onnxruntime")
    figures: dict[str, str] = {"auto_precision": auto_precision}
    with tempfile.TemporaryDirectory(prefix="docflow-bench-ocr-") as tmp:
        sets = {
            "drawn": drawn_pages(Path(tmp) / "drawn", args.drawn),
            "transcribed": transcribed_pages(args.corpus, Path(tmp)),
            "receipts": receipt_pages(args.corpus),
        }
        for set_name, pages in sets.items():
            print(f"{set_name}: {len(pages)} pages")
            reference: list[str] = []
            speed: dict[str, float] = {}
            for name, engine in engines.items():
                texts, ms = timed(reader(engine), pages)
                reference = reference or texts
                speed[name] = ms
                if set_name == "drawn":
                    key, value = "cer", f"{character_error_rate(pages, texts):.4f}"
                elif set_name == "transcribed":
                    recall, precision = word_recall_precision(pages, texts)
                    key, value = "word_recall", f"{recall:.4f} (precision {precision:.4f})"
                else:
                    found, total = values_found(pages, texts)
                    key, value = "values_found", f"{found}/{total}"
                changed = sum(a != b for a, b in zip(texts, reference, strict=True))
                label = f"{name} ({auto_precision})" if name == "openvino_auto" else name
                print(
                    f"  {label:<26} {key} {value:<28} {ms:7.1f} CPU-ms/page, "
                    f"{speed['onnxruntime'] / ms:4.2f}x onnxruntime, text differs on {changed} page(s)"
                )
                figures[f"{set_name}_{key}_{name}"] = value.split()[0]
                figures[f"{set_name}_ms_{name}"] = f"{ms:.1f}"
            figures[f"{set_name}_speedup_auto"] = f"{speed['onnxruntime'] / speed['openvino_auto']:.2f}"
            figures[f"{set_name}_speedup_auto_vs_f32"] = f"{speed['openvino_f32'] / speed['openvino_auto']:.2f}"
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
