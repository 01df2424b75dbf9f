"""Transcription: docflow's flow end to end vs bare faster-whisper (same model, same options), in one run.

Inputs are the corpus recordings that have reference transcripts, plus one long recording made by joining them
(with pauses) so that batched decoding has several windows to batch. Prints WER per file against the references
of ../shared/corpus/MANIFEST.md (normalised: case, punctuation, numbers), real-time factors, docflow's overhead
over bare faster-whisper (like for like: docflow also timed without finding speakers, which bare faster-whisper does
not do), batched vs sequential speedup and peak memory; each configuration is timed --repeats times and the medians
are compared (a single run of 95 s of audio swings by a second or more, e.g. as Prefect ends a run on the next
whole second of its heartbeat thread); `rtf_stages` is the time docflow's stages took by the run summary (decode and
VAD, transcription with speakers), the run without its orchestration. Then who said what on synthetic
two-party calls made from every pair of the corpus's voices (stereo, and mono with speakers found by voice), more
calls from its most alike voices (the pairs the speaker encoder finds closest: two men reading, same accent), and
with --long-minutes the peak memory of docflow's audio stage on long recordings; the key figures on the last line.
The diarization error rate needs pyannote.metrics (`pip install -e '.[bench]'`, which `make bench` does).

    .venv/bin/python bench/transcribe.py [--model pkg:whisper-base] [--copies 2] [--long-minutes 10,60,180]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.preprocess.audio import SAMPLE_RATE  # noqa: E402
from tests.support.audio import decode  # noqa: E402
from tests.support.evaluation import wer, word_errors  # noqa: E402

MAX_S = 4 * 3600.0  # DOCFLOW_MAX_AUDIO_S default

# Reference transcripts as ../shared/corpus/MANIFEST.md gives them (LDC93S1's is read from its ground-truth file).
REFERENCES = {
    "fasterwhisper_jfk.flac": "And so my fellow Americans, ask not what your country can do for you, ask what you "
    "can do for your country.",
    "ljspeech_LJ001-0004.flac": "produced the block books, which were the immediate predecessors of the true "
    "printed book,",
    "deepspeech_LDC93S1_8khz_mono.wav": None,
}
STEREO = "fasterwhisper_stereo_diarization.wav"
STEREO_REFERENCE = (
    "He began a confused complaint against the wizard, who had vanished behind the curtain on the "
    "left. The horizon seems extremely distant."
)
CLEAN = tuple(REFERENCES)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def build_inputs(corpus: Path, work: Path, copies: int) -> tuple[Path, dict[str, str], float]:
    """Copy the recordings into an inbox and add a long one joining them; return references and total seconds."""
    inbox = work / "inbox"
    inbox.mkdir()
    refs = {name: text for name, text in REFERENCES.items() if text is not None}  # LDC93S1's is read below
    # The file holds "first_sample last_sample text" (TIMIT style).
    ldc = (corpus / "ground_truth/audio/deepspeech_LDC93S1.reference.txt").read_text().split(maxsplit=2)
    refs["deepspeech_LDC93S1_8khz_mono.wav"] = ldc[2].strip()
    for name in (*CLEAN, STEREO):
        shutil.copy(corpus / "audio" / name, inbox / name)
    refs[STEREO] = STEREO_REFERENCE
    pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    pieces, texts = [], []
    for _ in range(copies):
        for name in CLEAN:
            pieces += [decode(corpus / "audio" / name, max_duration_s=MAX_S), pause]
            texts.append(refs[name])
    _write_wav(inbox / "joined_long.wav", np.concatenate(pieces))
    refs["joined_long.wav"] = " ".join(texts)
    seconds = sum(decode(p, max_duration_s=MAX_S).size for p in inbox.iterdir()) / SAMPLE_RATE
    return inbox, refs, seconds


def run_docflow(
    inbox: Path, work: Path, model: str, batch_size: int, beam_size: int, repeats: int, speakers: bool = True
) -> tuple[list[float], list[float], dict[str, str]]:
    """The real flow (Prefect, SQLite, VAD, batched Whisper, speakers by voice unless `speakers` is False); the
    timed runs are forced backfills after a warm-up run, so neither side pays for server start or model load.
    Returns each run's wall time, the time its stages took (decode and VAD, transcription; what the run summary
    reports: the run without its orchestration), and the transcripts."""
    from sqlalchemy import select

    from flows.pipeline import backfill, nightly
    from storage.db import unit_of_work
    from storage.tables import SourceObject, TranscriptRow

    db = f"sqlite:///{work / f'bench-{batch_size}-{speakers}.db'}"
    os.environ.update(
        {
            "DOCFLOW_DATABASE_URL": db,
            "DOCFLOW_SOURCE": str(inbox),
            "DOCFLOW_WHISPER_MODEL": model,
            "DOCFLOW_WHISPER_BATCH_SIZE": str(batch_size),
            "DOCFLOW_WHISPER_BEAM_SIZE": str(beam_size),
            "DOCFLOW_DERIVED_STORE": str(work / "derived"),
            "DOCFLOW_WORKERS": "1",
            "DOCFLOW_BATCH_SIZE": "16",
            "DOCFLOW_DIARIZE": "auto" if speakers else "off",
        }
    )
    nightly()
    times, stage_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        summary = backfill(since=datetime(2000, 1, 1), force=True)
        times.append(time.perf_counter() - start)
        stage_times.append(sum(stage.seconds for stage in summary.stages))
    with unit_of_work(db) as session:
        texts = dict(session.execute(select(SourceObject.key, TranscriptRow.text).join(TranscriptRow)).tuples().all())
    return times, stage_times, texts


def run_bare(
    inbox: Path, model_path: str, batch_size: int, beam_size: int, repeats: int
) -> tuple[list[float], dict[str, str]]:
    """faster-whisper on its own, doing the same work by hand: its decoder and VAD, the same model and decoding
    options, and a stereo call split into its two channels (as docflow does when they differ)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.audio import decode_audio

    model = WhisperModel(model_path, device="cpu", compute_type="int8")
    batched = BatchedInferencePipeline(model)
    options = dict(beam_size=beam_size, condition_on_previous_text=False, vad_filter=True)
    times: list[float] = []
    texts: dict[str, str] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        for path in sorted(inbox.iterdir()):
            tracks = decode_audio(str(path), split_stereo=True) if path.name == STEREO else (decode_audio(str(path)),)
            parts = []
            for samples in tracks:
                if batch_size > 1:
                    segments, _ = batched.transcribe(samples, batch_size=batch_size, **options)
                else:
                    segments, _ = model.transcribe(samples, **options)
                parts += [s.text.strip() for s in segments]
            texts[path.name] = " ".join(parts)
        times.append(time.perf_counter() - start)
    return times, texts


