"""Hostile inputs, generated on the spot: entries and files that once hung, crashed or exhausted a run. Used by
tests/faults and bench/hostile.py."""

from __future__ import annotations

import os
import wave
import zlib
from pathlib import Path

from PIL import Image

# Keys that are rich markup, terminal escapes or a forged log line when printed raw.
MARKUP_KEYS = (
    "h/bad[/x]markup.pdf",
    "[bold red]fake[/bold red].pdf",
    "esc\x1b[31mred\x1b[0m.pdf",
    "forged\n12:00:00 | INFO | all good.pdf",
)


def wav(path: Path, rate: int, frames: int, channels: int = 1, block: int = 1 << 20) -> Path:
    """A 16-bit PCM WAV of silence with whatever sample rate its header should declare, written in blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        remaining = frames
        zeros = bytes(2 * channels * min(block, frames))
        while remaining > 0:
            n = min(block, remaining)
            w.writeframes(zeros[: 2 * channels * n])
            remaining -= n
    return path


def one_hz_wav(path: Path, kilobytes: int = 32) -> Path:
    """A WAV whose header says 1 Hz: resampled to 16 kHz without a guard, 32 KB became 5.8 GB."""
    return wav(path, rate=1, frames=kilobytes * 512)


def silent_wav(path: Path, seconds: float, rate: int = 16_000) -> Path:
    return wav(path, rate=rate, frames=int(seconds * rate))


def many_page_tiff(path: Path, pages: int) -> Path:
    """A multi-page TIFF of tiny frames (a thousand-page fax, in shape)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("L", (16, 16), color=(i * 37) % 256) for i in range(pages)]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_deflate")
    return path


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def symlink_loop(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.name)
    return path


def dangling_symlink(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.name + ".missing")
    return path


def long_path(root: Path, length: int = 1100) -> Path:
    """A file whose path relative to `root` is longer than any key column holds (folders of 200 characters)."""
    folder = root
    while len(str(folder.relative_to(root))) < length:
        folder = folder / ("d" * 200)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "deep.pdf"
    target.write_bytes(b"")
    return target


def empty_files(root: Path, keys: tuple[str, ...] = MARKUP_KEYS) -> list[Path]:
    paths = []
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        paths.append(path)
    return paths


def slow_page_pdf(path: Path, fills: int = 1000) -> Path:
    """A one-page PDF of a few hundred bytes whose page repaints the whole page `fills` times: each fill costs poppler
    tens of milliseconds at 150 DPI (1,000 fills took ~24 s on a 2-core dev box), so it stands in for a flate bomb (a
    few hundred bytes that take poppler longer than any render time limit)."""
    stream = zlib.compress(b"0 0 612 792 re f\n" * fills, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%b\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%b\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path
