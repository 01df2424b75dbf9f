import gc
import json
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import InputError
from schemas.settings import AudioSettings
from tasks.preprocess.audio import StreamInfo, check_limits, probe, summarise
from tests.support.audio import decode, decode_stereo, detect_speech

REPO_ROOT = Path(__file__).resolve().parents[2]
JFK = REPO_ROOT / "infra/sample-inbox/calls/fasterwhisper_jfk.flac"
MAX_S = 4 * 3600.0  # DOCFLOW_MAX_AUDIO_S's default


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def _silent_wav(path: Path, rate: int, frames: int, block: int = 1 << 20) -> Path:
    """Mono 16-bit silence with whatever rate the header should declare, written in blocks (no big buffer)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        zeros = bytes(2 * min(block, frames))
        for start in range(0, frames, block):
            w.writeframes(zeros[: 2 * min(block, frames - start)])
    return path


def _flac_declaring(path: Path, rate: int, seconds: float, declared_s: float) -> Path:
    """A FLAC of `seconds` of a tone whose STREAMINFO claims `declared_s`: a header that lies about its length."""
    import av

    tone = (np.sin(np.arange(int(seconds * rate)) / 5) * 10000).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        for start in range(0, tone.size, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    (fields,) = struct.unpack_from(">Q", data, 8 + 10)  # STREAMINFO: rate (20 bits) ... total samples (36 bits)
    fields = (fields & ~((1 << 36) - 1)) | int(declared_s * rate)
    struct.pack_into(">Q", data, 8 + 10, fields)
    path.write_bytes(bytes(data))
    return path


def _decode_in_subprocess(path: Path, max_duration_s: float, stereo: bool = False) -> dict:
    """Decodes in a fresh interpreter, which reports its outcome and its own peak RSS (so a bomb cannot hurt us)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from schemas.errors import InputError\n"
        "from tests.support import audio\n"
        "decoder = audio.decode_stereo if sys.argv[3] == '1' else audio.decode\n"
        "try:\n"
        "    out = decoder(Path(sys.argv[1]), max_duration_s=float(sys.argv[2]))\n"
        "    result = {'samples': (out[0] if isinstance(out, tuple) else out).size}\n"
        "except InputError as exc:\n"
        "    result = {'code': exc.error.code, 'message': exc.error.message}\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a big pytest process
        # would report its parent's size; the high-water mark of the new address space starts at exec.
        "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "result['peak_mb'] = int(hwm.split()[1]) / 1024\n"
        "print(json.dumps(result))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path), str(max_duration_s), "1" if stereo else "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_speech_is_found_in_a_real_recording(sample_inbox: Path) -> None:
    path = sample_inbox / "calls" / "fasterwhisper_jfk.flac"
    info = probe(path)
    samples = decode(path, max_duration_s=MAX_S)
    segments = detect_speech(samples, AudioSettings())
    summary = summarise(samples.size, segments, info)
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration_s == pytest.approx(11.0, abs=0.01)
    assert samples.dtype == np.float32 and abs(samples.size / 16000 - 11.0) < 0.05
    assert segments and summary.speech_ratio > 0.8


@pytest.mark.parametrize("name", ["fasterwhisper_jfk.flac", "fasterwhisper_stereo_diarization.wav"])
def test_decoding_matches_faster_whisper(sample_inbox: Path, name: str) -> None:
    from faster_whisper.audio import decode_audio

    path = sample_inbox / "calls" / name
    ours = [decode(path, max_duration_s=MAX_S), *decode_stereo(path, max_duration_s=MAX_S)]
    theirs = [decode_audio(str(path), sampling_rate=16000), *decode_audio(str(path), split_stereo=True)]
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.dtype == np.float32 and mine.flags.c_contiguous
        assert abs(mine.size - reference.size) <= 4
        n = min(mine.size, reference.size)
        assert np.abs(mine[:n] - reference[:n]).max() < 1e-3
    left, right = ours[1:]
    assert name != "fasterwhisper_stereo_diarization.wav" or not np.array_equal(left, right)


def test_decoding_leaves_nothing_for_the_garbage_collector() -> None:
    """PyAV's objects are freed by reference counting, so decoding never needs a full gc.collect() (measured: 0.2 s
    in a worker holding torch, Prefect and the models, once per recording). Only PyAV's garbage is counted: other
    threads of the test session may leave their own while the collector is off."""
    decode_stereo(JFK, max_duration_s=MAX_S)  # first use imports PyAV's submodules
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds stays in gc.garbage, to be looked at
    try:
        decode(JFK, max_duration_s=MAX_S)
        decode_stereo(JFK, max_duration_s=MAX_S)
        gc.collect()
        from_pyav = [type(o).__qualname__ for o in gc.garbage if type(o).__module__.split(".")[0] == "av"]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert from_pyav == []


