"""The `docflow` command line. The only place (with deployment entry points) that reads the environment."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from flows.cli import status as status_commands
from flows.cli.common import console, database_label, prepare_database, safe, settings_or_exit
from flows.cli.help import ReadableHelpGroup
from flows.cli.outcomes import next_commands, print_next, print_run_outcomes
from flows.cli.process import COMMAND_STARTED, prefect_defaults
from flows.cli.review import export_app, review_app
from flows.cli.stack import stack_app
from flows.cli.status import kind_table
from schemas.errors import ConfigError, SourceError
from schemas.records import ObjectKind, RunSummary
from schemas.settings import Settings
from tasks.display import first_line
from tasks.run.report import stage_lines

if TYPE_CHECKING:
    from flows.lifecycle import TemporaryServer

app = typer.Typer(
    name="docflow",
    help=(
        "Batch processing of PDFs, images and call recordings: discover objects under DOCFLOW_SOURCE (S3 or a "
        "local folder), preprocess them and record every object's state in DOCFLOW_DATABASE_URL. "
        "Settings come from DOCFLOW_* environment variables (see the README)."
    ),
    no_args_is_help=True,
    add_completion=False,
    cls=ReadableHelpGroup,
)
app.add_typer(review_app)
app.add_typer(export_app)
app.add_typer(stack_app)


class KindOption(StrEnum):
    pdf = "pdf"
    image = "image"
    audio = "audio"


def _watch_progress(settings: Settings, started: datetime, stop: threading.Event) -> None:
    """Show the newest run's progress by polling its row: the flow itself stays free of UI code."""
    from storage.db import session_factory
    from storage.status import StatusQuery

    make_session = session_factory(settings.database_url)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("discovering objects", total=None)
        while not stop.wait(0.5):
            try:
                with make_session() as session:
                    run = StatusQuery(session).progress(started_since=started)
            except Exception:  # the database may be busy or briefly away; the flow reports real faults
                continue
            if run is None:
                continue
            if run.planned or run.processed:
                progress.update(
                    bar, description=f"processing ({run.failed} failed)", total=run.planned, completed=run.processed
                )
            elif run.listed and run.status == "running":
                progress.update(bar, description=f"listed {run.listed}, nothing new to process", total=0)
        progress.refresh()


# Prefect's temporary server the launcher started for this command (flows/cli/launch.py): the flow runs on it.
_started_server: TemporaryServer | None = None


def _take_started_server() -> TemporaryServer | None:
    global _started_server
    server, _started_server = _started_server, None
    return server


def _run_flow(settings: Settings, call: Callable[[], RunSummary]) -> RunSummary:
    """Run a flow under a progress bar. Prefect's temporary server (when no PREFECT_API_URL names one) starts first,
    and the database is prepared and the models load while it boots (flows/lifecycle.py, flows/cli/startup.py).
    Exit 1 when batches failed after retries (outage), 2 for a setting or source that no retry can fix; one line
    per fault here, the tracebacks are in the flow run's logs."""
    from flows.cli.startup import models_loading
    from flows.lifecycle import start_temporary_server

    server = _take_started_server() or start_temporary_server()
    prepare_database(settings)
    with models_loading(settings), server.serving() if server is not None else nullcontext():
        return _run_watched(settings, call)


