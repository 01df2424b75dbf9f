"""Claims on objects while a run works on them: taken a window at a time, renewed by one heartbeat per run,
given back when a window fails, and the fenced write of each finished object's result."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import TracebackType

from sqlalchemy.orm import Session

from schemas.records import ObjectResult, RecordOutcome
from schemas.settings import Settings
from storage.db import unit_of_work
from storage.repositories import ObjectRepository, RunRepository, eligible
from storage.review import ReviewRepository
from storage.tables import utcnow
from tasks.pipeline.stage import ObjectRef
from tasks.review.items import AuditPolicy, review_drafts
from tasks.run.version import PIPELINE_VERSION

log = logging.getLogger(__name__)


def claim(
    settings: Settings, run_id: str, object_ids: Sequence[int], *, force: bool, retry_failed: bool
) -> list[ObjectRef]:
    """Claim what is still eligible; objects that already killed `max_attempts` workers are failed instead."""
    stale_before = utcnow() - timedelta(seconds=settings.runner.claim_ttl_s)
    condition = eligible(force=force, retry_failed=retry_failed, stale_before=stale_before, run_id=run_id)
    with unit_of_work(settings.database_url) as session:
        claimed, given_up = ObjectRepository(session).claim(object_ids, run_id, condition, settings.runner.max_attempts)
        RunRepository(session).add_counts(run_id, processed=len(given_up), failed=len(given_up))
        classes = ReviewRepository(session).person_classes([r.id for r in claimed])
        return [
            ObjectRef(id=r.id, source=r.source, key=r.key, size=r.size, person_class=classes.get(r.id)) for r in claimed
        ]


class ClaimHeartbeat:
    """Renews every claim of a run every `settings.runner.claim_heartbeat_s`, in a thread of its own, while the run
    works, so a slow object is never taken over by another run. A failed renewal is only logged: the claims then
    expire, and the fenced final write keeps a second run's result from being overwritten."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.settings, self.run_id = settings, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"claims-{run_id[:8]}", daemon=True)

    def __enter__(self) -> ClaimHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.runner.claim_heartbeat_s):
            try:
                with unit_of_work(self.settings.database_url) as session:
                    ObjectRepository(session).renew_run(self.run_id)
            except Exception as exc:  # the database may be briefly away; the stages themselves report real faults
                log.warning("could not renew claims of run %s: %s", self.run_id, exc)


def record(
    settings: Settings,
    run_id: str,
    results: Sequence[tuple[int, ObjectResult]],
    also: Callable[[Session], None] | None = None,
) -> RecordOutcome:
    """Store every outcome whose claim is still ours, in one transaction (with `also`'s writes, e.g. the step's
    timings: one commit per step); the window's rows are read and locked at once, not one round trip each."""
    if not results and also is None:
        return RecordOutcome(recorded=0, by_status={})
    lost = 0
    by_status: Counter[str] = Counter()
    audit = AuditPolicy(settings.review.audit_rate, settings.review.audit_seed)
    with unit_of_work(settings.database_url) as session:
        repo, reviews = ObjectRepository(session), ReviewRepository(session)
        fenced = repo.record_results(results, PIPELINE_VERSION, run_id)
        opened = []
        for (object_id, result), ours in zip(results, fenced, strict=True):
            if ours:
                by_status[result.status.value] += 1
                opened.append((object_id, review_drafts(result, result.sha256, audit)))
            else:
                lost += 1
                log.warning(
                    "object %d was taken over by another run; its result from run %s is dropped", object_id, run_id
                )
        reviews.open_many(opened, run_id)
        recorded = sum(by_status.values())
        RunRepository(session).add_counts(run_id, processed=recorded, failed=by_status.get("failed", 0))
        if also is not None:
            also(session)
    return RecordOutcome(recorded=recorded, by_status=dict(by_status), lost_claims=lost)


def release(settings: Settings, run_id: str, object_ids: Sequence[int]) -> int:
    """Give back the claims this run still holds among `object_ids` (their window failed after retries)."""
    with unit_of_work(settings.database_url) as session:
        return ObjectRepository(session).release(object_ids, run_id)
