"""Degenerate-output guards: answers seen from small models on the AWS invoice (a looping party name, a field
filled with the schema's own description, a list padded with near-duplicates) are validation errors, so the
re-prompt and review paths handle them. The generator below replays hand-written answers: the logic under test is
the validation and re-prompt loop around a model, not a model."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.degenerate import degenerate_values, repetition_loop
from schemas.documents import GenericDocument, Invoice, Receipt
from schemas.records import DocumentPage
from schemas.settings import ExtractionSettings
from tasks.extract.extraction import DocumentPages, extract_pages, merge_pages, review_reasons, validation_errors
from tasks.models.generation.base import Generation, GenerationRequest
from tasks.preprocess.pdf import pdf_text_layer

LOOPING = {"title": "Invoice", "parties": ["Amazon Web Services", "KongKongKongKongKong"]}
ECHO = {
    "title": "Amazon Web Services Invoice",
    "fields": [{"key": "title", "value": "Title or subject of the document"}],
}
PADDED = {"parties": ["Sai Yu Chung", "Sai Yu Chung.", "sai yu  chung"]}
CLEAN = {"title": "Amazon Web Services Invoice", "parties": ["Amazon Web Services", "iViveLabs Limited"]}


@dataclass
class ReplayGenerator:
    """Answers each generate() call with the next hand-written answer, recording the prompts it was given."""

    answers: list[str]
    model_id: str = "replay"
    reads_images: bool = False
    prompts: list[str] = field(default_factory=list)

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]:
        self.prompts += [r.prompt for r in requests]
        return [Generation(self.answers.pop(0)) for _ in requests]


@pytest.fixture(scope="module")
def aws_page(corpus: Path) -> DocumentPage:
    text = pdf_text_layer(corpus / "pdf" / "invoice2data_AmazonWebServices.pdf", 1)[0]
    return DocumentPage(page_number=1, width=612, height=792, text=text)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (LOOPING, "parties[1]: repetition loop ('Kong' over and over)"),
        (ECHO, "fields[0].value: 'Title or subject of the document' repeats the schema's wording"),
        (PADDED, "parties: list padded with near-duplicates"),
    ],
    ids=["repetition-loop", "description-echo", "near-duplicates"],
)
def test_each_guard_rejects_its_answer_and_the_model_is_asked_again(
    aws_page: DocumentPage, answer: dict[str, object], expected: str
) -> None:
    import json

    generator = ReplayGenerator([json.dumps(answer), json.dumps(CLEAN)])
    config = ExtractionSettings(max_attempts=2)  # re-prompts on (the offline default asks once)
    result = extract_pages(generator, [DocumentPages(1, GenericDocument, (aws_page,))], config)
    (outcome,) = result.outcomes[1]
    assert outcome.attempts == 2 and not outcome.errors and outcome.data == CLEAN
    assert expected in generator.prompts[1]  # the re-prompt names the problem
    assert "Amazon Web Services Invoice" in generator.prompts[0]  # the real page was the input


def test_an_answer_that_stays_degenerate_goes_to_review(aws_page: DocumentPage) -> None:
    import json

    generator = ReplayGenerator([json.dumps(LOOPING), json.dumps(PADDED)])
    config = ExtractionSettings(max_attempts=2)
    result = extract_pages(generator, [DocumentPages(1, GenericDocument, (aws_page,))], config)
    extraction = merge_pages(GenericDocument, result.outcomes[1], "text", "replay")
    assert not extraction.valid
    (reason,) = review_reasons(extraction, config)
    assert reason.code == "invalid_extraction" and "near-duplicates" in reason.message


def test_own_field_name_as_value_and_repeated_rows() -> None:
    errors = validation_errors(Invoice, {"vendor_name": "Vendor name", "line_items": [{"description": "Lamp"}] * 3})
    assert "vendor_name: 'Vendor name' repeats the schema's wording" in errors[0]
    assert "line_items: the same row repeated 3 times" in errors[0]


def test_what_documents_really_print_is_not_degenerate() -> None:
    # Repeated digits in addresses and codes, two identical purchases, a short key that names a field elsewhere.
    receipt = Receipt(
        merchant_address="LOT 1851-A & 1851-B, JALAN KPB 6, 43300 SERI KEMBANGAN",
        items=[{"description": "COFFEE", "amount": "3.50"}, {"description": "COFFEE", "amount": "3.50"}],
    )
    assert degenerate_values(receipt) == []
    assert degenerate_values(GenericDocument(fields=[{"key": "Title", "value": "Mr"}])) == []
    assert repetition_loop("Account 1111 2222") is None
    assert repetition_loop("NANANANANA") == "NA"