def measure_long(corpus: Path, minutes: int, model: str, speech_share: float = 0.25) -> dict[str, float]:
    """docflow's audio stage (decode, VAD, transcription, diarization) on one long recording, in a fresh process:
    wall time and peak RSS (the process's own high-water mark, VmHWM: ru_maxrss would carry over the bench's
    own peak across fork and exec). The recording alternates the corpus's clean sentences with silence so that about
    `speech_share` of it is speech; it is written a minute at a time."""
    import json
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        pause = np.zeros(SAMPLE_RATE * 2, np.float32)
        # Different sentences in turn: a window repeating one sentence would trip the repetition guard.
        speech = np.concatenate(
            [x for name in CLEAN for x in (decode(corpus / "audio" / name, max_duration_s=MAX_S), pause)]
        )
        gap = np.zeros(int(speech.size * (1 - speech_share) / speech_share), np.float32)
        cycle = np.concatenate([speech, gap])
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            minute, written = 60 * SAMPLE_RATE, 0
            while written < minutes * minute:
                start = written % cycle.size
                chunk = np.take(cycle, np.arange(start, start + min(minute, minutes * minute - written)), mode="wrap")
                w.writeframes((np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes())
                written += chunk.size
        code = (
            "import json,sys,time; from pathlib import Path; sys.path.insert(0, %r);"
            "from schemas.settings import load_settings;"
            "from bench.local import process_local_file;"
            "p = Path(%r); c = load_settings(whisper_model=%r);"
            "from tasks.models.whisper import load_transcriber, whisper_spec;"
            "load_transcriber(whisper_spec(c.whisper, c.device.cache_dir));"
            "t = time.perf_counter(); r = process_local_file(p, c, p.parent / 'work');"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1];"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'segments': len(r.transcript.segments),"
            " 'peak_mb': int(hwm) / 1024}))"
        ) % (str(REPO), str(path), model)
        # Default settings: not the DOCFLOW_* variables the timed runs above left in this process's environment
        # (the last of them turns speakers off).
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


