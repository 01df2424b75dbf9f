"""A reviewer's correction, checked with the same Pydantic schemas the models' outputs are checked with: a value
that would not pass as a model's output does not pass as a person's either."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from schemas.documents import SCHEMAS
from schemas.review import ClassCorrection, ReviewStage, TranscriptCorrection


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


def _explained(exc: ValidationError) -> str:
    """Pydantic's errors as one line: `field: problem; field: problem`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
