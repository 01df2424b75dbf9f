"""The staged flow against a real Prefect server, a real Postgres and tiny random models: model stages of
concurrent runs take turns on the device's concurrency limit, extraction batches fill across documents, and the
run's logs (what the UI shows) carry per-stage counts."""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import select

from flows.pipeline import nightly
from schemas.records import RunSummary
from schemas.settings import DEFAULT_CLASS_LABELS, load_settings
from storage.db import unit_of_work
from storage.tables import SourceObject, StageRun
from tasks.run.concurrency import model_limit_name
from tests.integration.conftest import Configure
from tests.support.prefect_logs import flow_run_logs

pytestmark = pytest.mark.usefixtures("prefect_harness")

MODEL_STAGES = ("classify", "extract")


def _inbox(root: Path, sample_inbox: Path, copies: int) -> Path:
    root.mkdir()
    images = sample_inbox / "images"
    for n in range(copies):
        # Listed in key order, so a window of two holds an invoice and a receipt.
        shutil.copy(images / "photo_donut_coffee_122.jpg", root / f"{n}-receipt.jpg")
        shutil.copy(images / "invoice2data_AmazonWebServices.png", root / f"{n}-invoice.png")
    return root


def _configure_tiny_models(configure: Configure, tiny_clip: Path, tiny_vlm: Path, **fields: object) -> None:
    configure(
        classifier="clip",
        clip_model=str(tiny_clip),
        clip_pretrained="",
        class_examples="",
        # A random CLIP picks any label; every label goes to extraction so each document reaches that stage.
        class_routes=json.dumps(dict.fromkeys(DEFAULT_CLASS_LABELS, "receipt")),
        extract=True,
        vlm_model=str(tiny_vlm),
        max_pixels=28 * 28 * 64,
        vlm_min_pixels=28 * 28 * 4,
        extract_max_string=8,
        extract_max_items=2,
        extract_max_attempts=1,
        extract_max_new_tokens=96,
        extract_batch_size=4,
        transcribe=False,
        **fields,
    )


def _stage_runs(db: str) -> list[StageRun]:
    with unit_of_work(db) as s:
        rows = list(s.scalars(select(StageRun).order_by(StageRun.started_at)))
        s.expunge_all()
        return rows


def test_concurrent_runs_never_overlap_model_stages_and_batches_span_documents(
    configure: Configure, tiny_clip: Path, tiny_vlm: Path, sample_inbox: Path, pg_url: str, tmp_path: Path
) -> None:
    first = _inbox(tmp_path / "first", sample_inbox, copies=2)
    second = _inbox(tmp_path / "second", sample_inbox, copies=2)
    _configure_tiny_models(
        configure, tiny_clip, tiny_vlm, database_url=pg_url, window_size=2, windows_in_flight=2, model_slots=1
    )

    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(nightly, source=[str(inbox)]) for inbox in (first, second)]
        summaries: list[RunSummary] = [run.result() for run in runs]

    assert [s.processed for s in summaries] == [4, 4]
    with unit_of_work(pg_url) as s:
        assert {o.status for o in s.scalars(select(SourceObject))} <= {"done", "review"}
    rows = _stage_runs(pg_url)
    model_rows = [r for r in rows if r.stage in MODEL_STAGES]
    # Both runs ran both model stages over two windows each...
    for summary in summaries:
        mine = [(r.stage, r.window) for r in model_rows if r.run_id == summary.run_id]
        assert sorted(mine) == [("classify", 0), ("classify", 1), ("extract", 0), ("extract", 1)]
    # ...and no two model stages, of either run, ever held the device at the same time.
    for earlier, later in pairwise(model_rows):
        assert earlier.finished_at <= later.started_at, (earlier.stage, earlier.run_id, later.stage, later.run_id)
    # The runs did run at once: their preprocessing or model work interleaved in time.
    spans = {
        summary.run_id: (
            min(r.started_at for r in rows if r.run_id == summary.run_id),
            max(r.finished_at for r in rows if r.run_id == summary.run_id),
        )
        for summary in summaries
    }
    (a_start, a_end), (b_start, b_end) = spans.values()
    assert a_start < b_end and b_start < a_end
    # A window holds a receipt and an invoice: each extraction forward batch carried pages of both documents.
    extract_rows = [r for r in model_rows if r.stage == "extract"]
    assert all((r.batches, r.batch_rows, r.max_batch_owners) == (1, 2, 2) for r in extract_rows)
    assert all(s.stages and {t.stage for t in s.stages} == {"preprocess", *MODEL_STAGES} for s in summaries)

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(model_limit_name(load_settings(model_device="cpu")))
    assert limit.limit == 1 and limit.active


def test_flow_run_logs_in_the_api_carry_per_stage_counts(
    configure: Configure, tiny_clip: Path, tiny_vlm: Path, sample_inbox: Path, tmp_path: Path
) -> None:
    inbox = _inbox(tmp_path / "inbox", sample_inbox, copies=1)
    shutil.copy(sample_inbox / "images" / "bad_pillow_truncated_jpeg.jpg", inbox)
    _configure_tiny_models(configure, tiny_clip, tiny_vlm, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    summary = nightly(source=[str(inbox)])
    assert summary.processed == 3

    messages = flow_run_logs(summary.run_id, expect="stage extract:")
    assert "discovery: 3 listed, 3 new, 3 to process, 0 failed without processing" in messages
    # A small window is split across the preprocessing workers, so window 0 may report in several lines.
    window_lines = [m for m in messages if m.startswith("preprocess window 0: ")]
    assert sum(int(n) for m in window_lines for n in re.findall(r"^preprocess window 0: (\d+) object", m)) == 3
    assert sum("recorded 1 failed" in m for m in window_lines) == 1
    assert any(m.startswith("stage preprocess: 3 object(s), 2 page(s) in ") for m in messages)
    assert any(m.startswith("stage classify: 2 object(s), 2 page(s), 1 forward batch(es)") for m in messages)
    # Both documents' pages went to the model in one forward batch of the configured four.
    assert any(
        m.startswith("stage extract: 2 object(s), 2 page(s), 1 forward batch(es), mean fill 50%") for m in messages
    )


def test_preprocessing_can_run_in_worker_processes(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path / "inbox", sample_inbox, copies=1)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox), task_runner="processes", classifier="keywords", transcribe=False)
    summary = nightly()
    assert summary.processed == 2 and summary.by_status == {"done": 2}
    (preprocess,) = [s for s in summary.stages if s.stage == "preprocess"]
    assert (preprocess.items, preprocess.pages) == (2, 2)
