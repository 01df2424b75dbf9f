import wave
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import InputError
from tasks.preprocess.audio import VadParams, decode, detect_speech, probe, summarise


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def test_speech_is_found_in_a_real_recording(sample_inbox: Path) -> None:
    path = sample_inbox / "calls" / "fasterwhisper_jfk.flac"
    info = probe(path)
    samples = decode(path)
    segments = detect_speech(samples, VadParams())
    summary = summarise(samples, segments, info)
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert samples.dtype == np.float32 and abs(samples.size / 16000 - 11.0) < 0.05
    assert segments and summary.speech_ratio > 0.8


def test_vad_splits_on_silence_with_short_min_silence(tmp_path: Path) -> None:
    rate = 16000
    speech = np.concatenate([decode_jfk_seconds(2.5), np.zeros(rate * 3, np.float32), decode_jfk_seconds(2.5)])
    path = _write_wav(tmp_path / "gap.wav", speech)
    segments = detect_speech(decode(path), VadParams(min_silence_ms=500, speech_pad_ms=100))
    assert len(segments) == 2
    assert segments[0].end_s < 3.0 < 5.5 < segments[1].start_s + 0.2


def decode_jfk_seconds(seconds: float) -> np.ndarray:
    samples = decode(Path(__file__).resolve().parents[2] / "infra/sample-inbox/calls/fasterwhisper_jfk.flac")
    return samples[: int(seconds * 16000)]


def test_digital_silence_has_no_speech(tmp_path: Path) -> None:
    path = _write_wav(tmp_path / "silence.wav", np.zeros(32000, np.float32))
    samples = decode(path)
    segments = detect_speech(samples, VadParams())
    assert segments == []
    assert summarise(samples, segments, probe(path)).speech_ratio == 0.0


def test_white_noise_has_no_speech(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 16000 * 3).astype(np.float32)
    assert detect_speech(decode(_write_wav(tmp_path / "noise.wav", noise)), VadParams()) == []


def test_zero_sample_file_is_rejected(tmp_path: Path) -> None:
    path = _write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(InputError, match="audio stream unreadable"):
        decode(path)


def test_garbage_with_audio_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    with pytest.raises(InputError, match="audio stream unreadable"):
        probe(path)
        decode(path)


def test_vad_blocks_are_stitched_at_the_seams(sample_inbox: Path) -> None:
    samples = decode(sample_inbox / "calls" / "fasterwhisper_jfk.flac")
    whole = detect_speech(samples, VadParams())
    blocked = detect_speech(samples, VadParams(), block_s=4)  # seams at 4 s and 8 s, inside speech
    assert len(blocked) == len(whole) == 1
    assert blocked[0].start_s == pytest.approx(whole[0].start_s, abs=0.1)
    assert blocked[0].end_s == pytest.approx(whole[0].end_s, abs=0.1)
