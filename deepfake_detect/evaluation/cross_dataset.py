"""Tests across datasets in one run (``eval.sources``): the trained model on other sources.

Each entry names a test source and gives its ``data.source`` node (any source: folder,
manifest, fakemusiccaps, sonics, synthetic), e.g.::

    eval:
      sources:
        - {name: sonics, source: {name: sonics, root: /data/sonics}}
        - {name: my_folder, source: {name: folder, root: /data/mine}, split: all}

``split: all`` (default) tests every clip of the source; ``test`` only its test split under
the run's ``data.split``. The window length defaults to ``features.duration``. Each source is
featurised under the run's first test distortion (cached like any test set) and scored by
the selected model at the run's threshold; the values are logged as
``sources/<name>/<metric>`` (``sources/<name>/file/<metric>`` per file, with the same
group-bootstrap intervals), and the shortcut baselines, fitted on the run's own training
split, as ``baseline/<b>/sources/<name>/...``. Predictions go to
``artifacts/sources/predictions_<name>.csv``. A source holding one class only (a copy of the
fakes alone) is tested too: the metrics that need both classes are then undefined (nan).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect.config import require
from deepfake_detect.data.cache import CacheEntry, Request
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.data.keys import feature_parts, row_parts
from deepfake_detect.data.sets import FeatureWork
from deepfake_detect.data.sources import build_source
from deepfake_detect.data.splits import split_clips
from deepfake_detect.evaluation import metrics as M
from deepfake_detect.evaluation.aggregate import by_file, file_level
from deepfake_detect.evaluation.baselines import classifier, feature_tables, source_features
from deepfake_detect.evaluation.evaluate import Intervals, Scored, level_values

log = logging.getLogger(__name__)
SPLITS = ("all", "test")
NAME = re.compile(r"[A-Za-z0-9_.-]+")
PREFIX = "sources"


@dataclass(frozen=True)
class TestSource:
    """One entry of ``eval.sources``."""

    name: str
    source: dict[str, Any] = field(default_factory=dict)
    split: str = "all"

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and NAME.fullmatch(self.name) is not None, "name",
                "must be a name of letters, digits, '_', '-' and '.' (it names the metrics "
                f"sources/<name>/...), got {self.name!r}")
        require(isinstance(self.source, Mapping) and bool(self.source.get("name")), "source",
                "must be a data.source node with its name (folder, manifest, fakemusiccaps, "
                f"sonics, synthetic), got {self.source!r}")
        require(self.split in SPLITS, "split",
                f"must be one of {', '.join(SPLITS)}, got {self.split!r}")
        object.__setattr__(self, "source", dict(self.source))


def parse_sources(value: Any) -> tuple[TestSource, ...]:
    """``eval.sources`` as TestSource entries (names unique); ConfigError naming the entry."""
    from deepfake_detect.config import build

    items = list(value or ())
    specs = tuple(item if isinstance(item, TestSource) else
                  build(TestSource, item, f"eval.sources.{i}") for i, item in enumerate(items))
    names = [s.name for s in specs]
    require(len(set(names)) == len(names), "eval.sources", f"names a source twice: {names}")
    return specs


def source_entries(dm: AudioDataModule, specs: tuple[TestSource, ...]
                   ) -> dict[str, tuple[Any, CacheEntry]]:
    """Each test source (built from its node) and its cache entry under the run's first test
    distortion, all built in one pool."""
    distortion = dm.test_distortions[0]
    sources, requests = {}, []
    for spec in specs:
        src = build_source({"duration": dm.features.duration, **spec.source})
        clips = src.clips()
        if spec.split == "test":
            clips = split_clips(clips, dm.split_cfg)["test"]
        work = FeatureWork(src, distortion, dm.features, dm.seed, dm.store == "waveform")
        requests.append(Request(feature_parts(dm.features, dm.store), clips, work,
                                dm.sets.shape, f"{PREFIX}/{spec.name}",
                                [row_parts(src, c, distortion, dm.seed) for c in clips]))
        sources[spec.name] = src
    built = dm.sets.cache.get_or_build_many(requests)
    for _, stats in built:
        dm.stats.add(stats)
    return {spec.name: (sources[spec.name], entry)
            for spec, (entry, _) in zip(specs, built, strict=True)}


def evaluate_sources(specs: tuple[TestSource, ...], dm: AudioDataModule,
                     score: Callable[[CacheEntry], np.ndarray], threshold: float,
                     intervals: Intervals, aggregate: str, baselines: tuple[str, ...],
                     out_dir: Path) -> tuple[dict[str, float], list[Path]]:
    """``sources/<name>/...`` values of the model and the baselines on every test source,
    and the predictions CSVs."""
    if not specs:
        return {}, []
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = source_entries(dm, specs)
    flat: dict[str, float] = {}
    files: list[Path] = []
    fitted = {name: _fit(name, dm) for name in baselines}
    for name, (src, entry) in entries.items():
        if not entry.rows:
            log.warning("test source %s: no usable clip (%d skipped)", name, len(entry.skipped))
            continue
        scored = Scored(name, entry.rows, score(entry).astype(np.float64))
        flat.update(_levels(f"{PREFIX}/{name}", scored, threshold, intervals, aggregate,
                            out_dir / f"predictions_{name}", files))
        for base, model in fitted.items():
            x = source_features(base, dm, src, entry)
            base_scored = Scored(name, entry.rows, model.predict_proba(x)[:, 1])
            flat.update(_levels(f"baseline/{base}/{PREFIX}/{name}", base_scored, 0.5,
                                intervals, aggregate, out_dir / f"baseline_{base}_{name}",
                                files))
        _say(name, entry, flat)
    return flat, files


def _fit(name: str, dm: AudioDataModule) -> Any:
    x_train, rows = feature_tables(name, dm)["train"]
    return classifier(name, dm.seed).fit(x_train, [int(r["label"]) for r in rows])


def _levels(prefix: str, scored: Scored, threshold: float, intervals: Intervals,
            aggregate: str, stem: Path, files: list[Path]) -> dict[str, float]:
    """Window and file level values under ``prefix``; their CSVs appended to ``files``."""
    out = {f"{prefix}/{k}": v for k, v in level_values(scored, threshold, intervals).items()}
    files.append(M.write_predictions(stem.with_suffix(".csv"), scored.rows, scored.scores,
                                     threshold))
    if file_level(scored.rows):
        rows, scores = by_file(scored.rows, scored.scores, aggregate)
        values = level_values(Scored(scored.name, rows, scores), threshold, intervals,
                              "n_files")
        out.update({f"{prefix}/file/{k}": v for k, v in values.items()})
        files.append(M.write_file_predictions(stem.parent / f"{stem.name}_files.csv", rows,
                                              scores, threshold))
    return out


def _say(name: str, entry: CacheEntry, flat: dict[str, float]) -> None:
    level = f"{PREFIX}/{name}/file/" if f"{PREFIX}/{name}/file/auroc" in flat else \
        f"{PREFIX}/{name}/"
    labels = [int(r["label"]) for r in entry.rows]
    log.info("test source %s: %d clip(s) (%d human, %d AI-generated, %d skipped): AUROC "
             "%.3f, accuracy %.3f (%s level)", name, len(labels), labels.count(0),
             labels.count(1), len(entry.skipped), flat.get(f"{level}auroc", float("nan")),
             flat.get(f"{level}accuracy", float("nan")),
             "file" if level.endswith("file/") else "window")
