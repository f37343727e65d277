"""The results of a run as a user reads them: plain-text tables within 100 columns (file level
first for audio files, 95 % intervals, n), one line per other test source (``eval.sources``),
the shortcut baselines beside the trained model (by its family's display name) and a verdict
per test set. Printed at the end of a run and again when a finished config is asked for. No
heavy imports."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from deepfake_detect.models.names import display_name, display_of_config
from deepfake_detect.reporting.verdict import verdict_lines
from deepfake_detect.runs import SWEEP_TAG, finished_result, run_dir_for

log = logging.getLogger(__name__)

# (metric key, column header)
COLUMNS = (("accuracy", "acc"), ("balanced_accuracy", "bal_acc"), ("auroc", "auroc"),
           ("eer", "eer"))
FIELD_COLUMNS = (("min_dcf", "minDCF"), ("act_dcf", "actDCF"), ("cllr", "Cllr"),
                 ("min_cllr", "minCllr"), ("ece", "ECE"))
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


def source_names(result: Mapping[str, Any]) -> list[str]:
    """The other test sources (``eval.sources``) in a result, in the order they were
    tested."""
    return list(dict.fromkeys(key.split("/")[1] for key in result
                              if key.startswith("sources/") and key.count("/") >= 2))


def model_label(result: Mapping[str, Any], resolved: Mapping[str, Any] | None = None) -> str:
    """The trained model's display name: the result's own (``model.display``), else the
    config's (a result stored before it named its model), else the default family's."""
    stored = result.get("model")
    if isinstance(stored, Mapping) and stored.get("display"):
        return str(stored["display"])
    return display_of_config(resolved) if resolved else display_name()


def cell(result: Mapping[str, Any], key: str) -> str:
    """``0.933 [0.89,0.97]``: a value with its interval when there is one; ``-`` when it is
    missing or undefined (nan: one class)."""
    value = _number(result.get(key))
    low, high = result.get(f"{key}_ci_low"), result.get(f"{key}_ci_high")
    if value is None or value != value:
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


def sources_table(result: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """One line per other test source (``eval.sources``, featurised under the first test
    distortion): file level where the source's files gave it, the columns of the test sets."""
    sources = source_names(result)
    if not sources:
        return []
    room = WIDTH - 12 - 19 * len(COLUMNS) + 2  # the last column needs no padding
    first = min(max([6, *(len(n) + 2 for n in sources)]) + 2, room)
    under = f" under {names[0]}" if names else ""
    lines = [f"other test sources (eval.sources{under}; file level, * window); 95 % intervals "
             "over groups:",
             "source".ljust(first) + f"{'n/groups':>10}  "
             + "".join(f"{title:<19}" for _, title in COLUMNS)]
    for name in sources:
        files = f"sources/{name}/file/n_files" in result
        prefix = f"sources/{name}/{'file/' if files else ''}"
        n = _number(result.get(prefix + ("n_files" if files else "n_clips")))
        groups = _number(result.get(prefix + "n_groups"))
        size = f"{int(n)}/{int(groups)}" if n is not None and groups is not None else "-"
        shown = f"{name}{'' if files else ' *'}"
        if len(shown) + 2 > first:  # a long name on a line of its own
            lines.append(shown)
            shown = ""
        lines.append(shown.ljust(first) + f"{size:>10}  "
                     + "".join(f"{cell(result, prefix + key):<19}" for key, _ in COLUMNS))
        missing = [what for what, key in (("human", "n_groups_human"), ("AI", "n_groups_ai"))
                   if _number(result.get(prefix + key)) == 0]
        if missing:
            lines.append(f"  {name}: no {' and no '.join(missing)} files, so AUROC and EER "
                         "are undefined")
    return lines


def results_table(result: Mapping[str, Any], names: Sequence[str] | None = None,
                  model: str | None = None) -> str:
    """File level (for audio files; alone when each file gave one window), then window
    level, then the other test sources, then baselines; ``model`` is the trained model's
    display name (default: :func:`model_label`)."""
    names = list(names) if names is not None else test_names(result)
    model = model or model_label(result)
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
    lines += sources_table(result, names)
    lines += field_table(result, names, levels[0][0])
    lines += baseline_lines(result, names, levels[0][0], model)
    lines += [part for line in verdict_lines(result, names, levels[0][0], model)
              for part in textwrap.wrap(line, WIDTH, subsequent_indent="    ")]
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


def baseline_lines(result: Mapping[str, Any], names: Sequence[str], level: str,
                   model: str | None = None) -> list[str]:
    """The baselines' AUROC per test set beside the trained model's (``model``: its display
    name)."""
    baselines = baselines_in(result)
    if not baselines:
        return []
    lines = [f"{VERDICT_METRIC} beside shortcut baselines on the same split "
             f"({'file' if level else 'window'} level):",
             f"{'model':<17}" + "".join(f"{test[:18]:<19}" for test in names)]
    fused = [("fusion", "fusion/test")] if any(k.startswith("fusion/") for k in result) else []
    for name, prefix in [(model or display_name(), "test"),
                         *((b, f"baseline/{b}/test") for b in baselines), *fused]:
        lines.append(f"{name[:16]:<17}" + "".join(
            f"{cell(result, f'{prefix}/{test}/{level}{VERDICT_METRIC}'):<19}" for test in names))
    return lines


def field_table(result: Mapping[str, Any], names: Sequence[str], level: str) -> list[str]:
    """The field's detection costs (ASVspoof practice) per test set, at ``level``."""
    if not any(f"test/{n}/{level}min_dcf" in result for n in names):
        return []
    first = max([4, *map(len, names)]) + 2
    lines = ["detection costs (minDCF, actDCF: eval.dcf; Cllr, minCllr in bits; ECE):",
             "test".ljust(first) + "".join(f"{title:<18}" for _, title in FIELD_COLUMNS)]
    for name in names:
        prefix = f"test/{name}/{level}"
        lines.append(name.ljust(first) + "".join(f"{cell(result, prefix + key):<18}"
                                                 for key, _ in FIELD_COLUMNS))
    return lines


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
    log.info("results:\n%s", results_table(done, model=model_label(done, resolved)))
    log.info("MLflow run %s at %s", done.get("run_id", "?"), done.get("tracking_uri", "?"))
    sweep = ((resolved.get("logger") or {}).get("tags") or {}).get(SWEEP_TAG)
    if sweep and done.get("run_id") and done.get("tracking_uri"):  # reported by this sweep
        from deepfake_detect.tracking import join_sweep_at  # MLflow: only inside a sweep

        join_sweep_at(str(done["tracking_uri"]), str(done["run_id"]), str(sweep))
    if (resolved.get("explain") or {}).get("enabled"):
        log.info("explain.enabled has no effect on a finished run; run "
                 "deepfake-detect-explain --model %s", done.get("run_dir", "<run dir>"))
    return done
