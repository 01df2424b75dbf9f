from datetime import UTC, datetime

from schemas.records import FailureRecord, RunKind, RunSummary, ShardSummary, StageTotals
from tasks.run.fanout import plan_shards, shard_errors, shard_name
from tasks.run.report import run_markdown, stage_lines


def _summary(**kw) -> RunSummary:  # type: ignore[no-untyped-def]
    base = dict(
        run_id="r1",
        kind=RunKind.NIGHTLY,
        status="completed",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=None,
        listed=5,
        planned=5,
        processed=5,
        by_status={"done": 3, "failed": 2},
        by_kind={"pdf": {"done": 2, "failed": 1}, "audio": {"done": 1}, "unknown": {"failed": 1}},
        failures=(
            FailureRecord(
                key="a|b.pdf", source="s3://x", kind="pdf", code="encrypted", error="encrypted PDF: password required"
            ),
        ),
    )
    base.update(kw)
    return RunSummary(**base)


def test_markdown_has_counts_per_kind_and_failures() -> None:
    md = run_markdown(_summary())
    assert "| kind | done | failed |" in md
    assert "| pdf | 2 | 1 |" in md
    assert "| audio | 1 | 0 |" in md
    assert "| a\\|b.pdf | encrypted PDF: password required |" in md


def test_hostile_keys_cannot_break_the_markdown() -> None:
    key = "x`y\n| forged | row |\x1b[31m<script>.pdf"
    md = run_markdown(_summary(failures=(FailureRecord(key=key, source="s3://x", kind=None, code="c", error="e"),)))
    (row,) = [line for line in md.splitlines() if line.startswith("| x")]
    assert row == "| x\\`y\\\\x0a\\| forged \\| row \\|\\\\x1b[31m&lt;script>.pdf | e |"


def test_failed_windows_are_called_out() -> None:
    md = run_markdown(_summary(status="failed", failed_windows=2))
    assert "2 window(s) failed after retries" in md


def test_claims_held_by_a_dead_run_are_not_a_plain_completed() -> None:
    md = run_markdown(_summary(stale_claims=2, warnings=("2 object(s) are still claimed by a run that stopped",)))
    assert md.splitlines()[0] == "# docflow nightly run: completed, 2 object(s) still claimed by a run that died"
    assert "**Warning:** 2 object(s) are still claimed by a run that stopped" in md


def test_stage_table_gives_throughput_and_batch_fill() -> None:
    stages = (
        StageTotals(
            stage="preprocess",
            calls=2,
            seconds=4.0,
            items=8,
            pages=10,
            audio_s=7200.0,
            batches=0,
            batch_rows=0,
            batch_capacity=0,
        ),
        StageTotals(
            stage="extract",
            calls=1,
            seconds=5.0,
            items=3,
            pages=10,
            audio_s=0.0,
            batches=3,
            batch_rows=10,
            batch_capacity=4,
            max_batch_owners=2,
        ),
    )
    summary = _summary(stages=stages, finished_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    md = run_markdown(summary)
    # 10 pages in 4 s; two hours of audio in 4 s is 1800 audio hours per hour
    assert "| preprocess | 2 | 8 | 10 | 120.0 | 4.00 | 2.50 pages/s, 1800.0 audio hours/hour |  |  |" in md
    # three forward batches of four slots carried ten pages: 83 % fill
    assert "| extract | 1 | 3 | 10 | 0.0 | 5.00 | 2.00 pages/s | 3 | 83% of 4 |" in md
    assert "Whole run: 5.0 objects/min over 60.0 s." in md
    assert stage_lines(summary)[1] == (
        "stage extract: 3 object(s), 10 page(s), 3 forward batch(es), mean fill 83% in 5.00 s over 1 call(s) "
        "(2.00 pages/s)"
    )


def test_the_review_queue_section_gives_what_was_opened_and_what_waits() -> None:
    from schemas.records import ReviewOpened, ReviewQueueSummary

    review = ReviewQueueSummary(
        opened=(ReviewOpened(stage="extraction", reason="missing_value", items=3),),
        backlog={"extraction": 7, "classification": 1},
        oldest_open_at=datetime(2026, 11, 1, 2, 30, tzinfo=UTC),
        oldest_open_key="docs/a.pdf",
    )
    md = run_markdown(_summary(review=review))
    assert "| extraction | missing_value | 3 |" in md
    assert "Waiting for a person: classification 1, extraction 7." in md
    assert "Oldest waiting item: docs/a.pdf, opened 2026-11-01 02:30 UTC." in md
    assert "Review queue" not in run_markdown(_summary(review=ReviewQueueSummary()))


def test_a_fanned_out_run_lists_its_shards_with_worker_count_and_why_one_did_not_complete() -> None:
    shards = (
        ShardSummary(
            name="process-shard-1 (4 objects)", run_id="a", objects=4, processed=4, worker="w0@h", state="Completed"
        ),
        ShardSummary(
            name="process-shard-2 (4 objects)",
            run_id="b",
            objects=4,
            processed=1,
            worker="w1@h",
            state="Crashed",
            message="no heartbeat for 90 s",
        ),
        ShardSummary(name="process-shard-3 (1 object)", run_id="c", objects=1, state="Cancelled"),
    )
    md = run_markdown(_summary(shards=shards))
    assert "## Shards (3)" in md
    assert "| process-shard-1 (4 objects) | w0@h | 4 | 4 | Completed |" in md
    assert "| process-shard-2 (4 objects) | w1@h | 4 | 1 | Crashed: no heartbeat for 90 s |" in md
    assert "| process-shard-3 (1 object) | never started | 1 | 0 | Cancelled |" in md
    assert shard_errors(shards) == [
        "process-shard-2 (4 objects): Crashed (no heartbeat for 90 s)",
        "process-shard-3 (1 object): Cancelled",
    ]


def test_shards_are_consecutive_slices_named_for_people() -> None:
    assert plan_shards(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert plan_shards([], 4) == []
    assert shard_name(3, 212) == "process-shard-3 (212 objects)"
