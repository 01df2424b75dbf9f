"""The `docflow` command's entry point. A command that runs a flow (`run`, `backfill`) starts Prefect's temporary
server here, before the command line's own imports: the server's boot is the longest path of a run's start-up, and
what the command imports meanwhile (the CLI, Prefect, the models) overlaps it. Measured on 500 small images: the
server process started 1.8 s after the command did, and answered 3.7 s later."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flows.cli.process import prefect_defaults

FLOW_COMMANDS = frozenset({"run", "backfill"})


def runs_a_flow(arguments: Sequence[str]) -> bool:
    """Whether the command line asks for a flow run: `run` or `backfill` first, and no help."""
    return bool(arguments) and arguments[0] in FLOW_COMMANDS and not {"--help", "-h"} & set(arguments)


def main() -> None:
    """The `docflow` command (the console script and `python -m flows.cli`)."""
    server = None
    if runs_a_flow(sys.argv[1:]):
        from flows.lifecycle import start_temporary_server

        prefect_defaults()
        server = start_temporary_server()

    from flows.cli.main import main as command_line

    command_line(server)
