"""The per-object pipeline: download, detect the type from the bytes, preprocess, publish derived files.

Bad input becomes a failed ObjectResult with a reason; only infrastructure faults (TransientError and database
errors) escape, so the batch around them can be retried."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.documents import SCHEMAS
from schemas.errors import ConfigError, InputError, TransientError
from schemas.records import Classification, ObjectKind, ObjectResult, PdfSummary, RenderedPage, StageError
from schemas.settings import Settings
from storage.blobstore import BlobStore, safe_suffix, too_large
from tasks import classify
from tasks.classify import ClassifierConfig, EmbeddingCache
from tasks.display import printable
from tasks.extraction import DocumentExtraction, ExtractionConfig, extract_document
from tasks.faults import is_infrastructure_fault
from tasks.models.generators import GeneratorSpec
from tasks.models.whisper import load_transcriber
from tasks.preprocess import audio, sniff
from tasks.preprocess.image import ImageLimits, normalise_image
from tasks.preprocess.pdf import RenderLimits, render_pdf
from tasks.transcribe import TranscriptionConfig, review_reasons, transcribe_recording

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    render: RenderLimits
    image: ImageLimits
    vad: audio.VadParams
    max_file_bytes: int
    max_audio_s: float = 4 * 3600.0
    transcription: TranscriptionConfig | None = None
    classification: ClassifierConfig | None = None  # None: the keyword rule picks the schema
    extraction: ExtractionConfig | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> PipelineConfig:
        vad = audio.VadParams(
            threshold=s.vad_threshold,
            min_speech_ms=s.vad_min_speech_ms,
            min_silence_ms=s.vad_min_silence_ms,
            speech_pad_ms=s.vad_speech_pad_ms,
            max_speech_s=s.vad_max_speech_s,
        )
        return cls(
            render=RenderLimits(
                dpi=s.pdf_dpi,
                max_pixels=s.max_pixels,
                max_side=s.max_side,
                max_pages=s.max_pages,
                chunk_pages=s.render_chunk_pages,
                timeout_s=s.render_timeout_s,
                jpeg_quality=s.jpeg_quality,
            ),
            image=ImageLimits(
                max_pixels=s.max_pixels,
                max_side=s.max_side,
                max_decode_pixels=s.max_decode_pixels,
                max_pages=s.max_pages,
                jpeg_quality=s.jpeg_quality,
            ),
            vad=vad,
            max_file_bytes=s.max_file_bytes,
            max_audio_s=s.max_audio_s,
            transcription=TranscriptionConfig.from_settings(s, vad) if s.transcribe else None,
            classification=ClassifierConfig.from_settings(s) if s.classifier != "keywords" else None,
            extraction=_extraction_config(s) if s.extract else None,
        )

    def page_tag(self, kind: ObjectKind) -> str:
        """Names the render parameters in derived keys, so different settings never overwrite each other."""
        r = self.render
        base = f"{r.max_pixels}px-{r.max_side}side-q{r.jpeg_quality}"
        return f"{r.dpi}dpi-{base}" if kind is ObjectKind.PDF else base


def _extraction_config(s: Settings) -> ExtractionConfig:
    spec = GeneratorSpec(
        kind="vlm" if s.vlm_model else "text",
        model=s.vlm_model or s.text_llm_model,
        device=s.model_device,
        dtype=s.model_dtype,
        min_pixels=s.vlm_min_pixels,
        max_pixels=s.max_pixels,  # the VLM sees pages at most as large as preprocessing made them
    )
    return ExtractionConfig(
        spec=spec,
        max_attempts=s.extract_max_attempts,
        max_new_tokens=s.extract_max_new_tokens,
        max_pages=s.extract_max_pages,
        batch_size=s.extract_batch_size,
        review_min_confidence=s.review_min_confidence,
        max_items=s.extract_max_items,
        max_string=s.extract_max_string,
    )


@dataclass(frozen=True)
class ObjectRef:
    id: int
    source: str
    key: str
    size: int


def _publish(
    derived: BlobStore, sha256: str, tag: str, files: list[tuple[int, Path, int, int, float | None]]
) -> tuple[RenderedPage, ...]:
    pages = []
    for number, path, width, height, dpi in files:
        uri = derived.put_file(f"pages/{sha256[:2]}/{sha256}/{tag}/p{number:05d}.jpg", path, "image/jpeg")
        pages.append(RenderedPage(page_number=number, uri=uri, width=width, height=height, dpi=dpi))
    return tuple(pages)


def detect_file(path: Path, key: str) -> sniff.Detection:
    """The file's type from its first bytes (ZIP containers are looked into)."""
    with open(path, "rb") as f:
        head = f.read(sniff.HEAD_BYTES)
    return sniff.detect(head, path)


