"""`docflow stack up|status|down|env`: a local Prefect server on Postgres, SeaweedFS and workers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from flows.cli.common import console, safe, settings_or_exit
from flows.cli.help import ReadableHelpGroup
from schemas.errors import ConfigError
from schemas.settings import Settings
from tasks.ops.stack import Service, Stack, StackPlan

stack_app = typer.Typer(
    name="stack",
    help=(
        "A local stack on 127.0.0.1, from what the repo installs: PostgreSQL, SeaweedFS (S3) with the inbox bucket, "
        "a Prefect server and UI on that Postgres, and workers polling the work pool. State, logs and PIDs under "
        "DOCFLOW_STACK_DIR; ports DOCFLOW_STACK_PG_PORT, DOCFLOW_STACK_S3_PORT, DOCFLOW_STACK_PREFECT_PORT."
    ),
    no_args_is_help=True,
    cls=ReadableHelpGroup,
)


def _stack(settings: Settings) -> Stack:
    config = settings.stack
    plan = StackPlan(
        state_dir=config.dir.resolve(),
        pg_port=config.pg_port,
        s3_port=config.s3_port,
        prefect_port=config.prefect_port,
        bucket=config.bucket,
        work_pool=settings.deploy.work_pool,
    )
    return Stack(plan)


def _print(services: list[Service]) -> None:
    out = Console(emoji=False, highlight=False)
    for service in services:
        state = "running" if service.running else "stopped"
        pid = f" (pid {service.pid})" if service.pid else ""
        out.print(f"{service.name:16s} {state}{pid}  {service.where}", soft_wrap=True)


@stack_app.command()
def up(
    workers: Annotated[int, typer.Option(min=0, max=32, help="Workers polling the work pool.")] = 2,
    runs_per_worker: Annotated[
        int,
        typer.Option(
            min=2,
            max=64,
            help="Flow runs one worker carries at once (prefect worker --limit). With DOCFLOW_FAN_OUT a parent run "
            "waits on a worker while its shards run, so at least 2.",
        ),
    ] = 2,
) -> None:
    """Start the stack (what already runs is left running), then print what runs where and the variables to
    export. Next: `docflow deploy`, and put files in the inbox bucket."""
    stack = _stack(settings_or_exit())
    try:
        services = stack.up(workers, runs_per_worker)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {safe(exc)}", soft_wrap=True)
        raise typer.Exit(2) from None
    _print(services)
    console.print("\n# export these in your shell:")
    Console(emoji=False, highlight=False).print(
        "\n".join(f"export {k}={v}" for k, v in stack.plan.environment().items()), soft_wrap=True
    )


@stack_app.command()
def status() -> None:
    """What runs where: each service, its PID, ports and URLs (the UI's included)."""
    stack = _stack(settings_or_exit())
    _print(stack.status())


@stack_app.command()
def down() -> None:
    """Stop what `up` started in DOCFLOW_STACK_DIR (workers, Prefect server, SeaweedFS, PostgreSQL); the data stay."""
    stack = _stack(settings_or_exit())
    stopped = stack.down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command()
def env() -> None:
    """Print the variables that point docflow and Prefect at the stack (for `eval "$(docflow stack env)"`)."""
    stack = _stack(settings_or_exit())
    typer.echo("\n".join(f"export {k}={v}" for k, v in stack.plan.environment().items()))
