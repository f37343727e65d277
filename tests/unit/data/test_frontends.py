"""Front ends (``features.kind``): each one's shape, band and parity with its reference; the
log-mel default unchanged; ``fmax: auto`` on mixed native rates; cache keys."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deepfake_detect.data import frontends
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.features import FeatureConfig, log_mel
from deepfake_detect.data.torch_mel import PARITY_DB
from deepfake_detect.data.torch_stft import LogPower
from deepfake_detect.errors import ConfigError
from deepfake_detect.evaluation import baselines
from deepfake_detect.models.frontend import FrontEnd
from tests.helpers.configs import SHARED_AUDIO


def tone(freq: float, rate: int, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(0, 1e-3, len(t))
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def test_the_default_log_mel_keeps_its_keys_and_its_rows() -> None:
    """The quickstart's features: the same keys as before (cache keys unchanged) and the
    very same log-mel through the front end's reference path."""
    cfg = FeatureConfig()
    assert cfg.as_dict() == {"sample_rate": 16000, "duration": 4.0, "n_fft": 1024,
                             "hop_length": 512, "n_mels": 64, "fmin": 0.0, "fmax": None,
                             "db_ref": "max", "top_db": 80.0}
    wave = tone(440, 16000, 4.0)
    assert np.array_equal(frontends.compute(wave, cfg), log_mel(wave, cfg))
    assert np.array_equal(FrontEnd(cfg).rows([wave])[0], log_mel(wave, cfg))
    assert frontends.cache_key(cfg) == cfg.as_dict()
    assert frontends.cache_key(FeatureConfig(kind="stft")) != cfg.as_dict()


@pytest.mark.parametrize("rate,n_fft,fmin,fmax", [(16000, 1024, 0.0, None),
                                                  (44100, 4096, 1000.0, 16000.0),
                                                  (48000, 2048, 0.0, None)])
