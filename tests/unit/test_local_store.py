"""The local-folder store against hostile entries, on the real filesystem (entries made by the tests)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.errors import InputError, TransientError
from storage.blobstore import LocalDirStore


def _listing(root: Path) -> tuple[dict[str, str | None], list[str]]:
    store = LocalDirStore(root)
    blobs = {b.key: (b.problem.code if b.problem else None) for b in store.list()}
    return blobs, store.warnings


def test_special_files_and_bad_links_are_listed_with_a_problem(tmp_path: Path) -> None:
    (tmp_path / "ok.pdf").write_bytes(b"%PDF-1.4")
    os.mkfifo(tmp_path / "b.pdf")
    (tmp_path / "loop.pdf").symlink_to("loop.pdf")
    (tmp_path / "dangling.pdf").symlink_to("missing.pdf")
    (tmp_path / "good-link.pdf").symlink_to("ok.pdf")
    (tmp_path / "escape.pdf").symlink_to("/etc/hostname")

    blobs, warnings = _listing(tmp_path)

    assert blobs == {
        "ok.pdf": None,
        "good-link.pdf": None,
        "b.pdf": "not_regular_file",
        "loop.pdf": "symlink_loop",
        "dangling.pdf": "broken_symlink",
    }
    assert warnings == ["skipped escape.pdf: the link points outside the source folder"]


def test_downloading_a_fifo_fails_at_once_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "b.pdf")
    store = LocalDirStore(tmp_path)
    with pytest.raises(InputError) as excinfo:  # before the fix this blocked forever in open()
        store.download("b.pdf", tmp_path / "copy", max_bytes=1000)
    assert excinfo.value.error.code == "not_regular_file"
    assert str(excinfo.value) == "not a regular file (named pipe)"
    assert store.read_head("b.pdf") == b""


def _as_unprivileged(check: Callable[[], str]) -> str:
    """Permissions mean nothing to root: when the tests run as root, `check` runs in a forked child that dropped
    to `nobody` (the code is already imported, so nothing under /root has to be readable)."""
    if os.geteuid() != 0:
        return check()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, exit without running pytest's cleanup
        status = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, check().encode())
        except BaseException as exc:  # reported to the parent
            os.write(write_end, f"child error: {exc!r}".encode())
            status = 1
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    return output


def test_unreadable_files_are_access_denied_and_unreadable_folders_a_warning() -> None:
    # Not under tmp_path: pytest's base folder is private to root, and `nobody` must reach the inbox.
    base = Path(tempfile.mkdtemp(prefix="docflow-test-perms-"))
    base.chmod(0o777)
    root = base / "inbox"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "inside.pdf").write_bytes(b"%PDF")
    (root / "secret.pdf").write_bytes(b"%PDF")
    (root / "secret.pdf").chmod(0o000)
    (root / "locked").chmod(0o000)
    root.chmod(0o777)

    def check() -> str:
        store = LocalDirStore(root)
        listing = sorted(b.key for b in store.list())
        try:
            store.download("secret.pdf", root / "never-written", 100)
        except InputError as exc:
            return f"{listing} {store.warnings}\n{exc.error.code} {exc}"
        return f"{listing} {store.warnings}\nread it"

    try:
        output = _as_unprivileged(check)
        listing, error = output.splitlines()
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(base)
    assert listing == "['secret.pdf'] ['cannot read folder locked: Permission denied']"
    assert error == "access_denied access denied reading secret.pdf: permission denied"


def test_an_unwritable_derived_store_is_an_infrastructure_fault(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("a file where the derived store's folder should be")
    store = LocalDirStore(tmp_path / "not-a-folder" / "derived")
    page = tmp_path / "p1.jpg"
    page.write_bytes(b"jpeg")
    with pytest.raises(TransientError, match="cannot write"):
        store.put_file("pages/p1.jpg", page)


def test_size_limits_are_reported_in_the_unit_they_are_computed_in(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * (3 * 2**19))  # 1.5 MiB (1.57 MB)
    with pytest.raises(InputError) as excinfo:
        LocalDirStore(tmp_path).download("big.bin", tmp_path / "copy", max_bytes=2**20)
    assert str(excinfo.value) == "file too large: 1.5 MiB exceeds the 1.0 MiB limit (DOCFLOW_MAX_FILE_MB)"
