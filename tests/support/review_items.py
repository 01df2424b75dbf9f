"""A review item as the review code sees it, for unit tests of the logic around review files and annotations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.review import ReviewItemView, ReviewStage, ReviewStatus


def review_item(stage: ReviewStage, schema_id: str, output: dict[str, Any], item_id: int = 1) -> ReviewItemView:
    """An open item of `doc.pdf` holding the model's `output`."""
    return ReviewItemView(
        id=item_id,
        object_id=1,
        key="doc.pdf",
        kind="pdf",
        stage=stage,
        schema_id=schema_id,
        status=ReviewStatus.OPEN,
        audit=False,
        reasons=[],
        model_output=output,
        model_id="m",
        score=0.5,
        created_at=datetime.now(UTC),
    )