def test_stft_rows_hold_the_band_at_linear_resolution(rate, n_fft, fmin, fmax) -> None:
    cfg = FeatureConfig(kind="stft", sample_rate=rate, duration=1.0, n_fft=n_fft,
                        hop_length=n_fft // 4, fmin=fmin, fmax=fmax)
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    top = fmax or rate / 2
    band = freqs[(freqs >= fmin) & (freqs <= top)]
    assert cfg.shape == (len(band), 1 + cfg.n_samples // cfg.hop_length)
    for freq in (fmin + 3000.0, top - 2000.0):  # a tone's row is its bin in the band
        row = frontends.compute(tone(freq, rate), cfg)
        assert row.shape == cfg.shape and row.dtype == np.float32
        assert abs(band[int(row.mean(axis=1).argmax())] - freq) <= rate / n_fft
    if fmax:  # a tone above the band is not in it: only its leakage floor (absolute dB)
        absolute = replace(cfg, db_ref="one", top_db=None)
        above = frontends.compute(tone(fmax + 2000, rate), absolute)
        inside = frontends.compute(tone(fmax - 2000, rate), absolute)
        assert above.max(axis=0).mean() < inside.max(axis=0).mean() - 40


def real_or_generated(rate: int, n: int, seconds: float) -> np.ndarray:
    """Windows of the shared real recordings when present, else noisy chords."""
    from deepfake_detect.data import audio

    files = sorted(SHARED_AUDIO.rglob("*.wav"))[:n] if SHARED_AUDIO.is_dir() else []
    waves = []
    for path in files:
        waves.append(audio.decode(path, rate, audio.Segment(seconds))[: int(rate * seconds)])
    while len(waves) < n:
        waves.append(tone(220 * (len(waves) + 1), rate, seconds, len(waves))
                     + tone(3000, rate, seconds, 9))
    return np.stack([np.pad(w, (0, int(rate * seconds) - len(w))) for w in waves])


@pytest.mark.parametrize("db_ref,top_db", [("max", 80.0), ("one", 80.0), ("one", None)])
def test_the_on_device_stft_matches_the_reference(db_ref, top_db) -> None:
    """Within 0.01 dB (float32) of librosa on every cell; without a floor, cells far below
    the clip's peak (single STFT bins, unlike mel bands, reach float32's noise there) are
    compared in float64, within 0.001 dB."""
    cfg = FeatureConfig(kind="stft", sample_rate=22050, duration=2.0, n_fft=2048,
                        hop_length=512, fmin=500.0, fmax=9000.0, db_ref=db_ref, top_db=top_db)
    waves = real_or_generated(cfg.sample_rate, 3, cfg.duration)
    reference = np.stack([frontends.compute(w, cfg) for w in waves])
    torch.set_num_threads(1)
    if top_db is None:
        got = LogPower(cfg, torch.float64)(torch.from_numpy(waves).double()).numpy()
        assert np.abs(got - reference).max() <= PARITY_DB / 10
        return
    got = LogPower(cfg)(torch.from_numpy(waves)).numpy()
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() <= PARITY_DB
    front = FrontEnd(cfg, store="waveform")  # the model's path from cached waveforms
    assert np.abs(front.log_mel(torch.from_numpy(waves)).numpy()[:, 0] - reference).max() \
        <= PARITY_DB


def test_cqt_rows_follow_the_octaves() -> None:
    cfg = FeatureConfig(kind="cqt", sample_rate=16000, duration=1.0, hop_length=256,
                        fmin=55.0, fmax=7000.0, bins_per_octave=12)
    low, n_bins = frontends.cqt_range(cfg)
    assert (low, n_bins) == (55.0, int(np.floor(12 * np.log2(7000 / 55))))
    assert cfg.shape == (n_bins, 1 + cfg.n_samples // 256)
    for freq in (220.0, 1760.0):  # a tone sits in its semitone bin
        row = frontends.compute(tone(freq, 16000), cfg)
        assert row.shape == cfg.shape
        assert int(row.mean(axis=1).argmax()) == round(12 * np.log2(freq / 55))


def test_the_baseline_fakeprint_is_the_front_ends_profile() -> None:
    wave = tone(1000, 16000, 3.0)
    assert np.array_equal(baselines.fakeprint(wave, 16000),
                          frontends.fakeprint_profile(wave, 16000, 256, 1000.0, 8000.0))


def test_fakeprint_rows_mark_a_decoders_peaks_in_the_band() -> None:
    """A comb of steady lines (a transposed convolution's) at multiples of 1 kHz under music-
    like noise: the profile peaks in their bands, only between fmin and fmax."""
    rate = 16000
    rng = np.random.default_rng(1)
    t = np.arange(rate * 4) / rate
    music = rng.normal(0, 0.3, len(t))
    comb = sum(0.05 * np.sin(2 * np.pi * f * t) for f in (2000, 3000, 4000, 5000))
    cfg = FeatureConfig(kind="fakeprint", sample_rate=rate, duration=4.0, n_fft=4096,
                        fmin=1000.0, fmax=6000.0, bins=50)
    assert cfg.shape == (50,)
    row = frontends.compute((music + comb).astype(np.float32), cfg)
    clean = frontends.compute(music.astype(np.float32), cfg)
    edges = np.linspace(1000, 6000, 51)
    peaks = [int(np.searchsorted(edges, f, side="right") - 1) for f in (2000, 3000, 4000, 5000)]
    assert row.shape == (50,)
    assert all(row[p] > clean[p] + 6 for p in peaks)
    others = np.setdiff1d(np.arange(50), np.r_[peaks, np.array(peaks) - 1])
    assert np.median(row[others] - clean[others]) < 1.0


def write_wav(path: Path, rate: int, seconds: float = 0.5) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(440, rate, seconds), rate)
    return str(path)


def clip(path: str, label: int = 0) -> Clip:
    return Clip(Path(path).stem, label, Path(path).stem, "human" if label == 0 else "x", path)


def test_fmax_auto_stops_below_the_lowest_resampler_edge_of_mixed_rates(tmp_path, caplog) -> None:
    cfg = FeatureConfig(kind="stft", sample_rate=16000, fmax="auto")
    mixed = [clip(write_wav(tmp_path / f"{r}.wav", r)) for r in (44100, 32000, 24000)]
    with caplog.at_level("INFO"):
        resolved = frontends.resolve_band(cfg, mixed)
    assert resolved.fmax == pytest.approx(0.875 * 8000)  # the 16 kHz resampler's edge
    assert "mixes native sample rates" in caplog.text and "features.fmax" in caplog.text
    assert resolved.shape[0] < FeatureConfig(kind="stft", sample_rate=16000).shape[0]
    low = [clip(write_wav(tmp_path / "low" / f"{r}.wav", r)) for r in (44100, 12000)]
    assert frontends.resolve_band(cfg, low).fmax == pytest.approx(0.875 * 6000)
    assert frontends.resolve_band(
        FeatureConfig(kind="stft", sample_rate=16000, fmax="auto", band_guard=0.95),
        low).fmax == pytest.approx(0.95 * 6000)
    one = [clip(write_wav(tmp_path / "one" / f"{i}.wav", 44100)) for i in range(2)]
    assert frontends.resolve_band(cfg, one).fmax == 8000.0  # one chain: the whole band
    assert frontends.resolve_band(cfg, []).fmax == 8000.0  # rendered clips: no files
    fixed = FeatureConfig(kind="stft", fmax=5000.0)
    assert frontends.resolve_band(fixed, mixed) is fixed  # an explicit band is kept


def test_front_ends_without_an_on_device_path_refuse_the_waveform_store() -> None:
    for kind in ("cqt", "fakeprint"):
        with pytest.raises(ConfigError, match="data.cache.store"):
            FrontEnd(FeatureConfig(kind=kind), store="waveform")
    with pytest.raises(ConfigError, match="features.encoder"):
        FeatureConfig(kind="embedding")
    with pytest.raises(ConfigError, match="kind"):
        FeatureConfig(kind="mfcc")


def test_a_missing_encoder_folder_says_how_to_get_one(tmp_path) -> None:
    with pytest.raises(ConfigError, match="nothing is downloaded.*save_pretrained"):
        _ = FeatureConfig(kind="embedding", encoder=str(tmp_path / "nope")).shape
