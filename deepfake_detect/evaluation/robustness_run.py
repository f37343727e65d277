"""``deepfake-detect-robustness``'s job: a robustness curve of any trained model on the test
split of a composed config, without retraining; the curves themselves are
:mod:`deepfake_detect.evaluation.robustness`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfake_detect import tracking
from deepfake_detect.config import build
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.data.presets import CurveSpec, curve_points
from deepfake_detect.evaluation import stats
from deepfake_detect.evaluation.model_job import model_job
from deepfake_detect.evaluation.robustness import compute_curves, loop_scorer, write_curve
from deepfake_detect.inference.scoring import resolve_device
from deepfake_detect.models.refs import load_model

log = logging.getLogger(__name__)


def robustness_model(model: Any, distortion: str, values: Sequence[float],
                     overrides: Sequence[str] = (), *, effect: str | None = None,
                     out: Path | None = None, mlflow: bool = True,
                     tracking_uri: str | None = None, device: str = "auto",
                     n_boot: int = stats.N_BOOT) -> dict[str, Any]:
    """A robustness curve of any trained model (what ``deepfake-detect-robustness`` runs) on
    the test split of ``conf/train.yaml`` composed with ``overrides``, through the feature
    cache, with the model's own features, rows (features or waveforms) and threshold. Files
    go to ``out`` and, when the model's MLflow run is in the store, to it under
    ``robustness/``."""
    job = model_job(overrides, tracking_uri)
    resolved, seed, uri = job.resolved, job.seed, job.tracking_uri
    spec = build(CurveSpec, {"distortion": distortion, "values": list(values),
                             "effect": effect}, "robustness")
    loaded = load_model(model, uri)
    points = curve_points(spec, "robustness", loaded.features.sample_rate)
    detector = loaded.detector.to(resolve_device(device))
    data = dict(resolved["data"])  # the rows the model was trained on
    data["cache"] = {**(data.get("cache") or {}), "store": detector.front_end.store}
    dm = AudioDataModule(data, loaded.features, points[0], [], seed)
    log.info("%s", loaded.describe())
    curve, = compute_curves(dm, [(spec, points)], loop_scorer(detector, dm.loader.batch_size),
                            loaded.threshold, n_boot)
    run_id = loaded.meta.get("run_id")
    out = Path(out) if out else job.out_dir("robustness", loaded)
    meta = {"source": str(loaded.source), "run_id": run_id,
            "train_distortion": loaded.meta.get("train_distortion"),
            "threshold_rule": loaded.threshold_rule, "seed": seed}
    files = write_curve(curve, out, meta)
    logged = tracking.log_to_run(files, run_id, uri, "robustness") if mlflow else None
    return {"files": [str(f) for f in files], "out": str(out), "run_id": logged,
            "curve": curve}
