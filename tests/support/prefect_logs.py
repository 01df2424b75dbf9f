"""Reading a flow run's logs back through the Prefect API, as the UI does."""

from __future__ import annotations

import time
from uuid import UUID


def flow_run_logs(flow_run_id: str, expect: str, timeout_s: float = 20.0) -> list[str]:
    """The run's log lines as the Prefect API serves them to the UI (they are shipped in the background)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout_s
    messages: list[str] = []
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])), limit=200)
        messages = [log.message for log in logs]
        if any(expect in m for m in messages):
            break
        time.sleep(0.5)
    return messages
