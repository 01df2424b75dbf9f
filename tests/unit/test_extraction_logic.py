"""Pure logic around the extraction models: schema for the grammar, prompts, confidence spans, the page-merge rule,
routing and review. Page answers here are hand-written inputs to that logic, not stand-ins for a model."""

import pytest

from schemas.documents import SCHEMAS, GenericDocument, Invoice, Receipt
from schemas.records import Extraction
from schemas.settings import ExtractionSettings
from tasks.classify.keywords import schema_for_text
from tasks.extract.extraction import (
    PageOutcome,
    build_prompt,
    field_confidences,
    merge_pages,
    review_reasons,
)
from tasks.models.generation.constrained import TokenScore, generation_schema


def test_generation_schema_requires_every_field_and_bounds_strings_and_lists() -> None:
    schema = generation_schema(Invoice.model_json_schema(), max_string=50, max_items=3)
    assert schema["required"] == list(Invoice.model_fields)
    assert "default" not in schema["properties"]["vendor_name"]
    assert {"type": "string", "maxLength": 50} in schema["properties"]["vendor_name"]["anyOf"]
    assert schema["properties"]["line_items"]["maxItems"] == 3
    assert schema["$defs"]["LineItem"]["required"] == ["description", "quantity", "unit_price", "amount"]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_schema_can_be_generated_in_full(name: str) -> None:
    """The grammar's schema keeps every field (a field called "title" included) and a complete document of the
    pydantic model satisfies it."""
    import jsonschema

    model = SCHEMAS[name]
    schema = generation_schema(model.model_json_schema(), max_string=100, max_items=6)
    assert list(schema["properties"]) == list(model.model_fields) == schema["required"]
    for definition in schema.get("$defs", {}).values():
        assert definition["required"] == list(definition["properties"])
    empty = model.model_validate({}).model_dump(mode="json")  # every field present, null or empty
    jsonschema.validate(empty, schema)
    for field in model.model_fields:  # and no field may be left out
        with pytest.raises(jsonschema.ValidationError, match=f"'{field}' is a required property"):
            jsonschema.validate({k: v for k, v in empty.items() if k != field}, schema)


def test_generic_documents_keep_their_title_field() -> None:
    schema = generation_schema(GenericDocument.model_json_schema())
    assert "title" in schema["properties"] and "title" in schema["required"]
    assert "title" not in schema  # pydantic's own display title of the schema is dropped


def test_prompt_carries_fields_text_and_previous_errors() -> None:
    first = build_prompt(Receipt, "SHELL\nTOTAL 86.00")
    assert "merchant_name: Business name of the shop" in first and "SHELL\nTOTAL 86.00" in first
    retry = build_prompt(Receipt, "x" * 10, PageOutcome(1, errors=["total: not an amount"], raw='{"total": "?"}'))
    assert "total: not an amount" in retry and '{"total": "?"}' in retry
    assert "image" in build_prompt(Invoice, None)


def _tokens(*pieces: tuple[str, float]) -> list[TokenScore]:
    return [TokenScore(text, logprob) for text, logprob in pieces]


def test_field_confidence_is_the_geometric_mean_over_the_value_tokens() -> None:
    tokens = _tokens(
        ('{"', 0.0),
        ("total", 0.0),
        ('": ', 0.0),
        ("86", -0.1),
        (".00", -0.3),
        (', "', 0.0),
        ("date", 0.0),
        ('": "', 0.0),
        ("2018", -2.0),
        ('"}', 0.0),
    )
    confidence = field_confidences(tokens)
    assert set(confidence) == {"total", "date"}
    assert abs(confidence["total"] - 0.8187) < 1e-3  # exp(mean(-0.1, -0.3))
    assert confidence["date"] < 0.6  # the quote tokens around the value count too


