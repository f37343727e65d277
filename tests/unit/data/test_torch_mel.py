"""The torch log-mel matches librosa's (``features.log_mel``) on real audio.

Tolerance (``torch_mel.PARITY_DB``): max |torch - librosa| <= 0.01 dB over every cell of
every clip in float32, and <= 0.001 dB with the torch side in float64 -- a semantic
difference (window, padding, filterbank, dB reference or floor) would be far larger.
Real audio is ``../shared/audio`` when present, generated music-like clips otherwise.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from deepfake_detect.bench.clips import tone_clip
from deepfake_detect.data.audio import AUDIO_EXTENSIONS, Segment, decode
from deepfake_detect.data.features import FeatureConfig, fit_length, log_mel
from deepfake_detect.data.torch_mel import PARITY_DB, LogMel
from tests.helpers.configs import SHARED_AUDIO

CONFIGS = {
    "default": FeatureConfig(),
    "study": FeatureConfig(sample_rate=22050, duration=10.0, n_fft=2048, n_mels=128),
    "absolute_no_floor": FeatureConfig(db_ref="one", top_db=None),
    "band_limited": FeatureConfig(n_mels=32, fmin=50.0, fmax=7000.0, hop_length=256,
                                  top_db=60.0),
}


@functools.lru_cache
def clips(sample_rate: int, duration: float) -> np.ndarray:
    """Clip-length windows of every real file (plus a short, near-silent clip)."""
    n_samples = int(round(duration * sample_rate))
    files = sorted(p for p in SHARED_AUDIO.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if files:
        waves = [decode(p, sample_rate, Segment(duration)) for p in files]
    else:
        waves = [tone_clip(i, sample_rate, duration) for i in range(6)]
    waves.append(np.zeros(n_samples // 2, dtype=np.float32) + 1e-3)
    return np.stack([fit_length(w, n_samples) for w in waves]).astype(np.float32)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_torch_log_mel_matches_librosa(name: str) -> None:
    cfg = CONFIGS[name]
    waves = clips(cfg.sample_rate, cfg.duration)
    reference = np.stack([log_mel(w, cfg) for w in waves])
    with torch.no_grad():
        got = LogMel(cfg)(torch.from_numpy(waves)).numpy()
        got64 = LogMel(cfg, torch.float64)(torch.from_numpy(waves)).numpy()
    assert got.shape == reference.shape == (len(waves), *cfg.shape)
    assert got.dtype == np.float32
    assert np.abs(got - reference).max() <= PARITY_DB
    assert np.abs(got64 - reference).max() <= PARITY_DB / 10


def test_channel_dimension_is_kept_and_wrong_lengths_are_refused() -> None:
    cfg = FeatureConfig(duration=1.0, n_mels=32)
    wave = torch.from_numpy(tone_clip(1, cfg.sample_rate, cfg.duration))
    with torch.no_grad():
        out = LogMel(cfg)(wave.reshape(1, 1, -1))
    assert out.shape == (1, 1, *cfg.shape)
    with pytest.raises(ValueError, match="samples"):
        LogMel(cfg)(wave[None, :-1])
