"""Calls with real voices and real models: two-party calls made from two real speakers of the corpus (JFK, and
LJSpeech's reader), stereo and mono, transcribed by Whisper (tiny.en) with speakers found by channel or by voice
(the GE2E encoder of the resemblyzer package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.records import Transcript
from schemas.settings import AudioSettings, DiarizationSettings, WhisperSettings
from tasks.models.whisper import WhisperSpec, load_transcriber
from tasks.transcribe.stage import TranscribeStage
from tasks.transcribe.transcription import transcribe_recording
from tests.support.audio import ArrayRecording, decode, detect_speech
from tests.support.evaluation import (
    SCRIPTS,
    CallTurn,
    LanguageSpan,
    language_accuracy,
    speaker_accuracy,
    synthesized_speech,
    two_party_call,
)

MAX_S = 4 * 3600.0
WHISPER = WhisperSpec("pkg:whisper-tiny.en")


def _speech_only(samples: np.ndarray) -> np.ndarray:
    """A recording without its pauses: turns cut from it are speech from end to end."""
    found = detect_speech(samples, AudioSettings(min_silence_ms=300, speech_pad_ms=50))
    return np.concatenate([samples[int(s.start_s * 16000) : int(s.end_s * 16000)] for s in found])


@pytest.fixture(scope="module")
def call(corpus: Path) -> tuple[np.ndarray, np.ndarray, list[CallTurn]]:
    jfk = _speech_only(decode(corpus / "audio" / "fasterwhisper_jfk.flac", max_duration_s=MAX_S))
    reader = _speech_only(decode(corpus / "audio" / "ljspeech_LJ001-0004.flac", max_duration_s=MAX_S))
    return two_party_call((jfk, reader))


def _transcribe(
    mix: np.ndarray,
    stereo: tuple[np.ndarray, np.ndarray] | None = None,
    model: WhisperSpec = WHISPER,
    **diarization: object,
) -> Transcript:
    stage = TranscribeStage(
        WhisperSettings(), AudioSettings(), model, DiarizationSettings.model_validate(diarization), "cpu"
    )
    speech = detect_speech(mix, AudioSettings())
    whisper = WhisperSettings(word_timestamps=True)
    recording = ArrayRecording(mix, stereo)
    return transcribe_recording(load_transcriber(model), whisper, AudioSettings(), recording, speech, stage.diarizer())


def _turns(transcript: Transcript) -> list[tuple[str, float, float]]:
    """Consecutive segments of one speaker joined: (speaker, start, end)."""
    turns: list[tuple[str, float, float]] = []
    for segment in transcript.segments:
        if turns and turns[-1][0] == segment.speaker:
            turns[-1] = (segment.speaker, turns[-1][1], segment.end_s)
        else:
            turns.append((segment.speaker, segment.start_s, segment.end_s))
    return turns


def test_a_stereo_call_comes_back_as_alternating_turns_at_the_right_times(
    call: tuple[np.ndarray, np.ndarray, list[CallTurn]],
) -> None:
    left, right, truth = call
    transcript = _transcribe(left + right, (left, right))
    assert transcript.channels_split
    turns = _turns(transcript)
    assert [speaker for speaker, *_ in turns] == [f"SPEAKER_{t.speaker}" for t in truth]
    for (_, start, end), expected in zip(turns, truth, strict=True):
        assert abs(start - expected.start_s) <= 0.5 and abs(end - expected.end_s) <= 0.5, (start, end, expected)
    # The dialogue reads in time order, and each speaker's summary adds up.
    assert [s.start_s for s in transcript.segments] == sorted(s.start_s for s in transcript.segments)
    summary = {s.speaker: s for s in transcript.speakers}
    assert set(summary) == {"SPEAKER_0", "SPEAKER_1"} and summary["SPEAKER_1"].channel == 1
    assert summary["SPEAKER_0"].first_s < summary["SPEAKER_1"].first_s < summary["SPEAKER_0"].last_s
    assert sum(s.words for s in summary.values()) == len(transcript.text.split())


def test_a_mono_call_gets_two_speakers_with_turns_in_order(
    call: tuple[np.ndarray, np.ndarray, list[CallTurn]],
) -> None:
    left, right, truth = call
    transcript = _transcribe(left + right)  # the speaker count is found from the voices, not given
    assert not transcript.channels_split
    turns = _turns(transcript)
    assert {speaker for speaker, *_ in turns} == {"SPEAKER_0", "SPEAKER_1"}
    assert [speaker for speaker, *_ in turns] == [f"SPEAKER_{t.speaker}" for t in truth]
    words = [(w.start_s, w.end_s, s.speaker) for s in transcript.segments for w in s.words or ()]
    assert speaker_accuracy(words, truth) >= 0.85


def test_one_voice_is_one_speaker_and_silence_is_none(corpus: Path) -> None:
    jfk = decode(corpus / "audio" / "fasterwhisper_jfk.flac", max_duration_s=MAX_S)
    transcript = _transcribe(jfk)
    assert {s.speaker for s in transcript.segments} == {"SPEAKER_0"}
    assert [s.speaker for s in transcript.speakers] == ["SPEAKER_0"]
    silence = _transcribe(np.zeros(16000 * 3, np.float32))
    assert silence.no_speech and silence.segments == () and silence.speakers == ()


def test_a_known_speaker_count_is_used(call: tuple[np.ndarray, np.ndarray, list[CallTurn]]) -> None:
    left, right, _truth = call
    transcript = _transcribe(left + right, call_speakers=2, threshold=0.01)  # the count wins
    assert {s.speaker for s in transcript.segments} == {"SPEAKER_0", "SPEAKER_1"}


def test_a_call_that_switches_language_is_transcribed_in_each_language(corpus: Path) -> None:
    """JFK and LJSpeech's reader in English, then a German speaker (espeak-ng: the corpus has no other language),
    with the multilingual Whisper base model: each part keeps its own language."""
    english = [decode(corpus / "audio" / name, max_duration_s=MAX_S) for name in ("fasterwhisper_jfk.flac",) * 2]
    english.insert(1, decode(corpus / "audio" / "ljspeech_LJ001-0004.flac", max_duration_s=MAX_S))
    pause = np.zeros(16000, np.float32)
    parts = [x for part in english for x in (part, pause)] + [synthesized_speech(SCRIPTS["de"], "de")]
    switch_s = sum(part.size for part in parts[:-1]) / 16000
    transcript = _transcribe(np.concatenate(parts), model=WhisperSpec("pkg:whisper-base"), diarize="off")
    assert transcript.languages == ("en", "de")
    segments = [(s.start_s, s.end_s, s.language or "", s.text) for s in transcript.segments]
    truth = [LanguageSpan(0.0, switch_s, "en"), LanguageSpan(switch_s, switch_s + 60, "de")]
    assert language_accuracy(segments, truth) >= 0.9
    german = " ".join(s.text for s in transcript.segments if s.language == "de")
    assert "Oktober" in german and "Kundendienst" in german, german
