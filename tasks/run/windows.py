"""Windows sized by work: the objects a run carries through the stages together, cut by what they will cost (pages,
audio, bytes, as far as discovery knows) rather than by count, so a swarm of small images travels in a few large
windows (a few Prefect task runs and transactions for hundreds of objects) and a 400-page PDF in one of its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

from schemas.records import ObjectKind

# What one unit of work is: about one rendered page. Before an object was ever processed only its size and its
# name are known; these turn bytes into pages or minutes (generous: a guess too large only makes a window smaller).
BYTES_PER_PDF_PAGE = 100_000  # scanned pages run 50-300 KB, text pages less
BYTES_PER_IMAGE_PAGE = 4_000_000  # one image is one page; a huge one costs more to normalise
AUDIO_BYTES_PER_MINUTE = 1_000_000  # 128 kbit/s mp3; a 16 kHz wav is 2 MB a minute
UNITS_PER_AUDIO_MINUTE = 2.0  # decoding, VAD and Whisper over one minute cost about two pages' worth
BYTES_PER_UNKNOWN_UNIT = 250_000

_PDF = {".pdf"}
_IMAGES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".heic"}
_AUDIO = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac", ".wma", ".amr"}


def object_cost(
    key: str,
    size: int,
    kind: str | None = None,
    page_count: int | None = None,
    duration_s: float | None = None,
) -> float:
    """The work one object will take, in units of about one page. What an earlier run recorded (its kind, pages,
    duration) wins; otherwise the key's extension and the size in bytes are the guess."""
    if page_count:
        return float(page_count)
    if duration_s:
        return max(1.0, duration_s / 60 * UNITS_PER_AUDIO_MINUTE)
    suffix = PurePosixPath(key).suffix.lower()
    if kind == ObjectKind.PDF.value or (kind is None and suffix in _PDF):
        return max(1.0, size / BYTES_PER_PDF_PAGE)
    if kind == ObjectKind.IMAGE.value or (kind is None and suffix in _IMAGES):
        return max(1.0, size / BYTES_PER_IMAGE_PAGE)
    if kind == ObjectKind.AUDIO.value or (kind is None and suffix in _AUDIO):
        return max(1.0, size / AUDIO_BYTES_PER_MINUTE * UNITS_PER_AUDIO_MINUTE)
    return max(1.0, size / BYTES_PER_UNKNOWN_UNIT)


def work_windows(objects: Iterable[tuple[int, float]], max_objects: int, max_units: float) -> Iterator[list[int]]:
    """(object id, cost) pairs, in order, cut into windows of at most `max_objects` objects and `max_units` of work;
    an object that alone costs more than `max_units` gets a window of its own. Streams: holds one window at a time."""
    window: list[int] = []
    units = 0.0
    for object_id, cost in objects:
        if window and (len(window) >= max_objects or units + cost > max_units):
            yield window
            window, units = [], 0.0
        window.append(object_id)
        units += cost
    if window:
        yield window
