"""`docflow status` and `docflow show`: what the database says of the objects, as tables or JSON."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.common import console, prepare_database, safe, settings_or_exit
from schemas.status import ObjectView, StatusReport
from tasks.display import clock, dialogue


def kind_table(by_kind: dict[str, dict[str, int]], title: str) -> Table | None:
    statuses = sorted({s for counts in by_kind.values() for s in counts})
    if not statuses:
        return None
    table = Table(title=title)
    table.add_column("kind")
    for s in statuses:
        table.add_column(s, justify="right")
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
) -> None:
    """Show object counts per status and kind, documents per class label, recent failures with their reasons,
    and recent runs.

    JSON shape: {"objects": {status: n}, "by_kind": {kind: {status: n}},
    "by_label": {kind: {label: {"objects", "by_status", "mean_probability", "min_margin"}}},
    "documents": [{"key", "kind", "status", "label", "probability", "margin", "runner_up", "route",
    "review_reason", "review_reasons": [{"stage", "code", "message", "value"}], ...}],
    "in_progress": [{"key", "run_id", "claimed_at", "claim_age_s", "attempts", "stale"}] (oldest claim first;
    stale: its run stopped renewing the claim, i.e. it crashed),
    "failures": [{"key", "error", ...}],
    "runs": [{"id", "kind", "status", "started_at", "finished_at", "processed", "failed", "warnings"}]}
    (newest first)."""
    settings = settings_or_exit()
    prepare_database(settings)
    from flows.status import collect_status

    report = collect_status(settings, failures_limit=failures, runs_limit=runs, documents_limit=documents)
    if as_json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
        return
    _print_status(report)


def show(
    ref: Annotated[str, typer.Argument(help="The object's key (as listed by `docflow status`), or its id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (stable keys, for scripts).")
    ] = False,
) -> None:
    """Show one object: its status and why, and what the models made of it. A recording prints as the dialogue,
    `[00:01:02] SPEAKER_1: ...`, after a line per speaker (talk time, words, first and last time heard); a
    document prints its extracted fields with their confidence and whether the page prints them."""
    settings = settings_or_exit()
    prepare_database(settings)
    from flows.status import collect_object

    view = collect_object(settings, ref)
    if view is None:
        console.print(f"[red]no object with key or id {safe(ref)!r}[/red] (see `docflow status`)")
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps(view.model_dump(mode="json"), indent=2) + "\n")
        return
    _print_object(view)


def _print_object(view: ObjectView) -> None:
    out = Console(emoji=False, highlight=False)
    out.print(f"{safe(view.key)} (id {view.id}, {view.kind or 'unknown kind'}): {view.status}")
    if view.error:
        out.print(f"  error: {safe(view.error)}")
    for reason in view.review_reasons:
        out.print(f"  review: {safe(reason.message)}")
    for warning in view.warnings:
        out.print(f"  warning: {safe(warning)}")
    if (cls := view.classification) is not None:
        runner_up = f", runner-up {cls.runner_up}" if cls.runner_up else ""
        corrected = f" -> {cls.corrected} (corrected by a reviewer)" if cls.corrected else ""
        out.print(f"class: {cls.label} ({cls.probability:.2f}{runner_up}){corrected}")
    if (transcript := view.transcript) is not None:
        languages = ", ".join(transcript.languages) or transcript.language or "-"
        corrected = ", corrected by a reviewer" if transcript.corrected else ""
        out.print(f"transcript: {transcript.duration_s:.1f} s, language {languages}, {transcript.model_id}{corrected}")
        for speaker in transcript.speakers:
            channel = f" (channel {speaker.channel})" if speaker.channel is not None else ""
            out.print(
                f"  {speaker.speaker}{channel}: {speaker.talk_s:.1f} s, {speaker.words} words, "
                f"{clock(speaker.first_s)}-{clock(speaker.last_s)}"
            )
        for line in dialogue(transcript.segments):
            out.print(safe(line))
    if (extraction := view.extraction) is not None:
        corrected = ", corrected by a reviewer" if extraction.corrected is not None else ""
        out.print(
            f"extraction: {extraction.schema_id} by {safe(extraction.model_id)}, valid={extraction.valid}{corrected}"
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
            out.print(f"  {name}: {safe(json.dumps(value, ensure_ascii=False))}  ({safe(note)})")
    for review in view.reviews:
        why = "audit sample" if review.audit else ", ".join(review.reasons)
        by = f" by {review.reviewer}" if review.reviewer else ""
        note = f": {review.note}" if review.note else ""
        out.print(
            f"review #{review.id} {review.stage} ({why}): {review.status}{by}, opened "
            f"{review.created_at:%Y-%m-%d %H:%M}{safe(note)}"
        )


def _print_status(report: StatusReport) -> None:
    out = Console(emoji=False, highlight=False)
    objects = report.objects
    out.print(f"objects: {sum(objects.values())} " + ", ".join(f"{k}={v}" for k, v in sorted(objects.items())))
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
                safe(r.id[:8]), r.kind, r.status, f"{r.started_at:%Y-%m-%dT%H:%M:%S}", str(r.processed), str(r.failed)
            )
        out.print(table)
