"""Corrections teach the next run: a page whose class a reviewer corrected is kept as an exemplar of the right
class, in the folder the classifier reads them from (DOCFLOW_CLASS_LEARNED_EXAMPLES), with a JSON file beside it
saying where it came from.

The files follow the review transaction: each is written under a staging name the classifier does not read, put in
place when the transaction commits and removed when it rolls back, so the folder never holds a page the database
does not hold a correction for. A page has one label: it is named after the object's content, so teaching it
another class moves it."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import event
from sqlalchemy.orm import Session

from schemas.review import ReviewItemView
from storage.blobstore import make_s3_client
from storage.tables import utcnow

log = logging.getLogger(__name__)

STAGED = ".staged"  # the suffix of a file waiting for its transaction (no image suffix: the classifier skips it)
_SESSION_KEY = "docflow.learned_examples"


@dataclass(frozen=True)
class Taught:
    """What teaching one page did: `added` when it becomes an example once the transaction commits; `problem`
    says why it could not be (the correction itself stands)."""

    added: bool
    problem: str | None = None


@dataclass
class _Pending:
    """One page's change, applied on commit: the files that replace its earlier ones (none: it is taught no class
    any more) and the names it may have had before."""

    names: tuple[str, ...]
    files: list[tuple[Path, Path]] = field(default_factory=list)  # (staged, final)


def page_name(item: ReviewItemView, content_sha256: str | None) -> str:
    """The file name (without suffix) of an object's page among the examples: by content, so the same page is
    one file whichever review item (or object version) taught it."""
    return f"review-{content_sha256[:16]}" if content_sha256 else f"review-object-{item.object_id}"


class LearnedExamples:
    """The class examples a review transaction adds, moves or removes, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pending: dict[str, _Pending] = {}

    @classmethod
    def of(cls, session: Session, root: Path) -> LearnedExamples:
        """The session's learned examples under `root`, hooked to its transactions: one per session."""
        key = (_SESSION_KEY, str(root))
        found = session.info.get(key)
        if isinstance(found, LearnedExamples):
            return found
        examples = session.info[key] = cls(root)
        event.listen(session, "after_commit", examples._on_commit)
        event.listen(session, "after_rollback", examples._on_rollback)
        return examples

    def teach(self, item: ReviewItemView, name: str, label: str | None, reviewer: str | None) -> Taught:
        """Make the item's first page the example `name` of `label` (None: of no class any more, e.g. a correction
        put back to the model's class); any earlier file of that page goes when the transaction commits."""
        self._drop(name)
        pending = self._pending[name] = _Pending(names=(name, f"review-{item.id}"))  # the second: older files' name
        if label is None:
            return Taught(False)
        if not item.pages:
            return Taught(False, "the object has no page image to learn from")
        uri = item.pages[0]
        try:
            data = _read(uri)
        except Exception as exc:  # a missing or unreadable file or S3 object: the page is not learned, said why
            return Taught(False, f"its page image {uri} could not be read ({_short(exc)})")
        suffix = Path(urlparse(uri).path).suffix.lower() or ".png"
        image = self.root / label / f"{name}{suffix}"
        provenance = {
            "review_item": item.id,
            "object_key": item.key,
            "page": uri,
            "model_label": item.model_output.get("label"),
            "label": label,
            "reviewer": reviewer,
            "at": utcnow().isoformat(),
        }
        try:
            image.parent.mkdir(parents=True, exist_ok=True)
            self._stage(pending, image, data)
            self._stage(pending, image.with_suffix(".json"), (json.dumps(provenance, indent=1) + "\n").encode())
        except OSError as exc:
            self._drop(name)
            return Taught(False, f"it could not be written under {self.root} ({_short(exc)})")
        return Taught(True)

    @staticmethod
    def _stage(pending: _Pending, final: Path, data: bytes) -> None:
        staged = final.with_name(f".{final.name}{STAGED}")
        staged.write_bytes(data)
        pending.files.append((staged, final))

    def _drop(self, name: str) -> None:
        """Forget a page's staged change (taught twice in one transaction: the later one counts)."""
        pending = self._pending.pop(name, None)
        for staged, _ in pending.files if pending else ():
            staged.unlink(missing_ok=True)

    def _on_commit(self, _session: Session) -> None:
        pending, self._pending = self._pending, {}
        for change in pending.values():
            try:
                finals = {final for _, final in change.files}
                for name in change.names:
                    for old in self.root.glob(f"*/{name}.*"):
                        if old not in finals and not old.name.endswith(STAGED):
                            old.unlink(missing_ok=True)
                for staged, final in change.files:
                    os.replace(staged, final)
            except OSError as exc:  # the corrections are stored; only the examples' folder is behind
                log.warning("could not update the learned class examples under %s: %s", self.root, exc)

    def _on_rollback(self, _session: Session) -> None:
        for name in list(self._pending):
            self._drop(name)


def _short(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _read(uri: str) -> bytes:
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        body: Any = make_s3_client().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
        data: bytes = body.read()
        return data
    return Path(parsed.path if parsed.scheme == "file" else uri).read_bytes()
