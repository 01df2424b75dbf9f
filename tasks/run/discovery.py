"""Discovery: list the sources, record every object version, and choose what this run processes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

from schemas.records import BlobInfo, DiscoveryRequest, DiscoveryResult, ObjectKind
from schemas.settings import Settings
from storage.blobstore import BlobStore, open_store
from storage.db import unit_of_work
from storage.repositories import ObjectRepository, eligible
from storage.tables import MAX_KEY_LENGTH, utcnow
from tasks.preprocess import sniff

_REGISTER_CHUNK = 1000


def in_window(blob: BlobInfo, request: DiscoveryRequest) -> bool:
    if request.since and blob.last_modified < request.since:
        return False
    return not (request.until and blob.last_modified >= request.until)


def list_candidates(stores: Iterable[BlobStore], request: DiscoveryRequest) -> Iterator[BlobInfo]:
    """Every listed object under the requested prefixes whose last-modified time is in the window."""
    seen: set[tuple[str, str]] = set()
    for store in stores:
        for prefix in request.prefixes or ("",):
            for blob in store.list(prefix):
                if (blob.source, blob.key) in seen or not in_window(blob, request):
                    continue
                seen.add((blob.source, blob.key))
                yield blob


def discover(settings: Settings, request: DiscoveryRequest, run_id: str | None = None) -> DiscoveryResult:
    """Record every listed object version; return the ids this run should process, in listing order.

    Entries a store lists but that cannot be objects (a FIFO, a broken symlink) are recorded as failed by this run
    right away; problems no row can hold (an unreadable folder, a key too long to store) come back as warnings."""
    stores = {location: open_store(location) for location in request.sources}
    listed = list(list_candidates(stores.values(), request))
    blobs = [b for b in listed if len(b.key) <= MAX_KEY_LENGTH]
    warnings = [w for store in stores.values() for w in store.warnings]
    if len(blobs) < len(listed):
        too_long = [b.key for b in listed if len(b.key) > MAX_KEY_LENGTH]
        warnings.append(
            f"skipped {len(too_long)} object(s) whose key is longer than {MAX_KEY_LENGTH} characters, "
            f"e.g. {too_long[0][:60]!r}..."
        )
    stale_before = utcnow() - timedelta(seconds=settings.runner.claim_ttl_s)
    condition = eligible(force=request.force, retry_failed=request.retry_failed, stale_before=stale_before)
    new = 0
    for i in range(0, len(blobs), _REGISTER_CHUNK):
        with unit_of_work(settings.database_url) as session:
            new += ObjectRepository(session).register(blobs[i : i + _REGISTER_CHUNK])
    problems = {(b.source, b.key, b.version): b.problem for b in blobs if b.problem is not None}
    failed = 0
    with unit_of_work(settings.database_url) as session:
        repo = ObjectRepository(session)
        rows = repo.find_current(blobs, condition)
        for row in rows:
            problem = problems.get((row.source, row.key, row.version))
            if problem is not None:
                repo.fail_unprocessed(row, problem, run_id)
                failed += 1
        rows = [row for row in rows if (row.source, row.key, row.version) not in problems]
        if request.kinds:
            stores_by_uri = {store.uri: store for store in stores.values()}
            for row in rows:
                if row.kind is None:  # never looked at: read just enough bytes to know its kind
                    detection = sniff.detect(stores_by_uri[row.source].read_head(row.key, sniff.HEAD_BYTES))
                    repo.set_kind(row.id, detection.kind, detection.description)
                    row.kind = detection.kind
            wanted = {ObjectKind(k).value for k in request.kinds}
            rows = [row for row in rows if row.kind in wanted]
        ids = tuple(row.id for row in rows)
    if request.limit is not None:
        ids = ids[: request.limit]
    return DiscoveryResult(listed=len(listed), new=new, object_ids=ids, failed=failed, warnings=tuple(warnings))
