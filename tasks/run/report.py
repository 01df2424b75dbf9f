"""The markdown a run publishes as a Prefect artifact."""

from __future__ import annotations

from schemas.records import ObjectStatus, RunSummary, StageTotals
from tasks.display import markdown_cell as _cell
from tasks.display import reason_sentence

_STATUSES = [s.value for s in ObjectStatus]


def run_markdown(summary: RunSummary, max_failures: int = 50) -> str:
    lines = [
        f"# docflow {summary.kind.value} run: {summary.status}"
        + (f", {summary.stale_claims} object(s) still claimed by a run that died" if summary.stale_claims else ""),
        "",
        f"Listed **{summary.listed}** objects, planned **{summary.planned}**, processed **{summary.processed}**.",
        "",
    ]
    if summary.failed_windows:
        lines += [
            f"**{summary.failed_windows} window(s) failed after retries** (store or database fault); their objects "
            "were released and the next run continues with them.",
            "",
        ]
    if summary.error:
        lines += [f"Error: {_cell(summary.error)}", ""]
    for warning in summary.warnings:
        lines += [f"**Warning:** {_cell(warning)}", ""]
    statuses = [s for s in _STATUSES if any(s in counts for counts in summary.by_kind.values())]
    if statuses:
        lines += ["| kind | " + " | ".join(statuses) + " |", "|---" * (len(statuses) + 1) + "|"]
        for kind in sorted(summary.by_kind):
            counts = summary.by_kind[kind]
            lines.append(f"| {kind} | " + " | ".join(str(counts.get(s, 0)) for s in statuses) + " |")
        lines.append("")
    if summary.stages:
        lines += [*stage_table(summary), ""]
    if summary.shards:
        lines += shard_lines(summary)
    if summary.review is not None:
        lines += review_lines(summary)
    if summary.failures:
        lines += [f"## Failures ({len(summary.failures)})", "", "| object | reason |", "|---|---|"]
        for failure in summary.failures[:max_failures]:
            lines.append(f"| {_cell(failure.key)} | {_cell(failure.error)} |")
        if len(summary.failures) > max_failures:
            lines.append(f"| ... | {len(summary.failures) - max_failures} more: `docflow status --json` |")
    return "\n".join(lines) + "\n"


def shard_lines(summary: RunSummary) -> list[str]:
    """A fanned-out run's shards: which worker took each, what it recorded, how its flow run ended."""
    lines = [
        f"## Shards ({len(summary.shards)})",
        "",
        "| shard | worker | objects | recorded | state |",
        "|---|---|---|---|---|",
    ]
    for shard in summary.shards:
        state = shard.state + (f": {_cell(shard.message)}" if shard.message and not shard.ok else "")
        worker = _cell(shard.worker or "never started")
        lines.append(f"| {shard.name} | {worker} | {shard.objects} | {shard.processed} | {state} |")
    return [*lines, ""]


def review_lines(summary: RunSummary) -> list[str]:
    """The review queue section: items this run opened per stage and reason, the backlog, the oldest item."""
    review = summary.review
    if review is None or not (review.opened or review.backlog):
        return []
    lines = ["## Review queue", ""]
    if review.opened:
        lines += ["| stage | reason | items opened | what it means |", "|---|---|---|---|"]
        lines += [
            f"| {o.stage} | {_cell(o.reason)} | {o.items} | {_cell(reason_sentence(o.reason))} |" for o in review.opened
        ]
        lines.append("")
    waiting = ", ".join(f"{stage} {n}" for stage, n in sorted(review.backlog.items())) or "none"
    lines.append(f"Waiting for a person: {waiting}.")
    if review.oldest_open_at is not None:
        opened = f"{review.oldest_open_at:%Y-%m-%d %H:%M}"
        lines.append(f"Oldest waiting item: {_cell(review.oldest_open_key or '')}, opened {opened} UTC.")
    return [*lines, ""]


def _wall_seconds(summary: RunSummary) -> float | None:
    if summary.finished_at is None:
        return None
    return max((summary.finished_at - summary.started_at).total_seconds(), 1e-9)


def _throughput(stage: StageTotals) -> str:
    """Per second of the stage's own time (for model stages: time holding the device)."""
    if not stage.seconds:
        return ""
    parts = []
    if stage.pages:
        parts.append(f"{stage.pages / stage.seconds:.2f} pages/s")
    if stage.audio_s:
        parts.append(f"{stage.audio_s / stage.seconds:.1f} audio hours/hour")
    if not parts:
        parts.append(f"{stage.items / stage.seconds * 60:.1f} objects/min")
    return ", ".join(parts)


def stage_table(summary: RunSummary) -> list[str]:
    """Per-stage timings and throughput, then the run's overall rate."""
    lines = [
        "## Stages",
        "",
        "| stage | calls | objects | pages | audio (min) | time (s) | throughput | forward batches | mean fill |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary.stages:
        fill = f"{s.mean_fill:.0%} of {s.batch_capacity}" if s.mean_fill is not None else ""
        lines.append(
            f"| {s.stage} | {s.calls} | {s.items} | {s.pages} | {s.audio_s / 60:.1f} | {s.seconds:.2f} | "
            f"{_throughput(s)} | {s.batches or ''} | {fill} |"
        )
    wall = _wall_seconds(summary)
    if wall:
        lines += ["", f"Whole run: {summary.processed / wall * 60:.1f} objects/min over {wall:.1f} s."]
    if (line := time_line(summary)) is not None:
        lines += ["", line[:1].upper() + line[1:] + "."]
    return lines


def time_line(summary: RunSummary) -> str | None:
    """Where the run's wall time went beside the stages: their CPU preparation (OCR), the planning before the first
    window, and the orchestration between the stages (None when not measured: a fanned-out parent run)."""
    if summary.orchestration_s is None:
        return None
    parts = [f"orchestration {summary.orchestration_s:.2f} s outside any stage (task runs, claims, result writes)"]
    if summary.planning_s is not None:
        parts.append(f"planning {summary.planning_s:.2f} s before the first window (checks, discovery)")
    parts += [
        f"{stage} CPU preparation {s:.2f} s summed over the workers (OCR)" for stage, s in summary.preparation_s.items()
    ]
    wall = _wall_seconds(summary)
    if wall:
        parts.append(f"of {wall:.2f} s run wall time")
    return ", ".join(parts)


def stage_lines(summary: RunSummary) -> list[str]:
    """One log line per stage: what it got through, in how long."""
    lines = []
    for s in summary.stages:
        parts = [f"{s.items} object(s)"]
        if s.pages:
            parts.append(f"{s.pages} page(s)")
        if s.audio_s:
            parts.append(f"{s.audio_s / 60:.1f} min of audio")
        if s.mean_fill is not None:
            parts.append(f"{s.batches} forward batch(es), mean fill {s.mean_fill:.0%}")
        throughput = _throughput(s)
        lines.append(
            f"stage {s.stage}: {', '.join(parts)} in {s.seconds:.2f} s over {s.calls} call(s)"
            + (f" ({throughput})" if throughput else "")
        )
    if (line := time_line(summary)) is not None:
        lines.append(line)
    return lines
