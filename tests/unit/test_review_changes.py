"""Which fields of a reviewer's answer are corrections: those whose normal form differs from the model's, never a
value the import only normalised."""

from __future__ import annotations

from typing import Any

from schemas.review import ReviewStage
from tasks.review.corrections import changed_fields, checked_correction

LABELS = ("invoice", "receipt")
MODEL: dict[str, Any] = {
    "vendor_name": "ACME Ltd",
    "invoice_date": "19/10/2018",
    "total": "$1,234.50",
    "line_items": None,
}


def _checked(stage: ReviewStage, schema_id: str, value: dict[str, Any]) -> dict[str, Any]:
    return checked_correction(stage, schema_id, value, LABELS)


def test_values_the_import_only_normalised_are_not_corrections() -> None:
    corrected = _checked(ReviewStage.EXTRACTION, "invoice/v1", {**MODEL, "line_items": []})
    assert corrected["total"] == "1234.50" and corrected["invoice_date"] == "2018-10-19"  # normalised
    assert changed_fields(ReviewStage.EXTRACTION, "invoice/v1", MODEL, corrected) == []


def test_a_changed_value_is_a_correction_and_so_is_a_cleared_one() -> None:
    answer = {**MODEL, "vendor_name": "ACME Limited", "total": None, "line_items": []}
    corrected = _checked(ReviewStage.EXTRACTION, "invoice/v1", answer)
    assert changed_fields(ReviewStage.EXTRACTION, "invoice/v1", MODEL, corrected) == ["vendor_name", "total"]
    # A value the model wrote that does not validate at all is replaced, whatever the person put.
    broken = {**MODEL, "total": "lots"}
    assert "total" in changed_fields(ReviewStage.EXTRACTION, "invoice/v1", broken, corrected)


def test_classes_and_transcripts_compare_in_normal_form() -> None:
    same = _checked(ReviewStage.CLASSIFICATION, "class", {"label": " invoice "})
    assert changed_fields(ReviewStage.CLASSIFICATION, "class", {"label": "invoice"}, same) == []
    other = _checked(ReviewStage.CLASSIFICATION, "class", {"label": "receipt"})
    assert changed_fields(ReviewStage.CLASSIFICATION, "class", {"label": "invoice"}, other) == ["label"]
    said: dict[str, Any] = {"segments": [{"start_s": 0, "end_s": 1.5, "speaker": "A", "text": " hello "}]}
    heard = _checked(ReviewStage.TRANSCRIPTION, "transcript", said)
    assert changed_fields(ReviewStage.TRANSCRIPTION, "transcript", said, heard) == []
    edited = _checked(
        ReviewStage.TRANSCRIPTION,
        "transcript",
        {"segments": [{**said["segments"][0], "text": "hi"}, {"start_s": 2, "end_s": 3, "speaker": "B", "text": "x"}]},
    )
    assert changed_fields(ReviewStage.TRANSCRIPTION, "transcript", said, edited) == ["segments[0].text", "segments[1]"]
