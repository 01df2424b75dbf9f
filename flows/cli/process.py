"""What a `docflow` command sets first, before anything imports Prefect: when it started, and docflow's defaults
for Prefect's settings (Prefect reads them once)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

# When this command started: the start-up before a run's own clock (imports, Prefect's temporary server, the schema)
# is the time from here to the run row's start.
COMMAND_STARTED = datetime.now(UTC)


def prefect_defaults() -> None:
    """docflow's defaults for Prefect's settings, set before anything reads them (Prefect reads them once)."""
    # Telemetry cannot leave this network, and its failures only add noise to logs.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # INFO reaches the flow run's logs (the UI): the per-stage counts are logged at INFO. The terminal gets one line
    # per fault from this CLI instead; PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=INFO shows the run's logs here too.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    # docflow's own module loggers (a stage retrying a batch item by item, a claim taken over) join the run's logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks,storage,flows")
    # A first temporary server migrates a fresh database: measured 23-26 s here, over Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
