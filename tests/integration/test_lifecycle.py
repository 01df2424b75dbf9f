"""Prefect's temporary server of a `docflow` command (flows.lifecycle): the one server of the run, its logs reach it,
and a killed run leaves no server and no scratch folders behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.lifecycle import start_temporary_server
from tasks.run.workdirs import clean_stale_work_dirs, work_dir_prefix

REPO_ROOT = Path(__file__).resolve().parents[2]

# A run in miniature: a trivial flow on docflow's temporary server ("tie") or on the one Prefect starts by itself,
# its log line read back from the server, then wait to be killed.
CHILD = textwrap.dedent(
    """
    import contextlib, sys, time
    from prefect import flow, get_run_logger
    from prefect.runtime import flow_run
    from flows.lifecycle import start_temporary_server
    from tests.support.prefect_logs import flow_run_logs

    @flow
    def trivial() -> str:
        get_run_logger().warning("trivial says hello")  # the run logs at WARNING
        return flow_run.id

    server = start_temporary_server() if sys.argv[1] == "tie" else None
    with server.serving() if server else contextlib.nullcontext():
        run_id = trivial()
        assert any("trivial says hello" in line for line in flow_run_logs(run_id, "hello"))
        print("flow-done", flush=True)
        time.sleep(600)
    """
)

Identity = tuple[int, int]  # (pid, start time in clock ticks): a pid alone may be reused


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) from /proc/<pid>/stat, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(root: int) -> list[Identity]:
    children: dict[int, list[Identity]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found: list[Identity] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _alive(process: Identity) -> bool:
    stat = _stat(process[0])
    return stat is not None and stat[2] == process[1] and stat[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _kill(process: Identity) -> None:
    if _alive(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process[0], signal.SIGKILL)


def _survivors_of_killed_run(tmp_path: Path, tie: bool, leftovers: list[Identity]) -> list[str]:
    """Start a run, SIGKILL it once its flow is done, return the command lines of its processes still alive 10 s
    later. Survivors are appended to `leftovers` for the caller to kill."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),  # ephemeral mode, a fresh SQLite database
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    out = tmp_path / "child.out"
    err = tmp_path / "child.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:  # files: the server inherits them, a pipe never ends
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, "tie" if tie else "no-tie"],
            cwd=REPO_ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 180
        while "flow-done" not in out.read_text():
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run did not finish its flow:\n{out.read_text()}\n{err.read_text()[-4000:]}")
            time.sleep(0.2)
        processes = _descendants(child.pid)
        leftovers.extend(processes)
        # docflow's (flows/prefect_server.py), or Prefect's own (python -m uvicorn)
        servers = [pid for pid, _ in processes if any(name in _cmdline(pid) for name in ("prefect_server", "uvicorn"))]
        assert len(servers) == 1, f"{len(servers)} Prefect servers under the run"

        child.kill()
        child.wait()

        deadline = time.monotonic() + 10
        while any(_alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        return [_cmdline(p[0]) for p in processes if _alive(p)]
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def leftovers() -> Iterator[list[Identity]]:
    processes: list[Identity] = []
    yield processes
    for process in processes:
        _kill(process)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")


@linux_only
def test_prefect_server_dies_with_a_killed_run(tmp_path: Path, leftovers: list[Identity]) -> None:
    assert _survivors_of_killed_run(tmp_path, tie=True, leftovers=leftovers) == []


@linux_only
def test_untied_prefect_server_outlives_a_killed_run(tmp_path: Path, leftovers: list[Identity]) -> None:
    """The defect the test above guards against, so that its check is known to detect a surviving server. Should
    Prefect come to stop its server by itself, this fails and flows.lifecycle's server tie may be dropped."""
    survivors = _survivors_of_killed_run(tmp_path, tie=False, leftovers=leftovers)
    assert any("uvicorn" in command for command in survivors)


def test_no_temporary_server_beside_a_real_one() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert start_temporary_server() is None


def test_a_server_prefects_settings_do_not_want_stops_itself() -> None:
    """The server process reads Prefect's settings itself (the command starts it before importing Prefect): where
    they turn the temporary server off it exits at once, and `serving` runs the body on those settings."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    with temporary_settings({PREFECT_SERVER_EPHEMERAL_ENABLED: False}, restore_defaults={PREFECT_API_URL}):
        server = start_temporary_server()
        assert server is not None
        try:
            assert server.process.wait(timeout=60) == 0
            with server.serving() as api_url:
                assert api_url is None
        finally:
            server.stop()


def test_a_server_that_cannot_start_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        monkeypatch.setattr(sys, "executable", "/bin/false")  # a server process that exits at once, with 1
        server = start_temporary_server()
        assert server is not None
        try:
            with pytest.raises(RuntimeError, match="temporary server exited with code 1 before answering"):
                server.wait_until_answering(60)
        finally:
            server.stop()


def test_clean_stale_work_dirs(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process (until the system reuses it)
    stale = tmp_path / f"docflow-work-{dead.pid}-abc"
    (stale / "nested").mkdir(parents=True)
    (stale / "nested" / "page.png").write_bytes(b"x")
    ours = tmp_path / f"{work_dir_prefix()}def"
    ours.mkdir()
    fixture = tmp_path / "docflow-pg-x"
    fixture.mkdir()
    other = tmp_path / f"docflow-weed-{dead.pid}-abc"
    other.mkdir()
    stale_file = tmp_path / f"docflow-work-{dead.pid}-file"
    stale_file.write_text("not a folder")

    assert work_dir_prefix() == f"docflow-work-{os.getpid()}-"
    assert clean_stale_work_dirs(tmp_path) == 1
    assert not stale.exists()
    assert ours.is_dir() and fixture.is_dir() and other.is_dir() and stale_file.is_file()
    assert clean_stale_work_dirs(tmp_path) == 0
    assert clean_stale_work_dirs(tmp_path / "missing") == 0
