"""The review queue's operations, as the CLI and the review-export flow run them: items out (to Label Studio or a
file), answers back in (validated, stored beside the model's output, idempotent), and a corrected class taught to
the classifier."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import quote, urlparse

from schemas.errors import ConfigError
from schemas.review import ReviewItemView, ReviewStage, ReviewStatus
from schemas.settings import Settings
from storage.blobstore import make_s3_client, open_store
from storage.db import unit_of_work
from storage.outfiles import checked_target, staged_text
from storage.review import ExportMarks, ExportRow, ReviewRepository, item_view
from storage.review import changed_fields as stored_changes
from storage.tables import ReviewItem, utcnow
from tasks.display import markdown_cell
from tasks.review.answers import RejectedRow, ReviewAnswer
from tasks.review.corrections import CorrectionRejected, changed_fields, checked_correction
from tasks.review.files import read_csv, read_jsonl, write_csv_rows, write_jsonl_rows
from tasks.review.items import model_value
from tasks.review.label_studio import Connection, LabelStudio, config_schema, label_config, read_export, task
from tasks.review.settle import ClassCorrected, settle_objects
from tasks.review.teach import LearnedExamples, page_name

FileFormat = Literal["csv", "jsonl", "label-studio"]
WAITING = (ReviewStatus.OPEN, ReviewStatus.EXPORTED)
_HEAD = 8192  # bytes read to tell a file's format, and binary from text


@dataclass
class ApplyReport:
    """What reading reviewers' answers did."""

    applied: list[int] = field(default_factory=list)  # items resolved (or given a new correction)
    unchanged: list[int] = field(default_factory=list)  # the same answer was already stored
    rejected: list[RejectedRow] = field(default_factory=list)
    taught: int = 0  # pages added to the classifier's examples
    notes: list[str] = field(default_factory=list)  # answers stored with a caveat (a page that could not be learned)


@dataclass(frozen=True)
class PushReport:
    project: int
    pushed: int
    already: int  # items pushed before, left as they are


class MediaLinks:
    """URLs Label Studio can load an item's page image or recording from: a presigned S3 URL, or Label Studio's
    local-files serving for files under its LOCAL_FILES_DOCUMENT_ROOT (DOCFLOW_REVIEW_LOCAL_FILES_ROOT). Unset,
    a file export assumes the working folder is that root (what `make label-studio` serves, started from the same
    folder as `docflow`; `local_files_note` says so); a push (`assume_working_dir=False`) refuses local files."""

    def __init__(self, expiry_s: int, local_root: Path | None, *, assume_working_dir: bool = True) -> None:
        self.expiry_s = expiry_s
        self.configured = local_root is not None
        self.local_root = local_root if local_root is not None or not assume_working_dir else Path.cwd()
        self.local_dirs: set[str] = set()  # folders a project needs a local storage for
        self._s3: Any = None

    def url(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            if self._s3 is None:
                self._s3 = make_s3_client()
            return str(
                self._s3.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": parsed.netloc, "Key": parsed.path.lstrip("/")},
                    ExpiresIn=self.expiry_s,
                )
            )
        path = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
        if self.local_root is None or not path.is_relative_to(self.local_root.resolve()):
            if self.configured:
                where = f"not under DOCFLOW_REVIEW_LOCAL_FILES_ROOT={self.local_root}"
            elif self.local_root is not None:
                where = f"not under the working folder {self.local_root}, taken as the root"
            else:
                where = "DOCFLOW_REVIEW_LOCAL_FILES_ROOT is unset"
            raise ConfigError(
                f"{path} is a local file ({where}): Label Studio can load it only through its local-files serving. "
                "Start it with LOCAL_FILES_SERVING_ENABLED=true and LOCAL_FILES_DOCUMENT_ROOT set to a folder above "
                "it (`make label-studio` serves the repository's folder), and set DOCFLOW_REVIEW_LOCAL_FILES_ROOT to "
                "the same folder (or keep derived files in S3: DOCFLOW_DERIVED_STORE=s3://...)"
            )
        self.local_dirs.add(str(path.parent))
        return "/data/local-files/?d=" + quote(str(path.relative_to(self.local_root.resolve())))