def _run_watched(settings: Settings, call: Callable[[], RunSummary]) -> RunSummary:
    from flows.pipeline import RunFailed

    started = datetime.now(UTC).replace(microsecond=0)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_progress, args=(settings, started, stop), daemon=True)
    watcher.start()

    def stop_watching() -> None:
        stop.set()
        watcher.join()

    try:
        summary: RunSummary = call()
    except RunFailed as exc:
        stop_watching()
        _print_summary(exc.summary, settings)
        for what, why in exc.failures:
            console.print(f"  [red]{safe(what)} failed:[/red] {safe(first_line(why))}", soft_wrap=True)
        console.print(f"[red]run failed:[/red] {safe(exc)}", soft_wrap=True)
        raise typer.Exit(1) from None
    except (SourceError, ConfigError) as exc:  # a missing bucket or folder, bad credentials, a model that cannot load
        stop_watching()
        console.print(f"[red]error:[/red] {safe(first_line(str(exc)))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # the flow run is marked failed in Prefect with the traceback; say why here
        stop_watching()
        console.print(f"[red]run failed:[/red] {type(exc).__name__}: {safe(first_line(str(exc)))}", soft_wrap=True)
        raise typer.Exit(1) from None
    stop_watching()
    return summary


# How many objects of each outcome the end of a run names; the rest are counted (`docflow status` lists them).
OUTCOMES_SHOWN = 20


def _print_summary(summary: RunSummary, settings: Settings) -> None:
    """The end of a run: counts per kind, the stages' times, then every object the run took in by outcome (done,
    waiting for review and why, failed and why; the first ones of each, with counts) and what to run next."""
    console.print(f"listed {summary.listed}, processed {summary.processed}")
    state = summary.status
    if summary.stale_claims:
        state += f", but {summary.stale_claims} object(s) are still claimed by a run that died"
    table = kind_table(summary.by_kind, f"{summary.kind.value} run {summary.run_id[:8]}: {state}")
    if table:
        console.print(table)
    for line in stage_lines(summary):
        console.print(f"  {safe(line)}", soft_wrap=True)
    startup = (summary.started_at - COMMAND_STARTED).total_seconds()
    if startup >= 0:
        console.print(f"  start-up {startup:.2f} s before the run began (imports, Prefect's server, the database)")
    for warning in summary.warnings:
        console.print(f"  [yellow]warning:[/yellow] {safe(warning)}", soft_wrap=True)
    from flows.status import collect_run_outcomes

    try:
        outcomes = collect_run_outcomes(settings, summary.run_id, OUTCOMES_SHOWN)
    except Exception:  # the database went away mid-run (the run's error says so): the flow's own failure list
        for failure in summary.failures[:OUTCOMES_SHOWN]:
            console.print(f"  [red]failed[/red] {safe(failure.key)}: {safe(failure.error)}", soft_wrap=True)
        if len(summary.failures) > OUTCOMES_SHOWN:
            console.print(f"  ... {len(summary.failures) - OUTCOMES_SHOWN} more (docflow status --json)")
        return
    print_run_outcomes(console, outcomes)
    if not outcomes:
        console.print("no object was new or changed: nothing to process")
    waiting, failed = outcomes.get("review"), outcomes.get("failed")
    steps = next_commands(
        waiting.objects[0].key if waiting and waiting.objects else None,
        failed.objects[0].key if failed and failed.objects else None,
    )
    steps.append(("docflow status", f"everything in the database, {database_label(settings.database_url)}"))
    print_next(console, steps)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("docflow")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed: pip install -e .)"
        typer.echo(f"docflow {number}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print docflow's version and exit."),
    ] = False,
) -> None:
    prefect_defaults()  # before anything imports prefect, which reads its settings once


SourceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        "-s",
        metavar="URI",
        help="Override DOCFLOW_SOURCE: s3://bucket/prefix or a folder. Repeatable.",
    ),
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", "-n", min=1, metavar="N", help="Process at most N objects this run.")
]
RetryFailedOpt = Annotated[
    bool, typer.Option("--retry-failed", help="Also retry objects that failed before (they are skipped otherwise).")
]


@app.command()
def run(source: SourceOpt = None, limit: LimitOpt = None, retry_failed: RetryFailedOpt = False) -> None:
    """Run the nightly flow once, now: process every object that is new or changed since the last run.

    Objects already done, or failed for a reason in the file itself, are skipped (see --retry-failed).
    Exit status: 0 when every batch ran (individual files may have failed: see `docflow status`), 1 when a batch
    failed after retries (store or database outage), 2 for bad settings."""
    settings = settings_or_exit(source)
    _check_sources(settings)

    def nightly_run() -> RunSummary:
        from flows.pipeline import nightly  # once Prefect's server is starting: the import takes a second

        return nightly(source=source or None, limit=limit, retry_failed=retry_failed)

    summary = _run_flow(settings, nightly_run)
    _print_summary(summary, settings)


