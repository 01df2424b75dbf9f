"""The pure logic around speakers and utterances: windows, clustering, attribution, splitting at pauses, the
dialogue view, and the wiring of the pyannote option."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from schemas.errors import ConfigError
from schemas.records import SpeechSegment, TranscriptSegment, Word
from schemas.settings import AudioSettings, DiarizationSettings, WhisperSettings
from tasks.display import dialogue
from tasks.models.whisper import RawSegment, RawWord, WhisperSpec
from tasks.preprocess.audio import SAMPLE_RATE
from tasks.transcribe.diarize import HOP_S, Turn, attribute, diarize, nearest, speaker_centroids, speech_windows
from tasks.transcribe.stage import TranscribeStage
from tasks.transcribe.transcription import _utterances, layout_speech
from tests.support.audio import ArrayRecording


def test_windows_tile_each_speech_segment_exactly() -> None:
    windows = speech_windows([SpeechSegment(start_s=1.0, end_s=5.0), SpeechSegment(start_s=8.0, end_s=9.0)])
    first = [w for w in windows if w.segment == 0]
    assert first[0].own_start_s == 1.0 and first[-1].own_end_s == 5.0
    assert all(a.own_end_s == pytest.approx(b.own_start_s) for a, b in itertools.pairwise(first))
    assert all(w.end_s - w.start_s == pytest.approx(1.6) for w in first)
    (short,) = [w for w in windows if w.segment == 1]  # shorter than one window: heard whole
    assert (short.start_s, short.end_s, short.own_start_s, short.own_end_s) == (8.0, 9.0, 8.0, 9.0)


def cluster_speakers(embeddings: np.ndarray, weights: np.ndarray, threshold: float, speakers: int | None) -> np.ndarray:
    """A speaker label per window, as diarize's first pass gives them."""
    return nearest(embeddings, speaker_centroids(embeddings, weights, threshold, speakers))


def test_clusters_follow_the_voices_and_short_windows_join_the_nearest() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=256), rng.normal(size=256)
    voices = np.stack(
        [a + 0.3 * rng.normal(size=256) for _ in range(6)] + [b + 0.3 * rng.normal(size=256) for _ in range(5)]
    )
    voices /= np.linalg.norm(voices, axis=1, keepdims=True)
    weights = np.array([1.6] * 10 + [0.3])  # the last one is too short to shape a cluster
    labels = cluster_speakers(voices, weights, threshold=0.5, speakers=None)
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1 and labels[0] != labels[6]
    assert len(set(cluster_speakers(voices, weights, threshold=1.9, speakers=None))) == 1  # all one voice
    assert len(set(cluster_speakers(voices[:6], weights[:6], threshold=0.5, speakers=2))) == 2  # the count wins


