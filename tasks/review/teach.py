"""Corrections teach the next run: a page whose class a reviewer corrected is kept as an exemplar of the right
class, in the folder the classifier reads them from (DOCFLOW_CLASS_LEARNED_EXAMPLES), with a JSON file beside it
saying where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from schemas.review import ReviewItemView
from schemas.settings import Settings
from storage.blobstore import make_s3_client
from storage.tables import utcnow


def teach_class(settings: Settings, item: ReviewItemView, label: str, reviewer: str | None) -> int:
    """Copy the item's first page image into `<learned>/<label>/`; returns the number of pages added (0 when
    learning is off, or the object has no page image)."""
    root = settings.classifier.learned_examples
    if root is None or not item.pages:
        return 0
    uri = item.pages[0]
    suffix = Path(urlparse(uri).path).suffix.lower() or ".png"
    folder = root / label
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"review-{item.id}{suffix}"
    target.write_bytes(_read(uri))
    provenance = {
        "review_item": item.id,
        "object_key": item.key,
        "page": uri,
        "model_label": item.model_output.get("label"),
        "label": label,
        "reviewer": reviewer,
        "at": utcnow().isoformat(),
    }
    target.with_suffix(".json").write_text(json.dumps(provenance, indent=1) + "\n", encoding="utf-8")
    return 1


def _read(uri: str) -> bytes:
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        body = make_s3_client().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
        data: bytes = body.read()
        return data
    return Path(parsed.path if parsed.scheme == "file" else uri).read_bytes()
