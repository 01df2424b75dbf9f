"""Audio: decode to 16 kHz mono float32 (PyAV through faster-whisper's decoder) and find speech with the Silero
VAD model that ships inside faster-whisper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.errors import InputError
from schemas.records import AudioSummary, SpeechSegment

STAGE = "audio"
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 2000
    speech_pad_ms: int = 400
    max_speech_s: float = 30.0  # Whisper's window: longer speech is split, at a pause where there is one


@dataclass(frozen=True)
class StreamInfo:
    sample_rate: int | None
    channels: int | None


def probe(path: Path) -> StreamInfo:
    """The first audio stream's native rate and channel count. Raises InputError when there is none."""
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InputError(STAGE, "no_audio_stream", "audio stream unreadable: the file has no audio stream")
            stream = container.streams.audio[0]
            return StreamInfo(stream.codec_context.sample_rate or None, stream.codec_context.channels or None)
    except av.error.FFmpegError as exc:
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {_ffmpeg_reason(exc)}") from None


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def decode(path: Path) -> np.ndarray:
    """16 kHz mono float32 samples in [-1, 1]. Raises InputError for unreadable or empty audio."""
    return _decode(path, split_stereo=False)  # type: ignore[return-value]


def decode_stereo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Left and right channels at 16 kHz (a mono file gives the same samples twice)."""
    return _decode(path, split_stereo=True)  # type: ignore[return-value]


def _decode(path: Path, split_stereo: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    import av
    from faster_whisper.audio import decode_audio

    try:
        samples = decode_audio(str(path), sampling_rate=SAMPLE_RATE, split_stereo=split_stereo)
    except av.error.FFmpegError as exc:
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {_ffmpeg_reason(exc)}") from None
    except (ValueError, IndexError) as exc:  # e.g. a container whose decoder yields nothing usable
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {exc}") from None
    if (samples[0] if split_stereo else samples).size == 0:
        raise InputError(STAGE, "no_samples", "audio stream unreadable: it decodes to zero samples")
    return samples


# Silero VAD's working memory grows with the input (~0.7 GB for an hour); blocks keep it flat.
VAD_BLOCK_S = 600


def detect_speech(samples: np.ndarray, params: VadParams, block_s: int = VAD_BLOCK_S) -> list[SpeechSegment]:
    """Speech segments (seconds) by Silero VAD, run over blocks of `block_s` and stitched at the seams."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=params.threshold,
        min_speech_duration_ms=params.min_speech_ms,
        min_silence_duration_ms=params.min_silence_ms,
        speech_pad_ms=params.speech_pad_ms,
        max_speech_duration_s=params.max_speech_s,
    )
    block = block_s * SAMPLE_RATE
    segments: list[SpeechSegment] = []
    for offset in range(0, max(samples.size, 1), block):
        stamps = get_speech_timestamps(samples[offset : offset + block], options, sampling_rate=SAMPLE_RATE)
        for stamp in stamps:
            start, end = (offset + stamp["start"]) / SAMPLE_RATE, (offset + stamp["end"]) / SAMPLE_RATE
            if segments and start - segments[-1].end_s < params.min_silence_ms / 1000 and (
                end - segments[-1].start_s <= params.max_speech_s
            ):  # speech running across a block seam is one segment
                segments[-1] = SpeechSegment(start_s=segments[-1].start_s, end_s=end)
            else:
                segments.append(SpeechSegment(start_s=start, end_s=end))
    return segments


def summarise(samples: np.ndarray, segments: list[SpeechSegment], info: StreamInfo) -> AudioSummary:
    duration = samples.size / SAMPLE_RATE
    speech = sum(s.end_s - s.start_s for s in segments)
    return AudioSummary(
        duration_s=round(duration, 3),
        speech_s=round(speech, 3),
        speech_ratio=round(min(1.0, speech / duration), 4) if duration else 0.0,
        source_sample_rate=info.sample_rate,
        channels=info.channels,
    )