# Voices for the two-party calls: every speaker the corpus has (the stereo file holds two).
VOICES = ("fasterwhisper_jfk.flac", "ljspeech_LJ001-0004.flac", "deepspeech_LDC93S1_8khz_mono.wav", "left", "right")


def _voices(corpus: Path) -> dict[str, np.ndarray]:
    """Each voice's speech with its pauses cut out, so that turns cut from it are speech end to end."""
    from schemas.settings import AudioSettings
    from tests.support.audio import decode_stereo, detect_speech

    def speech_only(samples: np.ndarray) -> np.ndarray:
        found = detect_speech(samples, AudioSettings(min_silence_ms=300, speech_pad_ms=50))
        return np.concatenate([samples[int(s.start_s * SAMPLE_RATE) : int(s.end_s * SAMPLE_RATE)] for s in found])

    left, right = decode_stereo(corpus / "audio" / STEREO, max_duration_s=MAX_S)
    voices = {name: decode(corpus / "audio" / name, max_duration_s=MAX_S) for name in VOICES[:3]}
    return {name: speech_only(samples) for name, samples in {**voices, "left": left, "right": right}.items()}


def measure_speakers(corpus: Path, model: str) -> dict[str, float]:
    """Synthetic two-party calls (12 alternating turns of 3-5 s, pauses of 0.3-0.9 s) for every pair of corpus
    voices, stereo and mono: the share of words given to the right speaker (mono with the speaker count given,
    and found from the voices), and the diarization error rate of the mono calls (pyannote.metrics, collar
    0.25 s) with the count given."""
    from itertools import combinations

    from schemas.settings import AudioSettings, DiarizationSettings, WhisperSettings
    from tasks.models.whisper import WhisperSpec, load_transcriber
    from tasks.transcribe.stage import TranscribeStage
    from tasks.transcribe.transcription import transcribe_recording
    from tests.support.audio import ArrayRecording, detect_speech
    from tests.support.evaluation import speaker_accuracy, two_party_call

    der: Any = None
    try:
        from pyannote.metrics.diarization import DiarizationErrorRate

        der = DiarizationErrorRate(collar=0.25)
    except ImportError:
        print("pyannote.metrics is not installed (pip install -e '.[bench]'): no diarization error rate")
    spec = WhisperSpec(model)  # weights unpacked under DOCFLOW_MODEL_CACHE_DIR's default
    transcriber = load_transcriber(spec)
    whisper, vad = WhisperSettings(word_timestamps=True), AudioSettings()
    diarizers = {
        "given": TranscribeStage(whisper, vad, spec, DiarizationSettings(speakers=2)).diarizer(),
        "found": TranscribeStage(whisper, vad, spec, DiarizationSettings()).diarizer(),
    }
    scores: dict[str, list[float]] = {"stereo": [], "mono_given": [], "mono_found": []}
    print(f"\n{'call':34s} {'stereo':>7s} {'mono, 2 given':>14s} {'mono, found':>12s}")
    voices = _voices(corpus)
    for seed, (a, b) in enumerate(combinations(sorted(voices.items()), 2)):
        left, right, turns = two_party_call((a[1], b[1]), seed=seed)
        mono = left + right
        speech = detect_speech(mono, vad)
        row = []
        for name, stereo, diarizer in (
            ("stereo", (left, right), None),
            ("mono_given", None, diarizers["given"]),
            ("mono_found", None, diarizers["found"]),
        ):
            recording = ArrayRecording(mono, stereo)
            transcript = transcribe_recording(transcriber, whisper, vad, recording, speech, diarizer)
            words = [(w.start_s, w.end_s, s.speaker) for s in transcript.segments for w in s.words or ()]
            scores[name].append(speaker_accuracy(words, turns))
            row.append(scores[name][-1])
            if name == "mono_given" and der is not None:
                from pyannote.core import Annotation, Segment

                reference, hypothesis = Annotation(), Annotation()
                for turn in turns:
                    reference[Segment(turn.start_s, turn.end_s)] = f"voice{turn.speaker}"
                for s in transcript.segments:
                    hypothesis[Segment(s.start_s, s.end_s)] = s.speaker
                der(reference, hypothesis)
        print(f"{a[0][:15] + ' + ' + b[0][:15]:34s} {row[0]:7.3f} {row[1]:14.3f} {row[2]:12.3f}")
    figures = {name: float(np.mean(values)) for name, values in scores.items()}
    figures["der"] = abs(der) if der is not None else float("nan")
    figures.update(_similar_voices(voices, transcriber, whisper, vad, diarizers))
    return figures


