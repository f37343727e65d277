"""How often a 95 % percentile group-bootstrap interval of AUROC covers the true AUROC, by the
number of groups per class: the simulation behind ``verdict.MIN_GROUPS``
(``python -m deepfake_detect.bench.coverage``; numbers in docs/DESIGN.md).

Each simulated test set has ``k`` groups per class (collections, songs) of 1 to 8 files;
a file's score is its class shift, plus its group's shared offset, plus its own noise (all
Gaussian, group and file variance equal), so files of a group are correlated as real
collections are. The population AUROC is Phi(shift / sqrt(2 (var_group + var_file))).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from deepfake_detect.evaluation import stats

SHIFT, SD_GROUP, SD_FILE = 1.0, 1.0, 1.0


def simulated_set(k: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(scores, labels, groups) of one test set with ``k`` groups per class."""
    scores, labels, groups = [], [], []
    for label in (0, 1):
        for g in range(k):
            n = int(rng.integers(1, 9))
            offset = label * SHIFT + rng.normal(0, SD_GROUP)
            scores += list(offset + rng.normal(0, SD_FILE, n))
            labels += [label] * n
            groups += [f"{label}-{g}"] * n
    return np.asarray(scores), np.asarray(labels), np.asarray(groups)


def coverage(k: int, n_sets: int = 300, n_boot: int = 500, seed: int = 0) -> tuple[float, float]:
    """(share of intervals covering the population AUROC, mean interval width)."""
    truth = float(norm.cdf(SHIFT / np.sqrt(2 * (SD_GROUP ** 2 + SD_FILE ** 2))))
    rng = np.random.default_rng(seed)
    hits, widths = 0, []
    for i in range(n_sets):
        s, y, g = simulated_set(k, rng)
        found = stats.intervals_of(lambda a, b: {"auroc": stats.auroc(a, b)}, s, y, list(g),
                                   n_boot, 0.95, seed + i)["auroc"]
        hits += int(found.low <= truth <= found.high)
        widths.append(found.high - found.low)
    return hits / n_sets, float(np.mean(widths))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 3, 4, 5, 6, 8, 10, 15, 20,
                                                                   30])
    parser.add_argument("--sets", type=int, default=300)
    parser.add_argument("--boot", type=int, default=500)
    args = parser.parse_args(argv)
    print("groups per class | coverage of a nominal 95 % interval | mean width")
    for k in args.groups:
        share, width = coverage(k, args.sets, args.boot)
        print(f"{k:>16} | {share:>35.3f} | {width:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
