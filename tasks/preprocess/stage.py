"""CPU preprocessing of one object: download, detect the type from the bytes, render or normalise pages (and read
their text layer), or decode a recording and find its speech. Pages are published to the derived store and kept
on local disk for the model stages, and so is a decoded recording, until transcribed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from schemas.errors import ConfigError, InputError, TransientError
from schemas.records import DocumentPage, ObjectKind, PdfSummary, StageError
from schemas.settings import RenderSettings, Settings
from storage.blobstore import BlobStore, open_store, safe_suffix, too_large
from tasks.display import printable
from tasks.faults import is_infrastructure_fault
from tasks.pipeline.stage import ItemUpdate, Preprocessed, StageReport, WorkItem
from tasks.preprocess import audio, sniff
from tasks.preprocess.image import normalise_image
from tasks.preprocess.pdf import pdf_text_layer, render_pdf

log = logging.getLogger(__name__)


def detect_file(path: Path) -> sniff.Detection:
    """The file's type from its first bytes (ZIP containers are looked into)."""
    with open(path, "rb") as f:
        head = f.read(sniff.HEAD_BYTES)
    return sniff.detect(head, path)


def page_tag(kind: ObjectKind, render: RenderSettings) -> str:
    """Names the render parameters in derived keys, so different settings never overwrite each other."""
    base = f"{render.max_pixels}px-{render.max_side}side-q{render.jpeg_quality}"
    return f"{render.dpi}dpi-{base}" if kind is ObjectKind.PDF else base


def item_dir(work_dir: Path, object_id: int) -> Path:
    """Scratch space of one object (its download, its pages), removed once the object is recorded."""
    return work_dir / f"object-{object_id}"


class PreprocessStage:
    name = "preprocess"
    uses_model = False

    def __init__(self, settings: Settings, derived: BlobStore, work_dir: Path) -> None:
        self.settings, self.derived, self.work_dir = settings, derived, work_dir
        self._stores: dict[str, BlobStore] = {}

    def wants(self, item: WorkItem) -> bool:
        return item.error is None and not item.sha256

    def prepare(self, items: Sequence[WorkItem]) -> None:
        pass

    def warm_up(self, preparation: bool) -> None:
        pass  # no model

    def __call__(self, items: Sequence[WorkItem], report: StageReport) -> list[ItemUpdate]:
        updates = []
        for item in items:
            update = self.process(item)
            updates.append(update)
            if (pre := update.preprocessed) is not None:
                report.pages += len(pre.pages)
                report.audio_s += pre.audio.duration_s if pre.audio else 0.0
        report.items += len(items)
        return updates

    def process(self, item: WorkItem) -> ItemUpdate:
        """Every input problem comes back as an update with an error, never raised."""
        ref, sha256 = item.ref, ""
        detection: sniff.Detection | None = None
        try:
            if ref.size > self.settings.render.max_file_bytes:
                raise too_large(ref.size, self.settings.render.max_file_bytes)
            out_dir = item_dir(self.work_dir, item.ref.id)
            out_dir.mkdir(parents=True, exist_ok=True)
            # The local name comes from the row id, never from the key: keys like '../x' cannot escape work_dir.
            local = out_dir / f"source{safe_suffix(ref.key)}"
            sha256 = self._store(ref.source).download(ref.key, local, self.settings.render.max_file_bytes)
            try:
                detection = detect_file(local)
                if detection.kind is ObjectKind.UNKNOWN:
                    code = "empty" if ref.size == 0 or "empty" in detection.description else "unsupported"
                    raise InputError("detect", code, sniff.unsupported_message(detection, ref.key))
                return self._preprocess(local, detection, sha256, out_dir)
            finally:
                local.unlink(missing_ok=True)
        except InputError as exc:
            return ItemUpdate(error=exc.error, sha256=sha256, preprocessed=_partial(detection, sha256))
        except (TransientError, ConfigError):  # infrastructure or configuration: not this file's fault
            raise
        except MemoryError:
            return ItemUpdate(error=_internal("out of memory while processing this file"), sha256=sha256)
        except Exception as exc:  # a bug or an unexpected library error: record it, keep the run going
            if is_infrastructure_fault(exc):
                raise
            log.exception("unexpected error processing %s", printable(ref.key))
            return ItemUpdate(error=_internal(f"internal error ({type(exc).__name__}): {exc}"), sha256=sha256)

    def _store(self, source: str) -> BlobStore:
        if source not in self._stores:
            self._stores[source] = open_store(source)
        return self._stores[source]

    def _preprocess(self, path: Path, detection: sniff.Detection, sha256: str, out_dir: Path) -> ItemUpdate:
        kind = detection.kind
        if kind is ObjectKind.AUDIO:
            return self._audio(path, detection, sha256, out_dir)
        pdf = None
        if kind is ObjectKind.PDF:
            rendered = render_pdf(path, out_dir, self.settings.render)
            pages, warnings, page_count = rendered.pages, rendered.warnings, rendered.page_count
            pdf = PdfSummary(page_count=rendered.page_count, pages_rendered=len(rendered.pages))
            if self.settings.extraction.enabled and pages:  # the text layer needs the PDF, which goes now
                texts = pdf_text_layer(path, min(len(pages), self.settings.extraction.max_pages))
                pages = [p.model_copy(update={"text": t}) for p, t in zip(pages, texts, strict=False)] + pages[
                    len(texts) :
                ]
        else:
            normalised = normalise_image(path, out_dir, self.settings.render)
            pages, warnings, page_count = normalised.pages, normalised.warnings, normalised.page_count
        published = tuple(self._publish(sha256, page_tag(kind, self.settings.render), page) for page in pages)
        return ItemUpdate(
            preprocessed=Preprocessed(
                kind=kind,
                sha256=sha256,
                detected_type=detection.description,
                pages=published,
                page_count=page_count,
                pdf=pdf,
            ),
            warnings=tuple(warnings),
        )

    def _publish(self, sha256: str, tag: str, page: DocumentPage) -> DocumentPage:
        assert page.path is not None  # rendering and normalising write a file per page
        key = f"pages/{sha256[:2]}/{sha256}/{tag}/p{page.page_number:05d}.jpg"
        return page.model_copy(update={"uri": self.derived.put_file(key, page.path, "image/jpeg")})

    def _audio(self, path: Path, detection: sniff.Detection, sha256: str, out_dir: Path) -> ItemUpdate:
        limits, whisper = self.settings.audio, self.settings.whisper
        info = audio.probe(path)
        audio.check_limits(info, limits.max_duration_s)
        stereo = info.channels == 2 and whisper.enabled and whisper.split_stereo != "off"
        recording, speech = audio.decode_to_disk(path, out_dir / "audio.pcm", stereo=stereo, params=limits)
        summary = audio.summarise(recording.samples, speech, info)
        if not whisper.enabled:
            recording.path.unlink()
        no_speech = not speech
        return ItemUpdate(
            preprocessed=Preprocessed(
                kind=ObjectKind.AUDIO,
                sha256=sha256,
                detected_type=detection.description,
                audio=summary,
                segments=tuple(speech),
                decoded=recording if whisper.enabled else None,
            ),
            warnings=("no speech detected",) if no_speech and not whisper.enabled else (),
        )


def _partial(detection: sniff.Detection | None, sha256: str) -> Preprocessed | None:
    """What is known of an object that failed preprocessing: its detected type, if it got that far."""
    if detection is None:
        return None
    return Preprocessed(kind=detection.kind, sha256=sha256, detected_type=detection.description)


def _internal(message: str) -> StageError:
    return StageError(stage="pipeline", code="internal", message=message)
