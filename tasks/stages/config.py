"""The stages' configuration, derived once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import ObjectKind
from schemas.settings import Settings
from tasks.classify import ClassifierConfig
from tasks.extraction import ExtractionConfig
from tasks.models.generators import GeneratorSpec
from tasks.preprocess import audio
from tasks.preprocess.image import ImageLimits
from tasks.preprocess.pdf import RenderLimits
from tasks.transcribe import TranscriptionConfig


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
