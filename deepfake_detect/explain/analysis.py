"""The ``explain`` config group and the analysis of one test set: band occlusion, saliency,
example maps; files ``occlusion_<name>.{csv,json,png}``, ``saliency_<name>.{json,png}`` and
``examples_<name>.png``."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_detect import atomic
from deepfake_detect.config import build, one_of, require
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.explain import occlusion as occ
from deepfake_detect.explain import plots
from deepfake_detect.explain import saliency as sal

log = logging.getLogger(__name__)

METHODS = ("integrated_gradients", "gradcam")
MASKS = ("mean", "floor")
LAYERS = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class ExplainConfig:
    """The ``explain`` config group (see ``conf/explain/default.yaml``)."""

    enabled: bool = False
    distortions: tuple[str, ...] | None = None
    max_clips: int | None = 100
    band_width: int = 4
    stride: int = 2
    mask: str = "mean"
    method: str = "integrated_gradients"
    steps: int = 8
    gradcam_layer: str = "layer3"
    n_examples: int = 4
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.distortions is not None:
            object.__setattr__(self, "distortions", tuple(self.distortions))
            require(len(self.distortions) > 0, "distortions", "list at least one, or null")
        require(isinstance(self.enabled, bool), "enabled", f"must be true or false, got "
                f"{self.enabled!r}")
        for key in ("band_width", "stride", "steps", "batch_size"):
            value = getattr(self, key)
            require(isinstance(value, int) and value > 0, key,
                    f"must be a positive integer, got {value!r}")
        require(self.max_clips is None or (isinstance(self.max_clips, int)
                                           and self.max_clips >= 2), "max_clips",
                f"must be an integer >= 2 or null (all clips), got {self.max_clips!r}")
        require(isinstance(self.n_examples, int) and self.n_examples >= 0, "n_examples",
                f"must be an integer >= 0, got {self.n_examples!r}")
        one_of(self.mask, MASKS, "mask")
        one_of(self.method, METHODS, "method")
        one_of(self.gradcam_layer, LAYERS, "gradcam_layer")

    def check_features(self, features: FeatureConfig) -> None:
        """The band must fit the mel axis."""
        require(self.band_width <= features.n_mels, "explain.band_width",
                f"must be <= features.n_mels ({features.n_mels}), got {self.band_width}")


def explain_config(resolved: Mapping[str, Any]) -> ExplainConfig:
    """The validated ``explain`` node of a resolved training config (checked against its
    feature config and ``eval.distortions``)."""
    cfg = build(ExplainConfig, resolved.get("explain"), "explain")
    cfg.check_features(build(FeatureConfig, resolved.get("features"), "features"))
    tests = list((resolved.get("eval") or {}).get("distortions") or [])
    unknown = [d for d in cfg.distortions or () if d not in tests]
    require(not unknown, "explain.distortions",
            f"{unknown} not among eval.distortions {tests}")
    return cfg


def select(labels: np.ndarray, max_clips: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_clips`` clips, seeded, taking the classes in turn."""
    if max_clips is None or len(labels) <= max_clips:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = [i for i in chain.from_iterable(zip_longest(*per_class)) if i is not None]
    return np.sort(np.array(order[:max_clips]))


def explain_test_set(detector: Any, features: np.ndarray, rows: list[dict[str, Any]],
                     cfg: ExplainConfig, threshold: float, out_dir: Path, name: str
                     ) -> list[Path]:
    """Explain ``detector`` (a Detector) on one test set: its cached rows ``features`` (log-mels
    or waveforms, which the detector's front end turns into log-mels) with their ``rows``;
    returns the files written."""
    feature_cfg = detector.features
    cfg.check_features(feature_cfg)
    start = time.perf_counter()
    labels_all = np.array([int(r["label"]) for r in rows])
    index = select(labels_all, cfg.max_clips)
    rows = [rows[i] for i in index]
    labels = labels_all[index]
    device = next(detector.parameters()).device
    x = torch.from_numpy(np.asarray(features[index], dtype=np.float32)).to(device)
    with torch.no_grad():
        x = detector.front_end.log_mel(x)
    was_training = detector.training
    detector.eval()
    try:
        band_list = occ.bands(feature_cfg.n_mels, cfg.band_width, cfg.stride)
        fill = (detector.front_end.mean.item() if cfg.mask == "mean"
                else x.amin(dim=(1, 2, 3)).reshape(-1, 1, 1, 1))
        result = occ.occlude(detector.score, x, labels, band_list, fill, threshold,
                             cfg.batch_size)
        maps = _saliency(detector, x, labels, cfg, fill)
    finally:
        detector.train(was_training)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, top = _write_occlusion(result, rows, feature_cfg, cfg, name, out_dir)
    files += _write_saliency(maps, x, rows, result.base, feature_cfg, cfg, name, out_dir)
    where = (f"peak AUROC drop {top['auroc_drop']:.3f} at {top['f_lo_hz']:.0f}-"
             f"{top['f_hi_hz']:.0f} Hz" if top else "AUROC undefined (one class)")
    log.info("explain %s: %d clips x %d bands, %s (%.1f s)", name, len(rows), len(band_list),
             where, time.perf_counter() - start)
    return files