def _check_sources(settings: Settings) -> None:
    """A local source folder that is not there is reported at once (exit 2), before Prefect's start-up; S3 sources
    are checked by the run itself (it needs the credentials and the network)."""
    from storage.blobstore import LocalDirStore, open_store

    for location in settings.source:
        store = open_store(location)
        if isinstance(store, LocalDirStore) and not store.root.is_dir():
            what = "not a folder" if store.root.exists() else "does not exist"
            console.print(f"[red]error:[/red] source directory {what}: {safe(store.root)}", soft_wrap=True)
            raise typer.Exit(2)


def _parse_when(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM", param_hint=option
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@app.command()
def backfill(
    since: Annotated[
        str,
        typer.Option(
            help="Start of the window (inclusive), by object last-modified time. "
            "YYYY-MM-DD or ISO 8601; UTC unless an offset is given."
        ),
    ],
    until: Annotated[str | None, typer.Option(help="End of the window (exclusive). Default: now.")] = None,
    prefix: Annotated[
        list[str] | None,
        typer.Option("--prefix", "-p", help="Only keys under this prefix (relative to each source). Repeatable."),
    ] = None,
    kind: Annotated[
        list[KindOption] | None,
        typer.Option("--kind", "-k", help="Only objects of this kind, detected from their bytes. Repeatable."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Reprocess objects that are already done or failed.")] = False,
    retry_failed: RetryFailedOpt = False,
    source: SourceOpt = None,
    limit: LimitOpt = None,
    deployment: Annotated[
        bool,
        typer.Option(
            "--deployment",
            help="Start it as a run of the docflow-backfill deployment on the work pool (a worker takes it) instead "
            "of here; prints the run's page in the Prefect UI. Needs PREFECT_API_URL and `docflow deploy`.",
        ),
    ] = False,
) -> None:
    """Process objects last modified in a time window, e.g. after an outage or a settings change.

    Without --force only objects not yet processed (or abandoned mid-run) are taken; with --force everything
    in the window is reprocessed, replacing earlier results without duplicating rows."""
    since_dt = _parse_when(since, "--since")
    until_dt = _parse_when(until, "--until") if until else None
    if until_dt and until_dt <= since_dt:
        raise typer.BadParameter("--until must be after --since", param_hint="--until")
    settings = settings_or_exit(source)
    if deployment:
        from tasks.ops.deployments import start_backfill

        parameters = {
            "since": since_dt,
            "until": until_dt,
            "prefixes": prefix or None,
            "kinds": [k.value for k in kind] if kind else None,
            "force": force,
            "retry_failed": retry_failed,
            "source": source or None,
            "limit": limit,
        }
        try:
            run_id, url = start_backfill(parameters)
        except Exception as exc:  # no server, no deployment: one line, the way every other fault is reported
            console.print(
                f"[red]error:[/red] cannot start the backfill deployment: {safe(first_line(str(exc)))}", soft_wrap=True
            )
            raise typer.Exit(2) from None
        console.print(
            f"backfill flow run {run_id} scheduled on work pool {settings.deploy.work_pool}: {url}", soft_wrap=True
        )
        return
    _check_sources(settings)

    def backfill_run() -> RunSummary:
        from flows.pipeline import backfill as backfill_flow

        return backfill_flow(
            since=since_dt,
            until=until_dt,
            prefixes=prefix or None,
            kinds=[ObjectKind(k.value) for k in kind] if kind else None,
            force=force,
            retry_failed=retry_failed,
            source=source or None,
            limit=limit,
        )

    summary = _run_flow(settings, backfill_run)
    _print_summary(summary, settings)


@app.command()
def deploy() -> None:
    """Declare docflow on the Prefect server at PREFECT_API_URL: the process work pool DOCFLOW_WORK_POOL, the device's
    global concurrency limit, and the deployments of infra/prefect.yaml: docflow-nightly (DOCFLOW_NIGHTLY_CRON in
    DOCFLOW_TIMEZONE), docflow-review-export after it (DOCFLOW_REVIEW_EXPORT_CRON) and docflow-backfill (no
    schedule: `docflow backfill --deployment`) and docflow-shard (the shards of a run with DOCFLOW_FAN_OUT on); and
    an automation that marks a run Crashed when its heartbeats stop (DOCFLOW_HEARTBEAT_S x 3). Workers then run
    them: prefect worker start --pool POOL."""
    settings = settings_or_exit()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        console.print(
            "[red]error:[/red] set PREFECT_API_URL to the Prefect server's API (e.g. http://127.0.0.1:4200/api)"
        )
        raise typer.Exit(2)
    from tasks.ops.deployments import deploy as apply

    try:
        report = apply(settings)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {safe(exc)}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(
        f"work pool {report.work_pool} (process), concurrency limit {report.concurrency_limit}", soft_wrap=True
    )
    for deployed in report.deployments:
        console.print(f"  {deployed.name}: {', '.join(deployed.schedules) or 'no schedule'}", soft_wrap=True)
    console.print(f"runs silent for {report.zombie_after_s} s are marked Crashed (automation)", soft_wrap=True)


@app.command()
def worker(
    gpu: Annotated[
        int | None,
        typer.Option(
            min=0, help="Use only this GPU (CUDA_VISIBLE_DEVICES) and run the models on CUDA; one worker per GPU."
        ),
    ] = None,
    runs: Annotated[
        int,
        typer.Option(
            min=2,
            max=64,
            help="Flow runs carried at once (prefect worker --limit): a fanned-out parent waits on one slot while "
            "shards run; the shards on one machine share its device limit (DOCFLOW_MODEL_SLOTS).",
        ),
    ] = 2,
    name: Annotated[str | None, typer.Option(help="Worker name in the UI; default: the host (and -gpuN).")] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Only check, and print, that this machine reaches the Prefect server, the database and the stores.",
        ),
    ] = False,
) -> None:
    """Join this machine to the work pool DOCFLOW_WORK_POOL: checks that the Prefect server (PREFECT_API_URL), the
    database (DOCFLOW_DATABASE_URL) and the stores (DOCFLOW_SOURCE, DOCFLOW_DERIVED_STORE) answer from here, then
    runs Prefect's process worker, which takes nightly runs, backfills and shards. The checkout must be at the path
    the deployments name (DOCFLOW_HOME when `docflow deploy` ran)."""
    settings = settings_or_exit()
    from tasks.ops.workers import preflight_checks, worker_command

    checks = preflight_checks(settings)
    for done in checks:
        if done.problem is None:
            console.print(f"[green]ok[/green]            {safe(done.what)}", soft_wrap=True)
        else:
            console.print(f"[red]cannot reach:[/red] {safe(done.problem)}", soft_wrap=True)
    if any(done.problem is not None for done in checks):
        raise typer.Exit(2)
    command = worker_command(settings, gpu, runs, name)
    console.print(
        f"worker {command.name} on pool {settings.deploy.work_pool}, {runs} runs at once"
        + (f", GPU {gpu}" if gpu is not None else ""),
        soft_wrap=True,
    )
    if check:
        console.print("every check passed; --check: the worker is not started")
        return
    os.execve(command.argv[0], command.argv, command.env)  # the worker takes this process: signals reach it


# After the run commands: `docflow --help` lists them in this order.
app.command()(status_commands.status)
app.command()(status_commands.show)


def main(server: TemporaryServer | None = None) -> None:
    """The command line (flows/cli/launch.py calls it); `server`: Prefect's temporary server, when the launcher
    started it for a flow command, which then runs on it."""
    from flows.cli.startup import exit_without_collecting

    global _started_server
    _started_server = server
    try:
        app()
    finally:
        exit_without_collecting()
