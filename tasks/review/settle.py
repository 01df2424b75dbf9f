"""What answering review items does to their objects: an object whose every waiting item is answered is `done`,
saying who corrected (or checked) it; a class a person corrected to one extracted with another schema sends the
object back to the queue, to be extracted under it by the next run (the person's class wins on that run)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from schemas.records import ObjectStatus
from schemas.review import ReviewStage, ReviewStatus
from schemas.settings import Settings
from storage.repositories import ObjectRepository
from storage.review import ReviewRepository, changed_fields
from storage.tables import SourceObject


@dataclass(frozen=True)
class ClassCorrected:
    """A class a person changed in this import."""

    label: str
    reviewer: str | None


def settle_objects(
    settings: Settings, session: Session, object_ids: Iterable[int], classes: dict[int, ClassCorrected]
) -> None:
    """Bring each object's status in line with its answered items (objects a run holds, or that failed, are left
    as they are: the run's result opens or dismisses items itself)."""
    objects, reviews = ObjectRepository(session), ReviewRepository(session)
    session.flush()
    for object_id in sorted(set(object_ids)):
        row = objects.locked(object_id)  # one import at a time per object, so the last one sees every answer
        if row is None or row.superseded_at is not None or row.status not in (ObjectStatus.DONE, ObjectStatus.REVIEW):
            continue
        corrected = classes.get(object_id)
        schema = schema_to_redo(settings, row, corrected.label) if corrected else None
        if corrected is not None and schema is not None:
            note = (
                f"class corrected to {corrected.label!r} by {corrected.reviewer or 'a reviewer'}: queued to be "
                f"extracted as {schema} by the next `docflow run`"
            )
            reviews.dismiss_waiting(object_id, ReviewStage.EXTRACTION, f"superseded: {note}")
            objects.requeue(row, note)
        elif reviews.waiting(object_id) == 0:
            objects.mark_reviewed(row, reviewed_by(reviews, row))


def schema_to_redo(settings: Settings, row: SourceObject, label: str) -> str | None:
    """The schema an object of class `label` is extracted with, when it is not the one its newest extraction
    used (None: nothing to redo: no extraction for that class, extraction off, or the same schema)."""
    if not settings.extraction.enabled:
        return None
    fixed = settings.extraction.schema_name
    wanted = fixed if fixed != "auto" else settings.classifier.route(label)
    if wanted is None:
        return None
    newest = max(row.extractions, key=lambda e: (e.created_at, e.id), default=None)
    current = newest.schema_id.split("/", 1)[0] if newest is not None else None
    return wanted if wanted != current else None


def reviewed_by(reviews: ReviewRepository, row: SourceObject) -> str:
    """`corrected by ana` when a person changed a value of the object's current result, else `checked by ana`."""
    answered = [
        item
        for item in reviews.history(row.id)
        if item.status == ReviewStatus.RESOLVED and (item.run_id == row.run_id or row.run_id is None)
    ]
    people = sorted({item.reviewer or "a reviewer" for item in answered}) or ["a reviewer"]
    if any(changed_fields(item) for item in answered):
        return f"corrected by {', '.join(people)}"
    return f"checked by {', '.join(people)}: the model's values confirmed"
