"""The nightly and backfill flows end to end, on a real Prefect server, real databases and a real S3 store."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from flows.pipeline import RunFailed, backfill, nightly
from schemas.records import ObjectKind
from storage.db import unit_of_work
from storage.tables import ClassificationRow, Page, Run, SourceObject, SpeechSegmentRow
from tests.integration.conftest import Configure
from tests.services import PostgresCluster, SeaweedS3

pytestmark = pytest.mark.usefixtures("prefect_harness")

SAMPLE_EXPECTED_FAILURES = {
    "documents/pdfjs_issue3371-encrypted-pw-ELXRTQWS.pdf": "encrypted PDF: password required",
    "documents/empty-0-bytes.pdf": "empty file (0 bytes)",
    "images/bad_pillow_decompression_bomb-65535x66601.gif": "image exceeds pixel limit",
    "images/bad_pillow_truncated_jpeg.jpg": "corrupt image: file is truncated",
}


def _objects(url: str) -> dict[str, SourceObject]:
    with unit_of_work(url) as s:
        return {o.key: o for o in s.scalars(select(SourceObject).where(SourceObject.superseded_at.is_(None)))}


def _count(url: str, table: type) -> int:
    with unit_of_work(url) as s:
        return s.execute(select(func.count()).select_from(table)).scalar_one()


def _done_or_class_review(o: SourceObject) -> bool:
    """Extraction is off in these tests: an object that did not fail is done, or its class was uncertain."""
    reasons = ("uncertain document class", "ambiguous document class")
    return o.status == "done" or (o.status == "review" and (o.review_reason or "").startswith(reasons))


def test_sample_inbox_end_to_end(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = shutil.copytree(sample_inbox, tmp_path / "inbox", ignore=shutil.ignore_patterns("*.md"))
    db = f"sqlite:///{tmp_path / 'docflow.db'}"
    configure(database_url=db, source=str(inbox))

    summary = nightly()

    objects = _objects(db)
    assert len(objects) == 14 == summary.processed
    assert all(o.status == "failed" or _done_or_class_review(o) for o in objects.values())
    for key, reason in SAMPLE_EXPECTED_FAILURES.items():
        assert objects[key].status == "failed", key
        assert reason in (objects[key].error_message or "")
    assert {k for k, o in objects.items() if o.status == "failed"} == set(SAMPLE_EXPECTED_FAILURES)
    sizes = objects["documents/pdfjs_sizes-mixed-page-sizes.pdf"]
    assert (sizes.kind, sizes.page_count, sizes.pipeline_version) == ("pdf", 3, "pipeline-2")
    with unit_of_work(db) as s:
        pages = s.scalars(select(Page).where(Page.object_id == sizes.id).order_by(Page.page_number)).all()
        assert [(p.width, p.height, p.dpi) for p in pages] == [(1275, 1650, 150), (1353, 673, 150), (1650, 1275, 150)]
        assert all(Path(p.uri.removeprefix("file://")).is_file() for p in pages)
        jfk = objects["calls/fasterwhisper_jfk.flac"]
        assert jfk.kind == "audio" and jfk.duration_s == pytest.approx(11.0, abs=0.05) and (jfk.speech_ratio or 0) > 0.8
        assert (
            s.execute(
                select(func.count()).select_from(SpeechSegmentRow).where(SpeechSegmentRow.object_id == jfk.id)
            ).scalar_one()
            >= 1
        )
    pdf = summary.by_kind["pdf"]  # the empty file is kind "unknown"; an uncertain class waits in review
    assert pdf["failed"] == 1 and pdf.get("done", 0) + pdf.get("review", 0) == 4
    assert len(summary.failures) == 4

    again = nightly()
    assert (again.listed, again.planned, again.processed) == (14, 0, 0)


def test_run_publishes_markdown_artifact(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / "empty-0-bytes.pdf", inbox)
    configure(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", source=str(inbox))
    nightly()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["docflow-nightly-summary"]))
        )
    assert artifacts
    latest = max(artifacts, key=lambda a: a.created or datetime.min.replace(tzinfo=UTC))  # the server sets it
    assert isinstance(latest.data, str)  # a markdown artifact's data is its text
    assert "| unknown | 1 |" in latest.data and "empty file (0 bytes)" in latest.data


def _upload_corpus(client, bucket: str, corpus: Path, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    keys = []
    for folder in ("pdf", "pdf_bad", "image", "audio"):
        for path in sorted((corpus / folder).iterdir()):
            key = f"{prefix}/{folder}/{path.name}"
            client.upload_file(str(path), bucket, key)
            keys.append(key)
    return keys


CORPUS_FAILURES = {
    "pdf_bad/empty-0-bytes.pdf": "empty file",
    "pdf_bad/invoice2data_coolblue2-TRUNCATED-60pct.pdf": "corrupt or truncated PDF",
    "pdf_bad/pdfjs_bug1606566-no-pdf-header.pdf": "not a PDF",
    "pdf_bad/pdfjs_issue15590-zero-pages-js.pdf": "page tree is missing or invalid",
    "pdf_bad/pdfjs_issue3371-encrypted-pw-ELXRTQWS.pdf": "encrypted PDF: password required",
    "pdf_bad/pdfjs_poppler-67295-0-count9999999999.pdf": "invalid page count",
    "pdf_bad/pypdfsf_odt-document-misnamed.pdf": "not a PDF: OpenDocument text",
    "image/bad_pillow_decompression_bomb-65535x66601.gif": "image exceeds pixel limit",
    "image/bad_pillow_truncated_jpeg.jpg": "corrupt image",
    "audio/bad_mutagen_106-invalid-streaminfo.flac": "audio stream unreadable",
}


def test_whole_corpus_from_s3_into_postgres(
    configure: Configure, s3_env: SeaweedS3, bucket: str, pg_url: str, corpus: Path
) -> None:
    keys = _upload_corpus(s3_env.client(), bucket, corpus, "corpus")
    configure(database_url=pg_url, source=f"s3://{bucket}/corpus/", derived_store=f"s3://{bucket}/derived/")

    first = nightly()

    objects = _objects(pg_url)
    assert sorted(objects) == sorted(keys)
    failed = {k.removeprefix("corpus/"): o.error_message for k, o in objects.items() if o.status == "failed"}
    assert set(failed) == set(CORPUS_FAILURES)
    for key, reason in CORPUS_FAILURES.items():
        assert reason in (failed[key] or ""), (key, failed[key])
    assert all(_done_or_class_review(o) for k, o in objects.items() if k.removeprefix("corpus/") not in CORPUS_FAILURES)
    documents = [o for o in objects.values() if o.kind in ("pdf", "image") and o.status != "failed"]
    assert _count(pg_url, ClassificationRow) == len(documents)
    assert not [o for o in objects.values() if o.error_code == "internal"]
    geo = objects["corpus/pdf/pypdfsf_GeoTopo-117pages.pdf"]
    assert geo.page_count == 117
    derived = list(s3_env.client().list_objects_v2(Bucket=bucket, Prefix="derived/pages/")["Contents"])
    assert derived and all(d["Key"].endswith(".jpg") for d in derived)
    assert first.processed == len(keys)

    second = nightly()
    assert second.processed == 0

    counts = (_count(pg_url, SourceObject), _count(pg_url, Page), _count(pg_url, SpeechSegmentRow))
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    forced = backfill(since=datetime.combine(yesterday, datetime.min.time()), force=True)
    assert forced.processed == len(keys)
    assert (_count(pg_url, SourceObject), _count(pg_url, Page), _count(pg_url, SpeechSegmentRow)) == counts
    assert _count(pg_url, ClassificationRow) == len(documents)
    # attempts count the tries since the object was last queued: a forced re-run starts a new series
    assert all(o.attempts == 1 for o in _objects(pg_url).values())


def test_changed_object_is_a_new_version(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    target = inbox / "doc.pdf"
    shutil.copy(sample_inbox / "documents" / "empty-0-bytes.pdf", target)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox))
    nightly()
    assert _objects(db)["doc.pdf"].status == "failed"

    shutil.copy(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", target)
    os.utime(target, (time.time() + 5, time.time() + 5))
    summary = nightly()
    assert summary.processed == 1
    assert _objects(db)["doc.pdf"].status == "done"
    assert _count(db, SourceObject) == 2  # the old version is kept, superseded
    assert summary.by_status == {"done": 1}


def test_backfill_selects_by_window_prefix_and_kind(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = shutil.copytree(sample_inbox, tmp_path / "inbox", ignore=shutil.ignore_patterns("*.md"))
    old = datetime(2025, 1, 15, tzinfo=UTC).timestamp()
    for path in (inbox / "calls").iterdir():
        os.utime(path, (old, old))
    os.utime(inbox / "images" / "photo_donut_coffee_122.jpg", (old, old))
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox))

    since, until = datetime(2025, 1, 1), datetime(2025, 2, 1)
    audio_only = backfill(since=since, until=until, kinds=[ObjectKind.AUDIO])
    assert audio_only.processed == 3 and set(audio_only.by_kind) == {"audio"}

    images = backfill(since=since, until=until, prefixes=["images/"])
    assert images.processed == 1
    assert _objects(db)["images/photo_donut_coffee_122.jpg"].status == "done"
    assert "documents/invoice2data_AzureInterior.pdf" not in _objects(db)  # outside the window: not touched


def test_permanent_failures_wait_for_retry_failed(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "images" / "bad_pillow_truncated_jpeg.jpg", inbox)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox))
    nightly()
    assert nightly().processed == 0
    retried = nightly(retry_failed=True)
    assert retried.processed == 1
    obj = _objects(db)["bad_pillow_truncated_jpeg.jpg"]
    assert (obj.status, obj.attempts, obj.run_id) == ("failed", 1, retried.run_id)


def test_s3_outage_mid_run_fails_windows_and_next_run_continues(
    configure: Configure, seaweed: SeaweedS3, s3_env: SeaweedS3, bucket: str, sample_inbox: Path, tmp_path: Path
) -> None:
    """Inputs come from a local folder, derived pages go to S3: the store dies after discovery succeeded."""
    inbox = tmp_path / "inbox"
    (inbox).mkdir()
    for name in ("invoice2data_AzureInterior.pdf", "pdfjs_sizes-mixed-page-sizes.pdf"):
        shutil.copy(sample_inbox / "documents" / name, inbox)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox), derived_store=f"s3://{bucket}/derived", window_size=1)

    seaweed.stop()
    try:
        with pytest.raises(RunFailed) as excinfo:
            nightly()
    finally:
        seaweed.start()
    assert excinfo.value.summary.failed_windows == 2
    assert {o.status for o in _objects(db).values()} == {"pending"}
    with unit_of_work(db) as s:
        assert s.scalars(select(Run.status)).all() == ["failed"]

    recovered = nightly()
    assert recovered.processed == 2
    assert {o.status for o in _objects(db).values()} == {"done"}
    assert _count(db, Page) == 4


def test_database_outage_leaves_claims_the_next_run_takes_over(
    configure: Configure, postgres: PostgresCluster, pg_url: str, sample_inbox: Path, tmp_path: Path
) -> None:
    from schemas.records import DiscoveryRequest, RunKind
    from schemas.settings import load_settings
    from storage.db import get_engine
    from tasks.faults import is_infrastructure_fault
    from tasks.run import claims, steps
    from tasks.run.discovery import discover
    from tasks.run.runs import start_run

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", inbox)
    configure(database_url=pg_url, source=str(inbox), claim_ttl_s=1)
    settings = load_settings()
    nightly(limit=1)  # creates the schema; processes the one file
    shutil.copy(sample_inbox / "documents" / "pdfjs_sizes-mixed-page-sizes.pdf", inbox)

    start_run(settings, "crashing-run", RunKind.NIGHTLY, {})
    plan = discover(settings, DiscoveryRequest(sources=(str(inbox),)))
    assert len(plan.object_ids) == 1
    refs = claims.claim(settings, "crashing-run", plan.object_ids, force=False, retry_failed=False)
    items = steps.preprocess(settings, "crashing-run", 0, refs, tmp_path / "work").remaining
    assert [item.ref.id for item in items] == list(plan.object_ids)  # on its way to classification
    postgres.stop()
    try:
        with pytest.raises(Exception) as excinfo:  # the embedding cache cannot be read
            steps.run_step(settings, "crashing-run", 0, "classify", items, tmp_path / "work")
        assert is_infrastructure_fault(excinfo.value)
    finally:
        postgres.start()
        get_engine(pg_url).dispose()
    assert _objects(pg_url)["pdfjs_sizes-mixed-page-sizes.pdf"].status == "processing"

    time.sleep(1.2)  # the abandoned claim expires (DOCFLOW_CLAIM_TTL_S=1)
    summary = nightly()
    assert summary.processed == 1
    assert {o.status for o in _objects(pg_url).values()} == {"done"}
