"""What of a processed object goes to a person: one draft per stage that raised a doubt, plus a seeded audit
sample of confident outputs (the same seed picks the same sample, run after run)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from schemas.records import Classification, Extraction, ObjectResult, ReviewReason, Transcript
from schemas.review import CLASS_SCHEMA, STAGE_OF_REASON, TRANSCRIPT_SCHEMA, ReviewDraft, ReviewStage


@dataclass(frozen=True)
class AuditPolicy:
    """Send `rate` of the confident outputs to review as well, picked by a hash of (seed, object, stage)."""

    rate: float = 0.0
    seed: int = 0

    def picks(self, identity: str, stage: ReviewStage) -> bool:
        if self.rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{identity}:{stage}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.rate


def review_drafts(result: ObjectResult, identity: str, audit: AuditPolicy) -> list[ReviewDraft]:
    """The review items a result opens: every stage with doubts, and the audit's pick of the others."""
    outputs = _stage_outputs(result)
    if not outputs:
        return []
    main = next(
        s for s in (ReviewStage.EXTRACTION, ReviewStage.TRANSCRIPTION, ReviewStage.CLASSIFICATION) if s in outputs
    )
    doubts: dict[ReviewStage, list[ReviewReason]] = {}
    for reason in result.review_reasons:
        stage = STAGE_OF_REASON.get(reason.stage, main)
        doubts.setdefault(stage if stage in outputs else main, []).append(reason)
    drafts = []
    for stage, (schema_id, output, model_id, score) in outputs.items():
        reasons = tuple(doubts.get(stage, ()))
        if reasons or audit.picks(identity, stage):
            drafts.append(ReviewDraft(stage, schema_id, reasons, not reasons, output, model_id, score))
    return drafts


def _stage_outputs(result: ObjectResult) -> dict[ReviewStage, tuple[str, dict[str, Any], str, float | None]]:
    """(schema, model output, model, score) of every stage that produced something."""
    outputs: dict[ReviewStage, tuple[str, dict[str, Any], str, float | None]] = {}
    if result.classification is not None:
        outputs[ReviewStage.CLASSIFICATION] = (
            CLASS_SCHEMA,
            classification_output(result.classification),
            result.classification.model_id,
            result.classification.probability,
        )
    if result.extraction is not None:
        confidences = list(result.extraction.field_confidence.values())
        outputs[ReviewStage.EXTRACTION] = (
            result.extraction.schema_id,
            extraction_output(result.extraction),
            result.extraction.model_id,
            min(confidences) if confidences else None,
        )
    if result.transcript is not None and not result.transcript.no_speech:
        logprob = result.transcript.avg_logprob
        outputs[ReviewStage.TRANSCRIPTION] = (
            TRANSCRIPT_SCHEMA,
            transcript_output(result.transcript),
            result.transcript.model_id,
            math.exp(logprob) if logprob is not None else None,
        )
    return outputs


def classification_output(classification: Classification) -> dict[str, Any]:
    return {
        "label": classification.label,
        "probability": classification.probability,
        "runner_up": classification.runner_up,
        "scores": classification.scores,
        "route": classification.route,
    }


def extraction_output(extraction: Extraction) -> dict[str, Any]:
    return {
        "data": extraction.data,
        "valid": extraction.valid,
        "errors": list(extraction.errors),
        "field_confidence": extraction.field_confidence,
        "field_pages": extraction.field_pages,
        "field_grounding": extraction.field_grounding,
    }


def transcript_output(transcript: Transcript) -> dict[str, Any]:
    return {
        "language": transcript.language,
        "segments": [
            {"start_s": s.start_s, "end_s": s.end_s, "speaker": s.speaker, "text": s.text} for s in transcript.segments
        ],
    }


def model_value(stage: ReviewStage, model_output: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a stage's output a correction replaces, in the correction's own shape."""
    if stage is ReviewStage.CLASSIFICATION:
        return {"label": model_output["label"]}
    if stage is ReviewStage.EXTRACTION:
        data: dict[str, Any] | None = model_output.get("data")
        return data
    return {"segments": model_output["segments"]}