def process_file(
    path: Path,
    detection: sniff.Detection,
    sha256: str,
    config: PipelineConfig,
    derived: BlobStore,
    work_dir: Path,
    embeddings: EmbeddingCache | None = None,
) -> ObjectResult:
    """Run every stage for one downloaded file of a supported kind. Raises InputError for bad input."""
    kind = detection.kind
    base = {"kind": kind, "sha256": sha256, "detected_type": detection.description}
    if kind is ObjectKind.AUDIO:
        return _process_audio(path, base, config)
    out_dir = Path(tempfile.mkdtemp(dir=work_dir))
    pdf = None
    warnings: tuple[str, ...] = ()
    files: list[tuple[int, Path, int, int, float | None]]  # (page number, file, width, height, render DPI)
    if kind is ObjectKind.PDF:
        rendered = render_pdf(path, out_dir, config.render)
        files = [(p.page_number, p.path, p.width, p.height, p.dpi) for p in rendered.pages]
        pdf = PdfSummary(page_count=rendered.page_count, pages_rendered=len(rendered.pages))
        warnings = tuple(rendered.warnings)
        page_count = rendered.page_count
    else:
        normalised = normalise_image(path, out_dir, config.image)
        files = [(i.page_number, i.path, i.width, i.height, None) for i in normalised.pages]
        warnings = tuple(normalised.warnings)
        page_count = normalised.page_count
    pages = _publish(derived, sha256, config.page_tag(kind), files)
    page_files = [(f[0], f[1]) for f in files]
    classification, class_reasons = _classify(page_files, config, embeddings)
    extracted = _extract(path, kind, page_files, config, classification)
    return ObjectResult(
        **base,
        pages=pages,
        page_count=page_count,
        pdf=pdf,
        classification=classification,
        extraction=extracted.extraction,
        warnings=(*warnings, *extracted.warnings),
        review_reasons=(*class_reasons, *extracted.review_reasons),
    )


def _classify(
    page_files: list[tuple[int, Path]], config: PipelineConfig, embeddings: EmbeddingCache | None
) -> tuple[Classification | None, tuple[str, ...]]:
    if config.classification is None or not page_files:
        return None, ()
    result = classify.classify_pages(page_files, config.classification, embeddings)
    return result, tuple(classify.review_reasons(result, config.classification))


def _extract(
    source: Path,
    kind: ObjectKind,
    page_files: list[tuple[int, Path]],
    config: PipelineConfig,
    classification: Classification | None,
) -> DocumentExtraction:
    """Extraction with the schema the document's class routes to; no class (keyword mode): the keyword rule."""
    if classification is None:
        return extract_document(source, kind, page_files, config.extraction)
    if classification.route is None:  # e.g. a photo: nothing to extract
        return DocumentExtraction()
    return extract_document(source, kind, page_files, config.extraction, SCHEMAS[classification.route])


def _process_audio(path: Path, base: dict[str, Any], config: PipelineConfig) -> ObjectResult:
    info = audio.probe(path)
    audio.check_limits(info, config.max_audio_s)
    tc = config.transcription
    stereo = None
    if info.channels == 2 and tc is not None and tc.split_stereo != "off":
        stereo = audio.decode_stereo(path, max_duration_s=config.max_audio_s)
        mix = (stereo[0] + stereo[1]) / 2
    else:
        mix = audio.decode(path, max_duration_s=config.max_audio_s)
    speech = audio.detect_speech(mix, config.vad)
    summary = audio.summarise(mix, speech, info)
    transcript = None
    reasons: list[str] = []
    if tc is not None:
        transcript = transcribe_recording(load_transcriber(tc.spec), tc, mix, speech, stereo)
        reasons = review_reasons(transcript, summary.speech_ratio, tc)
    no_speech = transcript.no_speech if transcript else not speech
    return ObjectResult(
        **base,
        segments=tuple(speech),
        audio=summary,
        transcript=transcript,
        warnings=("no speech detected",) if no_speech else (),
        review_reasons=tuple(reasons),
    )


def process_object(
    ref: ObjectRef,
    store: BlobStore,
    derived: BlobStore,
    config: PipelineConfig,
    work_dir: Path,
    embeddings: EmbeddingCache | None = None,
) -> ObjectResult:
    """Download and preprocess one object; every input problem comes back as a failed result, never raised."""
    sha256 = ""
    detection: sniff.Detection | None = None
    try:
        if ref.size > config.max_file_bytes:
            raise too_large(ref.size, config.max_file_bytes)
        # The temp name comes from the row id, never from the key: keys like '../x' cannot escape work_dir.
        local = work_dir / f"object-{ref.id}{safe_suffix(ref.key)}"
        sha256 = store.download(ref.key, local, config.max_file_bytes)
        try:
            detection = detect_file(local, ref.key)
            if detection.kind is ObjectKind.UNKNOWN:
                code = "empty" if ref.size == 0 or "empty" in detection.description else "unsupported"
                raise InputError("detect", code, sniff.unsupported_message(detection, ref.key))
            return process_file(local, detection, sha256, config, derived, work_dir, embeddings)
        finally:
            local.unlink(missing_ok=True)
    except InputError as exc:
        return ObjectResult(
            kind=detection.kind if detection else ObjectKind.UNKNOWN,
            sha256=sha256,
            detected_type=detection.description if detection else None,
            error=exc.error,
        )
    except (TransientError, ConfigError):  # infrastructure or configuration: not this file's fault
        raise
    except MemoryError:
        return _failed(sha256, "internal", "out of memory while processing this file")
    except Exception as exc:  # a bug or an unexpected library error: record it, keep the run going
        if _is_infrastructure(exc):
            raise
        log.exception("unexpected error processing %s", printable(ref.key))
        return _failed(sha256, "internal", f"internal error ({type(exc).__name__}): {exc}")


def _failed(sha256: str, code: str, message: str) -> ObjectResult:
    return ObjectResult(
        kind=ObjectKind.UNKNOWN, sha256=sha256, error=StageError(stage="pipeline", code=code, message=message)
    )


def _is_infrastructure(exc: Exception) -> bool:
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError) or is_infrastructure_fault(exc)