SIMILAR_PAIRS = 3  # the corpus's most alike voices, by the speaker encoder's own similarity
SIMILAR_SEEDS = (100, 101, 102)  # calls per pair


def _similar_voices(
    voices: dict[str, np.ndarray], transcriber: Any, whisper: Any, vad: Any, diarizers: dict[str, Any]
) -> dict[str, float]:
    """Two-party mono calls from the most alike pairs of voices (the cosine similarity of their mean speaker
    embeddings, highest first), SIMILAR_SEEDS calls each: who said what with the count given and found."""
    from itertools import combinations

    from tasks.models.speakers import SpeakerEncoder, SpeakerEncoderSpec
    from tasks.transcribe.transcription import transcribe_recording
    from tests.support.audio import ArrayRecording, detect_speech
    from tests.support.evaluation import speaker_accuracy, two_party_call

    encoder = SpeakerEncoder(SpeakerEncoderSpec())
    window = int(1.6 * SAMPLE_RATE)
    means = {}
    for name, samples in voices.items():
        vectors = encoder.embed([samples[i : i + window] for i in range(0, len(samples) - window + 1, window // 2)])
        means[name] = vectors.mean(axis=0) / np.linalg.norm(vectors.mean(axis=0))
    pairs = sorted(combinations(sorted(voices), 2), key=lambda p: -float(means[p[0]] @ means[p[1]]))
    scores: dict[str, list[float]] = {"similar_given": [], "similar_found": []}
    print(f"\n{'most alike voices (similarity)':44s} {'mono, 2 given':>14s} {'mono, found':>12s}")
    for a, b in pairs[:SIMILAR_PAIRS]:
        for seed in SIMILAR_SEEDS:
            left, right, turns = two_party_call((voices[a], voices[b]), seed=seed)
            speech = detect_speech(left + right, vad)
            row = []
            for name in ("given", "found"):
                transcript = transcribe_recording(
                    transcriber, whisper, vad, ArrayRecording(left + right, None), speech, diarizers[name]
                )
                words = [(w.start_s, w.end_s, s.speaker) for s in transcript.segments for w in s.words or ()]
                scores[f"similar_{name}"].append(speaker_accuracy(words, turns))
                row.append(scores[f"similar_{name}"][-1])
            label = f"{a[:15]} + {b[:15]} ({float(means[a] @ means[b]):.2f}), call {seed}"
            print(f"{label:44s} {row[0]:14.3f} {row[1]:12.3f}")
    return {name: float(np.mean(values)) for name, values in scores.items()}


def measure_languages(corpus: Path, model: str) -> dict[str, Any]:
    """A recording that switches language three times (English from the corpus, then German, English, French from
    espeak-ng's voices): the languages docflow stores, and the share of words transcribed in the language spoken."""
    from schemas.settings import AudioSettings, WhisperSettings
    from tasks.models.whisper import WhisperSpec, load_transcriber
    from tasks.transcribe.transcription import transcribe_recording
    from tests.support.audio import ArrayRecording, detect_speech
    from tests.support.evaluation import SCRIPTS, LanguageSpan, language_accuracy, synthesized_speech

    english = [decode(corpus / "audio" / name, max_duration_s=MAX_S) for name in CLEAN[:2]]
    parts = [("en", np.concatenate(english)), ("de", synthesized_speech(SCRIPTS["de"], "de"))]
    parts += [("en", decode(corpus / "audio" / CLEAN[0], max_duration_s=MAX_S))]
    parts += [("fr", synthesized_speech(SCRIPTS["fr"], "fr"))]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    truth, at = [], 0.0
    for language, samples in parts:
        truth.append(LanguageSpan(at, at + samples.size / SAMPLE_RATE, language))
        at += (samples.size + pause.size) / SAMPLE_RATE
    mix = np.concatenate([x for _, samples in parts for x in (samples, pause)])
    transcript = transcribe_recording(
        load_transcriber(WhisperSpec(model)),
        WhisperSettings(),
        AudioSettings(),
        ArrayRecording(mix),
        detect_speech(mix, AudioSettings()),
        None,
    )
    segments = [(s.start_s, s.end_s, s.language or "", s.text) for s in transcript.segments]
    return {"accuracy": language_accuracy(segments, truth), "languages": transcript.languages, "seconds": at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--model", default="pkg:whisper-base")
    parser.add_argument("--copies", type=int, default=3, help="times the clean files repeat in the long recording")
    parser.add_argument("--beam", type=int, default=5, help="beam size for both sides")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each configuration (their median is reported)"
    )
    parser.add_argument(
        "--long-minutes",
        default="",
        help="also run docflow's audio stage on recordings this long (comma-separated minutes, e.g. 10,60,180) and "
        "report peak memory",
    )
    parser.add_argument("--long-model", default="pkg:whisper-tiny.en", help="model for the long recording")
    parser.add_argument("--no-speakers", action="store_true", help="skip the two-party call speaker benchmark")
    parser.add_argument("--no-languages", action="store_true", help="skip the language switching benchmark")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from schemas.defaults import model_cache_dir
    from tasks.models.bundled import resolve

    model_path = resolve(args.model, model_cache_dir())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inbox, refs, audio_s = build_inputs(args.corpus, work, args.copies)
        repeats = args.repeats
        ours_times, ours_stage_times, ours = run_docflow(inbox, work, args.model, 8, args.beam, repeats)
        ours_seq_times, _, _ = run_docflow(inbox, work, args.model, 1, args.beam, repeats)
        # Like for like: bare faster-whisper finds no speakers, so docflow is also timed without (same run).
        plain_times, _, _ = run_docflow(inbox, work, args.model, 8, args.beam, repeats, speakers=False)
        bare_times, bare = run_bare(inbox, model_path, 8, args.beam, repeats)
        bare_seq_times, _ = run_bare(inbox, model_path, 1, args.beam, repeats)
    ours_t, ours_seq_t, plain_t, bare_t, bare_seq_t, stages_t = (
        float(np.median(times))
        for times in (ours_times, ours_seq_times, plain_times, bare_times, bare_seq_times, ours_stage_times)
    )

    print(
        f"model {args.model}, beam {args.beam}, {audio_s:.1f} s of audio in {len(refs)} recordings, 2-core CPU int8\n"
    )
    print(f"{'recording':36s} {'WER docflow':>11s} {'WER bare':>9s}")
    clean_errors = [0, 0]
    for name in sorted(refs):
        print(f"{name:36s} {wer(refs[name], ours.get(name, '')):11.3f} {wer(refs[name], bare.get(name, '')):9.3f}")
        if name in CLEAN:
            e, n = word_errors(refs[name], ours.get(name, ""))
            clean_errors[0] += e
            clean_errors[1] += n
    wer_clean = clean_errors[0] / clean_errors[1]
    wer_mean = sum(wer(refs[n], ours.get(n, "")) for n in refs) / len(refs)
    rtf, rtf_bare = ours_t / audio_s, bare_t / audio_s
    print(f"\n{'':24s} {'batched s':>10s} {'sequential s':>13s} {'RTF':>6s} {'speedup':>8s}")
    print(f"{'docflow flow':24s} {ours_t:10.2f} {ours_seq_t:13.2f} {rtf:6.3f} {ours_seq_t / ours_t:8.2f}")
    print(f"{'docflow, no speakers':24s} {plain_t:10.2f} {'':13s} {plain_t / audio_s:6.3f}")
    print(f"{'bare faster-whisper':24s} {bare_t:10.2f} {bare_seq_t:13.2f} {rtf_bare:6.3f} {bare_seq_t / bare_t:8.2f}")
    print(f"(medians of {repeats} runs each; every run, batched, in seconds:")
    for name, times in (("docflow", ours_times), ("docflow, no speakers", plain_times), ("bare", bare_times)):
        print(f"  {name}: {', '.join(f'{t:.2f}' for t in times)}")
    stage_list = ", ".join(f"{t:.2f}" for t in ours_stage_times)
    print(f"  docflow's stages (decode and VAD, transcription with speakers): {stage_list}")
    print(")")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nclean read speech WER {wer_clean:.3f}; docflow {1 / rtf:.1f}x real time; overhead {ours_t / bare_t:.2f} "
        f"(like for like, without speakers: {plain_t / bare_t:.2f}); peak RSS {peak:.0f} MB"
    )
    long_figures = ""
    for minutes in [int(m) for m in args.long_minutes.split(",") if m.strip()]:
        long = measure_long(args.corpus, minutes, args.long_model)
        print(
            f"{minutes}-minute recording ({args.long_model}, a quarter of it speech): {long['seconds']:.0f} s, "
            f"RTF {long['seconds'] / (minutes * 60):.3f}, {long['segments']} segments, "
            f"peak RSS {long['peak_mb']:.0f} MB"
        )
        long_figures += f" rss_{minutes}min_mb={long['peak_mb']:.0f}"
    speakers = ""
    if not args.no_speakers:
        calls = measure_speakers(args.corpus, args.model)
        print(
            f"speaker accuracy: stereo {calls['stereo']:.3f}, mono (2 given) {calls['mono_given']:.3f}, "
            f"mono (found) {calls['mono_found']:.3f}; DER (mono, 2 given) {calls['der']:.3f}"
        )
        print(
            f"most alike voices: speaker accuracy (2 given) {calls['similar_given']:.3f}, (found) "
            f"{calls['similar_found']:.3f}"
        )
        speakers = (
            f" mono_speaker_accuracy={calls['mono_given']:.3f} mono_found_speaker_accuracy={calls['mono_found']:.3f}"
            f" stereo_speaker_accuracy={calls['stereo']:.3f} der={calls['der']:.3f}"
            f" similar_given_speaker_accuracy={calls['similar_given']:.3f}"
            f" similar_found_speaker_accuracy={calls['similar_found']:.3f}"
        )
    languages = ""
    if not args.no_languages and not args.model.endswith(".en"):
        switching = measure_languages(args.corpus, args.model)
        print(
            f"language switching (en, de, en, fr; {switching['seconds']:.0f} s): languages "
            f"{', '.join(switching['languages'])}, words in the language spoken {switching['accuracy']:.3f}"
        )
        languages = f" language_accuracy={switching['accuracy']:.3f}"
    print(
        f"wer_mean={wer_mean:.3f} wer_clean={wer_clean:.3f} rtf={rtf:.3f} rtf_bare={rtf_bare:.3f} "
        f"overhead={plain_t / bare_t:.2f} overhead_with_speakers={ours_t / bare_t:.2f} rtf_stages="
        f"{stages_t / audio_s:.3f} overhead_stages={stages_t / bare_t:.2f} rtf_no_speakers="
        f"{plain_t / audio_s:.3f} batch_speedup={ours_seq_t / ours_t:.2f} "
        f"bare_batch_speedup={bare_seq_t / bare_t:.2f} peak_rss_mb={peak:.0f}{speakers}{languages}{long_figures}"
    )


if __name__ == "__main__":
    main()
