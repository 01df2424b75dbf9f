"""Classification with real models: a small open_clip model with random weights (built from a config, the real
tokenizer) for zero-shot scoring and prototype fusion, the real EfficientNet-Lite0 weights with the shipped
examples, and the embedding cache in real SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import select

from flows.pipeline import backfill, nightly
from schemas.errors import ConfigError
from schemas.records import DocumentPage
from schemas.settings import ClassifierSettings, load_settings
from storage.db import migrate, unit_of_work
from storage.embeddings import SqlEmbeddingCache
from storage.tables import ClassificationRow, ExtractionRow, Page, SourceObject
from tasks.classify.prototypes import classify_documents, classify_pages, embedder_spec, load_prototypes, review_reasons
from tasks.models.embedders import ClipEmbedder, EmbedderSpec, load_embedder
from tasks.preprocess.ocr import with_page_text
from tests.integration.conftest import Configure

Classifier = tuple[ClassifierSettings, EmbedderSpec]


def _classifier(**settings: object) -> Classifier:
    """The classifier's settings and its model key, from settings as the environment names them."""
    loaded = load_settings(**settings)
    return loaded.classifier, embedder_spec(loaded.classifier, loaded.device)


def _clip_config(tiny_clip: Path, **settings: object) -> Classifier:
    defaults = {"classifier": "clip", "clip_model": str(tiny_clip), "clip_pretrained": "", "class_examples": ""}
    return _classifier(**{**defaults, **settings})


def _file_page(number: int, path: Path) -> DocumentPage:
    with Image.open(path) as img:
        return DocumentPage(page_number=number, path=path, width=img.width, height=img.height)


def _page(sample_inbox: Path, name: str) -> list[DocumentPage]:
    return [_file_page(1, next(sample_inbox.rglob(name)))]


def test_zero_shot_scores_are_softmax_of_scaled_similarity_to_prompt_ensembles(
    tiny_clip: Path, sample_inbox: Path
) -> None:
    config, spec = _clip_config(tiny_clip)
    embedder, prototypes = load_prototypes(config, spec, None)
    assert prototypes.origin == ("text",) * len(config.labels)
    result = classify_pages(_page(sample_inbox, "photo_donut_coffee_122.jpg"), config, spec, None)

    # The same numbers from open_clip's text tower: mean of normalised prompt embeddings per label, softmax.
    assert isinstance(embedder, ClipEmbedder)
    model, tokenizer = embedder.model, embedder.tokenizer
    img = torch.from_numpy(embedder.embed_images([sample_inbox / "images" / "photo_donut_coffee_122.jpg"]))
    assert torch.linalg.norm(img, dim=-1).item() == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        rows = []
        for descriptions in config.labels.values():
            prompts = [t.format(d) for d in descriptions for t in config.templates]
            text = torch.nn.functional.normalize(model.encode_text(tokenizer(prompts)), dim=-1).mean(0)
            rows.append(torch.nn.functional.normalize(text, dim=0))
        probs = (model.logit_scale.exp() * img @ torch.stack(rows).T).softmax(-1)[0].numpy()
    assert list(result.scores) == list(config.label_names)
    np.testing.assert_allclose(list(result.scores.values()), probs, atol=1e-4)  # scores are stored rounded
    assert result.label == config.label_names[int(probs.argmax())]
    assert result.margin == pytest.approx(float(np.sort(probs)[-1] - np.sort(probs)[-2]), abs=1e-5)


