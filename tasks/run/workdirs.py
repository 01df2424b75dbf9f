"""Scratch folders for downloads and rendered pages, named after the process that owns them, so a run can remove
what a killed run (kill -9, out of memory) left behind without touching folders of live processes."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PREFIX = "docflow-work-"
_OWNED = re.compile(rf"^{_PREFIX}(\d+)-")


def work_dir_prefix() -> str:
    """tempfile prefix for this process's scratch folders."""
    return f"{_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid() or os.name != "posix":
        return True  # process groups, ourselves, or no safe probe (Windows): keep
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # owned by someone else / not a pid at all: keep
        return True
    return True


def clean_stale_work_dirs(root: Path) -> int:
    """Remove scratch folders in `root` whose owning process is gone; returns how many were removed."""
    removed = 0
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def run_work_dir(temp_dir: Path | None) -> Iterator[Path]:
    """A run's scratch folder (objects' downloads and pages while in flight), removed when the run ends."""
    with tempfile.TemporaryDirectory(prefix=work_dir_prefix(), dir=temp_dir) as path:
        yield Path(path)
