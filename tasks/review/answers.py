"""What a reviewer's file or Label Studio export reads as: one answer per reviewed item, or a rejected row with its
reason. Shared by every reader (CSV, JSONL, Label Studio) and by the queue that applies them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReviewAnswer:
    """A reviewer's answer to one item: the corrected value (None: the model's value is right)."""

    item_id: int
    corrected: dict[str, Any] | None
    reviewer: str | None
    where: str  # the row or line it came from, for messages


@dataclass(frozen=True)
class RejectedRow:
    where: str
    reason: str
