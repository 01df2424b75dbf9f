"""Who spoke when in a mono recording, and which words each speaker said.

The speech found by VAD is cut into windows the length of the speaker encoder's, side by side; each window gets a
voice embedding; the windows are clustered into speakers (average linkage on cosine distance under a distance
threshold, and one cluster split in two when its halves are far apart for their spread: two alike voices; for a
known number of speakers, Ward linkage refined by k-means, so each speaker gets a real share). A
segment whose windows do not all agree (people answering each other quickly, with no pause long enough for VAD) is
heard again in overlapping windows a hop apart, each taking the nearest speaker, so the change is placed to within
a hop. Each window speaks for the middle of its span, and neighbouring windows of one speaker join into turns.
Transcript segments take their speakers from the turns word by word, and are split where the speaker changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.records import SpeechSegment, TranscriptSegment, Word
from tasks.models.speakers import WINDOW_S  # the speaker encoder's window
from tasks.pipeline.stage import Recording
from tasks.preprocess.audio import SAMPLE_RATE

HOP_S = 0.4  # a speaker change is placed to within this
# First pass: windows side by side, each second of speech heard once; only the stretches where two neighbours of
# one segment disagree are heard again every HOP_S (four times the encoder's work). Measured in bench/transcribe.py:
# 90 windows instead of 197 for its recordings, mono speaker accuracy 0.990 (0.993 with every window at HOP_S).
FIRST_PASS_HOP_S = WINDOW_S
# The recording is read for the embeddings at most this long a stretch at a time (7.7 MB of samples), whatever the
# windows' spacing: 256 windows 1.6 s apart in a call that is a quarter speech would span 27 minutes (105 MB).
READ_S = 120.0
MIN_CLUSTERED_S = 0.8  # shorter windows carry too little voice to shape the clusters; they join the nearest one
MIN_VOICE_SHARE = 0.15  # a second voice found by the separation test speaks at least this share of the windows
# The tree needs all pairwise distances (n^2 / 2 floats): past this many windows (53 minutes of speech) it is built
# on windows spread evenly over the recording, and every window then takes the nearest centroid, so memory stays
# flat on long calls (6,750 windows of a 3-hour recording would need 180 MB of distances).
MAX_TREE_WINDOWS = 2000


@dataclass(frozen=True)
class Turn:
    start_s: float
    end_s: float
    speaker: str


@dataclass(frozen=True)
class _Window:
    start_s: float  # what the encoder hears
    end_s: float
    own_start_s: float  # the span this window's speaker is given: its middle, up to the neighbouring windows
    own_end_s: float
    segment: int


def speech_windows(
    segments: Sequence[SpeechSegment], window_s: float = WINDOW_S, hop_s: float = HOP_S
) -> list[_Window]:
    """Windows over each speech segment, `hop_s` apart; together their own spans tile the segment exactly."""
    windows = []
    for index, seg in enumerate(segments):
        length = seg.end_s - seg.start_s
        if length <= window_s:
            windows.append(_Window(seg.start_s, seg.end_s, seg.start_s, seg.end_s, index))
            continue
        count = int(np.ceil((length - window_s) / hop_s)) + 1
        starts = np.linspace(seg.start_s, seg.end_s - window_s, count)
        centres = starts + window_s / 2
        bounds = [seg.start_s, *((centres[:-1] + centres[1:]) / 2), seg.end_s]
        for i, start in enumerate(starts):
            windows.append(_Window(float(start), float(start) + window_s, bounds[i], bounds[i + 1], index))
    return windows


def speaker_centroids(
    embeddings: np.ndarray,
    weights: np.ndarray,
    threshold: float,
    speakers: int | None,
    separation: float = 0.0,
) -> np.ndarray:
    """The speakers' unit-length mean embeddings, one row per speaker; every window then takes the nearest
    (`nearest`). Windows with weight (seconds) under MIN_CLUSTERED_S do not shape the clusters; nor do the windows
    left out of a tree over MAX_TREE_WINDOWS. `speakers` fixes the count; otherwise clusters merge while the mean
    cosine distance between them stays under `threshold`, and a single cluster is still two voices when its best
    split in two passes the `separation` test (`_two_voices`: two alike voices are closer than the threshold)."""
    n = len(embeddings)
    core = np.flatnonzero(weights >= MIN_CLUSTERED_S)
    if core.size == 0:
        core = np.arange(n)
    if core.size > MAX_TREE_WINDOWS:
        core = core[np.linspace(0, core.size - 1, MAX_TREE_WINDOWS).round().astype(int)]
    if core.size == 1 or speakers == 1:
        labels = np.zeros(core.size, int)
    else:
        from scipy.cluster.hierarchy import fcluster, linkage

        if speakers:
            labels = _split_in(embeddings[core], min(speakers, core.size))
        else:
            tree = linkage(embeddings[core], method="average", metric="cosine")
            labels = fcluster(tree, t=threshold, criterion="distance") - 1
            split = _two_voices(embeddings[core], separation) if labels.max() == 0 and separation > 0 else None
            labels = split if split is not None else labels
    centroids = np.stack([embeddings[core][labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    normalised: np.ndarray = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    return normalised


def _split_in(embeddings: np.ndarray, count: int, rounds: int = 20) -> np.ndarray:
    """Exactly `count` clusters of unit-length embeddings, each a voice's share of the call: Ward linkage (a cluster
    of one odd window costs little to merge, so it is not kept apart as a speaker, as average linkage keeps it),
    then spherical k-means rounds from there."""
    from scipy.cluster.hierarchy import fcluster, linkage

    labels: np.ndarray = fcluster(linkage(embeddings, method="ward"), t=count, criterion="maxclust") - 1
    for _ in range(rounds):
        centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
        moved = nearest(embeddings, centroids / np.linalg.norm(centroids, axis=1, keepdims=True))
        if np.array_equal(moved, labels) or len(np.unique(moved)) < len(centroids):
            break  # settled, or a round would empty a cluster: keep the last partition with every speaker
        labels = moved
    return labels


def _two_voices(embeddings: np.ndarray, separation: float) -> np.ndarray | None:
    """The windows' labels when they are two voices, else None: split in two (`_split_in`), the two centroids are
    `separation` times further apart (cosine distance) than the windows are on average from their own centroid,
    and each voice has at least MIN_VOICE_SHARE of the windows. One voice split in two gives parts barely further
    apart than their windows' spread; two voices, however alike, give parts far apart for their spread."""
    if len(embeddings) < 4:
        return None
    labels = _split_in(embeddings, 2)
    if min(np.mean(labels == 0), np.mean(labels == 1)) < MIN_VOICE_SHARE:
        return None
    centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in (0, 1)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    apart = 1.0 - float(centroids[0] @ centroids[1])
    spread = float(np.mean(1.0 - np.sum(embeddings * centroids[labels], axis=1)))
    return labels if apart >= separation * max(spread, 1e-9) else None


