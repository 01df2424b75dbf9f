"""Document classification by embeddings: pages against one prototype per label, then the route to a schema.

A label's prototype is its text prototype (the mean embedding of its prompts, CLIP only), its example prototype (the
mean embedding of example images in a folder named after it), or both mixed by a weight. Scores are a softmax over
logit-scaled cosine similarities. Page embeddings are cached by image content hash and model id."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from schemas.errors import ConfigError
from schemas.records import Classification, DocumentPage, PageLabel, ReviewReason
from schemas.settings import ClassifierSettings, DeviceSettings
from storage.blobstore import file_sha256
from tasks.classify.words import says_something, text_probabilities
from tasks.models.cache import load_cached
from tasks.models.embedders import Embedder, EmbedderSpec, load_embedder

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
# Softmax sharpness for image-only prototypes (CLIP brings its own learned scale). Backbone features of pages are
# all alike (cosines 0.6-0.95), so small gaps must count: 20 turns a 0.1 cosine gap into a ~7x odds ratio. On the
# corpus (bench/classify.py) this sends 6 of 23 documents to review, 4 of the 6 misclassified among them.
PROTOTYPE_LOGIT_SCALE = 20.0
# A page this close (cosine) to one a reviewer corrected is that page again (a re-run, a rescan): the person's class
# stands over what its words say.
TAUGHT_SIMILARITY = 0.97


class EmbeddingCache(Protocol):
    def get(self, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put(self, model_id: str, vectors: dict[str, np.ndarray]) -> None: ...


def embedder_spec(classifier: ClassifierSettings, device: DeviceSettings) -> EmbedderSpec:
    """The model cache key of the configured classifier's embedder (clip, or a timm image backbone)."""
    if classifier.kind == "clip":
        model, weights = classifier.clip_model, classifier.clip_pretrained
    else:
        model, weights = classifier.image_embedder, classifier.image_embedder_weights
    kind: Literal["clip", "timm"] = "clip" if classifier.kind == "clip" else "timm"
    return EmbedderSpec(kind, model, weights, device.device, device.dtype, classifier.batch_size, device.cache_dir)


@dataclass(frozen=True)
class Prototypes:
    labels: tuple[str, ...]
    matrix: np.ndarray  # (labels, dim), rows L2-normalised
    logit_scale: float
    origin: tuple[str, ...] = ()  # per label: 'text', 'examples' or 'text+examples'
    # Pages reviewers corrected, each a prototype of its own (rows L2-normalised), and the label index of each: a
    # page close to one counts as close to its label, so a corrected kind of page is classified right next time
    # (averaged into the label's mean, one page among many would hardly move it).
    exemplars: np.ndarray | None = None
    exemplar_labels: np.ndarray | None = None

    def taught(self, embeddings: np.ndarray) -> np.ndarray:
        """Per embedding: whether it is (nearly) a page a reviewer corrected, which settles its class."""
        if self.exemplars is None or not len(self.exemplars):
            return np.zeros(len(embeddings), bool)
        closest: np.ndarray = (_normalise(embeddings) @ self.exemplars.T).max(axis=1) >= TAUGHT_SIMILARITY
        return closest

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, labels) softmax over logit-scaled cosine similarities (to the closer of a label's prototype and its
        exemplars)."""
        similarity = _normalise(embeddings) @ self.matrix.T
        if self.exemplars is not None and self.exemplar_labels is not None and len(self.exemplars):
            to_exemplars = _normalise(embeddings) @ self.exemplars.T
            for label in np.unique(self.exemplar_labels):
                closest = to_exemplars[:, self.exemplar_labels == label].max(axis=1)
                similarity[:, label] = np.maximum(similarity[:, label], closest)
        logits = self.logit_scale * similarity
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def embed_files(
    embedder: Embedder, files: Sequence[Path], cache: EmbeddingCache | None
) -> tuple[np.ndarray, list[int]]:
    """Embeddings of image files, in order, from the cache where present. Returns (vectors, positions of the
    files the model encoded), the encoded ones in forward batches of the embedder's batch size."""
    keys = [file_sha256(f) for f in files]
    known = cache.get(embedder.model_id, keys) if cache is not None else {}
    missing: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key not in known:
            missing.setdefault(key, position)
    if missing:
        fresh = dict(zip(missing, embedder.embed_images([files[i] for i in missing.values()]), strict=True))
        if cache is not None:
            cache.put(embedder.model_id, fresh)
        known = {**known, **fresh}
    return np.stack([known[k] for k in keys]), list(missing.values())