def test_mono_file_gives_the_same_samples_on_both_sides(tmp_path: Path) -> None:
    tone = np.sin(np.arange(8000 * 2) / 7).astype(np.float32) * 0.5
    path = _write_wav(tmp_path / "mono.wav", tone, rate=8000)
    left, right = decode_stereo(path, max_duration_s=MAX_S)
    assert np.array_equal(left, right) and left.size == 32000
    assert left.dtype == right.dtype == np.float32


def test_vad_splits_on_silence_with_short_min_silence(tmp_path: Path) -> None:
    rate = 16000
    speech = np.concatenate([decode_jfk_seconds(2.5), np.zeros(rate * 3, np.float32), decode_jfk_seconds(2.5)])
    path = _write_wav(tmp_path / "gap.wav", speech)
    segments = detect_speech(decode(path, max_duration_s=MAX_S), AudioSettings(min_silence_ms=500, speech_pad_ms=100))
    assert len(segments) == 2
    assert segments[0].end_s < 3.0 and segments[1].start_s > 5.5 - 0.2


def decode_jfk_seconds(seconds: float) -> np.ndarray:
    samples = decode(JFK, max_duration_s=MAX_S)
    return samples[: int(seconds * 16000)]


def test_digital_silence_has_no_speech(tmp_path: Path) -> None:
    path = _write_wav(tmp_path / "silence.wav", np.zeros(32000, np.float32))
    samples = decode(path, max_duration_s=MAX_S)
    segments = detect_speech(samples, AudioSettings())
    assert segments == []
    assert summarise(samples.size, segments, probe(path)).speech_ratio == 0.0


def test_white_noise_has_no_speech(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 16000 * 3).astype(np.float32)
    assert detect_speech(decode(_write_wav(tmp_path / "noise.wav", noise), max_duration_s=MAX_S), AudioSettings()) == []


def test_zero_sample_file_is_rejected(tmp_path: Path) -> None:
    path = _write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(InputError, match="audio stream unreadable") as excinfo:
        decode(path, max_duration_s=MAX_S)
    assert excinfo.value.error.code == "no_samples"


def test_garbage_with_audio_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    with pytest.raises(InputError, match="audio stream unreadable"):
        probe(path)
    with pytest.raises(InputError, match="audio stream unreadable"):
        decode(path, max_duration_s=MAX_S)


def test_vad_blocks_are_stitched_at_the_seams(sample_inbox: Path) -> None:
    samples = decode(sample_inbox / "calls" / "fasterwhisper_jfk.flac", max_duration_s=MAX_S)
    whole = detect_speech(samples, AudioSettings())
    blocked = detect_speech(samples, AudioSettings(), block_s=4)  # seams at 4 s and 8 s, inside speech
    assert len(blocked) == len(whole) == 1
    assert blocked[0].start_s == pytest.approx(whole[0].start_s, abs=0.1)
    assert blocked[0].end_s == pytest.approx(whole[0].end_s, abs=0.1)


def test_probe_reports_the_declared_duration(tmp_path: Path) -> None:
    info = probe(_silent_wav(tmp_path / "three.wav", rate=8000, frames=24000))
    assert info == StreamInfo(sample_rate=8000, channels=1, duration_s=3.0)


@pytest.mark.parametrize("rate", [1, 1999, 768_001, 10**9])
def test_absurd_sample_rates_are_rejected(rate: int) -> None:
    with pytest.raises(InputError) as excinfo:
        check_limits(StreamInfo(sample_rate=rate, channels=1, duration_s=1.0), MAX_S)
    assert excinfo.value.error.code == "bad_sample_rate"
    assert excinfo.value.error.message == (
        f"audio stream unreadable: declared sample rate {rate} Hz is outside 2000-768000 Hz"
    )


def test_declared_duration_over_the_cap_is_rejected() -> None:
    with pytest.raises(InputError) as excinfo:
        check_limits(StreamInfo(sample_rate=44100, channels=2, duration_s=5.2 * 3600), MAX_S)
    assert excinfo.value.error.code == "too_long"
    assert excinfo.value.error.message == "recording too long: 5.2 h exceeds the 4.0 h limit (DOCFLOW_MAX_AUDIO_S)"


