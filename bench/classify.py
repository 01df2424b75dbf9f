"""Document classification accuracy and speed of the offline classifier (an ImageNet backbone with example-image
prototypes) on the corpus, against the hand-made kinds in bench/classify_truth.json.

Each input goes through docflow's own preprocessing (first page rendered / image resized, as the pipeline does),
then two evaluations, each with examples only from files outside the evaluated one:
  shipped:        prototypes from the examples in infra/class-examples (none of them is a corpus file);
  leave-one-out:  the shipped examples plus every other corpus input under its true kind.
Then the shipped prototypes joined with each page's words (text layer or OCR, tasks/classify/words.py), as the
pipeline classifies, and the review threshold that leave-one-out calibration gives. Labels 'letter' and 'other'
both count as the kind 'other'. Then images per second, batched vs one at a time, and the embedder's plain path
(per-image tensors, contiguous memory: the code before issue 27) vs its fast one (batch tensors converted at once,
channels_last), with the largest difference between their embeddings (decode + transform + forward, no cache; best
of 3 each, alternated). --speed-only skips the accuracy evaluations (and their OCR); --small-images N times the
small pages of bench/small_objects.py instead of the corpus's (no accuracy). Last line: key figures.

    .venv/bin/python bench/classify.py [--corpus ../shared/corpus] [--batch-size 16] [--speed-only]
    .venv/bin/python bench/classify.py --small-images 64
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas.defaults import CLASSIFY_BATCH_SIZE  # noqa: E402
from schemas.errors import InputError  # noqa: E402
from schemas.settings import RenderSettings, Settings, load_settings  # noqa: E402
from tasks.classify.prototypes import (  # noqa: E402
    Prototypes,
    build_prototypes,
    embed_files,
    embedder_spec,
    example_images,
    with_words,
)
from tasks.models.embedders import Embedder, load_embedder  # noqa: E402
from tasks.preprocess.image import normalise_image  # noqa: E402
from tasks.preprocess.ocr import OcrEngine, has_text, ocr_image  # noqa: E402
from tasks.preprocess.pdf import pdf_text_layer, render_pdf  # noqa: E402

KINDS = ("invoice", "receipt", "form", "other", "photo")
KIND_OF_LABEL = {"letter": "other"}


class MemoryEmbeddingCache:
    """An in-process EmbeddingCache: each page is embedded once for both evaluations (the pipeline uses the
    database's)."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], np.ndarray] = {}

    def get(self, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: self.vectors[(model_id, k)] for k in keys if (model_id, k) in self.vectors}

    def put(self, model_id: str, vectors: dict[str, np.ndarray]) -> None:
        self.vectors.update({(model_id, k): v for k, v in vectors.items()})


def first_page(path: Path, render: RenderSettings, out: Path) -> Path:
    out.mkdir(parents=True)
    if path.suffix.lower() == ".pdf":
        page = render_pdf(path, out, render.model_copy(update={"max_pages": 1})).pages[0]
    else:
        page = normalise_image(path, out, render.model_copy(update={"max_pages": 1})).pages[0]
    assert page.path is not None  # rendering and normalising write a file per page
    return page.path


def page_text(source: Path, page: Path, engine: OcrEngine) -> str:
    """The first page's words as the pipeline reads them: the PDF's text layer, else OCR of the page image."""
    layer = pdf_text_layer(source, 1)[0] if source.suffix.lower() == ".pdf" else ""
    return layer if has_text(layer) else ocr_image(page, engine)


def joint_labels(probabilities: np.ndarray, prototypes: Prototypes) -> list[str]:
    return [prototypes.labels[int(row.argmax())] for row in probabilities]


def confusion_table(pairs: list[tuple[str, str]]) -> str:
    counts = Counter(pairs)
    lines = ["truth \\ predicted " + " ".join(f"{k:>8s}" for k in KINDS)]
    for truth in KINDS:
        lines.append(f"{truth:17s} " + " ".join(f"{counts[(truth, p)]:8d}" for p in KINDS))
    return "\n".join(lines)


class PlainPath:
    """The embedder's path before issue 27: each image's tensor transform, stacked contiguous, through the model in
    contiguous memory."""

    def __init__(self, embedder: Embedder) -> None:
        import torch

        self.embedder = embedder
        self.model = copy.deepcopy(embedder.model).to(memory_format=torch.contiguous_format)  # type: ignore[attr-defined]
        self.encode = getattr(self.model, "encode_image", self.model)

    def embed_images(self, images: Sequence[Path]) -> np.ndarray:
        import torch

        from tasks.models.embedders import _open_rgb

        out = []
        for start in range(0, len(images), self.embedder.spec.batch_size):
            chunk = images[start : start + self.embedder.spec.batch_size]
            batch = torch.stack([self.embedder._transform(_open_rgb(i, self.embedder.input_side)) for i in chunk])
            with torch.inference_mode():
                vectors = self.encode(batch.to(self.embedder.device, self.embedder.dtype))
            out.append(torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def images_per_s(paths: dict[str, Embedder | PlainPath], images: list[Path]) -> dict[str, float]:
    """Each path's best images/s over 3 rounds, alternated: they share the machine's noise."""
    best: dict[str, float] = {}
    for _ in range(3):
        for name, path in paths.items():
            path.embed_images(images[:2])  # warm-up
            start = time.perf_counter()
            path.embed_images(images)
            best[name] = max(best.get(name, 0.0), len(images) / (time.perf_counter() - start))
    return best


def evaluate_accuracy(
    settings: Settings, embedder: Embedder, corpus: Path, pages: dict[str, Path], truth: dict[str, str]
) -> str:
    """The accuracy evaluations (printed); returns their key figures."""
    config = settings.classifier
    cache = MemoryEmbeddingCache()
    shipped = example_images(config.examples, config.label_names)
    names = list(pages)
    vectors, _ = embed_files(embedder, [pages[n] for n in names], cache)

    def predict(prototypes, index: int) -> str:  # type: ignore[no-untyped-def]
        label = prototypes.labels[int(prototypes.probabilities(vectors[index : index + 1]).argmax())]
        return KIND_OF_LABEL.get(label, label)

    def confidence(prototypes, index: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        p = sorted(prototypes.probabilities(vectors[index : index + 1])[0], reverse=True)
        return float(p[0]), float(p[0] - p[1])

    protos = build_prototypes(embedder, config, shipped, cache)
    shipped_pairs = [(truth[n], predict(protos, i)) for i, n in enumerate(names)]
    texts = [page_text(corpus / n, pages[n], settings.extraction.ocr_engine) for n in names]
    joint = with_words(protos.probabilities(vectors), texts, protos.labels, config)
    joint_kinds = [KIND_OF_LABEL.get(label, label) for label in joint_labels(joint, protos)]
    word_pairs = [(truth[n], kind) for n, kind in zip(names, joint_kinds, strict=True)]
    word_p = joint.max(axis=1)
    shipped_conf = [confidence(protos, i) for i in range(len(names))]
    loo_pairs = []
    for i, name in enumerate(names):
        examples = {label: list(files) for label, files in shipped.items()}
        for other in names:
            if other != name:
                examples.setdefault(truth[other], []).append(pages[other])
        loo_pairs.append((truth[name], predict(build_prototypes(embedder, config, examples, cache), i)))

    print(f"\n{'input':52s} {'truth':8s} {'shipped':8s} {'p':>5s} {'margin':>6s} {'loo':8s}")
    for name, (t, s), (p, m), (_, loo) in zip(names, shipped_pairs, shipped_conf, loo_pairs, strict=True):
        print(f"{name:52s} {t:8s} {s:8s} {p:5.2f} {m:6.2f} {loo:8s}{'' if s == t else '  <- shipped wrong'}")
    review = [p < config.review_min_probability or m < config.review_min_margin for p, m in shipped_conf]
    right = [t == p for t, p in shipped_pairs]
    print(
        f"\nreview (shipped, default thresholds): {sum(review)} of {len(names)}; wrong and not sent to review: "
        f"{sum(not r and not ok for r, ok in zip(review, right, strict=True))}"
    )
    accuracy = sum(t == p for t, p in shipped_pairs) / len(names)
    loo_accuracy = sum(t == p for t, p in loo_pairs) / len(names)
    print(f"\nshipped examples only: accuracy {accuracy:.2f} ({len(names)} inputs)\n{confusion_table(shipped_pairs)}")
    print(f"\nleave-one-out (+ other corpus inputs): accuracy {loo_accuracy:.2f}\n{confusion_table(loo_pairs)}")
    words_accuracy = sum(t == p for t, p in word_pairs) / len(names)
    print(f"\nshipped examples joined with the page's words: accuracy {words_accuracy:.2f}")
    print(confusion_table(word_pairs))
    # The review threshold, leave-one-out: each input is judged by the probability above which no other input
    # was classified wrong.
    wrong = [t != p for t, p in word_pairs]
    missed = reviewed = 0
    for i in range(len(names)):
        threshold = max((word_p[j] for j in range(len(names)) if j != i and wrong[j]), default=0.0) + 0.01
        reviewed += bool(word_p[i] < threshold)
        missed += bool(wrong[i] and word_p[i] >= threshold)
    worst = max((p for p, w in zip(word_p, wrong, strict=True) if w), default=0.0)
    print(
        f"review threshold calibrated leave-one-out: {reviewed} of {len(names)} sent to review, {missed} wrong "
        f"and not sent; the most probable wrong class had p={worst:.2f} "
        f"(DOCFLOW_REVIEW_MIN_CLASS_PROBABILITY={config.review_min_probability})"
    )

    return (
        f"accuracy={accuracy:.2f} loo_accuracy={loo_accuracy:.2f} words_accuracy={words_accuracy:.2f} "
        f"words_wrong_unreviewed={missed} review_rate={sum(review) / len(names):.2f} "
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--batch-size", type=int, default=CLASSIFY_BATCH_SIZE)
    parser.add_argument("--speed-only", action="store_true", help="only the images/s figures")
    parser.add_argument(
        "--small-images",
        type=int,
        default=0,
        metavar="N",
        help="time on N small images of bench/small_objects.py (the 500-image run's pages), not the corpus pages",
    )
    args = parser.parse_args()

    settings = load_settings(classify_batch_size=args.batch_size)
    config = settings.classifier
    truth: dict[str, str] = {
        k: v
        for k, v in json.loads((REPO / "bench" / "classify_truth.json").read_text()).items()
        if not k.startswith("_")
    }
    spec = embedder_spec(config, settings.device)
    embedder = load_embedder(spec)

    with tempfile.TemporaryDirectory() as tmp:
        if args.small_images:
            from bench.small_objects import small_images

            small_images(Path(tmp) / "small", args.small_images)
            originals = sorted((Path(tmp) / "small").rglob("*.png"))
            images = [first_page(f, settings.render, Path(tmp) / "pages" / str(i)) for i, f in enumerate(originals)]
            figures, inputs = "", len(images)
        else:
            pages: dict[str, Path] = {}
            for i, name in enumerate(truth):
                try:
                    pages[name] = first_page(args.corpus / name, settings.render, Path(tmp) / str(i))
                except InputError as exc:
                    print(f"skipped {name}: {exc}")
            figures = "" if args.speed_only else evaluate_accuracy(settings, embedder, args.corpus, pages, truth)
            images, inputs = list(pages.values()) * 2, len(pages)
        timed: dict[str, Embedder | PlainPath] = {
            "batch 1": load_embedder(replace(spec, batch_size=1)),
            f"batch {args.batch_size}": embedder,
            "plain": PlainPath(embedder),
        }
        per_s = images_per_s(timed, images)
        batched, single, plain = per_s[f"batch {args.batch_size}"], per_s["batch 1"], per_s["plain"]
        difference = np.abs(timed["plain"].embed_images(images) - embedder.embed_images(images)).max()
        print(
            f"\nimages/s: batched ({args.batch_size}) {batched:.1f}, one at a time {single:.1f}, "
            f"the plain path batched ({args.batch_size}) {plain:.1f}: {batched / plain:.2f}x "
            f"(largest embedding difference {difference:.1e}; {len(images)} page images, {embedder.model_id}, "
            f"{embedder.device}, {torch_threads()} torch threads)"
        )
    print(
        f"{figures}batch_speedup={batched / single:.2f} fast_path_speedup={batched / plain:.2f} "
        f"images_per_s={batched:.1f} plain_images_per_s={plain:.1f} inputs={inputs}"
    )


if __name__ == "__main__":
    main()
