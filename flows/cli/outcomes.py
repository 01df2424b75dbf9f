"""Lists a person acts on, as `docflow run`, `status` and `review list` print them: each object's outcome with a
reason in words (never a bare code), and the commands to run next. Every outside string goes through `safe`."""

from __future__ import annotations

import shlex

from rich.console import Console

from flows.cli.common import safe
from schemas.status import ObjectBrief, ObjectList, ReviewQueueView
from tasks.display import first_line, reason_sentence, reasons_line

# How a run's outcomes are listed, in this order, and what each status means to a person.
OUTCOME_TITLES = {
    "done": "done",
    "review": "waiting for review",
    "failed": "failed",
    "pending": "not processed yet (the next run takes them)",
    "processing": "still claimed (by this run's crashed part; the next run takes them over)",
}
REVIEW_FILE = "review.csv"


def why(obj: ObjectBrief) -> str:
    """One line: the review reasons in words, or the failure's error."""
    if obj.status == "failed":
        return first_line(obj.error or "failed (no reason recorded)", 240)
    if obj.review_reasons or obj.status == "review":
        return reasons_line(obj.review_reasons)
    return ""


def print_objects(out: Console, title: str, listed: ObjectList, more_hint: str) -> None:
    """`title (n):` then one line per listed object (key: why), then how many were left out and where they are."""
    if not listed.total:
        return
    out.print(f"{title} ({listed.total}):", soft_wrap=True)
    for obj in listed.objects:
        reason = why(obj)
        out.print(f"  {safe(obj.key)}" + (f": {safe(reason)}" if reason else ""), soft_wrap=True)
    if listed.total > len(listed.objects):
        out.print(f"  ... and {listed.total - len(listed.objects)} more: {more_hint}", soft_wrap=True)


def print_run_outcomes(out: Console, outcomes: dict[str, ObjectList]) -> None:
    """Every object a run took in, by outcome (the first ones of each, with counts)."""
    for status in [*OUTCOME_TITLES, *sorted(set(outcomes) - set(OUTCOME_TITLES))]:
        if status in outcomes:
            hint = "docflow review list" if status == "review" else "docflow status --json"
            print_objects(out, OUTCOME_TITLES.get(status, status), outcomes[status], hint)


def command(*words: str) -> str:
    """A command line a person can paste: every word quoted for the shell, then escaped for the terminal."""
    return safe(shlex.join(words))


def next_commands(waiting_key: str | None, failed_key: str | None) -> list[tuple[str, str]]:
    """What to run next, with what each command is for: given an object waiting for review, and a failed one."""
    steps: list[tuple[str, str]] = []
    if waiting_key is not None:
        steps += [
            (command("docflow", "show", waiting_key), "why it waits for review, value by value"),
            (command("docflow", "review", "list"), "every item waiting for a person"),
            (
                command("docflow", "review", "export", "--format", "csv", "--out", REVIEW_FILE),
                f"the items in a file: fill `correction` and `reviewer`, then "
                f"{command('docflow', 'review', 'import', REVIEW_FILE)}",
            ),
        ]
    if failed_key is not None:
        steps.append((command("docflow", "show", failed_key), "why it failed"))
    return steps


def print_next(out: Console, steps: list[tuple[str, str]]) -> None:
    if not steps:
        return
    out.print("next:")
    width = max(len(line) for line, _ in steps)
    for line, purpose in steps:
        out.print(f"  {line.ljust(width)}  # {purpose}", soft_wrap=True)


def print_queue(out: Console, queue: ReviewQueueView) -> None:
    """The open review queue: one line per item (id, stage, key, reasons in words), then the count left out."""
    if not queue.total:
        out.print("no review item is waiting for a person")
        return
    stages = ", ".join(f"{stage} {n}" for stage, n in sorted(queue.by_stage.items()))
    out.print(f"{queue.total} review item(s) waiting for a person ({safe(stages)}), oldest first:", soft_wrap=True)
    for item in queue.items:
        reasons = reason_sentence("audit") if item.audit else reasons_line(item.reasons)
        out.print(
            f"  #{item.id} {safe(item.stage)} {safe(item.key)}: {safe(reasons)}"
            + (" (exported, no answer yet)" if item.status == "exported" else ""),
            soft_wrap=True,
        )
    if queue.total > len(queue.items):
        out.print(f"  ... and {queue.total - len(queue.items)} more (--limit N shows more)", soft_wrap=True)
