"""The transcription stage: Whisper over the speech found in preprocessing, per recording (each recording's
speech windows are decoded in batches by faster-whisper's batched pipeline), then who said what: by channel for a
stereo call, by voice (diarization) for a mono recording."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from schemas.settings import AudioSettings, DiarizationSettings, WhisperSettings
from tasks.models.cache import load_cached
from tasks.models.speakers import SpeakerEncoderSpec, load_speaker_encoder, pyannote_pipeline
from tasks.models.whisper import WhisperSpec, load_transcriber
from tasks.pipeline.stage import ItemUpdate, StageReport, WorkItem
from tasks.transcribe.diarize import diarize, pyannote_turns
from tasks.transcribe.transcription import Diarizer, review_reasons, transcribe_recording


class TranscribeStage:
    name = "transcribe"
    uses_model = True

    def __init__(
        self,
        config: WhisperSettings,
        vad: AudioSettings,
        spec: WhisperSpec,
        diarization: DiarizationSettings | None = None,
        device: str = "auto",
    ) -> None:
        self.config, self.vad, self.spec = config, vad, spec
        self.diarization = diarization or DiarizationSettings()
        self.device = device

    def wants(self, item: WorkItem) -> bool:
        return item.error is None and item.decoded is not None

    def prepare(self, items: Sequence[WorkItem]) -> None:
        pass

    def warm_up(self, preparation: bool) -> None:
        pass  # Whisper loads when the first recording comes: an inbox of documents never needs it

    def diarizer(self) -> Diarizer | None:
        """The configured way to find speakers by voice (loaded once per worker), or None when it is off."""
        config = self.diarization
        if config.mode == "off":
            return None
        if config.model:
            model, device = config.model, self.device
            pipeline = load_cached(
                "diarization",
                (model, device),
                lambda: pyannote_pipeline(model, device),
                f"diarization pipeline {model!r} (DOCFLOW_DIARIZATION_MODEL)",
            )
            return functools.partial(pyannote_turns, pipeline, speakers=config.speakers)
        encoder = load_speaker_encoder(SpeakerEncoderSpec(config.speaker_model, self.device))
        return functools.partial(
            diarize,
            embed=encoder.embed,
            threshold=config.threshold,
            speakers=config.speakers,
            separation=config.separation,
        )

    def __call__(self, items: Sequence[WorkItem], report: StageReport) -> list[ItemUpdate]:
        transcriber = load_transcriber(self.spec)
        diarizer = self.diarizer()
        updates = []
        for item in items:
            assert item.decoded is not None and item.audio is not None  # wants() holds
            transcript = transcribe_recording(transcriber, self.config, self.vad, item.decoded, item.segments, diarizer)
            reasons = review_reasons(transcript, item.audio.speech_ratio, self.config)
            warnings = ("no speech detected",) if transcript.no_speech else ()
            updates.append(ItemUpdate(transcript=transcript, review_reasons=tuple(reasons), warnings=warnings))
            report.audio_s += item.audio.duration_s
        report.items += len(items)
        return updates