def _saliency(detector: Any, x: torch.Tensor, labels: np.ndarray, cfg: ExplainConfig,
              fill: float | torch.Tensor) -> np.ndarray:
    y = torch.from_numpy(labels).to(x.device)
    parts = []
    for s in range(0, len(x), cfg.batch_size):
        xb, yb = x[s:s + cfg.batch_size], y[s:s + cfg.batch_size]
        if cfg.method == "gradcam":
            layer = detector.net.get_submodule(cfg.gradcam_layer)
            parts.append(sal.gradcam(detector, layer, xb, yb))
        else:
            fb = fill if isinstance(fill, float) else fill[s:s + cfg.batch_size]
            parts.append(sal.integrated_gradients(detector, xb, yb, fb, cfg.steps))
    return sal.normalise(torch.cat(parts).cpu())


def _groups(rows: list[dict[str, Any]], labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per generator: its AI clips together with all human clips (for a per-generator AUROC)."""
    gens = np.array([str(r["generator"]) for r in rows])
    return {gen: (labels == 0) | (gens == gen) for gen in sorted(set(gens[labels == 1]))}


def _write_occlusion(result: occ.Occlusion, rows: list[dict[str, Any]],
                     feature_cfg: FeatureConfig, cfg: ExplainConfig, name: str,
                     out_dir: Path) -> tuple[list[Path], dict[str, Any] | None]:
    """The occlusion CSV, JSON and PNG, and the band with the largest AUROC drop."""
    table = occ.table(result, feature_cfg, _groups(rows, result.labels))
    summary = {k: v for k, v in result.metrics().items() if k in ("n", "auroc", "accuracy")}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()}
                     for r in table)
    csv_path = atomic.write_text(out_dir / f"occlusion_{name}.csv", buffer.getvalue())
    payload = {"test_set": name, "threshold": result.threshold, "unmasked": summary,
               "mask": cfg.mask, "band_width": cfg.band_width, "stride": cfg.stride,
               "features": feature_cfg.as_dict(), "peak_auroc_drop": occ.peak(table),
               "peak_accuracy_drop": occ.peak(table, "accuracy_drop"), "bands": table}
    title = f"band occlusion, test set '{name}' ({cfg.band_width}-bin bands, mask {cfg.mask})"
    return [csv_path, atomic.write_json(out_dir / f"occlusion_{name}.json", payload),
            plots.plot_occlusion(table, summary, title, out_dir / f"occlusion_{name}.png")
            ], payload["peak_auroc_drop"]


def _write_saliency(maps: np.ndarray, x: torch.Tensor, rows: list[dict[str, Any]],
                    scores: np.ndarray, feature_cfg: FeatureConfig, cfg: ExplainConfig,
                    name: str, out_dir: Path) -> list[Path]:
    hz = occ.mel_centres_hz(feature_cfg)
    seconds = feature_cfg.duration
    profiles = sal.group_profiles(maps, rows)
    method = cfg.method.replace("_", " ")
    payload = {"test_set": name, "method": cfg.method,
               "target": "log-odds of the true class (positive part, sum 1 per clip)",
               "mel_centres_hz": hz.round(1).tolist(),
               "groups": {g: {"n": p["n"], "mel": p["mel"].tolist(), "time": p["time"].tolist()}
                          for g, p in profiles.items()},
               "config": asdict(cfg)}
    files = [atomic.write_json(out_dir / f"saliency_{name}.json", payload),
             plots.plot_saliency(profiles, hz, seconds, f"{method}, test set '{name}'",
                                 out_dir / f"saliency_{name}.png")]
    if cfg.n_examples:
        pick = select(np.array([int(r["label"]) for r in rows]), cfg.n_examples, seed=1)
        files.append(plots.plot_examples(
            x[pick, 0].cpu().numpy(), maps[pick], [rows[i] for i in pick], scores[pick], hz,
            seconds, f"examples, test set '{name}' ({method})", out_dir / f"examples_{name}.png"))
    return files


def explain_datamodule(detector: Any, dm: Any, cfg: ExplainConfig, threshold: float,
                       out_dir: Path) -> list[Path]:
    """Explain ``detector`` on each test set of a prepared AudioDataModule (all of them, or
    ``cfg.distortions``); the training run's end-of-run hook."""
    files: list[Path] = []
    for name in cfg.distortions or dm.test_names:
        entry = dm.entries[f"test/{name}"]
        files += explain_test_set(detector, entry.features, entry.rows, cfg, threshold,
                                  out_dir, name)
    return files
