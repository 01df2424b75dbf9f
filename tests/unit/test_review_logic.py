"""The review queue's pure logic: which outputs become items (doubts, the seeded audit sample), how corrections
are checked, and how the files and Label Studio results carry values both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.records import Classification, Extraction, ObjectKind, ObjectResult, ReviewReason
from schemas.review import ReviewStage
from tasks.review.corrections import CorrectionRejected, checked_correction
from tasks.review.files import write_csv, write_jsonl
from tasks.review.items import AuditPolicy, extraction_output, review_drafts
from tasks.review.label_studio import from_results, label_config, to_results
from tasks.review.queue import read_answers
from tests.support.review_items import review_item

LABELS = ("invoice", "receipt", "photo")
INVOICE = {
    "vendor_name": "ACME",
    "invoice_number": "7",
    "total": "12.50",
    "line_items": [{"description": "tea", "amount": "12.50"}],
}


def _result(reasons: tuple[ReviewReason, ...] = ()) -> ObjectResult:
    return ObjectResult(
        kind=ObjectKind.PDF,
        sha256="ab" * 32,
        classification=Classification(label="invoice", probability=0.9, margin=0.5, route="invoice", model_id="m"),
        extraction=Extraction(
            schema_id="invoice/v1",
            backend="text",
            model_id="llm",
            data=INVOICE,
            valid=True,
            attempts=1,
            field_confidence={"total": 0.4, "vendor_name": 0.9},
        ),
        review_reasons=reasons,
    )


def test_doubts_open_items_for_their_stage_and_pipeline_doubts_go_to_the_main_output() -> None:
    doubt = ReviewReason(stage="extract", code="ungrounded_value", message="total not on the page", field="total")
    pages = ReviewReason(stage="pipeline", code="pages_truncated", message="only the first 20 pages")
    drafts = review_drafts(_result((doubt, pages)), "x", AuditPolicy())
    assert [(d.stage, [r.code for r in d.reasons], d.audit) for d in drafts] == [
        (ReviewStage.EXTRACTION, ["ungrounded_value", "pages_truncated"], False)
    ]
    assert drafts[0].score == 0.4  # the least confident field
    assert review_drafts(_result(), "x", AuditPolicy()) == []  # confident, no audit: nothing to review


def test_the_audit_sample_is_reproducible_and_near_its_rate() -> None:
    policy = AuditPolicy(rate=0.1, seed=7)
    picked = [i for i in range(5000) if policy.picks(f"object-{i}", ReviewStage.EXTRACTION)]
    assert picked == [i for i in range(5000) if AuditPolicy(0.1, 7).picks(f"object-{i}", ReviewStage.EXTRACTION)]
    assert 400 < len(picked) < 600
    other = [i for i in range(5000) if AuditPolicy(0.1, 8).picks(f"object-{i}", ReviewStage.EXTRACTION)]
    assert other != picked  # another seed, another sample
    drafts = review_drafts(_result(), "x", AuditPolicy(rate=1.0))
    assert {(d.stage, d.audit) for d in drafts} == {(ReviewStage.CLASSIFICATION, True), (ReviewStage.EXTRACTION, True)}


def test_corrections_are_checked_with_the_schemas() -> None:
    assert checked_correction(ReviewStage.CLASSIFICATION, "class", {"label": "receipt"}, LABELS) == {"label": "receipt"}
    with pytest.raises(CorrectionRejected, match="unknown class 'cat'"):
        checked_correction(ReviewStage.CLASSIFICATION, "class", {"label": "cat"}, LABELS)
    fixed = checked_correction(ReviewStage.EXTRACTION, "invoice/v1", {**INVOICE, "total": "12,50"}, LABELS)
    assert fixed["total"] == "12.50"  # normalised as a model's output would be
    with pytest.raises(CorrectionRejected, match="invoice_date"):
        checked_correction(ReviewStage.EXTRACTION, "invoice/v1", {**INVOICE, "invoice_date": "31/31/2023"}, LABELS)
    # Amounts that do not add up are what the page prints (a discount, shipping): a person's reading stands.
    odd_sums = checked_correction(
        ReviewStage.EXTRACTION, "invoice/v1", {**INVOICE, "subtotal": "10", "tax": "1"}, LABELS
    )
    assert (odd_sums["subtotal"], odd_sums["tax"]) == ("10", "1")
    with pytest.raises(CorrectionRejected, match="ends"):
        checked_correction(
            ReviewStage.TRANSCRIPTION,
            "transcript",
            {"segments": [{"start_s": 2, "end_s": 1, "speaker": "A", "text": ""}]},
            LABELS,
        )
    with pytest.raises(CorrectionRejected, match="not list"):
        checked_correction(ReviewStage.EXTRACTION, "invoice/v1", [], LABELS)


def test_csv_edits_become_whole_corrections_and_bad_rows_are_named(tmp_path: Path) -> None:
    item = review_item(ReviewStage.EXTRACTION, "invoice/v1", extraction_output(_result().extraction))  # type: ignore[arg-type]
    path = tmp_path / "items.csv"
    with path.open("w", newline="") as out:
        write_csv([item], out)
    text = path.read_text()
    assert "line_items" in text and "0.400" in text  # every schema field, with the model's confidence
    rows = text.splitlines()
    header, body = rows[0], rows[1:]
    edited = [header]
    for row in body:
        if ",total," in row:
            row = row.removesuffix(",,") + ",13.00,ana"
        edited.append(row)
    edited.append("x,doc.pdf,extraction,invoice/v1,total,,,,,,1,ana")  # not an item id
    path.write_text("\n".join(edited) + "\n")
    answers, rejected = read_answers(path, {1: item})
    assert [(a.item_id, a.corrected["total"], a.reviewer) for a in answers] == [(1, "13.00", "ana")]  # type: ignore[index]
    assert answers[0].corrected["line_items"] == INVOICE["line_items"]  # type: ignore[index]
    assert [(r.where, r.reason) for r in rejected] == [(f"row {len(edited)}", "unknown review item 'x'")]


def test_jsonl_lines_that_are_not_items_are_rejected_one_by_one(tmp_path: Path) -> None:
    item = review_item(ReviewStage.CLASSIFICATION, "class", {"label": "invoice"})
    path = tmp_path / "items.jsonl"
    with path.open("w") as out:
        write_jsonl([item], out)
    record = json.loads(path.read_text())
    record.update(reviewer="ana")  # the model was right
    path.write_text(json.dumps(record) + "\n[1, 2]\nnot json\n")
    answers, rejected = read_answers(path, {1: item})
    assert [(a.item_id, a.corrected) for a in answers] == [(1, None)]
    assert [r.reason.split(":")[0] for r in rejected] == ["not a JSON object", "not JSON"]


def test_label_studio_results_carry_values_both_ways() -> None:
    item = review_item(ReviewStage.EXTRACTION, "invoice/v1", {"data": INVOICE})
    results = to_results(item, INVOICE)
    rows = next(r for r in results if r["from_name"] == "line_items")["value"]["text"]
    assert rows == ["tea |  |  | 12.50"]  # one row per line item, columns in the schema's order
    back = from_results(item, results)
    assert back["total"] == "12.50" and back["line_items"] == [
        {"description": "tea", "quantity": None, "unit_price": None, "amount": "12.50"}
    ]
    call = review_item(ReviewStage.TRANSCRIPTION, "transcript", {})
    value = {"segments": [{"start_s": 0.5, "end_s": 2.0, "speaker": "SPEAKER_1", "text": "Hello: there"}]}
    assert from_results(call, to_results(call, value)) == value
    with pytest.raises(ValueError, match="utterance"):
        from_results(call, [{"from_name": "transcript", "value": {"text": ["no times here"]}}])
    assert 'name="label"' in label_config("class", LABELS) and "receipt" in label_config("class", LABELS)