def local_files_note(settings: Settings) -> str | None:
    """What Label Studio needs to show the pages (and recordings) of a `--format label-studio` file when they are
    local files: its local-files serving from the root the links are relative to, and a local storage in the
    project over the folders that hold them. None when every file is in S3."""
    local = [
        location
        for location in (settings.derived_store, *settings.source)
        if not location.startswith("s3://") and Path(location).exists()
    ]
    if not local:
        return None
    root = (settings.review.local_files_root or Path.cwd()).resolve()
    folders = ", ".join(dict.fromkeys(str(Path(location).resolve()) for location in local))
    assumed = "" if settings.review.local_files_root else " (DOCFLOW_REVIEW_LOCAL_FILES_ROOT unset: the working folder)"
    return (
        f"The page images and recordings are local files, linked as /data/local-files/?d=PATH relative to {root}"
        f"{assumed}. Label Studio shows them when started with LOCAL_FILES_SERVING_ENABLED=true and "
        f"LOCAL_FILES_DOCUMENT_ROOT={root} (`make label-studio` run from this folder does both), and when the project "
        f"has a local files source storage (Settings > Cloud Storage > Add Source Storage > Local files; no sync "
        f"needed) with the absolute path {folders} (one each). `docflow review push` adds it by itself."
    )


def media_uri(item: ReviewItemView, source: str) -> str:
    """The file a reviewer looks at: the first page image of a document, the recording itself for a call."""
    if item.stage is ReviewStage.TRANSCRIPTION:
        return open_store(source).uri_for(item.key)
    if not item.pages:
        raise ConfigError(f"review item {item.id} ({item.key}) has no page image to show")
    return item.pages[0]


def export_file(settings: Settings, fmt: FileFormat, out: Path, stage: ReviewStage | None = None) -> int:
    """Write the waiting items to `out` (a local path) in `fmt`; they become `exported`. Returns the count. The
    target is checked first and the file written whole before it replaces `out` (a failure leaves the old file);
    the items are marked only once it is in place."""
    checked_target(out)
    links = MediaLinks(settings.review.url_expiry_s, settings.review.local_files_root)
    with unit_of_work(settings.database_url) as session, ExportMarks(session) as marks:
        repo = ReviewRepository(session)
        with staged_text(out) as stream:
            if fmt == "label-studio":
                count = _write_tasks(repo, stage, stream, links, marks)
            else:
                chunks = _marked(repo.export_chunks(WAITING, stage, pages=fmt == "jsonl"), marks)
                count = write_csv_rows(chunks, stream) if fmt == "csv" else write_jsonl_rows(chunks, stream)
        marks.keep()
    return count


def _marked(chunks: Iterator[list[ExportRow]], marks: ExportMarks) -> Iterator[list[ExportRow]]:
    """The chunks, streamed from the database into the file, their items marked as they go (the marks stand once
    the file is in place)."""
    for chunk in chunks:
        marks.add([row.id for row in chunk])
        yield chunk


def _write_tasks(
    repo: ReviewRepository, stage: ReviewStage | None, stream: TextIO, links: MediaLinks, marks: ExportMarks
) -> int:
    """Label Studio tasks JSON: one task per item, with a link to its page image or recording."""
    tasks, ids = [], []
    for view, source in repo.views(WAITING, stage):
        ids.append(view.id)
        tasks.append(task(view, links.url(media_uri(view, source))))
    marks.add(ids)
    json.dump(tasks, stream, ensure_ascii=False, indent=1)
    return len(tasks)


