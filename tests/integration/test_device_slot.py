"""The device slot against a real Prefect server: a task run takes it only once the server has recorded the run
as Running (so the slot's write never races the recording of the task's own start), holds it, gives it back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.context import TaskRunContext

from tasks.run.concurrency import _wait_until_recorded_running, device_slot, ensure_limit

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _active_slots(limit: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(limit).active_slots


def test_a_task_takes_the_slot_once_the_server_recorded_it_running_and_gives_it_back() -> None:
    limit = f"test-device-{uuid.uuid4().hex[:8]}"
    assert ensure_limit(limit, 1) == 1
    seen: dict[str, Any] = {}

    @task
    def model_stage() -> None:
        run_context = TaskRunContext.get()
        assert run_context is not None
        with device_slot(limit):
            with get_client(sync_client=True) as client:
                seen["state"] = client.read_task_run(run_context.task_run.id).state_type
            seen["active"] = _active_slots(limit)

    @flow
    def run() -> None:
        model_stage()

    run()
    assert seen == {"state": StateType.RUNNING, "active": 1}
    assert _active_slots(limit) == 0


def test_the_slot_is_strict_about_its_limit() -> None:
    with (
        pytest.raises(Exception, match="must be created before acquiring slots"),
        device_slot(f"no-such-{uuid.uuid4().hex}"),
    ):
        pass


def test_waiting_for_a_run_the_server_never_heard_of_gives_up_at_the_timeout() -> None:
    assert _wait_until_recorded_running(uuid.uuid4(), timeout_s=0.2) is False
