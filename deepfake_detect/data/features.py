"""The feature config (``features``): one config gives one array shape. librosa is the
reference for the log-mel; the other front ends (``kind``) live in
:mod:`deepfake_detect.data.frontends`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepfake_detect.config import one_of, positive, require
from deepfake_detect.errors import ConfigError

DB_REFS = ("max", "one")
# Front ends: the study's log-mel (the default), a linear-frequency log-power STFT, a
# constant-Q transform, the fakeprint profile (1-D) and a frozen encoder's embeddings.
KINDS = ("logmel", "stft", "cqt", "fakeprint", "embedding")
# The keys a log-mel config always had: the others join the cache key only when they differ
# from their default, so that every existing entry (and the quickstart) keeps its key.
LEGACY_KEYS = ("sample_rate", "duration", "n_fft", "hop_length", "n_mels", "fmin", "fmax",
               "db_ref", "top_db")
CQT_FMIN = 32.70319566257483  # C1, librosa's default lowest CQT bin
CQT_TOP = 0.95  # the highest CQT bin stays below this share of Nyquist (filter bandwidth)


@dataclass(frozen=True)
class FeatureConfig:
    """The ``features`` config group."""

    sample_rate: int = 16000
    duration: float = 4.0
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | str | None = None  # null: Nyquist; auto: see frontends.resolve_band
    db_ref: str = "max"
    top_db: float | None = 80.0
    kind: str = "logmel"
    # fmax: auto on a source of mixed native rates reads up to this share of the lowest
    # resampler edge (the last few hundred hertz below it carry the native rate).
    band_guard: float = 0.875
    bins: int = 256  # fakeprint: bands of the profile
    bins_per_octave: int = 24  # cqt
    whole_file: bool = False  # fakeprint: the profile of the whole file, not the window
    encoder: str | None = None  # embedding: a local folder for AutoModel.from_pretrained
    trust_remote_code: bool = False  # embedding: run the folder's own model code (opt-in)

    def __post_init__(self) -> None:
        for key in ("sample_rate", "duration", "n_fft", "hop_length", "n_mels", "bins",
                    "bins_per_octave"):
            positive(getattr(self, key), key)
        one_of(self.kind, KINDS, "kind")
        require(self.fmin >= 0, "fmin", f"must be >= 0, got {self.fmin}")
        nyquist = self.sample_rate / 2
        require(self.fmax is None or self.fmax == "auto" or (
            isinstance(self.fmax, int | float) and self.fmin < self.fmax <= nyquist), "fmax",
                f"must lie in (fmin, sample_rate/2 = {nyquist}], null or auto, got {self.fmax}")
        require(isinstance(self.band_guard, float) and 0.5 <= self.band_guard <= 1,
                "band_guard", f"must be a share in [0.5, 1], got {self.band_guard!r}")
        require(self.n_fft <= 16384, "n_fft", f"must be <= 16384, got {self.n_fft}")
        require(self.kind != "embedding" or bool(self.encoder), "encoder",
                "features.kind=embedding needs features.encoder=/path/to/a/local/model/folder "
                "(see docs/DESIGN.md: 'Detectors')")
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
    def fmax_hz(self) -> float:
        """The top of the band read (Nyquist for null, or for auto not yet resolved)."""
        return float(self.fmax) if isinstance(self.fmax, int | float) else self.sample_rate / 2

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one feature array: (n_mels, n_frames) for the log-mel, (bins in the
        band, n_frames) for stft and cqt, (bins,) for the fakeprint, (layers, width) for
        embeddings."""
        if self.kind == "stft":
            first, end = stft_bins(self)
            return (end - first, self.n_frames)
        if self.kind == "cqt":
            return (cqt_range(self)[1], self.n_frames)
        if self.kind == "fakeprint":
            return (self.bins,)
        if self.kind == "embedding":
            return encoder_shape(self.encoder)
        return (self.n_mels, self.n_frames)

    def as_dict(self) -> dict:
        """The config as plain values; keys added after the log-mel only where they differ
        from their defaults (cache keys of existing entries stay the same)."""
        defaults = FeatureConfig()
        return {k: v for k, v in asdict(self).items()
                if k in LEGACY_KEYS or v != getattr(defaults, k)}


def stft_bins(cfg: FeatureConfig) -> tuple[int, int]:
    """(first, end) rows of the STFT that lie in the band ``fmin``..``fmax``."""
    freqs = np.fft.rfftfreq(cfg.n_fft, 1 / cfg.sample_rate)
    inside = np.flatnonzero((freqs >= cfg.fmin) & (freqs <= cfg.fmax_hz + 1e-6))
    if len(inside) == 0:
        raise ConfigError("features.fmin", f"no STFT bin lies in {cfg.fmin}..{cfg.fmax_hz} Hz")
    return int(inside[0]), int(inside[-1]) + 1


def cqt_range(cfg: FeatureConfig) -> tuple[float, int]:
    """(lowest frequency, number of bins) of the CQT: from ``fmin`` (C1 when 0) to ``fmax``,
    the top bin below 95 % of Nyquist (its filter must fit under it)."""
    low = cfg.fmin if cfg.fmin > 0 else CQT_FMIN
    top = min(cfg.fmax_hz, CQT_TOP * cfg.sample_rate / 2)
    n_bins = int(math.floor(cfg.bins_per_octave * math.log2(top / low))) if top > low else 0
    require(n_bins >= 2, "features.fmin", f"the CQT band {low:.1f}..{top:.1f} Hz holds fewer "
            "than 2 bins")
    return low, n_bins


def encoder_config(folder: str | None) -> dict:
    """The ``config.json`` of a local encoder folder; a ConfigError saying how to get one."""
    path = Path(str(folder or "")).expanduser()
    config = path / "config.json"
    if not folder or not config.is_file():
        raise ConfigError("features.encoder", f"no encoder at {path} (no config.json there); "
                          "nothing is downloaded at run time. Save one once on a machine "
                          "with internet, e.g. python -c \"from transformers import AutoModel; "
                          "AutoModel.from_pretrained('facebook/wav2vec2-base')"
                          ".save_pretrained('/models/wav2vec2-base')\" (and the feature "
                          "extractor likewise), copy the folder here and pass "
                          "features.encoder=/models/wav2vec2-base")
    try:
        return json.loads(config.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError("features.encoder", f"cannot read {config}: {err}") from None


def encoder_shape(folder: str | None) -> tuple[int, int]:
    """(hidden states, width) of an encoder: its layers plus the input embedding."""
    config = encoder_config(folder)
    layers = config.get("num_hidden_layers")
    width = config.get("hidden_size")
    if not isinstance(layers, int) or not isinstance(width, int):
        raise ConfigError("features.encoder", f"{folder}/config.json names no "
                          "num_hidden_layers / hidden_size")
    return (layers + 1, width)


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
