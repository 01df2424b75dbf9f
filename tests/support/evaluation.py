"""Word error rate (jiwer's) with the usual normalisation (case, punctuation, simple number words), two-party calls with
known turns plus the share of words given to the right speaker, and speech synthesized in other languages (the
corpus's recordings are all English) plus the share of words transcribed in the language spoken: for benchmarks and
accuracy tests."""

from __future__ import annotations

import ctypes
import functools
import itertools
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import jiwer
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


class _Normalised(jiwer.AbstractTransform):
    """normalise() as a jiwer transform: each sentence its normalised words, space-separated."""

    def process_string(self, s: str) -> str:
        return " ".join(normalise(s))


_WORDS = jiwer.Compose([_Normalised(), jiwer.ReduceToListOfListOfWords()])


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length) after normalisation."""
    out = jiwer.process_words(reference, hypothesis, reference_transform=_WORDS, hypothesis_transform=_WORDS)
    return out.substitutions + out.deletions + out.insertions, out.hits + out.substitutions + out.deletions


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after normalisation; against an empty reference, the number of words inserted."""
    return float(jiwer.wer(reference, hypothesis, reference_transform=_WORDS, hypothesis_transform=_WORDS))


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


# What the synthesized speakers say: a utility's call centre, about 30 s each (one Whisper window).
SCRIPTS = {
    "de": "Guten Tag, hier spricht der Kundendienst der Stadtwerke. Wie kann ich Ihnen heute helfen? Ihre Rechnung "
    "für den Monat Oktober wurde gestern per Post verschickt. Der Betrag wird wie immer am fünfzehnten des Monats "
    "von Ihrem Konto abgebucht. Wenn Sie Fragen zu einzelnen Positionen haben, rufen Sie uns bitte zwischen acht "
    "und achtzehn Uhr an. Ihr Zählerstand wurde am dritten Oktober abgelesen. Vielen Dank für Ihren Anruf und "
    "einen schönen Tag.",
    "fr": "Bonjour, vous êtes bien au service client de la compagnie des eaux. Votre facture du mois d'octobre a été "
    "envoyée hier par courrier. Le montant sera prélevé sur votre compte le quinze du mois, comme d'habitude. Si "
    "vous avez des questions sur une ligne de la facture, appelez-nous entre huit heures et dix-huit heures. Votre "
    "compteur a été relevé le trois octobre. Merci de votre appel et bonne journée.",
}

_SYNTH_LOCK = threading.Lock()


@functools.cache
def _espeak() -> tuple[ctypes.CDLL, int, list[np.ndarray], Callable[..., int]]:
    """espeak-ng from the espeakng-loader wheel (a dev and bench dependency: the library and its voices, no system
    package), set up once per process to hand its samples to a callback."""
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - a dev dependency
        raise RuntimeError("speech synthesis needs espeakng-loader (pip install -e '.[dev]')") from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint]
    lib.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    synchronous = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when every sample went to the callback
    rate = lib.espeak_Initialize(synchronous, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise RuntimeError("espeak-ng did not initialise")
    chunks: list[np.ndarray] = []

    def collect(wav: ctypes._Pointer, count: int, _events: ctypes.c_void_p) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)(collect)
    lib.espeak_SetSynthCallback(callback)
    return lib, rate, chunks, callback  # the callback is returned to keep it alive as long as the library


def synthesized_speech(text: str, voice: str, sample_rate: int = 16_000) -> np.ndarray:
    """`text` spoken by espeak-ng's voice for a language code (de, fr, es, en, ...), as float32 samples."""
    from scipy.signal import resample_poly

    lib, rate, chunks, _ = _espeak()
    with _SYNTH_LOCK:
        chunks.clear()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        data = text.encode()
        utf8 = 1  # espeakCHARS_UTF8
        if lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, utf8, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not speak {text[:40]!r}")
        samples = np.concatenate(chunks).astype(np.float32) / 32768
    factor = np.gcd(sample_rate, rate)
    return np.asarray(resample_poly(samples, sample_rate // factor, rate // factor), np.float32)


@dataclass(frozen=True)
class LanguageSpan:
    start_s: float
    end_s: float
    language: str


def language_accuracy(segments: list[tuple[float, float, str, str]], truth: list[LanguageSpan]) -> float:
    """The share of transcribed words (segments as start, end, language, text) whose segment carries the language
    spoken at its middle."""
    right = total = 0
    for start, end, language, text in segments:
        middle = (start + end) / 2
        spoken = min(truth, key=lambda span: 0 if span.start_s <= middle <= span.end_s else abs(span.start_s - middle))
        words = len(text.split())
        total += words
        right += words * (language == spoken.language)
    return right / total if total else 0.0