def test_example_images_join_the_text_prototype_by_weight(tiny_clip: Path, sample_inbox: Path, tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    (examples / "receipt").mkdir(parents=True)
    photo = sample_inbox / "images" / "photo_donut_coffee_122.jpg"
    shutil.copy(photo, examples / "receipt" / "mislabelled.jpg")
    text_only = _clip_config(tiny_clip)
    fused = _clip_config(tiny_clip, class_examples=examples, class_example_weight=0.5)
    embedder, text_protos = load_prototypes(*text_only, None)
    _, fused_protos = load_prototypes(*fused, None)
    i = fused[0].label_names.index("receipt")
    assert fused_protos.origin[i] == "text+examples"
    assert fused_protos.origin.count("text") == len(fused[0].labels) - 1
    example = embedder.embed_images([photo])[0]
    expected = 0.5 * text_protos.matrix[i] + 0.5 * example
    np.testing.assert_allclose(fused_protos.matrix[i], expected / np.linalg.norm(expected), atol=1e-5)
    # An example prototype alone (weight 1) pulls that very image to its label: how users fix a wrong label.
    only_examples = _clip_config(tiny_clip, class_examples=examples, class_example_weight=1.0)
    assert classify_pages([_file_page(1, photo)], *only_examples, None).label == "receipt"


def test_documents_share_forward_batches_and_score_as_if_alone(tiny_clip: Path, sample_inbox: Path) -> None:
    config = _clip_config(tiny_clip, classify_batch_size=2)
    names = (
        "photo_donut_coffee_122.jpg",
        "invoice2data_AmazonWebServices.png",
        "photo_pillow_hopper_exif-orientation-6.jpg",
    )
    documents = [_page(sample_inbox, name) for name in names]
    together, batches = classify_documents(documents, *config, None)
    assert batches == [[0, 1], [2]]  # one forward batch held the first pages of two documents
    for document, result in zip(documents, together, strict=True):
        alone = classify_pages(document, *config, None)
        assert result.label == alone.label
        assert result.scores == pytest.approx(alone.scores, abs=1e-4)


def test_identical_labels_have_no_margin_and_go_to_review(tiny_clip: Path, sample_inbox: Path) -> None:
    config = _clip_config(
        tiny_clip,
        class_labels={"invoice": ["an invoice"], "bill": ["an invoice"]},
        class_routes={"invoice": "invoice", "bill": "invoice"},
    )
    result = classify_pages(_page(sample_inbox, "invoice2data_AmazonWebServices.png"), *config, None)
    assert result.margin == pytest.approx(0.0, abs=1e-6)
    (ambiguous,) = [r for r in review_reasons(result, config[0]) if r.code == "ambiguous_class"]
    assert ambiguous.message.startswith("ambiguous document class") and ambiguous.value == pytest.approx(0, abs=1e-6)


def test_offline_embedder_with_shipped_examples_tells_a_photo_from_an_invoice(sample_inbox: Path) -> None:
    config = _classifier()
    photo = classify_pages(_page(sample_inbox, "photo_donut_coffee_122.jpg"), *config, None)
    assert (photo.label, photo.route) == ("photo", None) and photo.probability > 0.8
    assert photo.model_id == "timm:efficientnet_lite0:pkg:efficientnet-lite0"
    invoice = classify_pages(_page(sample_inbox, "invoice2data_AmazonWebServices.png"), *config, None)
    assert invoice.label != "photo" and invoice.scores["photo"] < 0.05


def test_a_receipt_the_image_takes_for_an_invoice_is_routed_by_its_words(corpus: Path) -> None:
    config, spec = _classifier()
    (page,) = _page(corpus / "extraction" / "inputs", "sroie_021.jpg")
    looks = classify_pages([page], config.model_copy(update={"text_sharpness": 0.0}), spec, None)
    assert looks.label == "invoice"  # a scan of a column of small print, to the image classifier alone
    read = with_page_text([page], "rapidocr", limit=1)  # CASH, CHANGE, ROUNDING, TOTAL QTY...
    routed = classify_pages(read, config, spec, None)
    assert (routed.label, routed.route) == ("receipt", "receipt")
    assert review_reasons(routed, config) == []


def test_image_only_embedder_needs_examples_for_every_label(tmp_path: Path, sample_inbox: Path) -> None:
    (tmp_path / "invoice").mkdir()
    shutil.copy(sample_inbox / "images" / "invoice2data_AmazonWebServices.png", tmp_path / "invoice")
    config = _classifier(class_examples=tmp_path)
    with pytest.raises(ConfigError, match="none found for receipt, form, letter, other, photo"):
        classify_pages(_page(sample_inbox, "photo_donut_coffee_122.jpg"), *config, None)


def test_embedding_cache_means_a_second_pass_encodes_nothing(db_url: str, tiny_clip: Path, sample_inbox: Path) -> None:
    migrate(db_url)
    cache = SqlEmbeddingCache(db_url)
    config = _clip_config(tiny_clip, classify_pages="all")
    pages = [
        _file_page(1, sample_inbox / "images" / "photo_donut_coffee_122.jpg"),
        _file_page(2, sample_inbox / "images" / "invoice2data_AmazonWebServices.png"),
    ]
    embedder = load_embedder(config[1])
    first = classify_pages(pages, *config, cache)
    assert first.encoded == 2 and cache.count(embedder.model_id) == 2
    calls = embedder.calls
    again = classify_pages(pages, *config, cache)
    other_labels = _clip_config(
        tiny_clip,
        classify_pages="all",
        class_labels={"doc": ["a document"], "pic": ["a picture"]},
        class_routes={"doc": "generic", "pic": "none"},
    )
    relabelled = classify_pages(pages, *other_labels, cache)
    assert again.encoded == relabelled.encoded == 0 and embedder.calls == calls
    assert again.scores == first.scores and set(relabelled.scores) == {"doc", "pic"}


@pytest.mark.usefixtures("prefect_harness")
def test_run_classifies_routes_and_reports_per_label(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("photo_donut_coffee_122.jpg", "invoice2data_AzureInterior.pdf", "pdfjs_sizes-mixed-page-sizes.pdf"):
        shutil.copy(next(sample_inbox.rglob(name)), inbox)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(
        database_url=db,
        source=str(inbox),
        extract=True,
        text_llm_model="pkg:smollm2-135m",
        extract_max_new_tokens=48,
        extract_max_attempts=1,
        extract_max_pages=1,
        classify_pages="all",
    )
    assert nightly().processed == 3

    with unit_of_work(db) as s:
        rows = {o.key: (o, c) for o, c in s.execute(select(SourceObject, ClassificationRow).join(ClassificationRow))}
        extractions = {e.source_object.key: e.schema_id for e in s.scalars(select(ExtractionRow))}
        sizes_pages = s.scalars(select(Page).join(SourceObject).where(SourceObject.key.like("pdfjs_sizes%"))).all()
    photo, photo_class = rows["photo_donut_coffee_122.jpg"]
    assert (photo_class.label, photo_class.route, photo.status) == ("photo", None, "done")
    assert "photo_donut_coffee_122.jpg" not in extractions  # photos are not extracted
    invoice_class = rows["invoice2data_AzureInterior.pdf"][1]
    assert invoice_class.label == "invoice" and extractions["invoice2data_AzureInterior.pdf"] == "invoice/v1"
    assert rows["pdfjs_sizes-mixed-page-sizes.pdf"][1].pages_classified == 3
    assert all(p.label is not None and 0 < (p.label_probability or 0) <= 1 for p in sizes_pages)

    from flows.status import collect_status

    status = collect_status(load_settings())
    assert status.by_label["image"]["photo"].objects == 1
    assert status.by_label["pdf"]["invoice"].by_status in ({"done": 1}, {"review": 1})
    documents = {d.key: d for d in status.documents}
    assert documents["invoice2data_AzureInterior.pdf"].probability == pytest.approx(invoice_class.probability, abs=1e-4)
    for document in status.documents:  # in review exactly when a reason says why
        assert (document.status == "review") == bool(document.review_reasons)
        assert document.review_reason == ("; ".join(r.message for r in document.review_reasons) or None)

    # A forced re-run reclassifies every page from the embedding cache: nothing is encoded again.
    settings = load_settings()
    embedder = load_embedder(embedder_spec(settings.classifier, settings.device))
    calls = embedder.calls
    assert backfill(since=datetime(2000, 1, 1, tzinfo=UTC), force=True).processed == 3
    assert embedder.calls == calls


def test_a_database_outage_while_prototypes_load_is_an_infrastructure_fault(
    tiny_clip: Path, sample_inbox: Path, tmp_path: Path
) -> None:
    """Example embeddings are looked up in the database's cache: the database being away is an outage to retry,
    not a model that cannot load (which would stop the run as a configuration error)."""
    from tasks.faults import is_infrastructure_fault
    from tests.services import free_port

    examples = tmp_path / "examples"
    for label in ("invoice", "photo"):
        (examples / label).mkdir(parents=True)
    shutil.copy(next(sample_inbox.rglob("photo_donut_coffee_122.jpg")), examples / "photo" / "a.jpg")
    shutil.copy(next(sample_inbox.rglob("*.png")), examples / "invoice" / "a.png")
    config = _clip_config(
        tiny_clip,
        class_examples=examples,
        class_labels={"invoice": ["an invoice"], "photo": ["a photo"]},
        class_routes={"invoice": "invoice", "photo": "none"},
    )
    nobody_listening = SqlEmbeddingCache(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    with pytest.raises(Exception) as excinfo:
        load_prototypes(*config, nobody_listening)
    assert not isinstance(excinfo.value, ConfigError)
    assert is_infrastructure_fault(excinfo.value)