def test_merge_rule_first_value_in_page_order_and_lists_concatenated() -> None:
    pages = [
        PageOutcome(
            1,
            data={"vendor_name": "Acme", "total": None, "line_items": [{"amount": "2"}]},
            confidence={"vendor_name": 0.9, "line_items": 0.8},
            attempts=1,
        ),
        PageOutcome(
            2,
            data={"vendor_name": "Other", "subtotal": "5", "total": "5", "line_items": [{"amount": "3"}]},
            confidence={"total": 0.7},
            attempts=2,
        ),
        PageOutcome(3, data=None, errors=["not valid JSON"], attempts=2),
    ]
    merged = merge_pages(Invoice, pages, "text", "m")
    assert merged.valid, merged.errors
    assert merged.data is not None
    assert merged.data["vendor_name"] == "Acme" and merged.data["total"] == "5"
    assert merged.field_pages == {"vendor_name": [1], "subtotal": [2], "total": [2], "line_items": [1, 2]}
    assert [i["amount"] for i in merged.data["line_items"]] == ["2", "3"]
    assert merged.attempts == 2 and merged.pages == (1, 2, 3)


def test_merged_amounts_that_do_not_add_up_are_a_review_reason_on_the_total_and_the_rest_stands() -> None:
    pages = [PageOutcome(1, data={"vendor_name": "Acme", "subtotal": "10", "tax": "1", "total": "50"}, attempts=1)]
    merged = merge_pages(Invoice, pages, "text", "m")
    assert merged.valid and merged.data is not None and merged.data["vendor_name"] == "Acme"
    (reason,) = review_reasons(merged, ExtractionSettings())
    assert (reason.stage, reason.code, reason.field) == ("extract", "amounts_do_not_add_up", "total")
    assert reason.message == "total 50 != subtotal 10 + tax 1"


def test_a_value_that_cannot_be_read_sends_its_field_to_review_and_keeps_the_others() -> None:
    pages = [PageOutcome(1, data={"vendor_name": "Acme", "invoice_date": "31/31/2023", "total": "12.00"}, attempts=1)]
    merged = merge_pages(Invoice, pages, "text", "m")
    assert merged.valid and merged.data is not None
    assert (merged.data["vendor_name"], merged.data["invoice_date"], merged.data["total"]) == ("Acme", None, "12.00")
    (reason,) = review_reasons(merged, ExtractionSettings())
    assert (reason.code, reason.field) == ("unreadable_value", "invoice_date")
    assert "'31/31/2023' is not taken" in reason.message


def test_values_that_fail_together_make_the_extraction_invalid() -> None:
    pages = [PageOutcome(1, data={"vendor_name": "Acme", "line_items": [{"amount": "twelve"}]}, attempts=1)]
    merged = merge_pages(Invoice, pages, "text", "m")
    assert not merged.valid and "line_items" in merged.errors[0]
    (reason,) = review_reasons(merged, ExtractionSettings())
    assert (reason.stage, reason.code, reason.value) == ("extract", "invalid_extraction", 1)
    assert reason.message.startswith("extraction not valid after 1 attempt(s)")


def test_low_confidence_review_is_optional() -> None:
    ok = Extraction(
        schema_id="receipt/v1",
        backend="text",
        model_id="m",
        data={},
        valid=True,
        attempts=1,
        field_confidence={"total": 0.2},
    )
    assert review_reasons(ok, ExtractionSettings()) == []
    strict = ExtractionSettings(review_min_confidence=0.5)
    (reason,) = review_reasons(ok, strict)
    assert (reason.stage, reason.code) == ("extract", "low_confidence") and reason.value == pytest.approx(0.2)
    assert "low extraction confidence" in reason.message


def test_keyword_routing() -> None:
    assert schema_for_text("Amazon Web Services Invoice No. 42") is Invoice
    assert schema_for_text("SHELL\nTOTAL RM 86.00\nCASH") is Receipt
    assert schema_for_text("Minutes of the meeting") is GenericDocument
