"""Text from outside (object keys, error messages quoting them) made safe to show on a terminal, in a log line or in
a markdown artifact: a key can never move the cursor, colour the terminal, hide itself or forge a new line. And a
transcript as a dialogue a person reads."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# C0 and C1 controls (ESC, CR, LF, ...), DEL, line/paragraph separators and the bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character written as a visible escape (ESC becomes the four characters \\x1b)."""
    return _CONTROL.sub(_escape, text)


def markdown_cell(text: str) -> str:
    """Printable text that cannot break out of a markdown table cell."""
    return printable(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;")


def first_line(text: str, limit: int = 300) -> str:
    """The first line of a (possibly multi-line) error message, shortened: one line per fault on a terminal."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def clock(seconds: float) -> str:
    """[hh:mm:ss] of a time in a recording."""
    whole = int(seconds)
    return f"[{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}]"


def dialogue(segments: Sequence[Any]) -> list[str]:
    """A transcript as the dialogue it records: one line per turn, `[00:01:02] SPEAKER_1: ...`; consecutive
    segments of one speaker form one turn."""
    lines: list[str] = []
    speaker = None
    for segment in segments:
        text = printable(segment.text.strip())
        if not text:
            continue
        if segment.speaker == speaker:
            lines[-1] += " " + text
        else:
            lines.append(f"{clock(segment.start_s)} {segment.speaker}: {text}")
            speaker = segment.speaker
    return lines
