"""Audio: decode to 16 kHz mono float32 with PyAV (bounded: absurd sample rates and recordings over the length cap
are rejected, the cap enforced while decoding) and find speech with the Silero VAD model that ships inside
faster-whisper."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import InputError
from schemas.records import AudioSummary, SpeechSegment
from schemas.settings import AudioSettings

STAGE = "audio"
SAMPLE_RATE = 16_000
# Declared input rates outside this range are broken or hostile headers: resampling 1 Hz to 16 kHz multiplies the
# samples by 16,000 (a 32 KB WAV became 5.8 GB).
MIN_SOURCE_RATE = 2_000
MAX_SOURCE_RATE = 768_000


@dataclass(frozen=True)
class StreamInfo:
    sample_rate: int | None
    channels: int | None
    duration_s: float | None = None  # as the container declares it: headers can lie, decode() enforces the cap itself


def probe(path: Path) -> StreamInfo:
    """The first audio stream's native rate, channel count and declared duration. Raises InputError when there is
    none."""
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            return _stream_info(container)
    except av.error.FFmpegError as exc:
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {_ffmpeg_reason(exc)}") from None


def _stream_info(container: Any) -> StreamInfo:
    if not container.streams.audio:
        raise InputError(STAGE, "no_audio_stream", "audio stream unreadable: the file has no audio stream")
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or None
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1e6  # AV_TIME_BASE
    elif stream.frames and rate:
        duration = stream.frames / rate
    return StreamInfo(rate, stream.codec_context.channels or None, duration)


def check_limits(info: StreamInfo, max_duration_s: float) -> None:
    """Rejects, before decoding, a stream whose declared sample rate is absurd or whose declared duration is over
    `max_duration_s`. An unknown rate or duration passes: decode() checks both again as it goes."""
    _check_rate(info.sample_rate)
    if info.duration_s is not None and info.duration_s > max_duration_s:
        have, cap = _spans(info.duration_s, max_duration_s)
        raise InputError(STAGE, "too_long", f"recording too long: {have} exceeds the {cap} limit (DOCFLOW_MAX_AUDIO_S)")


def _check_rate(rate: int | None) -> None:
    if rate is not None and not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise InputError(
            STAGE,
            "bad_sample_rate",
            f"audio stream unreadable: declared sample rate {rate} Hz is outside "
            f"{MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz",
        )


def _spans(seconds: float, limit_s: float) -> tuple[str, str]:
    """Both durations in the unit the limit reads best in, with enough decimals to tell them apart."""
    unit, scale = ("h", 3600) if limit_s >= 3600 else ("min", 60) if limit_s >= 60 else ("s", 1)
    for digits in (1, 2, 3):
        have, cap = f"{seconds / scale:.{digits}f} {unit}", f"{limit_s / scale:.{digits}f} {unit}"
        if have != cap:
            break
    return have, cap


def _too_long(max_duration_s: float) -> InputError:
    cap = _spans(max_duration_s, max_duration_s)[1]
    return InputError(
        STAGE, "too_long", f"recording too long: it decodes to more than the {cap} limit (DOCFLOW_MAX_AUDIO_S)"
    )


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def decode(path: Path, *, max_duration_s: float) -> np.ndarray:
    """16 kHz mono float32 samples in [-1, 1]. Raises InputError for unreadable or empty audio, an absurd sample
    rate, or more than `max_duration_s` of audio (declared or decoded)."""
    (chunks,), total = _decode_s16(path, stereo=False, max_duration_s=max_duration_s)
    return _to_float(chunks, total)


def decode_stereo(path: Path, *, max_duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Left and right channels at 16 kHz (a mono file gives the same samples twice). Errors as decode()."""
    (left, right), total = _decode_s16(path, stereo=True, max_duration_s=max_duration_s)
    return _to_float(left, total), _to_float(right, total)


def _decode_s16(path: Path, stereo: bool, max_duration_s: float) -> tuple[tuple[list[np.ndarray], ...], int]:
    """The stream resampled to 16 kHz int16, frame by frame, as per-channel lists of chunks and their total length.

    Memory is bounded by the cap: the rate of every frame is checked before it is resampled (a frame at an absurd
    rate can expand a thousand-fold), and decoding stops with `too_long` as soon as it passes `max_duration_s`."""
    import av
    from av.audio.resampler import AudioResampler

    channels: tuple[list[np.ndarray], ...] = ([], []) if stereo else ([],)
    limit = int(max_duration_s * SAMPLE_RATE)
    total = 0
    seen_s = 0.0
    resampler = AudioResampler(format="s16", layout="stereo" if stereo else "mono", rate=SAMPLE_RATE)
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            check_limits(_stream_info(container), max_duration_s)
            for frame in _valid_frames(container):
                if frame is not None:
                    _check_rate(frame.sample_rate)
                    seen_s += frame.samples / frame.sample_rate
                    if seen_s > max_duration_s + 1e-3:  # before resampling (the output would pass the cap)
                        raise _too_long(max_duration_s)
                    frame.pts = None  # gaps or jumps in timestamps are not ours to judge (as faster-whisper does)
                for out in resampler.resample(frame):
                    data = out.to_ndarray().reshape(-1)  # s16 packed: interleaved L R L R ... for stereo
                    if stereo:
                        channels[0].append(data[0::2].copy())
                        channels[1].append(data[1::2].copy())
                    else:
                        channels[0].append(data)
                    total += out.samples
                    if total > limit + SAMPLE_RATE // 100:  # the resampler's few samples of delay are not a breach
                        raise _too_long(max_duration_s)
    except av.error.FFmpegError as exc:
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {_ffmpeg_reason(exc)}") from None
    except (ValueError, IndexError) as exc:  # e.g. a decoder yielding frames the resampler cannot take
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {exc}") from None
    finally:
        # The resampler's filter graph is only freed by the garbage collector (faster-whisper issue #390).
        del resampler
        gc.collect()
    if total == 0:
        raise InputError(STAGE, "no_samples", "audio stream unreadable: it decodes to zero samples")
    return channels, total


def _valid_frames(container: Any) -> Iterator[Any]:
    """Decoded frames of the first audio stream, skipping ones the decoder rejects as invalid data, then None (which
    flushes the resampler)."""
    import av

    frames = container.decode(audio=0)
    while True:
        try:
            yield next(frames)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            continue
    yield None


def _to_float(chunks: list[np.ndarray], total: int) -> np.ndarray:
    """int16 chunks into one float32 array in [-1, 1), filled in place and emptying the list as it goes."""
    out = np.empty(total, np.float32)
    pos = 0
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        np.multiply(chunk, np.float32(1 / 32768), out=out[pos : pos + chunk.size])
        pos += chunk.size
    return out


# Silero VAD's working memory grows with the input (~0.7 GB for an hour); blocks keep it flat.
VAD_BLOCK_S = 600


def detect_speech(samples: np.ndarray, params: AudioSettings, block_s: int = VAD_BLOCK_S) -> list[SpeechSegment]:
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
            if (
                segments
                and start - segments[-1].end_s < params.min_silence_ms / 1000
                and (end - segments[-1].start_s <= params.max_speech_s)
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
