"""Shortcut baselines, fitted on the CNN's own training split and tested on its own test sets:
what a trivial cue gets, so that a result can be read against it.

- ``recording_chain``: file metadata only (native sample rate, channels, container, codec,
  bitrate, duration) into a small random forest, which can learn thresholds (a linear model on
  the raw sample rate underrates this shortcut). On real collections human recordings and
  generator outputs often differ here; on the embedded benchmark every clip is alike, so it
  sits at chance.
- ``band_stats``: per-band mean and standard deviation over time of the same log-mels, into a
  logistic regression.
- ``fakeprint``: the peak profile of the clip's average spectrum above its lower envelope
  (Afchar et al., ISMIR 2025: transposed-convolution decoders leave spectral peaks), computed
  from the same decoded and distorted audio (cached like features), into a logistic
  regression.

Each baseline's scores go through the CNN's evaluation (window and file level, intervals):
``baseline/<name>/test/<d>/<metric>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepfake_detect.data import audio
from deepfake_detect.data.cache import CacheEntry
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.datamodule import AudioDataModule, FeatureWork
from deepfake_detect.evaluation import metrics as M
from deepfake_detect.evaluation.aggregate import by_file, file_level
from deepfake_detect.evaluation.evaluate import Intervals, Scored, level_values
from deepfake_detect.models.frontend import FrontEnd

log = logging.getLogger(__name__)

BASELINES = ("recording_chain", "band_stats", "fakeprint")
FAKEPRINT_BINS = 256
FAKEPRINT_VERSION = "2"
FORMATS = ("WAV", "FLAC", "OGG", "MP3", "AIFF", "W64", "RF64", "CAF")
SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "PCM_U8", "PCM_S8", "FLOAT", "DOUBLE", "VORBIS",
            "OPUS", "MPEG_LAYER_III", "MPEG_LAYER_II", "ALAC_16", "ALAC_24")


def fakeprint(wave: np.ndarray, sample_rate: int, bins: int = FAKEPRINT_BINS) -> np.ndarray:
    """How far the clip's average magnitude spectrum rises above its lower envelope (dB),
    from sr/16 to Nyquist, max-pooled into ``bins`` bands: persistent narrow peaks (a
    decoder's) stand out, music (which moves) averages away, the level does not matter."""
    wave = np.asarray(wave, dtype=np.float64)
    n_fft = int(min(4096, 2 ** np.floor(np.log2(max(len(wave), 64)))))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::n_fft // 2]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)).mean(axis=0)
    db = 20 * np.log10(spectrum + 1e-9)
    width = max(3, n_fft // 64)
    floor = uniform_filter1d(minimum_filter1d(db, width), width)
    residual = np.clip(db - floor, 0, None)
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    edges = np.linspace(sample_rate / 16, sample_rate / 2, bins + 1)
    band = np.clip(np.searchsorted(edges, freqs, side="right") - 1, -1, bins)
    pooled = np.zeros(bins)
    inside = (band >= 0) & (band < bins)
    np.maximum.at(pooled, band[inside], residual[inside])
    return pooled.astype(np.float32)


@dataclass
class FakeprintWork(FeatureWork):
    """One clip's fakeprint under one distortion (for the feature cache)."""

    def __call__(self, clip: Clip) -> tuple[np.ndarray, dict[str, Any]]:
        wave, params = self.distorted(clip)
        return fakeprint(wave, self.features.sample_rate), params


def chain_vector(meta: dict[str, Any]) -> np.ndarray:
    """Recording-chain features of one file's metadata (see :func:`audio.describe_file`)."""
    known = [np.log2(max(meta["sample_rate"], 1)), float(meta["channels"]),
             np.log10(max(meta["bitrate_kbps"], 1e-3)), np.log10(max(meta["duration_s"], 1e-3))]
    formats = [float(meta["format"] == f) for f in FORMATS]
    subtypes = [float(meta["subtype"] == s) for s in SUBTYPES]
    return np.asarray(known + formats + subtypes, dtype=np.float64)


def chain_matrix(rows: list[dict[str, Any]], sample_rate: int) -> np.ndarray:
    """One recording-chain vector per row; rows without a file (rendered clips) or with an
    unreadable header get the same neutral vector."""
    neutral = {"sample_rate": sample_rate, "channels": 1, "duration_s": 0.0, "format": "",
               "subtype": "", "bitrate_kbps": 0.0}
    seen: dict[str, np.ndarray] = {}
    out = []
    for row in rows:
        path = row.get("path") or ""
        if path not in seen:
            try:
                seen[path] = chain_vector(audio.describe_file(path) if path else neutral)
            except (audio.AudioError, OSError):
                seen[path] = chain_vector(neutral)
        out.append(seen[path])
    return np.stack(out)


def band_matrix(entry: CacheEntry, front: FrontEnd) -> np.ndarray:
    """Per-band mean and std over time of each row's log-mel."""
    parts = []
    for start in range(0, len(entry.features), 64):
        with torch.no_grad():
            mel = front.log_mel(torch.from_numpy(np.asarray(entry.features[start:start + 64])))
        mel = mel[:, 0].double().numpy()
        parts.append(np.concatenate([mel.mean(axis=2), mel.std(axis=2)], axis=1))
    return np.concatenate(parts)


def classifier(name: str, seed: int) -> Any:
    if name == "recording_chain":
        return RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed,
                                      n_jobs=1)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def feature_tables(name: str, dm: AudioDataModule) -> dict[str, tuple[np.ndarray, list]]:
    """(features, rows) of the train split and each test set (``test/<d>``) for a baseline."""
    names = ["train", *(f"test/{d}" for d in dm.test_names)]
    if name == "fakeprint":
        entries = dm.side_entries(
            "fakeprint", lambda d: FakeprintWork(dm.source, d, dm.features, dm.seed),
            (FAKEPRINT_BINS,), FAKEPRINT_VERSION)
        return {n: (np.asarray(entries[n].features, dtype=np.float64), entries[n].rows)
                for n in names}
    if name == "band_stats":
        front = FrontEnd(dm.features, dm.store)
        return {n: (band_matrix(dm.entries[n], front), dm.entries[n].rows) for n in names}
    rate = dm.features.sample_rate
    return {n: (chain_matrix(dm.entries[n].rows, rate), dm.entries[n].rows) for n in names}


def run_baselines(names: tuple[str, ...], dm: AudioDataModule, out_dir: Path,
                  intervals: Intervals, aggregate: str) -> tuple[dict[str, float], list[Path]]:
    """Fit each baseline on the train split, score every test set; ``baseline/<name>/...``
    values and the predictions CSVs."""
    flat: dict[str, float] = {}
    files: list[Path] = []
    for name in names:
        tables = feature_tables(name, dm)
        x_train, train_rows = tables["train"]
        model = classifier(name, dm.seed).fit(x_train, [int(r["label"]) for r in train_rows])
        for test in dm.test_names:
            x_test, rows = tables[f"test/{test}"]
            scored = Scored(test, rows, model.predict_proba(x_test)[:, 1].astype(np.float64))
            prefix = f"baseline/{name}/test/{test}"
            flat.update({f"{prefix}/{k}": v for k, v in
                         level_values(scored, 0.5, intervals).items()})
            if file_level(rows):
                file_rows, file_scores = by_file(rows, scored.scores, aggregate)
                flat.update({f"{prefix}/file/{k}": v for k, v in level_values(
                    Scored(test, file_rows, file_scores), 0.5, intervals, "n_files").items()})
                files.append(M.write_file_predictions(
                    out_dir / f"baseline_{name}_{test}_files.csv", file_rows, file_scores, 0.5))
            files.append(M.write_predictions(out_dir / f"baseline_{name}_{test}.csv", rows,
                                             scored.scores, 0.5))
        log.info("baseline %s: fitted on %d clips", name, len(train_rows))
    return flat, files