def test_a_given_count_splits_two_similar_voices_not_an_odd_window_from_the_rest() -> None:
    rng = np.random.default_rng(2)
    shared = rng.normal(size=256)
    a, b = shared + 0.6 * rng.normal(size=256), shared + 0.6 * rng.normal(size=256)  # two alike voices
    truth = np.array([(i // 4) % 2 for i in range(48)])  # turns of four windows
    voices = np.stack([(a, b)[k] for k in truth]) + 0.5 * rng.normal(size=(truth.size, 256))
    voices = np.vstack([voices, rng.normal(size=256) * 3])  # one odd window (a cough, a line noise)
    voices /= np.linalg.norm(voices, axis=1, keepdims=True)
    labels = cluster_speakers(voices, np.full(len(voices), 1.6), threshold=0.5, speakers=2)
    agree = max(np.mean(labels[:-1] == truth), np.mean(labels[:-1] != truth))
    assert agree >= 0.95  # each voice is one speaker; the odd window joins the nearer


def _alike_voices(seed: int, voices: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of `voices` alike voices (a large shared part, as two men of one accent) in turns of four windows,
    and the voice of each."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=256)
    centres = [shared + 0.3 * rng.normal(size=256) for _ in range(voices)]
    truth = np.array([(i // 4) % voices for i in range(48)])
    windows = np.stack([centres[k] for k in truth]) + 0.15 * rng.normal(size=(truth.size, 256))
    return windows / np.linalg.norm(windows, axis=1, keepdims=True), truth


def test_two_alike_voices_under_the_threshold_are_still_two_by_their_separation() -> None:
    two, truth = _alike_voices(3, voices=2)
    weights = np.full(len(two), 1.6)
    assert len(set(cluster_speakers(two, weights, threshold=0.5, speakers=None))) == 1  # closer than the threshold
    labels = nearest(two, speaker_centroids(two, weights, 0.5, None, separation=2.6))
    assert max(np.mean(labels == truth), np.mean(labels != truth)) >= 0.95
    one, _ = _alike_voices(4, voices=1)  # one voice: its halves are no further apart than its windows' spread
    assert len(speaker_centroids(one, weights, 0.5, None, separation=2.6)) == 1


def test_a_long_call_is_clustered_from_a_spread_of_its_windows_and_every_window_gets_a_speaker() -> None:
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(size=256) for _ in range(3))
    # Three hours of speech in turns of 20 windows; the third voice only speaks in the last hour.
    truth = np.array([(i // 20) % 2 if i < 18_000 else 2 * ((i // 20) % 2) for i in range(27_000)])
    voices = np.stack([(a, b, c)[k] for k in truth]) + 0.3 * rng.normal(size=(truth.size, 256))
    voices /= np.linalg.norm(voices, axis=1, keepdims=True)
    labels = cluster_speakers(voices, np.full(truth.size, 1.6), threshold=0.5, speakers=None)
    assert len(set(labels)) == 3
    assert all(len(set(labels[truth == k])) == 1 for k in range(3))  # one label per voice, over all windows


class _PitchVoices:
    """A stand-in for the speaker encoder in a test of the logic around it: a clip's "voice" is its loudest
    frequency, so two tones are two speakers. Counts the windows it hears."""

    def __init__(self) -> None:
        self.heard = 0

    def __call__(self, clips: list[np.ndarray]) -> np.ndarray:
        self.heard += len(clips)
        vectors = np.zeros((len(clips), 8))
        for i, clip in enumerate(clips):
            spectrum = np.abs(np.fft.rfft(clip, n=SAMPLE_RATE))  # 1 Hz bins
            vectors[i, 0 if spectrum[200] > spectrum[300] else 1] = 1.0
        return vectors


def _tones(*parts: tuple[int, float]) -> np.ndarray:
    """Tones of (frequency, seconds) end to end."""
    return np.concatenate(
        [0.5 * np.sin(2 * np.pi * hz * np.arange(int(s * SAMPLE_RATE)) / SAMPLE_RATE) for hz, s in parts]
    ).astype(np.float32)


def test_one_voice_is_heard_once_and_a_change_inside_a_segment_is_placed_to_within_a_hop() -> None:
    one = _tones((200, 16.0))
    voices = _PitchVoices()
    turns = diarize(ArrayRecording(one), [SpeechSegment(start_s=0.0, end_s=16.0)], voices, threshold=0.5)
    assert [t.speaker for t in turns] == ["SPEAKER_0"] and voices.heard == 10  # side by side: 16 s / 1.6 s

    two = _tones((200, 7.3), (300, 8.7))  # the change at 7.3 s, with no pause for VAD to split at
    voices = _PitchVoices()
    turns = diarize(ArrayRecording(two), [SpeechSegment(start_s=0.0, end_s=16.0)], voices, threshold=0.5)
    assert [t.speaker for t in turns] == ["SPEAKER_0", "SPEAKER_1"]
    assert abs(turns[0].end_s - 7.3) <= HOP_S and turns[-1].end_s == 16.0
    assert voices.heard < len(speech_windows([SpeechSegment(start_s=0.0, end_s=16.0)]))  # only near the change


def _segment(words: list[tuple[float, float, str]], speaker: str = "SPEAKER_0") -> TranscriptSegment:
    return TranscriptSegment(
        start_s=words[0][0],
        end_s=words[-1][1],
        text="".join(w for *_, w in words),
        speaker=speaker,
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        compression_ratio=1.2,
        words=tuple(Word(start_s=s, end_s=e, word=w, probability=0.9) for s, e, w in words),
    )


def test_a_segment_spanning_a_speaker_change_is_split_at_the_word() -> None:
    segment = _segment([(0.0, 0.5, " Hello"), (0.6, 1.0, " there."), (1.2, 1.6, " Hi"), (1.7, 2.0, " back.")])
    turns = [Turn(0.0, 1.1, "SPEAKER_0"), Turn(1.1, 2.5, "SPEAKER_1")]
    first, second = attribute([segment], turns)
    assert (first.speaker, first.text, first.start_s, first.end_s) == ("SPEAKER_0", "Hello there.", 0.0, 1.0)
    assert (second.speaker, second.text, second.start_s, second.end_s) == ("SPEAKER_1", "Hi back.", 1.2, 2.0)


def test_a_model_segment_across_a_cut_out_pause_becomes_two_utterances() -> None:
    # Speech at 0-2 s and 10-12 s of the recording, packed end to end: 0-2 and 2-4 of the speech timeline.
    layout = layout_speech([SpeechSegment(start_s=0.0, end_s=2.0), SpeechSegment(start_s=10.0, end_s=12.0)])
    words = (RawWord(0.2, 0.8, " Yes,", 0.9), RawWord(0.9, 1.5, " please.", 0.9), RawWord(2.3, 3.0, " Thanks.", 0.9))
    raw = RawSegment(0.2, 3.0, " Yes, please. Thanks.", -0.2, 0.01, 1.1, words, "en")
    first, second = _utterances(raw, layout, "SPEAKER_0", None, None)
    assert (first.text, first.start_s, first.end_s) == ("Yes, please.", 0.2, 1.5)
    assert (second.text, second.start_s, second.end_s, second.language) == ("Thanks.", 10.3, 11.0, "en")
    # A word placed after the last speech of its window is a continuation Whisper made up: dropped.
    invented = RawSegment(0.2, 4.5, " Yes", -0.2, 0.01, 1.1, (words[0], RawWord(4.1, 4.5, " more", 0.5)), "en")
    assert [u.text for u in _utterances(invented, layout, "SPEAKER_0", None, None)] == ["Yes,"]


def test_the_dialogue_reads_one_line_per_turn() -> None:
    segments = [
        _segment([(62.0, 63.0, " Hello.")], "SPEAKER_0"),
        _segment([(63.5, 64.0, " How can I help?")], "SPEAKER_0"),
        _segment([(3725.0, 3726.0, " My order.")], "SPEAKER_1"),
    ]
    assert dialogue(segments) == ["[00:01:02] SPEAKER_0: Hello. How can I help?", "[01:02:05] SPEAKER_1: My order."]


def test_a_pyannote_pipeline_without_pyannote_installed_is_a_clear_configuration_error() -> None:
    stage = TranscribeStage(
        WhisperSettings(),
        AudioSettings(),
        WhisperSpec("pkg:whisper-tiny.en"),
        DiarizationSettings(model="pyannote/speaker-diarization-3.1"),
    )
    with pytest.raises(ConfigError, match=r"needs pyannote\.audio"):
        stage.diarizer()
    assert (
        TranscribeStage(
            WhisperSettings(), AudioSettings(), WhisperSpec("x"), DiarizationSettings(mode="off")
        ).diarizer()
        is None
    )


def test_each_window_keeps_the_language_detected_for_it() -> None:
    from tasks.models.whisper import _LanguageLog

    class Detector:  # stands in for CTranslate2's Whisper: its detect_language answers per encoded window
        def __init__(self, answers: list[str]) -> None:
            self.answers = answers

        def detect_language(self, batch: list[int]) -> list[list[tuple[str, float]]]:
            return [[(f"<|{self.answers.pop(0)}|>", 0.9)] for _ in batch]

    log = _LanguageLog(Detector(["en", "en", "de", "en"]))
    log.detect_language([0])  # an earlier call's window
    log.detect_language([1, 2, 3])  # one batch of three windows, decoded each in its own language
    assert log.per_window(3, ("en", None)) == [("en", 0.9), ("de", 0.9), ("en", 0.9)]
    fixed = _LanguageLog(Detector([])).per_window(2, ("fr", 1.0))  # language fixed: nothing detected
    assert fixed == [("fr", 1.0), ("fr", 1.0)]
