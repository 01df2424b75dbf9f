"""Prefect's temporary server for a `docflow` command: started early, and never outliving the command (scratch
folders that a killed run leaves behind are removed by the next run: tasks/run/workdirs.py).

Prefect's temporary server
--------------------------
With no PREFECT_API_URL, Prefect 3.8 starts a temporary ("ephemeral") API server the first time anything needs
one: `SubprocessASGIServer.start()` in `prefect.server.api.server` runs `python -m uvicorn` over the server's app,
waits until it answers, and stops it again from an `atexit` hook. Two things about it cost a command:

- It dies with the command only when the command exits normally. A process killed by SIGKILL (or the OOM killer)
  runs no `atexit` hook, so the server is re-parented to PID 1 and keeps running, holding its port and its SQLite
  database, indefinitely.
- It starts when the first flow runs, and the command waits for it: about 2.8 s here, after importing Prefect's
  whole server into the command's own process first (2.3 s of CPU with the GIL held).

`start_temporary_server()` starts the same server itself (flows/prefect_server.py), first thing in the command,
before the command imports Prefect, and moves on: its boot (about 3.5 s of imports here) is the longest path of a
run's start-up, and it overlaps the command's own imports, the database's preparation and the models' loading.
`TemporaryServer.serving()` points Prefect at it (its PREFECT_API_URL) once it answers, so Prefect's own temporary
server is never started or imported. The server process reads Prefect's settings itself and exits at once where
they name a real server (a profile's PREFECT_API_URL), which `serving()` then uses. The server is
tied to the command with Linux's parent-death signal: the child calls `prctl(PR_SET_PDEATHSIG, SIGTERM)` between
fork and exec (the setting survives exec), so the kernel sends it SIGTERM, and uvicorn shuts down, as soon as its
parent dies, however it dies. The signal is tied to the *thread* that forked the child, not to the process, so the
fork must come from the main thread (which lives as long as the process). Elsewhere than Linux the server is not
tied (it still stops at a normal exit); when PREFECT_API_URL names a real server there is nothing to start.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SERVER_SCRIPT = Path(__file__).with_name("prefect_server.py")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PORT_TAKEN = 3  # uvicorn's exit status when it cannot bind its port


class TemporaryServer:
    """Prefect's temporary API server for one command: the process Prefect itself would start with no
    PREFECT_API_URL (`SubprocessASGIServer` in `prefect.server.api.server`: uvicorn over the server's app, no UI,
    the ephemeral services), started by docflow from the main thread, tied to it, and not waited for until a flow
    needs it (`serving`)."""

    def __init__(self) -> None:
        self._environment = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **_settings_of_this_process(),
        }
        self._prctl = _prctl()
        self.process = self._start()
        atexit.register(self.stop)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _start(self) -> subprocess.Popen[bytes]:
        self.port = _free_port()
        command = [sys.executable, "-P", str(SERVER_SCRIPT), str(self.port)]
        tie = _die_with_parent(self._prctl, os.getpid()) if self._prctl is not None else None
        return subprocess.Popen(command, env=self._environment, preexec_fn=tie)

    def wait_until_answering(self, timeout_s: float) -> None:
        """Until the server's health check answers; RuntimeError when it exits or takes over `timeout_s`."""
        import httpx

        deadline = time.monotonic() + timeout_s
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code == _PORT_TAKEN:  # another process bound the port first: a new one, as Prefect does
                    self.process = self._start()
                elif code is not None:
                    raise RuntimeError(f"Prefect's temporary server exited with code {code} before answering")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"Prefect's temporary server did not answer within {timeout_s:.0f} s")

    @contextlib.contextmanager
    def serving(self) -> Iterator[str | None]:
        """Once the server answers (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS at most): every Prefect client in
        the body uses it, those of new threads and processes too (they read their settings from the environment).
        Where Prefect's settings name an API server after all (a profile's, or one set in this process), or turn the
        temporary one off, the process is stopped (it stops itself) and the body runs on those settings."""
        from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

        from flows.prefect_server import temporary_server_wanted

        settings = get_current_settings()
        if not temporary_server_wanted():  # what the server process found too: it stopped itself
            self.stop()
            yield settings.api.url
            return
        self.wait_until_answering(settings.server.ephemeral.startup_timeout_seconds)
        before = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = self.api_url
        try:
            with temporary_settings({PREFECT_API_URL: self.api_url}):
                yield self.api_url
        finally:
            if before is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = before

    def stop(self) -> None:
        """Stop it as Prefect stops its own: SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_temporary_server() -> TemporaryServer | None:
    """Start Prefect's temporary server now, without waiting for it: it starts while the command loads its models
    and plans its run. None when PREFECT_API_URL names a server: in the environment, or in Prefect's settings where
    this process has imported them already; the server process itself reads the rest of Prefect's settings
    (flows/prefect_server.py) without this process importing Prefect first. Call it from the main thread (the
    parent-death signal follows the thread that forks: see the module's docstring); RuntimeError elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start_temporary_server() must be called from the main thread")
    if os.environ.get("PREFECT_API_URL") or _settings_of_this_process().get("PREFECT_API_URL"):
        return None
    return TemporaryServer()


def _settings_of_this_process() -> dict[str, str]:
    """Prefect settings this process set for itself (`temporary_settings`, a test's fixture), as environment
    variables for the server; none before it imports Prefect (a command at its start: nothing to pass on)."""
    if "prefect.settings" not in sys.modules:
        return {}
    from prefect.settings import get_current_settings

    return get_current_settings().to_environment_variables(exclude_unset=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
