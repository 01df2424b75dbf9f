from datetime import UTC, datetime

from schemas.records import FailureRecord, RunKind, RunSummary
from tasks.report import run_markdown


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


def test_failed_batches_are_called_out() -> None:
    md = run_markdown(_summary(status="failed", failed_batches=2))
    assert "2 batch(es) failed after retries" in md


def test_claims_held_by_a_dead_run_are_not_a_plain_completed() -> None:
    md = run_markdown(_summary(stale_claims=2, warnings=("2 object(s) are still claimed by a run that stopped",)))
    assert md.splitlines()[0] == "# docflow nightly run: completed, 2 object(s) still claimed by a run that died"
    assert "**Warning:** 2 object(s) are still claimed by a run that stopped" in md
