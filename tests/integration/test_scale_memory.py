"""Memory that does not follow the inbox: discovery holds one page of the listing and two numbers per planned
object, whatever the inbox size (bench/scale.py --part a measures the whole run's peak RSS at 2,000 and 20,000)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from schemas.records import DiscoveryRequest
from schemas.settings import load_settings
from storage.blobstore import S3Store
from storage.db import migrate
from tasks.run import discovery
from tests.services import SeaweedS3

PAGE = 250
PER_OBJECT_BYTES = 300  # the plan: an id and a cost per object (about 90 bytes as Python objects), with room


def _inbox(folder: Path, count: int) -> Path:
    for n in range(count):
        sub = folder / f"{n // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{n:05d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + n.to_bytes(4, "big"))
    return folder


def _discovery_peak(tmp_path: Path, name: str, count: int) -> tuple[int, int]:
    """Objects planned and the peak of what discovering an inbox of `count` objects allocated, on a fresh database."""
    url = f"sqlite:///{tmp_path / name}.db"
    migrate(url)
    inbox = _inbox(tmp_path / name, count)
    settings = load_settings(database_url=url, source=[str(inbox)])
    tracemalloc.start()
    try:
        plan = discovery.discover(settings, DiscoveryRequest(sources=(str(inbox),)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return len(plan.object_ids), peak


def test_discovery_memory_follows_the_page_not_the_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "_REGISTER_CHUNK", PAGE)
    _discovery_peak(tmp_path, "warm", PAGE)  # statement caches, imports: what the first discovery of a process pays
    small, small_peak = _discovery_peak(tmp_path, "small", 2 * PAGE)
    large, large_peak = _discovery_peak(tmp_path, "large", 12 * PAGE)
    assert (small, large) == (2 * PAGE, 12 * PAGE)
    grown = large_peak - small_peak
    assert grown < (large - small) * PER_OBJECT_BYTES, (small_peak, large_peak)


def test_the_s3_listing_asks_for_one_page_at_a_time(s3_env: SeaweedS3, bucket: str) -> None:
    """The bucket is listed page by page as discovery consumes it (list_objects_v2 with a continuation token),
    never read whole before the first object is recorded."""
    client = s3_env.client()
    for n in range(250):
        client.put_object(Bucket=bucket, Key=f"inbox/{n:04d}.png", Body=b"\x89PNG")
    requests: list[str] = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: requests.append("list"))
    listing = S3Store(bucket, "inbox", client=client, page_size=100).list()
    first = next(listing)
    assert first.key == "inbox/0000.png" and len(requests) == 1
    assert 1 + sum(1 for _ in listing) == 250 and len(requests) == 3
