"""Audio for tests and benchmarks, held whole in memory: decoded samples, speech found in them, and a recording made
of arrays. The pipeline never holds a recording in memory (tasks/preprocess/audio.py decodes to disk block by block
and finds speech on the way); these are built on the same blocks and the same speech finder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.records import SpeechSegment
from schemas.settings import AudioSettings
from tasks.preprocess.audio import SAMPLE_RATE, VAD_BLOCK_S, SpeechFinder, _ChannelDifference, iter_blocks


def decode(path: Path, *, max_duration_s: float) -> np.ndarray:
    """16 kHz mono float32 samples in [-1, 1]. Raises InputError as iter_blocks() does."""
    blocks = [b[:, 0] for b in iter_blocks(path, stereo=False, max_duration_s=max_duration_s)]
    return _to_float(blocks)


def decode_stereo(path: Path, *, max_duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Left and right channels at 16 kHz (a mono file gives the same samples twice). Errors as decode()."""
    blocks = list(iter_blocks(path, stereo=True, max_duration_s=max_duration_s))
    return _to_float([b[:, 0] for b in blocks]), _to_float([b[:, 1] for b in blocks])


def _to_float(chunks: list[np.ndarray]) -> np.ndarray:
    """int16 chunks into one float32 array in [-1, 1), filled in place and emptying the list as it goes."""
    out = np.empty(sum(c.size for c in chunks), np.float32)
    pos = 0
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        np.multiply(chunk, np.float32(1 / 32768), out=out[pos : pos + chunk.size])
        pos += chunk.size
    return out


def detect_speech(samples: np.ndarray, params: AudioSettings, block_s: int = VAD_BLOCK_S) -> list[SpeechSegment]:
    """Speech segments (seconds) by Silero VAD, run over blocks of `block_s` and stitched at the seams."""
    finder = SpeechFinder(params)
    block = block_s * SAMPLE_RATE
    for offset in range(0, max(samples.size, 1), block):
        finder.feed(samples[offset : offset + block], offset / SAMPLE_RATE)
    return finder.segments


def channels_differ(left: np.ndarray, right: np.ndarray, tolerance: float = 0.02) -> bool:
    """True when the two channels carry different signals (a call recorded one party per channel): the pipeline's
    own block-by-block check, over one block."""
    difference = _ChannelDifference()
    difference.add(np.stack([left, right], axis=1))
    return difference.differ(tolerance)


@dataclass(frozen=True)
class ArrayRecording:
    """A recording already in memory: the mono mix, and both channels of a stereo call."""

    mix: np.ndarray
    stereo: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def channels(self) -> int:
        return 2 if self.stereo is not None else 1

    @property
    def samples(self) -> int:
        return int(self.mix.size)

    @property
    def channels_differ(self) -> bool:
        return self.stereo is not None and channels_differ(*self.stereo)

    def read(self, start_s: float, end_s: float, channel: int | None = None) -> np.ndarray:
        source = self.mix if channel is None or self.stereo is None else self.stereo[channel]
        return source[max(int(start_s * SAMPLE_RATE), 0) : max(int(end_s * SAMPLE_RATE), 0)]
