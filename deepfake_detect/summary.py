"""The results of a run as a user reads them: a plain-text table within 100 columns, printed
at the end of a run and again when a finished config is asked for. No heavy imports."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from deepfake_detect.runs import finished_result, run_dir_for
from deepfake_detect.tracking import SWEEP_TAG, join_sweep_at

log = logging.getLogger(__name__)

# (metric key, column header)
COLUMNS = (("accuracy", "acc"), ("balanced_accuracy", "bal_acc"), ("precision", "precision"),
           ("recall", "recall"), ("f1", "f1"), ("auroc", "auroc"), ("eer", "eer"))
WIDTH = 100


def test_names(result: Mapping[str, Any]) -> list[str]:
    """The test distortions in a result, in the order they were tested."""
    names: list[str] = []
    for key in result:
        parts = key.split("/")
        if len(parts) >= 3 and parts[0] == "test" and parts[1] not in names:
            names.append(parts[1])
    return names


def results_table(result: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """One row per test distortion, one column per metric (window level)."""
    names = list(names) if names is not None else test_names(result)
    first = max([4, *map(len, names)]) + 2
    header = "test".ljust(first) + "".join(f"{title:>10}" for _, title in COLUMNS)
    lines = [header, "-" * len(header)]
    for name in names:
        cells = "".join(f"{_number(result.get(f'test/{name}/{key}')):>10}"
                        for key, _ in COLUMNS)
        lines.append(name.ljust(first) + cells)
    if any("/attribution/" in key for key in result):
        lines.append("attribution (closed set):")
        for name in names:
            bal = _number(result.get(f"test/{name}/attribution/balanced_accuracy"))
            f1 = _number(result.get(f"test/{name}/attribution/macro_f1"))
            lines.append(f"  {name}: balanced acc {bal}, macro F1 {f1}")
    return "\n".join(line[:WIDTH] for line in lines)


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return "nan" if number != number else f"{number:.4f}"


def finished_run(resolved: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored result of a config that already finished (``resume`` on), reported as a
    run's end would be: the results table and the MLflow run. None otherwise. Cheap: no data,
    no torch (a finished job of a re-run sweep is skipped in well under a second)."""
    done = finished_result(resolved)
    if done is None:
        return None
    name = run_dir_for(resolved).path.name
    log.info("%s already finished; its stored results (resume=false trains it again):", name)
    log.info("results (window level):\n%s", results_table(done))
    log.info("MLflow run %s at %s", done.get("run_id", "?"), done.get("tracking_uri", "?"))
    sweep = ((resolved.get("logger") or {}).get("tags") or {}).get(SWEEP_TAG)
    if sweep and done.get("run_id") and done.get("tracking_uri"):  # reported by this sweep
        join_sweep_at(str(done["tracking_uri"]), str(done["run_id"]), str(sweep))
    if (resolved.get("explain") or {}).get("enabled"):
        log.info("explain.enabled has no effect on a finished run; run "
                 "deepfake-detect-explain --model %s", done.get("run_dir", "<run dir>"))
    return done