@pytest.mark.parametrize(
    "info",
    [
        StreamInfo(sample_rate=2000, channels=1, duration_s=MAX_S),
        StreamInfo(sample_rate=768_000, channels=2, duration_s=1.0),
        StreamInfo(sample_rate=None, channels=None, duration_s=None),  # unknown: decode() checks as it goes
    ],
)
def test_sane_or_unknown_streams_pass_the_limits(info: StreamInfo) -> None:
    check_limits(info, MAX_S)


def test_one_hertz_wav_is_rejected_without_allocating_gigabytes(tmp_path: Path) -> None:
    # 32 KB declaring 1 Hz: 16,384 samples that resample to 262 M at 16 kHz; faster-whisper's decoder took 5.8 GB.
    path = _silent_wav(tmp_path / "one-hertz.wav", rate=1, frames=16 * 1024)
    with pytest.raises(InputError) as excinfo:
        check_limits(probe(path), MAX_S)
    assert excinfo.value.error.code == "bad_sample_rate"
    assert "declared sample rate 1 Hz" in excinfo.value.error.message

    result = _decode_in_subprocess(path, MAX_S)  # decode() alone, with no check_limits in front of it
    print(f"1 Hz WAV: decode peak RSS {result['peak_mb']:.0f} MB")
    assert result.get("code") == "bad_sample_rate", result
    assert result["peak_mb"] < 500


def test_cap_is_enforced_while_decoding(tmp_path: Path) -> None:
    path = _silent_wav(tmp_path / "three.wav", rate=8000, frames=3 * 8000)
    with pytest.raises(InputError) as excinfo:
        decode(path, max_duration_s=2)
    assert excinfo.value.error.code == "too_long"
    assert "DOCFLOW_MAX_AUDIO_S" in excinfo.value.error.message
    assert decode(path, max_duration_s=3).size == 3 * 16000  # exactly at the cap is allowed


def test_a_header_that_understates_the_length_does_not_beat_the_cap(tmp_path: Path) -> None:
    path = _flac_declaring(tmp_path / "lying.flac", rate=8000, seconds=3, declared_s=1)
    info = probe(path)
    assert info.duration_s == pytest.approx(1.0)
    check_limits(info, 2)  # the header passes...
    for decoder in (decode, decode_stereo):
        with pytest.raises(InputError) as excinfo:  # ...the audio does not
            decoder(path, max_duration_s=2)
        assert excinfo.value.error.code == "too_long"
    assert decode(path, max_duration_s=4).size == 3 * 16000


def test_two_hour_recording_decodes_in_bounded_memory(tmp_path: Path) -> None:
    seconds = 2 * 3600
    path = _silent_wav(tmp_path / "two-hours.wav", rate=16000, frames=seconds * 16000)
    result = _decode_in_subprocess(path, MAX_S)
    print(f"2 h 16 kHz mono WAV: decode peak RSS {result['peak_mb']:.0f} MB")
    assert result.get("samples") == seconds * 16000, result
    assert result["peak_mb"] < 1500  # float32 output alone is 461 MB; int16 chunks another 230 MB


def test_a_recording_decoded_to_disk_reads_back_as_decoded_in_memory(sample_inbox: Path, tmp_path: Path) -> None:
    from tasks.preprocess.audio import decode_to_disk, iter_blocks, speech_of

    path = sample_inbox / "calls" / "fasterwhisper_stereo_diarization.wav"
    left, right = decode_stereo(path, max_duration_s=MAX_S)
    recording, speech = decode_to_disk(path, tmp_path / "audio.pcm", stereo=True, params=AudioSettings())
    assert (recording.channels, recording.samples, recording.channels_differ) == (2, left.size, True)
    assert np.array_equal(recording.read(1.0, 2.5, 0), left[16000:40000])
    assert np.array_equal(recording.read(1.0, 2.5, 1), right[16000:40000])
    assert np.allclose(recording.read(0, 99), (left + right) / 2, atol=1e-4)  # the mix; reads stop at the end
    assert speech == detect_speech((left + right) / 2, AudioSettings())
    assert speech_of(recording, 1, AudioSettings()) == detect_speech(right, AudioSettings())
    # Decoding goes a block at a time: what is in memory is one block, however long the recording.
    blocks = list(iter_blocks(path, stereo=False, max_duration_s=MAX_S, block_s=2))
    assert [b.shape[0] >= 2 * 16000 for b in blocks[:-1]] == [True] * (len(blocks) - 1)
    assert sum(b.shape[0] for b in blocks) == left.size