def import_file(settings: Settings, path: Path, *, replace: bool = False) -> ApplyReport:
    """Apply a reviewer's file (CSV, JSONL or a Label Studio JSON export): every valid answer in one transaction;
    malformed rows, unknown ids and invalid corrections are reported row by row. `replace`: an answer may
    overwrite a different earlier one (otherwise that is a conflict, rejected)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with unit_of_work(settings.database_url) as session:
        repo = ReviewRepository(session)
        items = {r.id: r for r in repo.select((*WAITING, ReviewStatus.RESOLVED))}
        answers, rejected = read_answers(path, {i: item_view(r) for i, r in items.items()})
        report = apply_answers(settings, repo, items, answers, replace=replace)
        report.rejected[:0] = rejected
    return report


def read_answers(path: Path, items: dict[int, ReviewItemView]) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    """A reviewer's file (CSV, JSONL, or Label Studio's JSON export, told apart by content), as answers to the
    `items` it names. Malformed rows and unknown ids are rejected one by one; the rest are read. A file that is
    not text at all (binary, UTF-16) is rejected whole."""
    try:
        with path.open("rb") as raw:
            head = raw.read(_HEAD)
    except OSError as exc:
        return [], [RejectedRow("file", f"cannot read it: {exc.strerror or exc}")]
    if b"\x00" in head:
        return [], [RejectedRow("file", "not a text file (binary, or UTF-16): save it as CSV (UTF-8) or JSONL")]
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            return [], [RejectedRow("file", f"not UTF-8 text (byte {exc.start})")]
        return read_export(text, items)
    # Bytes that are not UTF-8 are read as lone surrogates, so the readers reject their rows, not the whole file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as stream:
        if first == b"{":
            return read_jsonl(stream, items)
        return read_csv(stream, items)


def apply_answers(
    settings: Settings,
    repo: ReviewRepository,
    items: dict[int, ReviewItem],
    answers: Sequence[ReviewAnswer],
    *,
    replace: bool = False,
) -> ApplyReport:
    """Validate and store each answer; a class correction also becomes an example image of that class, and the
    objects whose items are all answered are settled (done, or queued again for a corrected class).

    An item already answered keeps its answer: the same answer again changes nothing, a different one (another
    correction, or a sign-off over a correction) is a conflict, rejected with who answered it, unless `replace`."""
    report = ApplyReport()
    labels = settings.classifier.label_names
    repo.lock(answer.item_id for answer in answers)  # re-read under the write lock: another import may have answered
    root = settings.classifier.learned_examples
    learned = LearnedExamples.of(repo.session, root) if root is not None else None
    touched: set[int] = set()
    classes: dict[int, ClassCorrected] = {}
    for answer in answers:
        item = items[answer.item_id]
        stage = ReviewStage(item.stage)
        if item.status == ReviewStatus.DISMISSED:
            report.rejected.append(RejectedRow(answer.where, f"item {item.id} was dismissed: {item.note}"))
            continue
        view = item_view(item)
        model = model_value(stage, item.model_output)
        try:
            value = answer.corrected if answer.corrected is not None else model
            if value is None:
                raise CorrectionRejected("the model gave no value: a correction is needed")
            corrected = checked_correction(stage, item.schema_id, value, labels)
        except CorrectionRejected as exc:
            repo.reject(item, str(exc))
            report.rejected.append(RejectedRow(answer.where, f"item {item.id} ({view.key}): {exc}"))
            continue
        changed = changed_fields(stage, item.schema_id, model, corrected)
        if item.status == ReviewStatus.RESOLVED and item.corrected == corrected:
            report.unchanged.append(item.id)
            continue
        if item.status == ReviewStatus.RESOLVED and not replace:
            report.rejected.append(RejectedRow(answer.where, _conflict(view, item, changed)))
            continue
        repo.resolve(item, corrected, answer.reviewer, changed)
        report.applied.append(item.id)
        touched.add(item.object_id)
        if stage is ReviewStage.CLASSIFICATION:
            label = corrected["label"] if changed else None  # a class put back to the model's one is unlearned
            if changed:
                classes[item.object_id] = ClassCorrected(corrected["label"], answer.reviewer)
            if learned is not None and (changed or view.corrected is not None):
                name = page_name(view, item.source_object.sha256)
                taught = learned.teach(view, name, label, answer.reviewer)
                report.taught += taught.added
                if taught.problem:
                    report.notes.append(
                        f"{answer.where}: item {item.id} ({view.key}): the class correction is stored, but the page "
                        f"was not added to the class examples: {taught.problem}"
                    )
    settle_objects(settings, repo.session, touched, classes)
    return report


def _conflict(view: ReviewItemView, item: ReviewItem, changed: Sequence[str]) -> str:
    """Why an answer to an item someone already answered differently is not taken."""
    who = item.reviewer or "an unnamed reviewer"
    when = f" on {item.resolved_at:%Y-%m-%d %H:%M}" if item.resolved_at else ""
    before = stored_changes(item)
    if before:
        answered = f"corrected by {who}{when} ({', '.join(before)})"
        why = "a sign-off does not undo a correction" if not changed else "this answer differs from it"
    else:
        answered = f"signed off by {who}{when} (the model's value)"
        why = "this answer differs from it"
    return f"item {item.id} ({view.key}): conflict: already {answered}; {why}, so it was not applied"


def push(
    settings: Settings,
    connection: Connection,
    project: int | None,
    create: str | None,
    stage: ReviewStage | None = None,
) -> PushReport:
    """Send the waiting items not pushed yet to a Label Studio project (created with the config their schema
    needs when `create` names it); each becomes `exported` with its task id, so it is never pushed twice."""
    links = MediaLinks(settings.review.url_expiry_s, settings.review.local_files_root, assume_working_dir=False)
    with unit_of_work(settings.database_url) as session, LabelStudio(connection) as studio:
        repo = ReviewRepository(session)
        rows = list(repo.select(WAITING, stage, not_pushed=True))
        already = sum(1 for _ in repo.select(WAITING, stage)) - len(rows)
        views = [item_view(r) for r in rows]
        schemas = sorted({config_schema(v) for v in views})
        if project is None:
            if not create:
                raise ConfigError("give --project ID or --create NAME")
            if len(schemas) > 1:
                raise ConfigError(
                    f"the waiting items need {len(schemas)} labeling configs ({', '.join(schemas)}): push them to one "
                    "project each, with --stage"
                )
            schema = schemas[0] if schemas else "generic"
            project = studio.create_project(create, label_config(schema, settings.classifier.label_names))
        bodies = [task(v, links.url(media_uri(v, r.source_object.source))) for v, r in zip(views, rows, strict=True)]
        for local in sorted(links.local_dirs):
            studio.add_local_storage(project, local)
        for row, body in zip(rows, bodies, strict=True):
            task_id = studio.add_task(project, body)
            repo.mark_exported(row, str(project), str(task_id))
            session.flush()
    return PushReport(project, len(rows), already)


def pull(settings: Settings, connection: Connection, project: int) -> ApplyReport:
    """Read the project's submitted annotations back as corrections (the newest per task). Pulling again
    changes nothing."""
    with LabelStudio(connection) as studio:
        exported, people = studio.export(project), studio.people()
    with unit_of_work(settings.database_url) as session:
        repo = ReviewRepository(session)
        items = {r.id: r for r in repo.select((*WAITING, ReviewStatus.RESOLVED, ReviewStatus.DISMISSED))}
        answers, rejected = read_export(exported, {i: item_view(r) for i, r in items.items()}, people)
        report = apply_answers(settings, repo, items, answers)
        report.rejected[:0] = rejected
    return report


@dataclass(frozen=True)
class ExportRound:
    """What one review-export run did."""

    pushed: PushReport | None = None
    pulled: ApplyReport | None = None
    written: str | None = None  # where the review file went
    items_written: int = 0


def export_to_store(settings: Settings, location: str, fmt: FileFormat = "csv") -> tuple[str, int]:
    """Write the waiting items as a file under `location` (a directory or s3://bucket/prefix), named by the time;
    returns its URI and the number of items."""
    name = f"review-{utcnow():%Y%m%dT%H%M%SZ}.{'json' if fmt == 'label-studio' else fmt}"
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / name
        count = export_file(settings, fmt, local)
        uri = open_store(location).put_file(name, local)
    return uri, count


def export_markdown(result: ExportRound) -> str:
    """The review-export run's artifact."""
    lines = ["# docflow review export", ""]
    if result.pulled is not None:
        lines.append(
            f"Pulled from Label Studio: {len(result.pulled.applied)} item(s) resolved, "
            f"{len(result.pulled.rejected)} rejected, {result.pulled.taught} page(s) added to class examples."
        )
        lines += [f"- rejected {row.where}: {markdown_cell(row.reason)}" for row in result.pulled.rejected]
        lines += [f"- note: {markdown_cell(note)}" for note in result.pulled.notes]
    if result.pushed is not None:
        lines.append(f"Pushed {result.pushed.pushed} new item(s) to Label Studio project {result.pushed.project}.")
    if result.written is not None:
        lines.append(f"Wrote {result.items_written} waiting item(s) to {markdown_cell(result.written)}.")
    return "\n".join(lines) + "\n"
