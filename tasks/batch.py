"""One batch as one unit of work: claim, process each object, record every outcome in one transaction."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from schemas.records import BatchOutcome, ObjectResult
from schemas.settings import Settings
from storage.blobstore import BlobStore, open_store
from storage.db import unit_of_work
from storage.embeddings import SqlEmbeddingCache
from storage.repositories import ObjectRepository, eligible
from storage.tables import Run, utcnow
from tasks.ingest import ObjectRef, PipelineConfig, process_object
from tasks.version import PIPELINE_VERSION


def claim_batch(
    settings: Settings, run_id: str, object_ids: Sequence[int], *, force: bool, retry_failed: bool
) -> list[ObjectRef]:
    stale_before = utcnow() - timedelta(seconds=settings.claim_ttl_s)
    condition = eligible(force=force, retry_failed=retry_failed, stale_before=stale_before, run_id=run_id)
    with unit_of_work(settings.database_url) as session:
        rows = ObjectRepository(session).claim(object_ids, run_id, condition)
        return [ObjectRef(id=r.id, source=r.source, key=r.key, size=r.size) for r in rows]


def record_batch(settings: Settings, run_id: str, results: Sequence[tuple[int, ObjectResult]]) -> None:
    with unit_of_work(settings.database_url) as session:
        repo = ObjectRepository(session)
        for object_id, result in results:
            repo.record_result(object_id, result, PIPELINE_VERSION)
        # One atomic UPDATE: concurrent batches of the same run must not overwrite each other's counts.
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(processed=Run.processed + len(results), failed=Run.failed + sum(1 for _, r in results if r.error))
        )


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
    with tempfile.TemporaryDirectory(prefix="docflow-", dir=settings.temp_dir) as tmp:
        for ref in refs:
            if ref.source not in stores:
                stores[ref.source] = open_store(ref.source)
            with tempfile.TemporaryDirectory(dir=tmp) as object_dir:  # freed per object: big PDFs make many pages
                result = process_object(ref, stores[ref.source], derived, config, Path(object_dir), embeddings)
                results.append((ref.id, result))
    record_batch(settings, run_id, results)
    return BatchOutcome(claimed=len(refs), by_status=dict(Counter(r.status.value for _, r in results)))


def release_batch(settings: Settings, run_id: str, object_ids: Sequence[int]) -> int:
    with unit_of_work(settings.database_url) as session:
        return ObjectRepository(session).release(object_ids, run_id)
