"""`docflow status` and `docflow show`: what the database says of the objects, as tables or JSON."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.common import console, database_label, existing_database, safe, settings_or_exit
from flows.cli.outcomes import next_commands, print_next, print_objects
from schemas.status import ObjectView, StatusReport
from tasks.display import clock, dialogue, reasons_line


def kind_table(by_kind: dict[str, dict[str, int]], title: str) -> Table | None:
    statuses = sorted({s for counts in by_kind.values() for s in counts})
    if not statuses:
        return None
    table = Table(title=title)
    table.add_column("kind")
    for s in statuses:
        table.add_column(safe(s), justify="right")
    for kind, counts in sorted(by_kind.items()):
        table.add_row(safe(kind), *(str(counts.get(s, 0)) for s in statuses))
    return table


def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (stable keys, for scripts).")
    ] = False,
    failures: Annotated[int, typer.Option(help="How many recent failures to list.")] = 50,
    runs: Annotated[int, typer.Option(help="How many recent runs to list.")] = 10,
    documents: Annotated[int, typer.Option(help="How many recently classified documents to list.")] = 50,
    review: Annotated[int, typer.Option(help="How many of the objects waiting for review to list.")] = 20,
) -> None:
    """Show which database it read, object counts per status and kind, documents per class label, objects being
    processed, recent failures with their reasons and recent runs; then every object waiting for review with its
    reason in words, and the commands to run next.

    JSON shape: {"objects": {status: n}, "by_kind": {kind: {status: n}},
    "by_label": {kind: {label: {"objects", "by_status", "mean_probability", "min_margin"}}},
    "documents": [{"key", "kind", "status", "label", "probability", "margin", "runner_up", "route",
    "review_reason", "review_reasons": [{"stage", "code", "message", "value"}], ...}],
    "in_progress": [{"key", "run_id", "claimed_at", "claim_age_s", "attempts", "stale"}] (oldest claim first;
    stale: its run stopped renewing the claim, i.e. it crashed),
    "failures": [{"key", "error", ...}],
    "runs": [{"id", "kind", "status", "started_at", "finished_at", "processed", "failed", "warnings"}]
    (newest first), "waiting_review": {"total", "objects": [{"id", "key", "source", "kind", "status",
    "review_reasons"}]}}."""
    settings = settings_or_exit()
    existing_database(settings)
    from flows.status import collect_status

    report = collect_status(
        settings, failures_limit=failures, runs_limit=runs, documents_limit=documents, review_limit=review
    )
    if as_json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
        return
    _print_status(report, database_label(settings.database_url))


def show(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="KEY",
            help="The object's key (as `docflow status` lists it), the path given to `docflow run` "
            "(inbox/documents/x.pdf), a file name or the end of a key if only one object has it (x.pdf), or its id.",
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (stable keys, for scripts).")
    ] = False,
) -> None:
    """Show one object: its status and why, and what the models made of it. A recording prints as the dialogue,
    `[00:01:02] SPEAKER_1: ...`, after a line per speaker (talk time, words, first and last time heard); a
    document prints its extracted fields with their confidence and whether the page prints them."""
    settings = settings_or_exit()
    existing_database(settings)
    from flows.status import look_up_object

    found = look_up_object(settings, ref)
    if found.view is None:
        _not_found(ref, found.candidates, found.candidates_total, found.suggestions)
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps(found.view.model_dump(mode="json"), indent=2) + "\n")
        return
    _print_object(found.view)


def _not_found(ref: str, candidates: list[str], total: int, suggestions: list[str]) -> None:
    """Why `show` opened nothing: several objects match (listed), or none does (the closest keys). `ref` is quoted
    first, then escaped: the quoting's backslashes must not undo the escaping of rich markup."""
    quoted = safe(repr(ref))
    if candidates:
        console.print(f"[red]{quoted} matches {total} objects:[/red] give more of the key", soft_wrap=True)
        for key in candidates:
            console.print(f"  {safe(key)}", soft_wrap=True)
        if total > len(candidates):
            console.print(f"  ... and {total - len(candidates)} more")
        return
    console.print(f"[red]no object with key or id {quoted}[/red] (see `docflow status`)", soft_wrap=True)
    if suggestions:
        console.print("did you mean:")
        for key in suggestions:
            console.print(f"  {safe(key)}", soft_wrap=True)


