"""Pure logic around the Whisper model: clip packing, channel comparison, hallucination guards, review rules.
Segments here are hand-made inputs to that logic, not model outputs standing in for a model."""

from pathlib import Path

import numpy as np
import pytest

from schemas.errors import ConfigError
from schemas.records import SpeechSegment, Transcript, TranscriptSegment
from schemas.settings import WhisperSettings
from tasks.models import bundled
from tasks.models.whisper import RawSegment
from tasks.transcribe.transcription import (
    guard,
    layout_speech,
    mean_logprob,
    review_reasons,
    speech_only,
)
from tests.support.audio import channels_differ
from tests.support.evaluation import normalise, wer


def seg(a: float, b: float) -> SpeechSegment:
    return SpeechSegment(start_s=a, end_s=b)


def test_speech_is_laid_end_to_end_in_windows_cut_between_segments() -> None:
    layout = layout_speech([seg(2, 12), seg(15, 30), seg(40, 50)])
    assert layout.pieces == ((0, 2, 10), (10, 15, 15), (25, 40, 10))
    assert layout.windows == ((0, 25), (25, 35))
    assert all(end - start <= 30 for start, end in layout.windows)


def test_times_map_back_to_the_recording() -> None:
    layout = layout_speech([seg(2, 12), seg(15, 30), seg(40, 50)])
    assert layout.to_original(0) == 2
    assert layout.to_original(12.5) == 17.5
    assert layout.to_original(10) == 15  # a start on a boundary opens the next piece
    assert layout.to_original(10, is_end=True) == 12  # an end on it closes the previous one
    assert layout.to_original(35, is_end=True) == 50


def test_overlong_speech_is_split_into_windows() -> None:
    layout = layout_speech([seg(0, 70)])
    assert layout.windows == ((0, 30), (30, 60), (60, 70))


def test_speech_only_drops_the_silence() -> None:
    samples = np.arange(16000 * 10, dtype=np.float32)
    layout = layout_speech([seg(1, 2), seg(5, 5.5)])
    out = speech_only(samples, layout)
    assert out.size == 16000 * 1.5
    assert out[0] == 16000 and out[16000] == 16000 * 5


def test_channels_differ() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0, 0.1, 16000).astype(np.float32)
    b = rng.normal(0, 0.1, 16000).astype(np.float32)
    assert channels_differ(a, b)
    assert not channels_differ(a, a.copy())
    assert not channels_differ(a, a * 0.999)


def raw(text: str = "hello there", logprob: float = -0.2, no_speech: float = 0.1, ratio: float = 1.2) -> RawSegment:
    return RawSegment(start=0, end=1, text=text, avg_logprob=logprob, no_speech_prob=no_speech, compression_ratio=ratio)


def test_guard_drops_confident_no_speech_with_low_logprob() -> None:
    options = WhisperSettings()
    assert guard(raw(no_speech=0.9, logprob=-1.5), options) == (False, None)
    assert guard(raw(no_speech=0.9, logprob=-0.3), options) == (True, None)  # sure of its words: keep
    assert guard(raw(text="  "), options) == (False, None)


def test_guard_flags_repetition_loops() -> None:
    keep, flag = guard(raw(text="thank you " * 20, ratio=6.0), WhisperSettings())
    assert keep and flag and "repetition" in flag


def tseg(start: float, end: float, logprob: float, flagged: str | None = None) -> TranscriptSegment:
    return TranscriptSegment(
        start_s=start,
        end_s=end,
        text="x",
        speaker="SPEAKER_0",
        avg_logprob=logprob,
        no_speech_prob=0.0,
        compression_ratio=1.0,
        flagged=flagged,
    )


def transcript(*segments: TranscriptSegment) -> Transcript:
    return Transcript(
        model_id="m",
        model_version="v",
        language="en",
        language_probability=0.9,
        duration_s=60,
        speech_s=10,
        no_speech=not segments,
        avg_logprob=mean_logprob(segments),
        channels_split=False,
        segments=segments,
    )


CONFIG = WhisperSettings()


def test_mean_logprob_is_duration_weighted() -> None:
    assert mean_logprob([tseg(0, 9, -0.1), tseg(9, 10, -1.0)]) == pytest.approx(-0.19)


def test_review_reasons() -> None:
    assert review_reasons(transcript(tseg(0, 5, -0.2)), 0.5, CONFIG) == []
    (low,) = review_reasons(transcript(tseg(0, 5, -1.2)), 0.5, CONFIG)
    assert (low.stage, low.code) == ("transcribe", "low_transcript_confidence") and low.value == pytest.approx(-1.2)
    assert "low transcription confidence" in low.message
    (little,) = review_reasons(transcript(tseg(0, 1, -0.2)), 0.01, CONFIG)
    assert (little.code, little.value) == ("little_speech", 0.01) and "little speech: 1%" in little.message
    flagged = review_reasons(transcript(tseg(0, 5, -0.2, "repetition suspected")), 0.5, CONFIG)
    assert [(r.code, r.value, r.message) for r in flagged] == [
        ("repetition", 1, "1 segment(s) look like a repetition loop")
    ]
    assert review_reasons(transcript(), 0.0, CONFIG) == []  # silence is "no speech", not review


def test_wer_normalises_case_punctuation_and_numbers() -> None:
    assert normalise("Ask not, what YOUR country's two") == ["ask", "not", "what", "your", "countrys", "2"]
    assert wer("the cat sat", "The cat, sat.") == 0
    assert wer("a b c d", "a x c") == 0.5


def test_hub_ids_and_paths_pass_through(tmp_path: Path) -> None:
    assert bundled.resolve("Systran/faster-whisper-small", tmp_path) == "Systran/faster-whisper-small"
    assert bundled.resolve("/models/whisper", tmp_path) == "/models/whisper"


def test_unknown_packaged_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known: pkg:whisper-base"):
        bundled.resolve("pkg:whisper-huge", tmp_path)


def test_corrupt_joined_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = bundled.SplitModel(
        name="whisper-base",
        parts=bundled.WHISPER_BASE.parts,
        sidecar_package=bundled.WHISPER_BASE.sidecar_package,
        sha256="0" * 64,
    )
    monkeypatch.setitem(bundled._MODELS, "whisper-base", wrong)
    with pytest.raises(ConfigError, match="corrupt"):
        bundled.resolve("pkg:whisper-base", tmp_path)
    assert not (tmp_path / "whisper-base").exists()