def example_images(examples_dir: Path | None, labels: Sequence[str], required: bool = True) -> dict[str, list[Path]]:
    """Example image files per label: `<examples_dir>/<label>/*.png|jpg|...` (sorted, so prototypes are stable).
    A missing folder is a configuration error when `required` (the learned examples' folder only appears with the
    first correction)."""
    if examples_dir is None:
        return {}
    if not examples_dir.is_dir():
        if not required:
            return {}
        raise ConfigError(f"DOCFLOW_CLASS_EXAMPLES: {examples_dir} is not a directory")
    found = {}
    for label in labels:
        folder = examples_dir / label
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if files:
            found[label] = files
    return found


def build_prototypes(
    embedder: Embedder,
    config: ClassifierSettings,
    examples: dict[str, list[Path]],
    cache: EmbeddingCache | None,
    learned: dict[str, list[Path]] | None = None,
) -> Prototypes:
    labels = config.label_names
    if not embedder.supports_text:
        missing = [label for label in labels if label not in examples]
        if missing:
            raise ConfigError(
                f"{embedder.model_id} embeds images only, so every label needs example images; none found for "
                f"{', '.join(missing)} (add <DOCFLOW_CLASS_EXAMPLES>/<label>/*.png, or use DOCFLOW_CLASSIFIER=clip)"
            )
    example_means = {
        label: _normalise(embed_files(embedder, files, cache)[0].mean(axis=0)) for label, files in examples.items()
    }
    rows, origin = [], []
    for label, descriptions in config.labels.items():
        text = _text_prototype(embedder, descriptions, config.templates) if embedder.supports_text else None
        image = example_means.get(label)
        if text is not None and image is not None:
            w = config.example_weight
            rows.append(_normalise((1 - w) * text + w * image))
            origin.append("text+examples")
        else:
            vector = text if text is not None else image
            assert vector is not None  # an image-only embedder has examples for every label (checked above)
            rows.append(vector)
            origin.append("text" if text is not None else "examples")
    scale = config.logit_scale or embedder.logit_scale or PROTOTYPE_LOGIT_SCALE
    exemplars, exemplar_labels = None, None
    pages = [(labels.index(label), f) for label, files in (learned or {}).items() if label in labels for f in files]
    if pages:
        exemplars = _normalise(embed_files(embedder, [f for _, f in pages], cache)[0])
        exemplar_labels = np.array([index for index, _ in pages])
    return Prototypes(
        labels=labels,
        matrix=np.stack(rows),
        logit_scale=scale,
        origin=tuple(origin),
        exemplars=exemplars,
        exemplar_labels=exemplar_labels,
    )


