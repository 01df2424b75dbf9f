"""The markdown a run publishes as a Prefect artifact."""

from __future__ import annotations

from schemas.records import ObjectStatus, RunSummary
from tasks.display import markdown_cell as _cell

_STATUSES = [s.value for s in ObjectStatus]


def run_markdown(summary: RunSummary, max_failures: int = 50) -> str:
    lines = [
        f"# docflow {summary.kind.value} run: {summary.status}"
        + (f", {summary.stale_claims} object(s) still claimed by a run that died" if summary.stale_claims else ""),
        "",
        f"Listed **{summary.listed}** objects, planned **{summary.planned}**, processed **{summary.processed}**.",
        "",
    ]
    if summary.failed_batches:
        lines += [
            f"**{summary.failed_batches} batch(es) failed after retries** (store or database fault); their objects "
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
    if summary.failures:
        lines += [f"## Failures ({len(summary.failures)})", "", "| object | reason |", "|---|---|"]
        for failure in summary.failures[:max_failures]:
            lines.append(f"| {_cell(failure.key)} | {_cell(failure.error)} |")
        if len(summary.failures) > max_failures:
            lines.append(f"| ... | {len(summary.failures) - max_failures} more: `docflow status --json` |")
    return "\n".join(lines) + "\n"
