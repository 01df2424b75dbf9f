"""Audio: decode to 16 kHz with PyAV, block by block (bounded: absurd sample rates and recordings over the length
cap are rejected, the cap enforced while decoding), to local disk for the transcription stage to read back a span
at a time, and find speech with the Silero VAD model that ships inside faster-whisper."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import InputError
from schemas.records import AudioSummary, SpeechSegment
from schemas.settings import AudioSettings
from tasks.pipeline.stage import Recording

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
    duration_s: float | None = None  # as the container declares it: headers can lie, iter_blocks() enforces the cap


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
    `max_duration_s`. An unknown rate or duration passes: iter_blocks() checks both again as it goes."""
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


def iter_blocks(path: Path, *, stereo: bool, max_duration_s: float, block_s: float = 600.0) -> Iterator[np.ndarray]:
    """The stream resampled to 16 kHz int16, `block_s` seconds at a time, as arrays of shape (samples, channels):
    memory stays one block whatever the recording's length. Raises InputError for unreadable or empty audio, an
    absurd sample rate, or more than `max_duration_s` of audio (declared or decoded).

    The rate of every frame is checked before it is resampled (a frame at an absurd rate can expand a
    thousand-fold), and decoding stops with `too_long` as soon as it passes `max_duration_s`."""
    import av
    from av.audio.resampler import AudioResampler

    width = 2 if stereo else 1
    block = int(block_s * SAMPLE_RATE)
    limit = int(max_duration_s * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    pending_samples = total = 0
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
                    pending.append(out.to_ndarray().reshape(-1, width))  # s16 packed: L R L R ... for stereo
                    pending_samples += out.samples
                    total += out.samples
                    if total > limit + SAMPLE_RATE // 100:  # the resampler's few samples of delay are not a breach
                        raise _too_long(max_duration_s)
                    if pending_samples >= block:
                        yield np.concatenate(pending)
                        pending, pending_samples = [], 0
    except av.error.FFmpegError as exc:
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {_ffmpeg_reason(exc)}") from None
    except (ValueError, IndexError) as exc:  # e.g. a decoder yielding frames the resampler cannot take
        raise InputError(STAGE, "unreadable", f"audio stream unreadable: {exc}") from None
    if total == 0:
        raise InputError(STAGE, "no_samples", "audio stream unreadable: it decodes to zero samples")
    if pending:
        yield np.concatenate(pending)


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


# Silero VAD's working memory grows with the input (~0.7 GB for an hour); blocks keep it flat.
VAD_BLOCK_S = 600


class SpeechFinder:
    """Silero VAD over a recording fed a block at a time (its working memory grows with the input), the segments
    stitched where speech runs across a seam."""

    def __init__(self, params: AudioSettings) -> None:
        from faster_whisper.vad import VadOptions

        self.params = params
        self.options = VadOptions(
            threshold=params.threshold,
            min_speech_duration_ms=params.min_speech_ms,
            min_silence_duration_ms=params.min_silence_ms,
            speech_pad_ms=params.speech_pad_ms,
            max_speech_duration_s=params.max_speech_s,
        )
        self.segments: list[SpeechSegment] = []

    def feed(self, samples: np.ndarray, offset_s: float) -> None:
        from faster_whisper.vad import get_speech_timestamps

        for stamp in get_speech_timestamps(samples, self.options, sampling_rate=SAMPLE_RATE):
            start, end = offset_s + stamp["start"] / SAMPLE_RATE, offset_s + stamp["end"] / SAMPLE_RATE
            last = self.segments[-1] if self.segments else None
            if (
                last is not None
                and start - last.end_s < self.params.min_silence_ms / 1000
                and end - last.start_s <= self.params.max_speech_s
            ):  # speech running across a block seam is one segment
                self.segments[-1] = SpeechSegment(start_s=last.start_s, end_s=end)
            else:
                self.segments.append(SpeechSegment(start_s=start, end_s=end))


@dataclass(frozen=True)
class PcmRecording:
    """A recording decoded to local disk (16 kHz int16, channels interleaved): hours of audio never sit in
    memory, the transcription stage reads back the span it works on."""

    path: Path
    channels: int
    samples: int
    channels_differ: bool = False

    def read(self, start_s: float, end_s: float, channel: int | None = None) -> np.ndarray:
        first = min(max(int(start_s * SAMPLE_RATE), 0), self.samples)
        last = min(max(int(end_s * SAMPLE_RATE), first), self.samples)
        data = np.fromfile(
            self.path, dtype="<i2", count=(last - first) * self.channels, offset=first * self.channels * 2
        ).reshape(-1, self.channels)
        picked = data[:, channel] if channel is not None else data.mean(axis=1, dtype=np.float32)
        out: np.ndarray = picked.astype(np.float32) / np.float32(32768)
        return out


def frame_loudness(samples: np.ndarray, frame_s: float = 0.02) -> np.ndarray:
    """RMS of each whole `frame_s` frame of `samples` (a trailing partial frame is left out)."""
    frame = int(frame_s * SAMPLE_RATE)
    whole = samples[: samples.size // frame * frame].reshape(-1, frame)
    return np.sqrt(np.mean(whole.astype(np.float32) ** 2, axis=1))


@dataclass
class _ChannelDifference:
    """Whether the two channels carry different signals (a call recorded one party per channel), over a recording
    seen block by block."""

    absolute_difference: float = 0.0
    samples: int = 0
    peak: float = 1e-9

    def add(self, block: np.ndarray) -> None:
        left, right = block[:, 0].astype(np.float32), block[:, 1].astype(np.float32)
        self.absolute_difference += float(np.abs(left - right).sum())
        self.samples += block.shape[0]
        self.peak = max(self.peak, float(np.abs(left).max(initial=0)), float(np.abs(right).max(initial=0)))

    def differ(self, tolerance: float = 0.02) -> bool:
        return self.samples > 0 and self.absolute_difference / self.samples / self.peak > tolerance


def decode_to_disk(
    path: Path, out: Path, *, stereo: bool, params: AudioSettings
) -> tuple[PcmRecording, list[SpeechSegment]]:
    """Decode `path` block by block into `out` (16 kHz int16), finding the speech of the mono mix on the way:
    peak memory is one block, whatever the recording's length. Errors as iter_blocks()."""
    finder = SpeechFinder(params)
    difference = _ChannelDifference()
    samples = 0
    with open(out, "wb") as sink:
        for block in iter_blocks(path, stereo=stereo, max_duration_s=params.max_duration_s, block_s=VAD_BLOCK_S):
            sink.write(block.astype("<i2", copy=False).tobytes())
            if stereo:
                difference.add(block)
            mix = block.mean(axis=1, dtype=np.float32) / np.float32(32768)
            finder.feed(mix, samples / SAMPLE_RATE)
            samples += block.shape[0]
    recording = PcmRecording(out, 2 if stereo else 1, samples, stereo and difference.differ())
    return recording, finder.segments


def speech_of(recording: Recording, channel: int | None, params: AudioSettings) -> list[SpeechSegment]:
    """The speech of one channel (or of the mix), read back block by block."""
    finder = SpeechFinder(params)
    for start in range(0, recording.samples, VAD_BLOCK_S * SAMPLE_RATE):
        start_s = start / SAMPLE_RATE
        finder.feed(recording.read(start_s, start_s + VAD_BLOCK_S, channel), start_s)
    return finder.segments


def summarise(samples: int, segments: list[SpeechSegment], info: StreamInfo) -> AudioSummary:
    duration = samples / SAMPLE_RATE
    speech = sum(s.end_s - s.start_s for s in segments)
    return AudioSummary(
        duration_s=round(duration, 3),
        speech_s=round(speech, 3),
        speech_ratio=round(min(1.0, speech / duration), 4) if duration else 0.0,
        source_sample_rate=info.sample_rate,
        channels=info.channels,
    )
