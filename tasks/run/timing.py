"""Where a run's time went: the stages' own work (their CPU preparation included) against the orchestration around
it (Prefect task runs and their state, claims and result writes, waiting for the next window), measured from the
spans each step reports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime


def covered_seconds(spans: Iterable[tuple[datetime, datetime]]) -> float:
    """Seconds during which at least one span was open: overlapping spans (a window preprocessed while the model
    works on another) count once."""
    total, end = 0.0, None
    for start, stop in sorted(spans):
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


class RunClock:
    """Collects the busy spans of a run's steps between `start` and `stop` (the windows' part of a run)."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.spans: list[tuple[datetime, datetime]] = []
        self.prepare_s: Counter[str] = Counter()

    def add(self, spans: Iterable[tuple[datetime, datetime]], prepare_s: dict[str, float]) -> None:
        self.spans.extend(spans)
        self.prepare_s.update(prepare_s)

    def orchestration_s(self, stop: datetime) -> float:
        """Wall time between start and stop in which no stage worked."""
        wall = (stop - self.start).total_seconds()
        return max(0.0, wall - covered_seconds(self.spans))
