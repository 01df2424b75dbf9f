"""The launcher starts Prefect's temporary server early only for a command that runs a flow."""

from __future__ import annotations

import pytest

from flows.cli.launch import runs_a_flow


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["run"], True),
        (["run", "--limit", "5"], True),
        (["backfill", "--since", "2026-11-01"], True),
        (["run", "--help"], False),
        (["backfill", "-h"], False),
        (["status"], False),
        (["review", "export", "run"], False),
        (["--version"], False),
        ([], False),
    ],
)
def test_a_server_is_started_early_for_flow_runs_only(arguments: list[str], expected: bool) -> None:
    assert runs_a_flow(arguments) is expected
