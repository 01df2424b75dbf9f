"""A reviewer's correction, checked with the same Pydantic schemas the models' outputs are checked with: a value
that would not pass as a model's output does not pass as a person's either."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from schemas.documents import SCHEMAS
from schemas.review import ClassCorrection, ReviewStage, SegmentCorrection, TranscriptCorrection


class CorrectionRejected(ValueError):
    """A correction that does not fit its item; the message says why, for the person who made it."""


def checked_correction(stage: ReviewStage, schema_id: str, value: object, labels: Collection[str]) -> dict[str, Any]:
    """`value` validated for an item of `stage` and `schema_id` (a document schema id such as invoice/v1), in its
    normal form (as JSON); `labels` are the classes a document may be given."""
    if not isinstance(value, dict):
        raise CorrectionRejected(f"a correction is an object of fields, not {type(value).__name__}")
    try:
        if stage is ReviewStage.CLASSIFICATION:
            label = ClassCorrection.model_validate(value).label
            if label not in labels:
                raise CorrectionRejected(f"unknown class {label!r}: one of {', '.join(sorted(labels))}")
            return {"label": label}
        if stage is ReviewStage.TRANSCRIPTION:
            transcript = TranscriptCorrection.model_validate(value)
            for segment in transcript.segments:
                if segment.end_s < segment.start_s:
                    raise CorrectionRejected(f"a segment ends ({segment.end_s}) before it starts ({segment.start_s})")
            return transcript.model_dump(mode="json")
        name = schema_id.split("/", 1)[0]
        if name not in SCHEMAS:
            raise CorrectionRejected(f"unknown document schema {schema_id!r}")
        return SCHEMAS[name].model_validate(value).model_dump(mode="json")
    except ValidationError as exc:
        raise CorrectionRejected(_explained(exc)) from None


def changed_fields(
    stage: ReviewStage, schema_id: str, model: dict[str, Any] | None, corrected: dict[str, Any]
) -> list[str]:
    """The fields of a checked correction that differ from the model's value, both in normal form: a value the
    reviewer left as the model wrote it ("187.5" kept as "187.5", normalised to 187.50) is not a correction. Named
    as the review CSV names them: `label`, a document field (`total`), `segments[2].text`."""
    model = model or {}
    if stage is ReviewStage.CLASSIFICATION:
        said = model.get("label")
        return [] if isinstance(said, str) and said.strip() == corrected["label"] else ["label"]
    if stage is ReviewStage.TRANSCRIPTION:
        return _changed_segments(model.get("segments") or [], corrected["segments"])
    schema = SCHEMAS.get(schema_id.split("/", 1)[0])
    if schema is None:
        return sorted(name for name in corrected if model.get(name) != corrected[name])
    changed = []
    for name, field in schema.model_fields.items():
        said = model.get(name)
        if said is None:  # what the model left out reads as the field's default (the review file shows it so)
            said = field.get_default(call_default_factory=True)
        if said == corrected.get(name):
            continue
        # The model's value in the reviewer's document, in normal form: equal to the reviewer's, it was not changed.
        try:
            normal = schema.model_validate({**corrected, name: said}).model_dump(mode="json")
        except (ValueError, TypeError):  # ValidationError, or a normaliser's own error on a value of another type
            changed.append(name)  # the model's value does not even validate: the reviewer's replaces it
            continue
        if normal.get(name) != corrected.get(name):
            changed.append(name)
    return changed


def _changed_segments(model: list[Any], corrected: list[dict[str, Any]]) -> list[str]:
    changed = []
    for index in range(max(len(model), len(corrected))):
        if index >= len(model) or index >= len(corrected) or not isinstance(model[index], dict):
            changed.append(f"segments[{index}]")
            continue
        said = model[index]
        with contextlib.suppress(ValueError, TypeError):  # else compared as the model wrote it
            said = SegmentCorrection.model_validate(said).model_dump(mode="json")
        changed += [f"segments[{index}].{name}" for name, value in corrected[index].items() if said.get(name) != value]
    return changed


def _explained(exc: ValidationError) -> str:
    """Pydantic's errors as one line: `field: problem; field: problem`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
