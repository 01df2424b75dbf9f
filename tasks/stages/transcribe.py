"""The transcription stage: Whisper over the speech found in preprocessing, per recording (each recording's
speech windows are decoded in batches by faster-whisper's batched pipeline)."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.settings import AudioSettings, WhisperSettings
from tasks.models.whisper import WhisperSpec, load_transcriber
from tasks.stages.base import ItemUpdate, StageReport, WorkItem
from tasks.transcribe import review_reasons, transcribe_recording


class TranscribeStage:
    name = "transcribe"
    uses_model = True

    def __init__(self, config: WhisperSettings, vad: AudioSettings, spec: WhisperSpec) -> None:
        self.config, self.vad, self.spec = config, vad, spec

    def wants(self, item: WorkItem) -> bool:
        return item.error is None and item.decoded is not None

    def prepare(self, items: Sequence[WorkItem]) -> None:
        pass

    def __call__(self, items: Sequence[WorkItem], report: StageReport) -> list[ItemUpdate]:
        transcriber = load_transcriber(self.spec)
        updates = []
        for item in items:
            assert item.decoded is not None and item.audio is not None  # wants() holds
            transcript = transcribe_recording(
                transcriber, self.config, self.vad, item.decoded.mix, item.segments, item.decoded.stereo
            )
            reasons = review_reasons(transcript, item.audio.speech_ratio, self.config)
            warnings = ("no speech detected",) if transcript.no_speech else ()
            updates.append(ItemUpdate(transcript=transcript, review_reasons=tuple(reasons), warnings=warnings))
            report.audio_s += item.audio.duration_s
        report.items += len(items)
        return updates
