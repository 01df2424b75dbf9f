"""Word error rate with the usual normalisation (case, punctuation, simple number words), and two-party calls with
known turns plus the share of words given to the right speaker: for benchmarks and accuracy tests."""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from tasks.preprocess.audio import frame_loudness

_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
}


def normalise(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    return [_NUMBER_WORDS.get(word, word) for word in text.split()]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length) after normalisation."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1], len(ref)


def wer(reference: str, hypothesis: str) -> float:
    errors, length = word_errors(reference, hypothesis)
    return errors / max(length, 1)


# Two-party calls with known turns, made from real recordings (for the speaker benchmark and tests).


@dataclass(frozen=True)
class CallTurn:
    speaker: int  # 0 or 1: which voice
    start_s: float
    end_s: float


def two_party_call(
    voices: tuple[np.ndarray, np.ndarray],
    turns: int = 12,
    turn_s: tuple[float, float] = (3.0, 5.0),
    pause_s: tuple[float, float] = (0.3, 0.9),
    seed: int = 0,
    sample_rate: int = 16_000,
) -> tuple[np.ndarray, np.ndarray, list[CallTurn]]:
    """A call of `turns` alternating turns (voice 0 first), each the next 3-5 s of that voice's recording (wrapping
    around), cut at its quietest moment so no word is cut in two, and separated by pauses shorter than a VAD split:
    (left, right, turns) with voice 0 on the left channel and voice 1 on the right; their sum is the mono version
    of the same call. A turn's truth spans its audible part (its leading and trailing quiet left out)."""
    rng = np.random.default_rng(seed)
    frame = sample_rate // 50  # 20 ms
    longest = int(turns * turn_s[1] * sample_rate)
    tracks = [np.tile(voice, longest // voice.size + 2) for voice in voices]
    loudness = [frame_loudness(track, frame / sample_rate) for track in tracks]
    cursors = [0, 0]
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    placed: list[CallTurn] = []
    now = 0
    for index in range(turns):
        who = index % 2
        first, lo, hi = cursors[who] // frame, int(turn_s[0] * 50), int(turn_s[1] * 50)
        energy = loudness[who]
        cut = first + lo + int(np.argmin(energy[first + lo : first + hi]))
        piece = tracks[who][first * frame : cut * frame]
        cursors[who] = cut * frame
        audible = np.flatnonzero(energy[first:cut] > 0.1 * np.percentile(energy, 95))
        pause = np.zeros(int(rng.uniform(*pause_s) * sample_rate), np.float32)
        silent = np.zeros(piece.size, np.float32)
        left += [piece if who == 0 else silent, pause]
        right += [silent if who == 0 else piece, pause]
        start, end = (int(audible[0]), int(audible[-1]) + 1) if audible.size else (0, cut - first)
        placed.append(CallTurn(who, (now + start * frame) / sample_rate, (now + end * frame) / sample_rate))
        now += piece.size + pause.size
    return np.concatenate(left), np.concatenate(right), placed


def speaker_at_time(turns: list[CallTurn], t: float) -> int:
    """The voice speaking at `t` (the nearest turn's, in a pause)."""
    return min(
        turns,
        key=lambda turn: 0 if turn.start_s <= t <= turn.end_s else min(abs(turn.start_s - t), abs(turn.end_s - t)),
    ).speaker


def speaker_accuracy(words: list[tuple[float, float, str]], turns: list[CallTurn]) -> float:
    """Share of words (start, end, speaker label) given to the right voice, under the best one-to-one mapping of
    labels to voices."""
    if not words:
        return 0.0
    truth = [speaker_at_time(turns, (start + end) / 2) for start, end, _ in words]
    labels = sorted({label for *_, label in words})
    best = 0
    for mapping in itertools.permutations(range(max(len(labels), 2)), len(labels)):
        named = dict(zip(labels, mapping, strict=True))
        best = max(best, sum(named[label] == voice for (*_, label), voice in zip(words, truth, strict=True)))
    return best / len(words)
