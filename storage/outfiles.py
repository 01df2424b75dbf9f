"""Files a person asked for (review files, result exports): the target is checked before any work, the file is
written beside it under a temporary name and renamed over it only once complete, so a full disk, a file-size limit
or a failure half-way leaves either the old file or nothing, never a truncated one. And CSV cells a spreadsheet
program would run as a formula are neutralised (OWASP's rule), reversibly."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from schemas.errors import ConfigError


class WriteFailed(Exception):
    """An output file could not be written (no space, a size limit, no permission); nothing was left at its path."""


def checked_target(path: Path) -> Path:
    """The file `path` names, with its folder created; a ConfigError when it cannot be a file we write: an empty
    name, a folder, a device or pipe (/dev/full), a folder that cannot be created. A link is followed."""
    if not str(path) or str(path) == ".":
        raise ConfigError("no output file given: name a file to write")
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise ConfigError(f"{path} is a folder: name a file to write")
    if mode is not None and not stat.S_ISREG(mode):
        raise ConfigError(f"{path} is not a regular file (a device, pipe or socket): name a file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {target.parent}: {exc.strerror or exc}") from None
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write {path}: {target.parent} is not a folder")
    return target


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write the whole file to; renamed to `path` when the block ends without
    an error, removed otherwise. A write error (OSError) becomes WriteFailed, with one line that says why."""
    target = checked_target(path)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        os.chmod(staging, _mode_for(target))
        os.replace(staging, target)  # atomic: the old file or the whole new one, never half of it
    except OSError as exc:
        raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            staging.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_text(path: Path) -> Iterator[TextIO]:
    """`staged_file` opened as UTF-8 text (newlines as written, for the csv module)."""
    with staged_file(path) as staging, staging.open("w", encoding="utf-8", newline="") as stream:
        yield stream


def _mode_for(target: Path) -> int:
    """The permissions a plain open() would have given (mkstemp's are owner-only); an existing file keeps its own."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


# --- CSV cells a spreadsheet cannot run ------------------------------------------------------------------------

# OWASP (CSV injection): a cell that starts with = + - @, a tab or a carriage return is a formula to a spreadsheet
# program. Such a cell gets a leading single quote. Cells that already start with quotes before such a character
# get one more, so reading strips exactly one and every value comes back as it was.
_FORMULA = re.compile("'*[=+\\-@\t\r]")
_ESCAPED = re.compile("'+[=+\\-@\t\r]")
_FIRST = frozenset("'=+-@\t\r")
FORMULA_FIRST = _FIRST  # a cell that starts with none of these is safe as it is (a fast path for writers)
_NEGATIVE_NUMBER = re.compile(r"-\d+(\.\d+)?")  # a refund's amount: a number to every spreadsheet, never a formula


def spreadsheet_safe(cell: object) -> object:
    """A CSV cell no spreadsheet program runs as a formula (text only; numbers are written as they are)."""
    if (
        isinstance(cell, str)
        and cell[:1] in FORMULA_FIRST  # most cells: one look at the first character, no pattern
        and _FORMULA.match(cell)
        and not _NEGATIVE_NUMBER.fullmatch(cell)
    ):
        return "'" + cell
    return cell


def spreadsheet_value(cell: str) -> str:
    """The value a `spreadsheet_safe` cell stands for (the quote it added taken off); other text as it is."""
    return cell[1:] if _ESCAPED.match(cell) else cell
