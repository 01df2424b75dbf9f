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


# Every review reason code (tasks/classify, tasks/extract, tasks/transcribe, and the audit sample), as a sentence a
# person understands without knowing the code (`{what}`: the value's field, or "a value"), and the measured figure
# that crossed a threshold, when the reason carries one. tests/unit/test_cli_reasons.py checks no code is missing.
REASON_SENTENCES: dict[str, tuple[str, str]] = {
    "uncertain_class": ("the document's class is unsure", " (best guess at probability {value:.2f})"),
    "ambiguous_class": ("two document classes are almost tied", " (margin {value:.2f})"),
    "no_text": ("no text found on the page (OCR read nothing), so nothing could be extracted", ""),
    "invalid_extraction": ("the model's answer did not fit the schema, even after retries", ""),
    "low_confidence": ("the model was unsure of the values it read", " (mean confidence {value:.2f})"),
    "ungrounded_value": ("{what} is not printed on the page", ""),
    "partial_value": ("{what} is only part of a printed name or address (cut short, or run on)", ""),
    "off_label_value": ("{what} is not the amount the page prints beside its label", ""),
    "missing_value": ("{what} is empty, but such documents always print it", ""),
    "unreadable_value": ("{what} could not be read and was left empty", ""),
    "amounts_do_not_add_up": ("{what} disagrees with the amounts the page prints around it", ""),
    "low_transcript_confidence": ("speech recognition was unsure: the transcript may be wrong", ""),
    "little_speech": ("little speech in the recording", " ({value:.0%} of it)"),
    "repetition": ("the transcript repeats itself (a recognition loop)", ""),
    "audit": ("picked at random for an audit: nothing looked wrong, a person checks the checks", ""),
}


def reason_sentence(code: str, field: str | None = None, value: object = None, message: str | None = None) -> str:
    """One review reason as a person reads it; an unknown code falls back to its message (or the code itself)."""
    if code not in REASON_SENTENCES:
        return message or code.replace("_", " ")
    sentence, detail = REASON_SENTENCES[code]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return sentence.format(what=field or "a value") + (detail.format(value=value) if detail and numeric else "")


def reasons_line(reasons: Sequence[Any], limit: int = 240) -> str:
    """An object's review reasons (ReviewReason records) on one line: each sentence once, shortened to `limit`."""
    sentences = dict.fromkeys(
        reason_sentence(r.code, getattr(r, "field", None), getattr(r, "value", None), getattr(r, "message", None))
        for r in reasons
    )
    return first_line("; ".join(sentences) or "waiting for a person", limit)
