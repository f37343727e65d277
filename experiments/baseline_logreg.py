"""Global-statistics baseline: logistic regression on per-band mean and std of the log-mel.

It reads the very features, splits and test distortions a training config uses (from the
feature cache, so after a training run nothing is recomputed) and prints test accuracy per
test distortion — the figure the CNN has to beat clearly on the embedded benchmark.

    python experiments/baseline_logreg.py experiment=quickstart [overrides...]

Needs scikit-learn (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import sys

import numpy as np
from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepfake_detect.config import conf_dir
from deepfake_detect.plan import plan

CONF_DIR = conf_dir()


def band_statistics(features: np.ndarray) -> np.ndarray:
    """(clips, 2 * n_mels): mean and std over time of every mel band."""
    x = np.asarray(features, dtype=np.float64)
    return np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)


def main(overrides: list[str]) -> dict[str, float]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    p = plan(cfg)
    dm = p.datamodule
    dm.prepare()
    train = [dm.entries["train"], dm.entries["val"]]
    x = np.concatenate([band_statistics(e.features) for e in train])
    y = np.concatenate([e.labels for e in train])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    model.fit(x, y)
    result = {}
    for name in dm.test_names:
        entry = dm.entries[f"test/{name}"]
        result[name] = float((model.predict(band_statistics(entry.features)) ==
                              entry.labels).mean())
    print("| test distortion | logistic regression accuracy |\n|---|---|")
    for name, acc in result.items():
        print(f"| {name} | {acc:.3f} |")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
