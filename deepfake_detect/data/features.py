"""Log-mel features: one feature config gives one array shape. librosa is the reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deepfake_detect.config import one_of, positive, require

DB_REFS = ("max", "one")


@dataclass(frozen=True)
class FeatureConfig:
    """The ``features`` config group."""

    sample_rate: int = 16000
    duration: float = 4.0
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    db_ref: str = "max"
    top_db: float | None = 80.0

    def __post_init__(self) -> None:
        for key in ("sample_rate", "duration", "n_fft", "hop_length", "n_mels"):
            positive(getattr(self, key), key)
        require(self.fmin >= 0, "fmin", f"must be >= 0, got {self.fmin}")
        nyquist = self.sample_rate / 2
        require(self.fmax is None or self.fmin < self.fmax <= nyquist, "fmax",
                f"must lie in (fmin, sample_rate/2 = {nyquist}], got {self.fmax}")
        require(self.hop_length <= self.n_fft, "hop_length",
                f"must be <= n_fft ({self.n_fft}), got {self.hop_length}")
        one_of(self.db_ref, DB_REFS, "db_ref")
        require(self.top_db is None or self.top_db > 0, "top_db",
                f"must be positive or null, got {self.top_db}")

    @property
    def n_samples(self) -> int:
        """Samples per clip window."""
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Frames per clip (librosa's centred STFT)."""
        return 1 + self.n_samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int]:
        """(n_mels, n_frames): the shape of one feature array."""
        return (self.n_mels, self.n_frames)

    def as_dict(self) -> dict:
        return asdict(self)


def fit_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Centre-crop or zero-pad (at the end) ``wave`` to exactly ``n_samples``."""
    if len(wave) > n_samples:
        start = (len(wave) - n_samples) // 2
        return wave[start:start + n_samples]
    if len(wave) < n_samples:
        return np.pad(wave, (0, n_samples - len(wave)))
    return wave


def log_mel(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """float32 log-mel spectrogram (dB) of shape ``cfg.shape`` from a mono waveform at
    ``cfg.sample_rate``; the waveform is cropped/padded to the clip duration first."""
    import librosa

    wave = fit_length(np.asarray(wave, dtype=np.float32), cfg.n_samples)
    mel = librosa.feature.melspectrogram(
        y=wave, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, power=2.0)
    ref = np.max if cfg.db_ref == "max" else 1.0
    db = librosa.power_to_db(mel, ref=ref, amin=1e-10, top_db=cfg.top_db)
    return db.astype(np.float32)
