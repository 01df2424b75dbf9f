"""Extraction with real models: a tiny random Qwen2-VL (real tokenizer, processor and chat template) for the VLM
path, and the real SmolLM2-135M on real corpus pages for the offline path."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from PIL import Image
from sqlalchemy import func, select

from flows.pipeline import backfill, nightly
from schemas.documents import Invoice, Receipt
from schemas.records import DocumentPage
from schemas.settings import ExtractionSettings
from storage.db import unit_of_work
from storage.tables import ExtractionRow, SourceObject
from tasks.extract.extraction import DocumentPages, extract_pages, merge_pages, review_reasons
from tasks.models.generation.base import GenerationRequest, GeneratorSpec
from tasks.models.generation.constrained import generation_schema, schema_json
from tasks.models.generation.registry import load_generator
from tests.integration.conftest import Configure


def _vlm_spec(path: Path) -> GeneratorSpec:
    return GeneratorSpec("vlm", str(path), min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)


def test_random_vlm_writes_valid_json_for_each_rows_own_schema(tiny_vlm: Path, sample_inbox: Path) -> None:
    generator = load_generator(_vlm_spec(tiny_vlm))
    images = sample_inbox / "images"
    invoice = generation_schema(Invoice.model_json_schema(), max_string=8, max_items=2)
    receipt = generation_schema(Receipt.model_json_schema(), max_string=8, max_items=2)
    requests = [
        GenerationRequest(
            "Extract the invoice.", json.dumps(invoice), (images / "invoice2data_AmazonWebServices.png",)
        ),
        GenerationRequest(
            "Extract the receipt, please.", json.dumps(receipt), (images / "photo_donut_coffee_122.jpg",)
        ),
        GenerationRequest(
            "Two pages.",
            json.dumps(invoice),
            (images / "photo_donut_coffee_122.jpg", images / "photo_pillow_hopper_exif-orientation-6.jpg"),
        ),
    ]
    outputs = generator.generate(requests, max_new_tokens=600)
    assert len(outputs) == 3
    for output, schema in zip(outputs, (invoice, receipt, invoice), strict=True):
        assert output.finished
        jsonschema.validate(json.loads(output.text), schema)  # each row's grammar held, whatever the weights said
        assert output.tokens and all(t.logprob <= 0 for t in output.tokens)
    # The schemas differ in their required fields, so a row held to the wrong grammar would fail the other schema.
    assert set(json.loads(outputs[1].text)) == set(receipt["properties"])


def _image_page(path: Path, number: int = 1) -> DocumentPage:
    with Image.open(path) as img:
        return DocumentPage(page_number=number, path=path, width=img.width, height=img.height)


def test_invalid_answers_are_retried_then_sent_to_review(tiny_vlm: Path, sample_inbox: Path) -> None:
    generator = load_generator(_vlm_spec(tiny_vlm))
    config = ExtractionSettings(max_attempts=2, max_string=8, max_items=2, max_new_tokens=600)
    page = _image_page(sample_inbox / "images" / "photo_donut_coffee_122.jpg")
    result = extract_pages(generator, [DocumentPages(7, Invoice, (page,))], config)
    (outcome,) = result.outcomes[7]
    # The grammar gives every amount a printed shape, so what fails is the schema's own checks (random amounts do
    # not add up) or the degenerate-answer guards (random strings repeat across fields).
    assert outcome.errors, "random weights are expected to write an invoice that does not validate"
    assert outcome.attempts == 2
    assert [b.owners for b in result.batches] == [(7,), (7,)]  # the first answer, then the retry
    extraction = merge_pages(Invoice, [outcome], "vlm", generator.model_id)
    assert extraction.raw_output.startswith("[page 1] {")
    reasons = review_reasons(extraction, config)
    if extraction.valid:  # only single fields failed: each is left empty for review, the rest of the answer stands
        assert extraction.data is not None and reasons
        assert {r.code for r in reasons} <= {"unreadable_value", "amounts_do_not_add_up"}
        assert all(extraction.data[str(r.field)] is None for r in reasons if r.code == "unreadable_value")
    else:  # a list failed (a degenerate line item): the whole answer goes to review
        (reason,) = reasons
        assert (reason.code, reason.value) == ("invalid_extraction", 2)
        assert reason.message.startswith("extraction not valid after 2 attempt(s)")


def test_forward_batches_are_filled_across_documents(tiny_vlm: Path, sample_inbox: Path) -> None:
    generator = load_generator(_vlm_spec(tiny_vlm))
    config = ExtractionSettings(max_attempts=1, max_string=8, max_items=2, max_new_tokens=64, batch_size=4)
    images = sample_inbox / "images"
    receipt = DocumentPages(1, Receipt, (_image_page(images / "photo_donut_coffee_122.jpg"),))
    invoice = DocumentPages(
        2,
        Invoice,
        (
            _image_page(images / "invoice2data_AmazonWebServices.png", 1),
            _image_page(images / "photo_pillow_hopper_exif-orientation-6.jpg", 2),
        ),
    )
    result = extract_pages(generator, [receipt, invoice], config)
    # One generate() call carried the receipt's page and both of the invoice's, each under its own schema.
    assert [b.owners for b in result.batches] == [(1, 2, 2)]
    assert [o.page_number for o in result.outcomes[2]] == [1, 2] and len(result.outcomes[1]) == 1
    assert merge_pages(Receipt, result.outcomes[1], "vlm", generator.model_id).schema_id.startswith("receipt/")


@pytest.mark.usefixtures("prefect_harness")
def test_flow_with_vlm_records_extraction_and_review(
    configure: Configure, tiny_vlm: Path, sample_inbox: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / "pdfjs_sizes-mixed-page-sizes.pdf", inbox)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(
        database_url=db,
        source=str(inbox),
        extract=True,
        vlm_model=str(tiny_vlm),
        max_pixels=28 * 28 * 64,
        vlm_min_pixels=28 * 28 * 4,
        extract_max_string=8,
        extract_max_items=2,
        extract_max_attempts=2,
    )
    summary = nightly()
    assert summary.processed == 1
    with unit_of_work(db) as s:
        obj = s.scalars(select(SourceObject)).one()
        row = s.scalars(select(ExtractionRow)).one()
        assert (row.backend, row.model_id, row.schema_id, row.pages) == ("vlm", str(tiny_vlm), "generic/v1", [1, 2, 3])
        # The object's status follows the extraction's validity, whichever way the random weights went (here, on
        # this CPU, a valid generic/v1 document); the invalid path is checked on its own above.
        assert obj.status == ("done" if row.valid else "review")
        assert (row.data is not None) if row.valid else bool(row.errors and row.raw_output.count("[page ") == 3)
    backfill(since=datetime(2000, 1, 1), force=True)
    with unit_of_work(db) as s:
        assert s.scalar(select(func.count()).select_from(ExtractionRow)) == 1  # replaced, not duplicated


@pytest.mark.usefixtures("prefect_harness")
def test_offline_backend_reads_a_real_invoice(configure: Configure, corpus: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(corpus / "pdf" / "invoice2data_AmazonWebServices.pdf", inbox)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    # The keyword rule picks the schema here: this test is about extraction (the offline image classifier is
    # unsure about this page, see bench/classify.py).
    configure(database_url=db, source=str(inbox), extract=True, classifier="keywords")
    nightly()
    with unit_of_work(db) as s:
        obj = s.scalars(select(SourceObject)).one()
        row = s.scalars(select(ExtractionRow)).one()
    assert (row.backend, row.model_id, row.schema_id) == ("text", "pkg:smollm2-135m", "invoice/v1")
    assert obj.status in ("done", "review")
    assert row.data is not None
    # Read from the PDF's text layer by the real 135M model (greedy decoding, so repeatable):
    assert row.data["invoice_number"] == "42183017"
    assert "Amazon Web Services" in row.data["vendor_name"]
    assert row.field_confidence is not None and row.field_pages is not None
    assert set(row.field_confidence) >= {"invoice_number", "vendor_name"}
    assert all(0 < c <= 1 for c in row.field_confidence.values())
    assert row.field_pages["invoice_number"] == [1]


def test_constraint_library_compiles_every_schema(tiny_vlm: Path) -> None:
    generator = load_generator(_vlm_spec(tiny_vlm))
    for schema in (Invoice, Receipt):
        assert generator.constraint.compiled(schema_json(schema.model_json_schema())) is not None  # type: ignore[attr-defined]
