"""`docflow review ...` (the human-review queue: Label Studio or files) and `docflow export results`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from flows.cli.common import console, existing_database, safe, settings_or_exit
from flows.cli.help import ReadableHelpGroup
from schemas.errors import ConfigError
from schemas.redaction import redact_urls
from schemas.review import ReviewStage
from schemas.settings import Settings
from storage.outfiles import WriteFailed
from tasks.review.label_studio import Connection, LabelStudioError, checked_url

if TYPE_CHECKING:
    from tasks.review.queue import ApplyReport

review_app = typer.Typer(
    name="review",
    help=(
        "The human-review queue: what the models were unsure of (and an audit sample, DOCFLOW_REVIEW_AUDIT_RATE) "
        "as review items. Send them to Label Studio (push, pull; LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY) or to "
        "a file a reviewer edits (export, import). A correction is validated with the same schema as the model's "
        "output, stored beside it, and used by `docflow show` and `docflow export results` from then on."
    ),
    no_args_is_help=True,
    cls=ReadableHelpGroup,
)
export_app = typer.Typer(
    name="export", help="Results out of the database, as files.", no_args_is_help=True, cls=ReadableHelpGroup
)


REJECTED_SHOWN = 20  # rejected rows listed one by one after an import or pull


class SchemaChoice(StrEnum):
    invoice = "invoice"
    receipt = "receipt"
    generic = "generic"
    transcript = "transcript"
    class_ = "class"


class StageChoice(StrEnum):
    classification = "classification"
    extraction = "extraction"
    transcription = "transcription"


class FileFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    label_studio = "label-studio"


class ResultFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


def _connection(settings: Settings) -> Connection:
    studio = settings.label_studio
    if not studio.url or not studio.api_key:
        console.print(
            "[red]error:[/red] set LABEL_STUDIO_URL (e.g. http://127.0.0.1:8080) and LABEL_STUDIO_API_KEY (a personal "
            "access token from Label Studio's Account & Settings page)",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    try:
        url = checked_url(studio.url)
    except ConfigError as exc:
        raise _fail(exc) from None
    return Connection(url, studio.api_key.get_secret_value())


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {safe(redact_urls(str(exc)))}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def _report(report: ApplyReport) -> None:
    """The counts, then the rejected rows with their reasons: the first REJECTED_SHOWN of them, and how many more
    (100,000 unknown ids are one line each of the first few, not 100,000 lines)."""
    console.print(
        f"{len(report.applied)} item(s) resolved, {len(report.unchanged)} unchanged (already stored), "
        f"{len(report.rejected)} rejected"
        + (f", {report.taught} page(s) added to class examples" if report.taught else ""),
        soft_wrap=True,
    )
    for row in report.rejected[:REJECTED_SHOWN]:
        console.print(f"  [yellow]rejected[/yellow] {safe(row.where)}: {safe(row.reason)}", soft_wrap=True)
    if len(report.rejected) > REJECTED_SHOWN:
        console.print(f"  ... and {len(report.rejected) - REJECTED_SHOWN} more rejected", soft_wrap=True)
    for note in report.notes[:REJECTED_SHOWN]:
        console.print(f"  [yellow]note[/yellow] {safe(note)}", soft_wrap=True)
    if len(report.notes) > REJECTED_SHOWN:
        console.print(f"  ... and {len(report.notes) - REJECTED_SHOWN} more notes", soft_wrap=True)


@review_app.command("label-config")
def label_config(
    schema: Annotated[SchemaChoice, typer.Option(help="What is reviewed: a document schema, a transcript, a class.")],
) -> None:
    """Print the Label Studio labeling config for one kind of review item (paste it in a project's Labeling
    Interface, or let `review push --create` use it): the page image or the recording, and one field per schema
    field (a list: one row per element, columns separated by ' | ')."""
    from tasks.review.label_studio import label_config as config

    settings = settings_or_exit()
    typer.echo(config(schema.value, settings.classifier.label_names), nl=False)


@review_app.command()
def push(
    project: Annotated[int | None, typer.Option(help="Label Studio project id to add tasks to.")] = None,
    create: Annotated[str | None, typer.Option(help="Create a project of this name (with the right config).")] = None,
    stage: Annotated[
        StageChoice | None, typer.Option(help="Only items of this stage (a project has one labeling config).")
    ] = None,
) -> None:
    """Send the review items not sent yet to Label Studio, one task each: the page image (a presigned S3 URL valid
    DOCFLOW_REVIEW_URL_EXPIRY_S, or Label Studio's local-files serving under DOCFLOW_REVIEW_LOCAL_FILES_ROOT),
    the model's output as a prediction with its model version and score, and the item id. An item is pushed once."""
    settings = settings_or_exit()
    existing_database(settings)
    from tasks.review.queue import push as push_items

    try:
        report = push_items(
            settings,
            _connection(settings),
            project or settings.review.label_studio_project,
            create,
            ReviewStage(stage.value) if stage else None,
        )
    except (ConfigError, LabelStudioError) as exc:
        raise _fail(exc) from None
    console.print(
        f"pushed {report.pushed} item(s) to Label Studio project {report.project}"
        + (f" ({report.already} pushed before, left as they are)" if report.already else "")
    )


@review_app.command()
def pull(project: Annotated[int | None, typer.Option(help="Label Studio project id.")] = None) -> None:
    """Read submitted annotations back from Label Studio: each is validated with the item's schema, stored as the
    correction and resolves the item; an invalid one is reported with the reason. Pulling again changes nothing."""
    settings = settings_or_exit()
    existing_database(settings)
    from tasks.review.queue import pull as pull_answers

    project = project or settings.review.label_studio_project
    if project is None:
        raise _fail(ConfigError("give --project ID (or set DOCFLOW_REVIEW_LABEL_STUDIO_PROJECT)"))
    try:
        report = pull_answers(settings, _connection(settings), project)
    except (ConfigError, LabelStudioError) as exc:
        raise _fail(exc) from None
    _report(report)


@review_app.command("export")
def export_items(
    fmt: Annotated[FileFormat, typer.Option("--format", help="csv, jsonl, or Label Studio tasks JSON.")],
    out: Annotated[Path, typer.Option(help="File to write.")],
    stage: Annotated[StageChoice | None, typer.Option(help="Only items of this stage.")] = None,
) -> None:
    """Write the waiting review items to a file: CSV (one row per item and field: value, confidence, page,
    reason; fill `correction` where the model is wrong, `null` to clear a value, and `reviewer` on every item you
    checked), JSONL (one item per line; set `correction` to the whole corrected value, or only `reviewer`), or Label
    Studio tasks to import by hand. Read it back with `docflow review import`."""
    settings = settings_or_exit()
    existing_database(settings)
    from tasks.review.queue import export_file, local_files_note

    try:
        count = export_file(settings, fmt.value, out, ReviewStage(stage.value) if stage else None)
    except (ConfigError, WriteFailed) as exc:
        raise _fail(exc) from None
    console.print(f"wrote {count} review item(s) to {safe(out)}")
    if fmt is FileFormat.label_studio and (note := local_files_note(settings)):
        console.print(safe(note), soft_wrap=True)


@review_app.command("import")
def import_items(
    path: Annotated[Path, typer.Argument(help="An edited CSV or JSONL, or a Label Studio JSON export.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Let this file's answers overwrite different earlier ones (without it such a row is a conflict, "
            "rejected with who answered before).",
        ),
    ] = False,
) -> None:
    """Apply a reviewer's file: every valid correction is stored and resolves its item, in one transaction;
    malformed rows, unknown item ids and invalid corrections are listed with the reason and left out, and the exit
    status is then 1. Importing the same file again changes nothing."""
    settings = settings_or_exit()
    existing_database(settings)
    from tasks.review.queue import import_file

    try:
        report = import_file(settings, path, replace=replace)
    except ConfigError as exc:
        raise _fail(exc) from None
    _report(report)
    if report.rejected:
        console.print(
            "[red]error:[/red] some rows were rejected (the rest are stored): fix them and import the file again",
            soft_wrap=True,
        )
        raise typer.Exit(1)


@export_app.command("results")
def export_results(
    fmt: Annotated[ResultFormat, typer.Option("--format", help="jsonl, csv or parquet.")],
    out: Annotated[Path, typer.Option(help="File to write.")],
    schema: Annotated[
        str | None, typer.Option(help="Only documents extracted with this schema (invoice, ...).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only objects of this kind: pdf, image or audio.")] = None,
    since: Annotated[str | None, typer.Option(help="Only objects processed since this date (YYYY-MM-DD).")] = None,
) -> None:
    """One record per object with its trusted result: status and reason, class, extracted data (a reviewer's
    correction when there is one, else the model's), transcript text and speakers. Streamed: memory does not grow
    with the number of rows. With --schema, each field of that schema also gets a column of its own."""
    settings = settings_or_exit()
    existing_database(settings)
    from tasks.results import ResultFilter
    from tasks.results import export_results as write

    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter(f"{since!r} is not a date: use YYYY-MM-DD", param_hint="--since") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    try:
        count = write(settings.database_url, fmt.value, out, ResultFilter(schema=schema, kind=kind, since=when))
    except (ConfigError, WriteFailed) as exc:
        raise _fail(exc) from None
    Console(stderr=True).print(f"wrote {count} result(s) to {safe(out)}")


@review_app.command("list")
def list_items(
    stage: Annotated[StageChoice | None, typer.Option(help="Only items of this stage.")] = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="List at most N items (all are counted).")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output: {total, by_stage, items: [...]}.")
    ] = False,
) -> None:
    """List the review items waiting for a person, oldest first: item id, stage, object key and why, in words.
    `docflow show KEY` shows one object's values; `docflow review export` writes them to a file to correct."""
    settings = settings_or_exit()
    existing_database(settings)
    from flows.cli.outcomes import print_queue
    from flows.status import collect_review_queue

    queue = collect_review_queue(settings, limit, ReviewStage(stage.value) if stage else None)
    if as_json:
        sys.stdout.write(json.dumps(queue.model_dump(mode="json"), indent=2) + "\n")
        return
    print_queue(Console(emoji=False, highlight=False), queue)
