"""The results of a run as a user reads them: plain-text tables within 100 columns (file level
first for audio files, 95 % intervals, n), the shortcut baselines beside the
CNN and a one-line verdict when the CNN is not distinguishable from them. Printed at the end
of a run and again when a finished config is asked for. No heavy imports."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from deepfake_detect.runs import SWEEP_TAG, finished_result, run_dir_for

log = logging.getLogger(__name__)

# (metric key, column header)
COLUMNS = (("accuracy", "acc"), ("balanced_accuracy", "bal_acc"), ("auroc", "auroc"),
           ("eer", "eer"))
WIDTH = 100
VERDICT_METRIC = "auroc"


def test_names(result: Mapping[str, Any]) -> list[str]:
    """The test distortions in a result, in the order they were tested."""
    names: list[str] = []
    for key in result:
        parts = key.split("/")
        if len(parts) >= 3 and parts[0] == "test" and parts[1] not in names:
            names.append(parts[1])
    return names


def cell(result: Mapping[str, Any], key: str) -> str:
    """``0.933 [0.89,0.97]``: a value with its interval when there is one."""
    value = _number(result.get(key))
    low, high = result.get(f"{key}_ci_low"), result.get(f"{key}_ci_high")
    if value is None:
        return "-"
    if low is None or high is None or _number(low) is None or low != low:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.2f},{high:.2f}]"


def level_table(result: Mapping[str, Any], names: Sequence[str], level: str) -> list[str]:
    """The rows of one level (``""``: window, ``"file/"``: file) for each test set."""
    count = "n_files" if level else "n_clips"
    first = max([4, *map(len, names)]) + 2
    lines = ["test".ljust(first) + f"{'n/groups':>10}  "
             + "".join(f"{title:<19}" for _, title in COLUMNS)]
    for name in names:
        prefix = f"test/{name}/{level}"
        n, groups = _number(result.get(prefix + count)), _number(result.get(prefix + "n_groups"))
        size = f"{int(n)}/{int(groups)}" if n is not None and groups is not None else "-"
        lines.append(name.ljust(first) + f"{size:>10}  "
                     + "".join(f"{cell(result, prefix + key):<19}" for key, _ in COLUMNS))
    return lines


def results_table(result: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """File level (for audio files; alone when each file gave one window), then window
    level, then baselines."""
    names = list(names) if names is not None else test_names(result)
    levels = [("file/", "file level (windows aggregated per file)")] if any(
        key.startswith(f"test/{n}/file/") for n in names for key in result) else []
    if levels and all(result.get(f"test/{n}/file/n_files") == result.get(f"test/{n}/n_clips")
                      for n in names):
        levels = [("file/", "file level (one window per file)")]  # the same numbers twice
    else:
        levels.append(("", "window level (one row per clip)"))
    lines = []
    for level, title in levels:
        lines += [f"{title}; 95 % intervals over groups:", *level_table(result, names, level)]
    lines += baseline_lines(result, names, levels[0][0])
    if any("/attribution/" in key for key in result):
        lines.append("attribution (closed set):")
        for name in names:
            bal = cell(result, f"test/{name}/attribution/balanced_accuracy")
            f1 = cell(result, f"test/{name}/attribution/macro_f1")
            lines.append(f"  {name}: balanced acc {bal}, macro F1 {f1}")
    if "selected_epoch" in result:
        lines.append(f"packaged: epoch {result['selected_epoch']} "
                     f"({result.get('selection', '')})")
    return "\n".join(line.rstrip()[:WIDTH] for line in lines)


def baselines_in(result: Mapping[str, Any]) -> list[str]:
    return sorted({key.split("/")[1] for key in result if key.startswith("baseline/")})


def baseline_lines(result: Mapping[str, Any], names: Sequence[str], level: str) -> list[str]:
    """The baselines' AUROC per test set beside the CNN's, and a verdict line where the CNN's
    interval does not clear the best baseline's point estimate."""
    baselines = baselines_in(result)
    if not baselines:
        return []
    lines = [f"{VERDICT_METRIC} beside shortcut baselines on the same split "
             f"({'file' if level else 'window'} level):",
             f"{'model':<17}" + "".join(f"{test[:18]:<19}" for test in names)]
    for name, prefix in [("CNN", "test"), *((b, f"baseline/{b}/test") for b in baselines)]:
        lines.append(f"{name:<17}" + "".join(
            f"{cell(result, f'{prefix}/{test}/{level}{VERDICT_METRIC}'):<19}" for test in names))
    return lines + verdicts(result, names, level)


def verdicts(result: Mapping[str, Any], names: Sequence[str], level: str) -> list[str]:
    out = []
    for test in names:
        low = _number(result.get(f"test/{test}/{level}{VERDICT_METRIC}_ci_low"))
        best = max(((v, b) for b in baselines_in(result) if (v := _number(result.get(
            f"baseline/{b}/test/{test}/{level}{VERDICT_METRIC}"))) is not None and v == v),
            default=None)
        if low is not None and low == low and best is not None and low <= best[0]:
            out.append(f"verdict ({test}): not distinguishable from {best[1]} "
                       f"(CNN {cell(result, f'test/{test}/{level}{VERDICT_METRIC}')} vs "
                       f"{best[0]:.3f})")
    return out


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def finished_run(resolved: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored result of a config that already finished (``resume`` on), reported as a
    run's end would be: the results table and the MLflow run. None otherwise. Cheap: no data,
    no torch (a finished job of a re-run sweep is skipped in well under a second)."""
    done = finished_result(resolved)
    if done is None:
        return None
    name = run_dir_for(resolved).path.name
    log.info("%s already finished; its stored results (resume=false trains it again):", name)
    log.info("results:\n%s", results_table(done))
    log.info("MLflow run %s at %s", done.get("run_id", "?"), done.get("tracking_uri", "?"))
    sweep = ((resolved.get("logger") or {}).get("tags") or {}).get(SWEEP_TAG)
    if sweep and done.get("run_id") and done.get("tracking_uri"):  # reported by this sweep
        from deepfake_detect.tracking import join_sweep_at  # MLflow: only inside a sweep

        join_sweep_at(str(done["tracking_uri"]), str(done["run_id"]), str(sweep))
    if (resolved.get("explain") or {}).get("enabled"):
        log.info("explain.enabled has no effect on a finished run; run "
                 "deepfake-detect-explain --model %s", done.get("run_dir", "<run dir>"))
    return done
