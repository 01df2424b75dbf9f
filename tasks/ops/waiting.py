"""wait_until(): poll until a service answers or a condition holds: the stack waits with it for the services it
starts, and so do the tests for theirs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout_s: float, interval_s: float, what: str) -> T:
    """Call `condition` every `interval_s` seconds until it returns something true, and return that. An exception
    counts as "not yet" (a service still starting refuses connections). Raises TimeoutError naming `what`, with the
    last exception if there was one, once `timeout_s` have passed."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if value := condition():
                return value
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(interval_s)
    why = f" (last error: {last})" if last is not None else ""
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s{why}")