def _text_prototype(embedder: Embedder, descriptions: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Prompt ensembling: the mean of the normalised embeddings of every template x description."""
    prompts = [t.format(d) for d in descriptions for t in templates]
    return _normalise(embedder.embed_texts(prompts).mean(axis=0))


def load_prototypes(
    config: ClassifierSettings, spec: EmbedderSpec, cache: EmbeddingCache | None
) -> tuple[Embedder, Prototypes]:
    """The embedder and its prototypes, built once per worker for a label configuration (and example files)."""
    embedder = load_embedder(spec)
    examples = example_images(config.examples, config.label_names)
    learned = example_images(config.learned_examples, config.label_names, required=False)
    stamp = tuple(
        (label, tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
        for label, files in sorted(examples.items()) + sorted(learned.items())
    )
    prototypes = load_cached(
        "prototypes",
        (spec, config.model_dump_json(), stamp),  # the settings hold dicts: their JSON is the hashable key
        lambda: build_prototypes(embedder, config, examples, cache, learned),
        f"label prototypes for {embedder.model_id}",
    )
    return embedder, prototypes


def classify_documents(
    documents: Sequence[Sequence[DocumentPage]],
    config: ClassifierSettings,
    spec: EmbedderSpec,
    cache: EmbeddingCache | None,
) -> tuple[list[Classification], list[list[int]]]:
    """Classify documents from their page images (the first page, or every page: mean of page probabilities).
    The pages of all documents go to the model together, so forward batches are filled across documents.
    Returns the classifications and, per forward batch, the index of the document of each encoded row."""
    embedder, prototypes = load_prototypes(config, spec, cache)
    chosen = [list(pages if config.pages == "all" else pages[:1]) for pages in documents]
    owners = [index for index, pages in enumerate(chosen) for _ in pages]
    files = [page.path for pages in chosen for page in pages]
    if any(f is None for f in files):
        raise ValueError("classification needs the pages' local image files")
    vectors, encoded = embed_files(embedder, [f for f in files if f is not None], cache)
    probs = prototypes.probabilities(vectors) if len(files) else np.zeros((0, len(prototypes.labels)))
    if config.text_sharpness > 0 and len(files):
        texts = [page.text for pages in chosen for page in pages]
        taught = prototypes.taught(vectors)
        probs = np.where(taught[:, None], probs, with_words(probs, texts, prototypes.labels, config))
    encoded_by_owner = Counter(owners[i] for i in encoded)
    results, first = [], 0
    for index, pages in enumerate(chosen):
        rows = slice(first, first + len(pages))
        first += len(pages)
        numbers = [p.page_number for p in pages]
        results.append(
            summarise(
                probs[rows], prototypes.labels, numbers, config, embedder.model_id, encoded_by_owner.get(index, 0)
            )
        )
    size = spec.batch_size
    batches = [[owners[i] for i in encoded[start : start + size]] for start in range(0, len(encoded), size)]
    return results, batches


def with_words(
    image_probs: np.ndarray, texts: Sequence[str], labels: Sequence[str], config: ClassifierSettings
) -> np.ndarray:
    """(pages, labels) probabilities from the page images' and the pages' words together: the image's,
    raised to DOCFLOW_CLASS_IMAGE_WEIGHT, times the words' (tasks/classify/words.py), normalised. A page
    without words to read (a photo, a blank scan) keeps its image's probabilities."""
    joint = image_probs.copy()
    for page, text in enumerate(texts):
        if says_something(text):
            words = text_probabilities(text, labels, config.text_sharpness)
            joint[page] = np.power(np.maximum(image_probs[page], 1e-12), config.image_weight) * words
            joint[page] /= joint[page].sum()
    return joint


def classify_pages(
    pages: Sequence[DocumentPage], config: ClassifierSettings, spec: EmbedderSpec, cache: EmbeddingCache | None
) -> Classification:
    """One document's classification (see classify_documents)."""
    return classify_documents([pages], config, spec, cache)[0][0]


def summarise(
    page_probs: np.ndarray,
    labels: Sequence[str],
    page_numbers: Sequence[int],
    config: ClassifierSettings,
    model_id: str,
    encoded: int,
) -> Classification:
    doc = page_probs.mean(axis=0)
    order = np.argsort(-doc)
    top = int(order[0])
    second = int(order[1]) if len(order) > 1 else None
    label = labels[top]
    route = config.route(label)
    if second is not None and doc[top] - doc[second] < config.review_min_margin and route in ("generic", None):
        # In doubt between a generic page and an invoice or a receipt: the schema that asks for the amounts
        # and names is the one to try (the generic one would end `done` with neither).
        route = config.route(labels[second]) if config.route(labels[second]) not in ("generic", None) else route
    return Classification(
        label=label,
        probability=float(doc[top]),
        margin=float(doc[top] - (doc[second] if second is not None else 0.0)),
        runner_up=labels[second] if second is not None else None,
        scores={name: round(float(p), 4) for name, p in zip(labels, doc, strict=True)},
        route=route,
        model_id=model_id,
        pages=tuple(
            PageLabel(page_number=n, label=labels[int(np.argmax(p))], probability=float(np.max(p)))
            for n, p in zip(page_numbers, page_probs, strict=True)
        ),
        encoded=encoded,
    )


def review_reasons(c: Classification, config: ClassifierSettings) -> list[ReviewReason]:
    """Why a person should check the class (empty: it can be trusted). `uncertain_class` carries the top label's
    probability, `ambiguous_class` the margin over the runner-up."""
    reasons = []
    if c.probability < config.review_min_probability:
        reasons.append(
            ReviewReason(
                stage="classify",
                code="uncertain_class",
                message=f"uncertain document class: {c.label!r} at probability {c.probability:.2f} "
                f"(below DOCFLOW_REVIEW_MIN_CLASS_PROBABILITY={config.review_min_probability})",
                value=c.probability,
            )
        )
    if c.runner_up is not None and c.margin < config.review_min_margin:
        reasons.append(
            ReviewReason(
                stage="classify",
                code="ambiguous_class",
                message=f"ambiguous document class: {c.label!r} {c.probability:.2f} vs {c.runner_up!r} "
                f"{c.probability - c.margin:.2f}, margin {c.margin:.2f} (below DOCFLOW_REVIEW_MIN_CLASS_MARGIN="
                f"{config.review_min_margin})",
                value=c.margin,
            )
        )
    return reasons
