"""Speaker embeddings for diarization: the GE2E speaker encoder whose weights ship in the `resemblyzer` package
(Apache-2.0, 16 MB), run here on its own features.

resemblyzer is installed with --no-deps and never imported: its package imports librosa and webrtcvad at import
time, which docflow does not need. Only `resemblyzer/pretrained.pt` is read; the network (three LSTM layers and a
projection, Wan et al. 2018) and its 40-band mel features are rebuilt here as resemblyzer defines them."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import ConfigError
from tasks.models.cache import load_cached
from tasks.models.devices import torch_device
from tasks.preprocess.audio import SAMPLE_RATE

RESEMBLYZER = "pkg:resemblyzer"
WINDOW_S = 1.6  # the encoder's training window: 160 frames of 10 ms
_N_FFT, _HOP, _N_MELS, _FRAMES = 400, 160, 40, 160
_TARGET_DBFS = -30.0  # resemblyzer's volume normalisation (raising quiet speech only)


@dataclass(frozen=True)
class SpeakerEncoderSpec:
    """The model cache key: a GE2E checkpoint (pkg:resemblyzer or a path to such a .pt) and the device."""

    model: str = RESEMBLYZER
    device: str = "auto"


def _checkpoint(model: str) -> Path:
    if model != RESEMBLYZER:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ConfigError(f"speaker encoder {model!r} is neither {RESEMBLYZER} nor a .pt file")
        return path
    spec = importlib.util.find_spec("resemblyzer")  # finds the package without running its imports
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"{RESEMBLYZER} needs the resemblyzer package: pip install --no-deps resemblyzer==0.1.4 "
            "(make setup does this)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


class SpeakerEncoder:
    """Clips of 16 kHz speech in, one L2-normalised 256-d voice embedding per clip out (cosine similarity of two
    embeddings: same voice close to 1). Clips are cut or zero-padded to the encoder's 1.6 s window and encoded in
    batches."""

    def __init__(self, spec: SpeakerEncoderSpec) -> None:
        import torch
        from torch import nn

        self.device = torch_device(spec.device)
        self._lstm = nn.LSTM(_N_MELS, 256, 3, batch_first=True)
        self._linear = nn.Linear(256, 256)
        state = torch.load(_checkpoint(spec.model), map_location="cpu", weights_only=True)["model_state"]
        self._lstm.load_state_dict({k[len("lstm.") :]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[len("linear.") :]: v for k, v in state.items() if k.startswith("linear.")})
        self._lstm.to(self.device).eval()
        self._linear.to(self.device).eval()
        from faster_whisper.feature_extractor import FeatureExtractor

        # librosa's Slaney mel filters, as faster-whisper already reimplements them (resemblyzer uses librosa's).
        self._mel = FeatureExtractor.get_mel_filters(SAMPLE_RATE, _N_FFT, _N_MELS).astype(np.float32)
        self._window = np.hanning(_N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa's stft

    def embed(self, clips: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        import torch

        if not clips:
            return np.zeros((0, 256), np.float32)
        out = []
        for first in range(0, len(clips), batch_size):
            mels = np.stack([self._features(clip) for clip in clips[first : first + batch_size]])
            with torch.inference_mode():
                _, (hidden, _) = self._lstm(torch.from_numpy(mels).to(self.device))
                raw = torch.relu(self._linear(hidden[-1]))
                out.append(torch.nn.functional.normalize(raw, dim=1).cpu().numpy())
        return np.concatenate(out)

    def _features(self, clip: np.ndarray) -> np.ndarray:
        """160 frames of 40-band mel power (not log), as resemblyzer's wav_to_mel_spectrogram, for one clip."""
        samples = clip.astype(np.float32)[: int(WINDOW_S * SAMPLE_RATE)]
        rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
        if rms > 0:
            gain_db = _TARGET_DBFS - 20 * np.log10(rms)
            if gain_db > 0:
                samples = samples * np.float32(10 ** (gain_db / 20))
        needed = (_FRAMES - 1) * _HOP + _N_FFT
        padded = np.pad(samples, (_N_FFT // 2, max(needed - _N_FFT // 2 - samples.size, 0)))  # centred, zero tail
        frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP][:_FRAMES]
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        mel: np.ndarray = (power @ self._mel.T).astype(np.float32)
        return mel


def load_speaker_encoder(spec: SpeakerEncoderSpec) -> SpeakerEncoder:
    """One encoder per spec per worker process."""
    return load_cached(
        "speaker-encoder", spec, lambda: SpeakerEncoder(spec), f"speaker encoder {spec.model!r} (DOCFLOW_SPEAKER_MODEL)"
    )


def pyannote_pipeline(model: str, device: str = "auto") -> Any:
    """A pyannote.audio diarization pipeline by hub id or local path (production option). pyannote.audio is not
    installed by docflow: it brings its own torch stack; install it where such a pipeline is used."""
    try:
        from pyannote.audio import Pipeline
    except ImportError:
        raise ConfigError(
            f"DOCFLOW_DIARIZATION_MODEL={model!r} needs pyannote.audio (pip install pyannote.audio); "
            f"unset it to use the built-in diarization ({RESEMBLYZER})"
        ) from None
    pipeline = Pipeline.from_pretrained(model)
    if pipeline is None:
        raise ConfigError(f"pyannote could not load {model!r} (a gated hub model needs HF_TOKEN)")
    import torch

    return pipeline.to(torch.device(torch_device(device)))
