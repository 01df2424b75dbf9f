"""faster-whisper behind a small API: load once per process (cached by the frozen spec), transcribe given
speech clips, sequentially or through the batched pipeline, and return typed segments."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from schemas.defaults import model_cache_dir
from schemas.settings import WhisperSettings
from tasks.models import bundled
from tasks.models.cache import load_cached

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class WhisperSpec:
    """Everything that decides which weights are loaded, where and how: the model cache key."""

    model: str
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    cache_dir: Path = field(default_factory=model_cache_dir)


@dataclass(frozen=True)
class RawWord:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class RawSegment:
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[RawWord, ...] | None = None
    language: str | None = None


@dataclass(frozen=True)
class RawTranscription:
    segments: list[RawSegment]
    language: str | None
    language_probability: float | None
    windows: tuple[tuple[str | None, float | None], ...] = ()  # (language, probability) per clip given


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class WhisperTranscriber:
    def __init__(self, spec: WhisperSpec) -> None:
        import faster_whisper
        from faster_whisper import WhisperModel

        self.spec = spec
        self.device = resolve_device(spec.device)
        self.compute_type = resolve_compute_type(spec.compute_type, self.device)
        path = bundled.resolve(spec.model, spec.cache_dir)
        self._model = WhisperModel(
            path, device=self.device, compute_type=self.compute_type, cpu_threads=spec.cpu_threads
        )
        self.model_id = spec.model
        self.model_version = f"{self.compute_type}; faster-whisper {faster_whisper.__version__}"
        self._lock = threading.Lock()

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def transcribe(
        self,
        samples: np.ndarray,
        clips: Sequence[tuple[float, float]],
        options: WhisperSettings,
        words: bool | None = None,
    ) -> RawTranscription:
        """Transcribe the given speech clips (seconds; each at most 30 s) of 16 kHz mono samples, with word
        timestamps when `words` (default: the setting)."""
        if not clips:
            return RawTranscription([], options.language, None)
        detect = options.language is None and self.multilingual
        common: dict[str, Any] = dict(
            # Each window is decoded in the language detected from its own encoding (multilingual): a call that
            # switches language is not forced into its first one, and no separate detection pass is paid for.
            # The language given is then only a placeholder the detected one replaces.
            language="en" if detect or not self.multilingual else options.language,
            multilingual=detect,
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps if words is None else words,
            condition_on_previous_text=options.condition_on_previous_text,
            no_speech_threshold=options.no_speech_threshold,
            log_prob_threshold=options.log_prob_threshold,
            compression_ratio_threshold=options.compression_ratio_threshold,
            vad_filter=False,  # speech was already found by our own VAD pass
        )
        with self._lock:  # the language log wraps the shared model for the length of one call
            detector = _LanguageLog(self._model.model)
            self._model.model = detector
            try:
                if options.batch_size > 1:
                    from faster_whisper import BatchedInferencePipeline

                    # A pipeline per call: it keeps per-call state.
                    segments, info = BatchedInferencePipeline(self._model).transcribe(
                        samples,
                        clip_timestamps=[{"start": s, "end": e} for s, e in clips],
                        batch_size=options.batch_size,
                        **common,
                    )
                else:
                    flat = [t for clip in clips for t in clip]
                    segments, info = self._model.transcribe(samples, clip_timestamps=flat, **common)
                decoded = list(segments)  # a generator: decoding happens here
            finally:
                self._model.model = detector.inner
        fixed = (info.language, info.language_probability)
        languages = detector.per_window(len(clips), fixed) if detect else [fixed] * len(clips)
        starts = [start for start, _ in clips]
        out = [
            RawSegment(
                start=s.start,
                end=s.end,
                text=s.text,
                avg_logprob=s.avg_logprob,
                no_speech_prob=s.no_speech_prob,
                compression_ratio=s.compression_ratio,
                words=tuple(RawWord(w.start, w.end, w.word, w.probability) for w in s.words) if s.words else None,
                language=languages[max(bisect.bisect_right(starts, s.start + 1e-3) - 1, 0)][0],
            )
            for s in decoded
        ]
        return RawTranscription(out, *_most_spoken(languages), windows=tuple(languages))

    def detect_languages(self, samples: np.ndarray, clips: Sequence[tuple[float, float]]) -> list[tuple[str, float]]:
        """The language spoken in each clip (seconds) of 16 kHz samples, with its probability: one encoder pass
        per clip."""
        found = []
        with self._lock:
            for start, end in clips:
                audio = samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
                language, probability, _ = self._model.detect_language(audio=audio)
                found.append((language, float(probability)))
        return found


def _most_spoken(languages: list[tuple[str | None, float | None]]) -> tuple[str | None, float | None]:
    """The language of most windows, with its mean detection probability."""
    counts: dict[str | None, list[float]] = {}
    for language, probability in languages:
        counts.setdefault(language, []).append(probability if probability is not None else float("nan"))
    language = max(counts, key=lambda lang: len(counts[lang]))
    probabilities = [p for p in counts[language] if p == p]  # NaN: not known
    return language, (sum(probabilities) / len(probabilities) if probabilities else None)


class _LanguageLog:
    """CTranslate2's Whisper, noting the language it detects for each window in multilingual decoding (faster-
    whisper decodes each window in its detected language but does not put it on the segments)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.detected: list[tuple[str | None, float | None]] = []

    def detect_language(self, *args: Any, **kwargs: Any) -> Any:
        results = self.inner.detect_language(*args, **kwargs)
        self.detected += [(str(best[0][0])[2:-2], float(best[0][1])) for best in results]  # "<|en|>" -> "en"
        return results

    def per_window(
        self, windows: int, fallback: tuple[str | None, float | None]
    ) -> list[tuple[str | None, float | None]]:
        """(language, probability) of each window: the last `windows` detections, or `fallback` for all when
        fewer were made (sequential decoding detects per 30 s of audio, not per window)."""
        if len(self.detected) < windows:
            return [fallback] * windows
        return list(self.detected[-windows:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def whisper_spec(whisper: WhisperSettings, cache_dir: Path) -> WhisperSpec:
    """The model cache key of the configured Whisper model."""
    return WhisperSpec(
        model=whisper.model,
        device=whisper.device,
        compute_type=whisper.compute_type,
        cpu_threads=whisper.cpu_threads,
        cache_dir=cache_dir,
    )


def load_transcriber(spec: WhisperSpec) -> WhisperTranscriber:
    """One model per spec per worker process."""
    return load_cached(
        "whisper", spec, lambda: WhisperTranscriber(spec), f"Whisper model {spec.model!r} (DOCFLOW_WHISPER_MODEL)"
    )