def _print_object(view: ObjectView) -> None:
    """Every string here may come from a file (keys, values, speakers) or a person (reviewers, notes, corrected
    classes): each goes through `safe`, so neither markup nor terminal escapes can act."""
    out = Console(emoji=False, highlight=False)
    out.print(f"{safe(view.key)} (id {view.id}, {safe(view.kind or 'unknown kind')}): {safe(view.status)}")
    if view.error:
        out.print(f"  error: {safe(view.error)}", soft_wrap=True)
    if view.note:
        out.print(f"  {safe(view.note)}", soft_wrap=True)
    if view.review_reasons:
        out.print(f"  why it waits for review: {safe(reasons_line(view.review_reasons))}", soft_wrap=True)
    for reason in view.review_reasons:
        out.print(f"  review: {safe(reason.message)}", soft_wrap=True)
    for warning in view.warnings:
        out.print(f"  warning: {safe(warning)}", soft_wrap=True)
    if (cls := view.classification) is not None:
        runner_up = f", runner-up {safe(cls.runner_up)}" if cls.runner_up else ""
        corrected = f" -> {safe(cls.corrected)} (corrected by a reviewer)" if cls.corrected else ""
        out.print(f"class: {safe(cls.label)} ({cls.probability:.2f}{runner_up}){corrected}")
    if (transcript := view.transcript) is not None:
        languages = ", ".join(transcript.languages) or transcript.language or "-"
        corrected = ", corrected by a reviewer" if transcript.corrected else ""
        out.print(
            f"transcript: {transcript.duration_s:.1f} s, language {safe(languages)}, "
            f"{safe(transcript.model_id)}{corrected}"
        )
        for speaker in transcript.speakers:
            channel = f" (channel {speaker.channel})" if speaker.channel is not None else ""
            out.print(
                f"  {safe(speaker.speaker)}{channel}: {speaker.talk_s:.1f} s, {speaker.words} words, "
                f"{safe(clock(speaker.first_s))}-{safe(clock(speaker.last_s))}"
            )
        for line in dialogue(transcript.segments):
            out.print(safe(line), soft_wrap=True)
    if (extraction := view.extraction) is not None:
        corrected = ", corrected by a reviewer" if extraction.corrected is not None else ""
        out.print(
            f"extraction: {safe(extraction.schema_id)} by {safe(extraction.model_id)}, "
            f"valid={extraction.valid}{corrected}"
        )
        model = extraction.data or {}
        for name, value in (extraction.trusted or {}).items():
            if name in extraction.corrected_fields:  # only what a person changed, not what the import normalised
                note = f"corrected; the model said {json.dumps(model.get(name), ensure_ascii=False)}"
            else:
                confidence = extraction.field_confidence.get(name)
                pages = ",".join(str(p) for p in extraction.field_pages.get(name, []))
                score = f"{confidence:.2f}" if confidence is not None else "-"
                note = f"confidence {score} {extraction.field_grounding.get(name, '')}".rstrip()
                note += f", page {pages}" if pages else ""
            out.print(f"  {safe(name)}: {safe(json.dumps(value, ensure_ascii=False))}  ({safe(note)})", soft_wrap=True)
    for review in view.reviews:
        why = "audit sample" if review.audit else ", ".join(review.reasons)
        by = f" by {review.reviewer}" if review.reviewer else ""
        note = f": {review.note}" if review.note else ""
        out.print(
            f"review #{review.id} {safe(review.stage)} ({safe(why)}): {safe(review.status)}{safe(by)}, opened "
            f"{review.created_at:%Y-%m-%d %H:%M}{safe(note)}",
            soft_wrap=True,
        )


def _print_status(report: StatusReport, database: str) -> None:
    out = Console(emoji=False, highlight=False)
    out.print(f"database: {database}", soft_wrap=True)
    objects = report.objects
    counts = ", ".join(f"{safe(k)}={v}" for k, v in sorted(objects.items()))
    out.print(f"objects: {sum(objects.values())} {counts}")
    table = kind_table(report.by_kind, "by kind")
    if table:
        out.print(table)
    if report.by_label:
        table = Table(title="documents by class")
        for col in ("kind", "label", "objects", "statuses", "mean p", "min margin"):
            table.add_column(col)
        for kind, labels in sorted(report.by_label.items()):
            for label, e in sorted(labels.items()):
                statuses = ", ".join(f"{k}={v}" for k, v in sorted(e.by_status.items()))
                p = f"{e.mean_probability:.2f}" if e.mean_probability is not None else "-"
                m = f"{e.min_margin:.2f}" if e.min_margin is not None else "-"
                table.add_row(safe(kind), safe(label), str(e.objects), safe(statuses), p, m)
        out.print(table)
    if report.in_progress:
        table = Table(title="in progress (claimed)")
        for col in ("key", "run", "claim age", "attempts", "state"):
            table.add_column(col)
        for o in report.in_progress:
            state = "[yellow]stale: its run stopped renewing[/yellow]" if o.stale else "being processed"
            age = f"{o.claim_age_s:.0f} s" if o.claim_age_s is not None else "-"
            table.add_row(safe(o.key), safe(o.run_id[:8]), age, str(o.attempts), state)
        out.print(table)
    for failure in report.failures:
        out.print(f"[red]failed[/red] {safe(failure.key)}: {safe(failure.error)}", soft_wrap=True)
    if report.runs:
        table = Table(title="recent runs")
        for col in ("id", "kind", "status", "started_at", "processed", "failed"):
            table.add_column(col)
        for r in report.runs:
            table.add_row(
                safe(r.id[:8]),
                safe(r.kind),
                safe(r.status),
                f"{r.started_at:%Y-%m-%dT%H:%M:%S}",
                str(r.processed),
                str(r.failed),
            )
        out.print(table)
    # Last, what a person acts on: the objects waiting for review and why, and the commands to run next.
    waiting = report.waiting_review
    print_objects(out, "waiting for review", waiting, "docflow status --review N, or docflow review list")
    first_waiting = waiting.objects[0].key if waiting.objects else None
    print_next(out, next_commands(first_waiting, report.failures[0].key if report.failures else None))