def nearest(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (cosine) of each embedding: every window, the core ones too, after the tree."""
    result: np.ndarray = np.argmax(embeddings @ centroids.T, axis=1)
    return result


def _smooth(labels: np.ndarray, windows: Sequence[_Window]) -> np.ndarray:
    """A lone window between two windows of one other speaker, in one segment, is that speaker: a turn shorter
    than a hop is more likely an unclear window than a real interjection."""
    out = labels.copy()
    for i in range(1, len(labels) - 1):
        same_segment = windows[i - 1].segment == windows[i].segment == windows[i + 1].segment
        if same_segment and labels[i - 1] == labels[i + 1] != labels[i]:
            out[i] = labels[i - 1]
    return out


def diarize(
    recording: Recording,
    segments: Sequence[SpeechSegment],
    embed: Callable[[list[np.ndarray]], np.ndarray],
    *,
    threshold: float,
    speakers: int | None = None,
    separation: float = 0.0,
) -> list[Turn]:
    """Speaker turns of a recording (its mono mix) from its speech segments. The audio is read a span at a time
    (only the embeddings are kept), so memory does not grow with the recording's length. Speakers are named
    SPEAKER_0, SPEAKER_1, ... in the order they first speak."""
    first = speech_windows(segments, hop_s=FIRST_PASS_HOP_S)
    if not first:
        return []
    embeddings = _embed(recording, first, embed)
    weights = np.array([w.end_s - w.start_s for w in first])
    centroids = speaker_centroids(embeddings, weights, threshold, speakers, separation)
    labels = nearest(embeddings, centroids)
    changes = [
        (first[i - 1], first[i])
        for i in range(1, len(first))
        if first[i].segment == first[i - 1].segment and labels[i] != labels[i - 1]
    ]
    if changes:
        windows, labels = _refined(recording, first, labels, changes, centroids, segments, embed)
    else:
        windows = first
    labels = _smooth(labels, windows)
    names: dict[int, str] = {}
    turns: list[Turn] = []
    for window, label in zip(windows, labels, strict=True):
        speaker = names.setdefault(int(label), f"SPEAKER_{len(names)}")
        if turns and turns[-1].speaker == speaker and window.own_start_s - turns[-1].end_s < 1e-6:
            turns[-1] = Turn(turns[-1].start_s, window.own_end_s, speaker)
        else:
            turns.append(Turn(window.own_start_s, window.own_end_s, speaker))
    return turns


def _refined(
    recording: Recording,
    first: list[_Window],
    labels: np.ndarray,
    changes: list[tuple[_Window, _Window]],
    centroids: np.ndarray,
    segments: Sequence[SpeechSegment],
    embed: Callable[[list[np.ndarray]], np.ndarray],
) -> tuple[list[_Window], np.ndarray]:
    """Segments holding a change, in windows HOP_S apart: those between two first-pass windows that disagree are
    heard and take the nearest speaker; the others take their first-pass window's."""
    spans: dict[int, list[tuple[float, float]]] = {}  # per mixed segment: where its first-pass windows disagree
    for a, b in changes:
        spans.setdefault(a.segment, []).append((_centre(a) - HOP_S, _centre(b) + HOP_S))
    own: dict[int, list[int]] = {}  # per segment: its first-pass windows
    for i, w in enumerate(first):
        own.setdefault(w.segment, []).append(i)
    fine = [w for w in speech_windows(segments) if w.segment in spans]
    heard = [i for i, w in enumerate(fine) if any(lo <= _centre(w) <= hi for lo, hi in spans[w.segment])]
    # The others take the speaker of the first-pass window of their segment whose centre is nearest.
    fine_labels = labels[[min(own[w.segment], key=lambda i: abs(_centre(first[i]) - _centre(w))) for w in fine]]
    if heard:
        fine_labels[heard] = nearest(_embed(recording, [fine[i] for i in heard], embed), centroids)
    kept = [(w, label) for w, label in zip(first, labels, strict=True) if w.segment not in spans]
    ordered = sorted(kept + list(zip(fine, fine_labels, strict=True)), key=lambda pair: pair[0].own_start_s)
    return [w for w, _ in ordered], np.array([label for _, label in ordered], int)


def _centre(window: _Window) -> float:
    return (window.start_s + window.end_s) / 2


def _embed(
    recording: Recording, windows: Sequence[_Window], embed: Callable[[list[np.ndarray]], np.ndarray]
) -> np.ndarray:
    """The windows' voice embeddings, reading the recording at most READ_S seconds of it at a time."""
    groups: list[list[_Window]] = []
    for window in windows:
        if groups and window.end_s - groups[-1][0].start_s <= READ_S:
            groups[-1].append(window)
        else:
            groups.append([window])
    embeddings = []
    for group in groups:
        start = group[0].start_s
        samples = recording.read(start, group[-1].end_s)
        clips = [
            samples[round((w.start_s - start) * SAMPLE_RATE) : round((w.end_s - start) * SAMPLE_RATE)] for w in group
        ]
        embeddings.append(embed(clips))
    return np.concatenate(embeddings)


def speaker_at(turns: Sequence[Turn], start_s: float, end_s: float) -> str | None:
    """The speaker of the turn overlapping [start, end] most (the nearest turn when none overlaps)."""
    if not turns:
        return None
    best = max(turns, key=lambda t: min(t.end_s, end_s) - max(t.start_s, start_s))
    if min(best.end_s, end_s) - max(best.start_s, start_s) > 0:
        return best.speaker
    middle = (start_s + end_s) / 2
    return min(turns, key=lambda t: min(abs(t.start_s - middle), abs(t.end_s - middle))).speaker


def attribute(segments: Sequence[TranscriptSegment], turns: Sequence[Turn]) -> list[TranscriptSegment]:
    """Each transcript segment with its speaker from the turns; a segment whose words belong to several speakers
    is split between them at word boundaries."""
    out: list[TranscriptSegment] = []
    for segment in segments:
        if not segment.words:
            speaker = speaker_at(turns, segment.start_s, segment.end_s) or segment.speaker
            out.append(segment.model_copy(update={"speaker": speaker}))
            continue
        runs: list[tuple[str, list[Word]]] = []
        for word in segment.words:
            speaker = speaker_at(turns, word.start_s, word.end_s) or segment.speaker
            if runs and runs[-1][0] == speaker:
                runs[-1][1].append(word)
            else:
                runs.append((speaker, [word]))
        out += [_part(segment, speaker, words) for speaker, words in runs]
    return out


def _part(segment: TranscriptSegment, speaker: str, words: list[Word]) -> TranscriptSegment:
    return segment.model_copy(
        update={
            "speaker": speaker,
            "start_s": words[0].start_s,
            "end_s": words[-1].end_s,
            "text": "".join(w.word for w in words).strip(),
            "words": tuple(words),
        }
    )


def pyannote_turns(
    pipeline: Any, recording: Recording, segments: Sequence[SpeechSegment], speakers: int | None = None
) -> list[Turn]:
    """Turns from a pyannote.audio pipeline (it runs its own voice activity detection: `segments` are unused; it
    takes the whole recording in memory)."""
    import torch

    samples = recording.read(0.0, recording.samples / SAMPLE_RATE)
    options = {"num_speakers": speakers} if speakers else {}
    output = pipeline({"waveform": torch.from_numpy(samples)[None], "sample_rate": SAMPLE_RATE}, **options)
    annotation = getattr(output, "speaker_diarization", output)  # pyannote.audio 4 wraps the annotation
    names: dict[str, str] = {}
    return [
        Turn(float(span.start), float(span.end), names.setdefault(str(label), f"SPEAKER_{len(names)}"))
        for span, _, label in annotation.itertracks(yield_label=True)
    ]
