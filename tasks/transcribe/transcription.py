"""Turning a decoded recording into a transcript: clips from VAD, stereo calls split by channel, hallucination
guards, and the review signals. The model is reached only through WhisperTranscriber."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import overload

import numpy as np

from schemas.records import ReviewReason, SpeechSegment, Transcript, TranscriptSegment, Word
from schemas.settings import AudioSettings, WhisperSettings
from tasks.models.whisper import RawSegment, RawTranscription, WhisperTranscriber
from tasks.pipeline.stage import Recording
from tasks.preprocess.audio import SAMPLE_RATE, frame_loudness, speech_of
from tasks.transcribe.diarize import Turn, attribute

MAX_CLIP_S = 30.0  # Whisper's window
WINDOWS_PER_CALL = 32
# A window detected with less confidence than this may hold two languages (speech packed end to end runs across
# a switch): its language is checked again sentence by sentence.
LANGUAGE_SURE = 0.8


@dataclass(frozen=True)
class SpeechLayout:
    """Speech cut out of a recording and laid end to end, as faster-whisper's own VAD path does: silence is never
    decoded, and windows of up to 30 s are filled with speech, cut only between speech segments.

    pieces: (start in the speech-only timeline, start in the recording, duration), in order.
    windows: (start, end) in the speech-only timeline, each at most `max_s` long."""

    pieces: tuple[tuple[float, float, float], ...]
    windows: tuple[tuple[float, float], ...]

    def piece_of(self, t: float) -> int:
        """The piece holding time `t` of the speech-only timeline."""
        return max(bisect.bisect_right([p[0] for p in self.pieces], t) - 1, 0)

    def piece_end(self, piece: int) -> float:
        """Where a piece ends in the speech-only timeline."""
        return self.pieces[piece][0] + self.pieces[piece][2]

    def pause_between(self, first: int | None, second: int) -> bool:
        """Whether the recording pauses between two pieces (pieces of one long segment follow on without one)."""
        if first is None or first == second:
            return False
        _, start, duration = self.pieces[first]
        return self.pieces[second][1] - (start + duration) > 1e-3

    def to_original(self, t: float, is_end: bool = False, piece: int | None = None) -> float:
        """Time `t` of the speech-only timeline in the recording; with `piece`, kept within that piece."""
        if piece is None:
            starts = [p[0] for p in self.pieces]
            piece = max(bisect.bisect_right(starts, t) - 1, 0)
            if is_end and piece > 0 and t <= starts[piece]:
                piece -= 1  # an end on a boundary belongs to the piece before it
        concat_start, original_start, duration = self.pieces[piece]
        return original_start + min(max(t - concat_start, 0.0), duration)


def layout_speech(segments: Sequence[SpeechSegment], max_s: float = MAX_CLIP_S) -> SpeechLayout:
    pieces: list[tuple[float, float, float]] = []
    cursor = 0.0
    for seg in segments:
        start = seg.start_s
        while start < seg.end_s:  # VAD caps segments at 30 s already; this keeps the layout safe regardless
            duration = min(seg.end_s - start, max_s)
            pieces.append((cursor, start, duration))
            cursor += duration
            start += duration
    windows: list[tuple[float, float]] = []
    for concat_start, _, duration in pieces:
        if windows and concat_start + duration - windows[-1][0] <= max_s:
            windows[-1] = (windows[-1][0], concat_start + duration)
        else:
            windows.append((concat_start, concat_start + duration))
    return SpeechLayout(tuple(pieces), tuple(windows))


def speech_only(samples: np.ndarray, layout: SpeechLayout) -> np.ndarray:
    """The layout's pieces of `samples` end to end, each exactly as long as the layout says (a piece that runs a
    few samples past the end of the recording, by rounding, is padded with silence)."""
    parts = []
    for _, orig, duration in layout.pieces:
        length = round(duration * SAMPLE_RATE)
        part = samples[round(orig * SAMPLE_RATE) : round(orig * SAMPLE_RATE) + length]
        parts.append(np.pad(part, (0, length - part.size)) if part.size < length else part)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def guard(raw: RawSegment, options: WhisperSettings) -> tuple[bool, str | None]:
    """(keep, flag): Whisper's own no-speech rule drops invented text over silence; a high compression ratio
    (the same words again and again) is kept but flagged for a person to check."""
    if raw.no_speech_prob > options.no_speech_threshold and raw.avg_logprob < options.log_prob_threshold:
        return False, None
    if not raw.text.strip():
        return False, None
    if raw.compression_ratio > options.compression_ratio_threshold:
        return True, f"repetition suspected (compression ratio {raw.compression_ratio:.1f})"
    return True, None


def _utterances(
    raw: RawSegment, layout: SpeechLayout, speaker: str, channel: int | None, flag: str | None
) -> list[TranscriptSegment]:
    """A model segment as the utterances it holds, in recording time. Speech was packed end to end, so one model
    segment can run across a pause that was cut out: its words are split where they fall into different speech
    pieces that a pause separates, and each part is mapped back on its own."""

    def segment(start_s: float, end_s: float, text: str, words: tuple[Word, ...] | None) -> TranscriptSegment:
        return TranscriptSegment(
            start_s=start_s,
            end_s=end_s,
            text=text,
            speaker=speaker,
            channel=channel,
            language=raw.language,
            avg_logprob=raw.avg_logprob,
            no_speech_prob=raw.no_speech_prob,
            compression_ratio=raw.compression_ratio,
            flagged=flag,
            words=words,
        )

    if not raw.words:
        start, end = layout.to_original(raw.start), layout.to_original(raw.end, True)
        return [segment(round(start, 3), round(end, 3), raw.text.strip(), None)]
    parts: list[list[Word]] = []
    last_piece = None
    for w in raw.words:
        piece = layout.piece_of((w.start + w.end) / 2)
        if w.start >= layout.piece_end(piece):  # after the last speech of its window: a continuation Whisper made up
            continue
        word = Word(
            start_s=round(layout.to_original(w.start, piece=piece), 3),
            end_s=round(layout.to_original(w.end, True, piece=piece), 3),
            word=w.word,
            probability=w.probability,
        )
        if parts and (piece == last_piece or not layout.pause_between(last_piece, piece)):
            parts[-1].append(word)
        else:
            parts.append([word])
        last_piece = piece
    parts = [words for words in parts if "".join(w.word for w in words).strip()]
    return [
        segment(
            words[0].start_s,
            max(words[-1].end_s, words[0].start_s),
            "".join(w.word for w in words).strip(),
            tuple(words),
        )
        for words in parts
    ]


def _tightened(segment: TranscriptSegment, samples: np.ndarray, frame_s: float = 0.02) -> TranscriptSegment:
    """The segment without the quiet that Whisper's word timing lets its first and last word run into (the VAD's
    padding around speech): start and end move in to the first and last 20 ms that are audible (a tenth of the
    segment's loudest), never beyond the first or last word."""
    if not segment.words:
        return segment
    frame = int(frame_s * SAMPLE_RATE)
    offset = int(segment.start_s * SAMPLE_RATE) // frame * frame
    clip = samples[offset : int(segment.end_s * SAMPLE_RATE)]
    if clip.size < 2 * frame:
        return segment
    rms = frame_loudness(clip, frame_s)
    audible = np.flatnonzero(rms > 0.1 * rms.max())
    if audible.size == 0:
        return segment
    first, last = segment.words[0], segment.words[-1]
    start = min(max(segment.start_s, (offset + audible[0] * frame) / SAMPLE_RATE), first.end_s)
    end = max(min(segment.end_s, (offset + (audible[-1] + 1) * frame) / SAMPLE_RATE), last.start_s, start)
    words = list(segment.words)
    words[0] = first.model_copy(update={"start_s": round(start, 3)})
    words[-1] = words[-1].model_copy(update={"end_s": round(max(end, words[-1].start_s), 3)})
    return segment.model_copy(update={"start_s": round(start, 3), "end_s": round(end, 3), "words": tuple(words)})


def mean_logprob(segments: Sequence[TranscriptSegment]) -> float | None:
    """Duration-weighted mean of the segments' average log-probabilities."""
    total = sum(max(s.end_s - s.start_s, 1e-3) for s in segments)
    if not total:
        return None
    return sum(s.avg_logprob * max(s.end_s - s.start_s, 1e-3) for s in segments) / total


Diarizer = Callable[[Recording, Sequence[SpeechSegment]], list[Turn]]
# Speech is transcribed a span of the recording at a time, so that memory never holds more than this much audio.
SPAN_S = 600.0


def speech_spans(
    speech: Sequence[SpeechSegment], max_s: float = SPAN_S
) -> list[tuple[float, float, list[SpeechSegment]]]:
    """Consecutive speech segments grouped into spans of the recording at most `max_s` long: (start, end,
    segments)."""
    spans: list[tuple[float, float, list[SpeechSegment]]] = []
    for segment in speech:
        if spans and segment.end_s - spans[-1][0] <= max_s:
            spans[-1] = (spans[-1][0], segment.end_s, [*spans[-1][2], segment])
        else:
            spans.append((segment.start_s, segment.end_s, [segment]))
    return spans


def transcribe_recording(
    transcriber: WhisperTranscriber,
    config: WhisperSettings,
    vad: AudioSettings,
    recording: Recording,
    speech: Sequence[SpeechSegment],
    diarizer: Diarizer | None = None,
) -> Transcript:
    """Transcribe a recording whose speech segments (of the mix) are known. A stereo call whose channels differ
    (or any stereo recording with split_stereo=on) is transcribed channel by channel, one speaker per channel;
    otherwise `diarizer` (when given) finds the speakers by voice. The recording is read a span at a time, so
    memory does not grow with its length. Segments come back as utterances in time order."""
    split = recording.channels == 2 and (config.split_stereo == "on" or recording.channels_differ)
    tracks: list[tuple[int | None, str, list[SpeechSegment]]]
    if split:
        tracks = [(i, f"SPEAKER_{i}", speech_of(recording, i, vad)) for i in (0, 1)]
    else:
        tracks = [(None, "SPEAKER_0", list(speech))]
    segments: list[TranscriptSegment] = []
    dropped = 0
    detected: list[tuple[str, float]] = []
    for channel, speaker, track_speech in tracks:
        for span_start, span_end, span_speech in speech_spans(track_speech):
            samples = recording.read(span_start, span_end, channel)
            layout = layout_speech([_shift(s, -span_start) for s in span_speech])
            speech_samples = speech_only(samples, layout)
            # Word timings place utterances where a window packs several pieces of speech, and speakers by voice.
            words = config.word_timestamps or len(layout.pieces) > len(layout.windows) or (diarizer and not split)
            # Windows go to the model a group at a time, so features never exist for a whole span at once.
            for first in range(0, len(layout.windows), WINDOWS_PER_CALL):
                group = layout.windows[first : first + WINDOWS_PER_CALL]
                raw = transcriber.transcribe(speech_samples, group, config, words=bool(words))
                if config.language is None and transcriber.multilingual:
                    raw = _relanguaged(transcriber, speech_samples, group, raw, config, bool(words))
                if raw.language and raw.language_probability is not None:
                    detected.append((raw.language, raw.language_probability))
                for item in raw.segments:
                    keep, flag = guard(item, config)
                    if not keep:
                        dropped += 1
                        continue
                    for utterance in _utterances(item, layout, speaker, channel, flag):
                        segments.append(_shift(_tightened(utterance, samples), span_start))
    if diarizer is not None and not split and segments:
        segments = attribute(segments, diarizer(recording, speech))
    segments.sort(key=lambda s: (s.start_s, s.channel or 0))
    if not config.word_timestamps:  # words were needed to place utterances and speakers; storing them is optional
        segments = [s.model_copy(update={"words": None}) for s in segments]
    languages = _languages(segments)
    best = max(detected, key=lambda d: d[1], default=(config.language, None))
    return Transcript(
        model_id=transcriber.model_id,
        model_version=transcriber.model_version,
        language=(languages[0] if languages else best[0]) if segments else None,
        language_probability=best[1] if segments else None,
        languages=languages,
        duration_s=round(recording.samples / SAMPLE_RATE, 3),
        speech_s=round(sum(s.end_s - s.start_s for s in speech), 3),
        no_speech=not segments,
        avg_logprob=mean_logprob(segments),
        channels_split=split,
        segments=tuple(segments),
        dropped_segments=dropped,
    )


def _relanguaged(
    transcriber: WhisperTranscriber,
    samples: np.ndarray,
    windows: Sequence[tuple[float, float]],
    raw: RawTranscription,
    config: WhisperSettings,
    words: bool,
) -> RawTranscription:
    """`raw` with every window whose language was unsure checked a few seconds at a time: when the parts are in
    more than one language, the window is decoded again as one clip per run of parts in one language, each in its
    own. Windows detected with confidence cost nothing more."""
    segments = list(raw.segments)
    for (start, end), (_, probability) in zip(windows, raw.windows, strict=False):
        if probability is None or probability >= LANGUAGE_SURE:
            continue
        bounds = [start, *_quiet_cuts(samples, start, end), end]
        found = transcriber.detect_languages(samples, list(itertools.pairwise(bounds)))
        runs: list[tuple[str, float, float]] = []  # (language, start, end)
        for (clip_start, clip_end), (language, _) in zip(itertools.pairwise(bounds), found, strict=True):
            if runs and runs[-1][0] == language:
                runs[-1] = (language, runs[-1][1], clip_end)
            else:
                runs.append((language, clip_start, clip_end))
        if len(runs) < 2:
            continue
        segments = [s for s in segments if not start <= s.start < end]
        for language in dict.fromkeys(language for language, *_ in runs):  # one call per language
            clips = [(clip_start, clip_end) for lang, clip_start, clip_end in runs if lang == language]
            forced = config.model_copy(update={"language": language})
            segments += transcriber.transcribe(samples, clips, forced, words=words).segments
    segments.sort(key=lambda s: s.start)
    return replace(raw, segments=segments)


def _quiet_cuts(samples: np.ndarray, start: float, end: float, every_s: float = 5.0) -> list[float]:
    """Times inside [start, end] about `every_s` apart, each moved to the quietest 20 ms within a second of it,
    so that a cut falls between words."""
    frame_s = 0.02
    cuts = []
    for target in np.arange(start + every_s, end - every_s / 2, every_s):
        lo = max(target - 1.0, start)
        loudness = frame_loudness(samples[round(lo * SAMPLE_RATE) : round((target + 1.0) * SAMPLE_RATE)], frame_s)
        if loudness.size:
            cuts.append(round(float(lo) + (int(np.argmin(loudness)) + 0.5) * frame_s, 3))
    return cuts


@overload
def _shift(item: SpeechSegment, offset: float) -> SpeechSegment: ...
@overload
def _shift(item: TranscriptSegment, offset: float) -> TranscriptSegment: ...
def _shift(item: SpeechSegment | TranscriptSegment, offset: float) -> SpeechSegment | TranscriptSegment:
    """The same segment `offset` seconds later (its words too)."""
    update: dict[str, object] = {"start_s": round(item.start_s + offset, 3), "end_s": round(item.end_s + offset, 3)}
    if isinstance(item, TranscriptSegment) and item.words:
        update["words"] = tuple(
            w.model_copy(update={"start_s": round(w.start_s + offset, 3), "end_s": round(w.end_s + offset, 3)})
            for w in item.words
        )
    return item.model_copy(update=update)


def _languages(segments: Sequence[TranscriptSegment]) -> tuple[str, ...]:
    """The languages of the segments, most spoken (by time) first."""
    spoken: dict[str, float] = {}
    for seg in segments:
        if seg.language:
            spoken[seg.language] = spoken.get(seg.language, 0.0) + seg.end_s - seg.start_s
    return tuple(sorted(spoken, key=lambda lang: -spoken[lang]))


def review_reasons(transcript: Transcript, speech_ratio: float, config: WhisperSettings) -> list[ReviewReason]:
    """Why a person should look at this transcript (empty: it can be trusted as is). The values: the mean
    log-probability (`low_transcript_confidence`), the speech ratio (`little_speech`), the number of flagged
    segments (`repetition`)."""
    reasons: list[ReviewReason] = []
    if transcript.no_speech:
        return reasons  # silence or music: done, with "no speech"
    if transcript.avg_logprob is not None and transcript.avg_logprob < config.review_min_avg_logprob:
        reasons.append(
            ReviewReason(
                stage="transcribe",
                code="low_transcript_confidence",
                message=f"low transcription confidence: mean log-probability {transcript.avg_logprob:.2f} "
                f"< {config.review_min_avg_logprob} (DOCFLOW_REVIEW_MIN_AVG_LOGPROB)",
                value=transcript.avg_logprob,
            )
        )
    if speech_ratio < config.review_min_speech_ratio:
        reasons.append(
            ReviewReason(
                stage="transcribe",
                code="little_speech",
                message=f"little speech: {speech_ratio:.0%} of the recording (DOCFLOW_REVIEW_MIN_SPEECH_RATIO "
                f"{config.review_min_speech_ratio:.0%})",
                value=speech_ratio,
            )
        )
    flagged = [s for s in transcript.segments if s.flagged]
    if flagged:
        reasons.append(
            ReviewReason(
                stage="transcribe",
                code="repetition",
                message=f"{len(flagged)} segment(s) look like a repetition loop",
                value=len(flagged),
            )
        )
    return reasons
