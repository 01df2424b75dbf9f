"""One batch as one unit of work: claim, process each object while renewing the claims, record every outcome in
one transaction, fenced on the claims still being ours."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from schemas.records import BatchOutcome, ObjectResult
from schemas.settings import Settings
from storage.blobstore import BlobStore, open_store
from storage.db import unit_of_work
from storage.embeddings import SqlEmbeddingCache
from storage.repositories import ObjectRepository, RunRepository, eligible
from storage.tables import utcnow
from tasks.ingest import ObjectRef, PipelineConfig, process_object
from tasks.version import PIPELINE_VERSION
from tasks.workdirs import work_dir_prefix

log = logging.getLogger(__name__)


def claim_batch(
    settings: Settings, run_id: str, object_ids: Sequence[int], *, force: bool, retry_failed: bool
) -> list[ObjectRef]:
    """Claim what is still eligible; objects that already killed `max_attempts` workers are failed instead."""
    stale_before = utcnow() - timedelta(seconds=settings.claim_ttl_s)
    condition = eligible(force=force, retry_failed=retry_failed, stale_before=stale_before, run_id=run_id)
    with unit_of_work(settings.database_url) as session:
        claimed, given_up = ObjectRepository(session).claim(object_ids, run_id, condition, settings.max_attempts)
        RunRepository(session).add_counts(run_id, processed=len(given_up), failed=len(given_up))
        return [ObjectRef(id=r.id, source=r.source, key=r.key, size=r.size) for r in claimed]


class ClaimHeartbeat:
    """Renews a batch's claims every `settings.claim_heartbeat_s` in a thread of its own while the batch works, so
    a slow object is never taken over by another run. A failed renewal is only logged: the claims then expire,
    and the fenced final write keeps a second run's result from being overwritten."""

    def __init__(self, settings: Settings, run_id: str, object_ids: Sequence[int]) -> None:
        self.settings, self.run_id, self.object_ids = settings, run_id, list(object_ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"claims-{run_id[:8]}", daemon=True)

    def __enter__(self) -> ClaimHeartbeat:
        if self.object_ids:
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.claim_heartbeat_s):
            try:
                with unit_of_work(self.settings.database_url) as session:
                    ObjectRepository(session).renew(self.object_ids, self.run_id)
            except Exception as exc:  # the database may be briefly away; the batch itself reports real faults
                log.warning("could not renew claims of run %s: %s", self.run_id, exc)


def record_batch(settings: Settings, run_id: str, results: Sequence[tuple[int, ObjectResult]]) -> int:
    """Store every outcome whose claim is still ours; returns how many were taken over by another run."""
    lost = 0
    with unit_of_work(settings.database_url) as session:
        repo = ObjectRepository(session)
        recorded: list[ObjectResult] = []
        for object_id, result in results:
            if repo.record_result(object_id, result, PIPELINE_VERSION, run_id):
                recorded.append(result)
            else:
                lost += 1
                log.warning(
                    "object %d was taken over by another run; its result from run %s is dropped", object_id, run_id
                )
        RunRepository(session).add_counts(run_id, processed=len(recorded), failed=sum(1 for r in recorded if r.error))
    return lost


def process_batch(
    settings: Settings, run_id: str, object_ids: Sequence[int], *, force: bool = False, retry_failed: bool = False
) -> BatchOutcome:
    """Process the objects of one batch. Infrastructure faults propagate (the caller retries the batch)."""
    refs = claim_batch(settings, run_id, object_ids, force=force, retry_failed=retry_failed)
    config = PipelineConfig.from_settings(settings)
    stores: dict[str, BlobStore] = {}
    derived = open_store(settings.derived_store)
    embeddings = SqlEmbeddingCache(settings.database_url)
    results: list[tuple[int, ObjectResult]] = []
    with (
        ClaimHeartbeat(settings, run_id, [ref.id for ref in refs]),
        tempfile.TemporaryDirectory(prefix=work_dir_prefix(), dir=settings.temp_dir) as tmp,
    ):
        for ref in refs:
            if ref.source not in stores:
                stores[ref.source] = open_store(ref.source)
            with tempfile.TemporaryDirectory(dir=tmp) as object_dir:  # freed per object: big PDFs make many pages
                result = process_object(ref, stores[ref.source], derived, config, Path(object_dir), embeddings)
                results.append((ref.id, result))
    lost = record_batch(settings, run_id, results)
    by_status = Counter(r.status.value for _, r in results)
    return BatchOutcome(claimed=len(refs), by_status=dict(by_status), lost_claims=lost)


def release_batch(settings: Settings, run_id: str, object_ids: Sequence[int]) -> int:
    with unit_of_work(settings.database_url) as session:
        return ObjectRepository(session).release(object_ids, run_id)
