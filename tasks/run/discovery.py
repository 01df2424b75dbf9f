"""Discovery: list the sources, record every object version, and choose what this run processes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

from schemas.records import BlobInfo, DiscoveryRequest, DiscoveryResult, ObjectKind
from schemas.settings import Settings
from storage.batching import chunked
from storage.blobstore import BlobStore, open_store
from storage.db import unit_of_work
from storage.repositories import ObjectRepository, eligible
from storage.tables import MAX_KEY_LENGTH, utcnow
from tasks.preprocess import sniff
from tasks.run.windows import object_cost

_REGISTER_CHUNK = 1000


def in_window(blob: BlobInfo, request: DiscoveryRequest) -> bool:
    if request.since and blob.last_modified < request.since:
        return False
    return not (request.until and blob.last_modified >= request.until)


def list_candidates(stores: Iterable[BlobStore], request: DiscoveryRequest) -> Iterator[BlobInfo]:
    """Every listed object under the requested prefixes whose last-modified time is in the window, once. Keys are
    remembered only where one could be listed twice (several prefixes, or a store named twice): a plain nightly
    listing holds nothing per object."""
    stores = list(stores)
    prefixes = request.prefixes or ("",)
    may_repeat = len(prefixes) > 1 or len({store.uri for store in stores}) < len(stores)
    seen: set[tuple[str, str]] = set()
    for store in stores:
        for prefix in prefixes:
            for blob in store.list(prefix):
                if not in_window(blob, request):
                    continue
                if may_repeat:
                    if (blob.source, blob.key) in seen:
                        continue
                    seen.add((blob.source, blob.key))
                yield blob


def discover(settings: Settings, request: DiscoveryRequest, run_id: str | None = None) -> DiscoveryResult:
    """Record every listed object version; return the ids this run should process, in listing order, each with the
    work it is expected to cost (tasks/run/windows.py).

    The listing streams through in pages of `_REGISTER_CHUNK`, each registered and planned in one transaction, so
    memory follows the page, not the inbox (the plan itself is two numbers per object). Entries a store lists but
    that cannot be objects (a FIFO, a broken symlink) are recorded as failed by this run right away; problems no row
    can hold (an unreadable folder, a key too long to store) come back as warnings."""
    stores = {location: open_store(location) for location in request.sources}
    stores_by_uri = {store.uri: store for store in stores.values()}
    stale_before = utcnow() - timedelta(seconds=settings.runner.claim_ttl_s)
    condition = eligible(force=request.force, retry_failed=request.retry_failed, stale_before=stale_before)
    wanted = {ObjectKind(k).value for k in request.kinds}
    listed = new = failed = 0
    too_long: list[str] = []  # the first one, as the warning's example
    too_long_count = 0
    ids: list[int] = []
    costs: list[float] = []
    for page in chunked(list_candidates(stores.values(), request), _REGISTER_CHUNK):
        listed += len(page)
        blobs = [b for b in page if len(b.key) <= MAX_KEY_LENGTH]
        if len(blobs) < len(page):
            too_long_count += len(page) - len(blobs)
            too_long = too_long or [next(b.key for b in page if len(b.key) > MAX_KEY_LENGTH)]
        problems = {(b.source, b.key, b.version): b.problem for b in blobs if b.problem is not None}
        with unit_of_work(settings.database_url) as session:
            repo = ObjectRepository(session)
            new += repo.register(blobs)
            rows = repo.find_current_plans(blobs, condition)
            for row in rows:
                problem = problems.get((row.source, row.key, row.version))
                if problem is not None and (unreadable := repo.by_id(row.id)) is not None:
                    repo.fail_unprocessed(unreadable, problem, run_id)
                    failed += 1
            rows = [row for row in rows if (row.source, row.key, row.version) not in problems]
            kinds = {row.id: row.kind for row in rows}
            if wanted:
                for row in rows:
                    if row.kind is None:  # never looked at: read just enough bytes to know its kind
                        detection = sniff.detect(stores_by_uri[row.source].read_head(row.key, sniff.HEAD_BYTES))
                        repo.set_kind(row.id, detection.kind, detection.description)
                        kinds[row.id] = detection.kind
                rows = [row for row in rows if kinds[row.id] in wanted]
            for row in rows:
                ids.append(row.id)
                costs.append(object_cost(row.key, row.size, kinds[row.id], row.page_count, row.duration_s))
    warnings = [w for store in stores.values() for w in store.warnings]
    if too_long_count:
        warnings.append(
            f"skipped {too_long_count} object(s) whose key is longer than {MAX_KEY_LENGTH} characters, "
            f"e.g. {too_long[0][:60]!r}..."
        )
    if request.limit is not None:
        ids, costs = ids[: request.limit], costs[: request.limit]
    return DiscoveryResult(
        listed=listed, new=new, object_ids=tuple(ids), costs=tuple(costs), failed=failed, warnings=tuple(warnings)
    )
