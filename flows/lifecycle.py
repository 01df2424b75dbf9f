"""Keep Prefect's temporary server from outliving the `docflow` run that started it (scratch folders that a killed
run leaves behind are removed by the next run: tasks/run/workdirs.py).

Prefect's temporary server
--------------------------
With no PREFECT_API_URL, Prefect 3.8 starts a temporary ("ephemeral") API server the first time anything needs
one (`get_client()`, the events worker, the API log handler): `SubprocessASGIServer.start()` in
`prefect.server.api.server` runs `subprocess.Popen([sys.executable, "-m", "uvicorn", ...])` and stops it again
from an `atexit` hook. A process killed by SIGKILL (or the OOM killer) runs no `atexit` hook, so the server is
re-parented to PID 1 and keeps running, holding its port and its SQLite database, indefinitely.

`tie_prefect_server_to_this_process()` fixes that with Linux's parent-death signal: the server's child process
calls `prctl(PR_SET_PDEATHSIG, SIGTERM)` between fork and exec (the setting survives exec), so the kernel sends it
SIGTERM, and uvicorn shuts down, as soon as its parent dies, however it dies. The signal is tied to the *thread*
that forked the child, not to the process, so the fork must come from the main thread (which lives as long as the
process): Prefect may start the server lazily from one of its worker threads, so this function starts it eagerly,
from the main thread, before any flow runs; later `SubprocessASGIServer()` calls get that same running server.

Elsewhere than Linux, and when PREFECT_API_URL names a real server, the function does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_install_lock = threading.Lock()
_tied_pids: set[int] = set()  # server processes started with the parent-death signal


def tie_prefect_server_to_this_process() -> int | None:
    """Start Prefect's temporary server now, from the main thread, so that it dies when this process dies.

    Call it once, from the main thread, after setting PREFECT_* variables and before the first flow runs (it may
    come after `import prefect`). It returns the server's pid, or None when there is nothing to tie: not Linux,
    PREFECT_API_URL set, or ephemeral mode disabled. It raises what `SubprocessASGIServer.start()` raises when the
    server cannot start (the flow would have failed the same way), and RuntimeError off the main thread. Calling
    it again returns the same pid.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("tie_prefect_server_to_this_process() must be called from the main thread")

    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None

    from prefect.server.api import server as prefect_server

    with _install_lock:
        if not isinstance(getattr(prefect_server, "subprocess", None), _SubprocessWithParentDeath):
            # The module's only process start is SubprocessASGIServer._run_uvicorn_command's Popen.
            vars(prefect_server)["subprocess"] = _SubprocessWithParentDeath(prctl)

    server = prefect_server.SubprocessASGIServer()
    server.start()  # a no-op when it already runs
    process = server.server_process
    if process is None:
        return None
    if process.pid not in _tied_pids:
        logger.warning(
            "Prefect's temporary server (pid %d) was started before docflow could tie it to this process; "
            "it may outlive a killed run",
            process.pid,
        )
    return process.pid


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _die_with_parent(prctl: Callable[..., int], parent: int) -> Callable[[], None]:
    """A preexec_fn: in the child, before exec, ask for SIGTERM when the forking thread dies."""

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: the signal will never come
            os._exit(1)

    return preexec


class _SubprocessWithParentDeath(types.ModuleType):
    """Stands in for `subprocess` inside `prefect.server.api.server`: the same module, except that `Popen` children
    started from the main thread get the parent-death signal. Off the main thread the signal would fire when that
    thread ends, killing a server the process still uses, so such children are started unchanged."""

    def __init__(self, prctl: Callable[..., int]) -> None:
        super().__init__(subprocess.__name__, subprocess.__doc__)
        self._prctl = prctl
        self.Popen = self._popen

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def _popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        tie = threading.current_thread() is threading.main_thread() and kwargs.get("preexec_fn") is None
        if tie:
            kwargs["preexec_fn"] = _die_with_parent(self._prctl, os.getpid())
        else:
            logger.warning("Prefect started a server process off the main thread; it may outlive a killed run")
        process: subprocess.Popen[Any] = subprocess.Popen(*args, **kwargs)
        if tie:
            _tied_pids.add(process.pid)
        return process
