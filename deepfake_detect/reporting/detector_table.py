"""The detectors table of a study that compares detectors (``experiment=detectors``): one row
per detector (model family x front end) and per shortcut baseline, each with the pooled
predictions of all its runs (the out-of-fold predictions of a k-fold, every held-out
generator of leave-one-generator-out, or the one test set of a cross-dataset run): AUROC and
EER with 95 % intervals from a bootstrap over groups, and n. One ROC figure per test
distortion overlays every detector and baseline.

``section(client, runs, tests)`` gives markdown lines, summary metrics, the figures and the
table as plain rows (for the HTML report to render). A detector is shown by its family's
display name (:mod:`deepfake_detect.models.names`); the ``model`` column and the summary
metrics' keys keep the config's names.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from deepfake_detect import atomic
from deepfake_detect.evaluation import stats
from deepfake_detect.models.names import display_name
from deepfake_detect.reporting.studies import level_of, pooled_predictions

DEFAULT = ("resnet18", "logmel")
COLUMNS = ("detector", "model", "front end", "runs", "n files / groups", "pooled AUROC",
           "pooled EER")


def detector_of(run: Any) -> tuple[str, str]:
    """(model family, front end) of a run, from its params (``features.kind`` is absent
    from runs of the default log-mel)."""
    params = run.data.params
    return params.get("model.name", "resnet18"), params.get("features.kind", "logmel")


def label(detector: tuple[str, str]) -> str:
    """``LCNN · stft``: the family's display name and the front end."""
    return f"{display_name(detector[0])} · {detector[1]}"


def compares_detectors(runs: list[Any]) -> bool:
    """Whether the runs hold more than one detector."""
    return len({detector_of(r) for r in runs}) > 1


def by_detector(runs: list[Any]) -> dict[tuple[str, str], list[Any]]:
    """Runs per detector, the default first, then in name order."""
    out: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for run in runs:
        out[detector_of(run)].append(run)
    return dict(sorted(out.items(), key=lambda item: (item[0] != DEFAULT, item[0])))


def pooled_row(client: Any, runs: list[Any], artifact: str, name: str, detector: tuple[str, str],
               n_boot: int) -> dict[str, Any] | None:
    """One table row from the pooled predictions in ``artifact`` of ``runs`` (None when a
    run lacks them)."""
    pooled = pooled_predictions(client, runs, artifact)
    if pooled is None or len(set(pooled[1].tolist())) < 2:
        return None
    scores, labels, groups = pooled
    values = stats.intervals(scores, labels, groups, n_boot=n_boot, metrics=("auroc", "eer"))
    return {"detector": name, "key": f"{detector[0]}_{detector[1]}", "model": detector[0],
            "front end": detector[1], "runs": len(runs),
            "n files / groups": f"{len(labels)} / {values['auroc'].n_groups}",
            "pooled AUROC": values["auroc"].text(), "pooled EER": values["eer"].text(),
            "auroc": values["auroc"].value, "eer": values["eer"].value,
            "auroc_low": values["auroc"].low, "auroc_high": values["auroc"].high,
            "curve": stats.roc(scores, labels)[:2]}


def baseline_names(runs: list[Any]) -> list[str]:
    return sorted({k.split("/")[1] for r in runs for k in r.data.metrics
                   if k.startswith("baseline/")})


def table(client: Any, runs: list[Any], test: str, n_boot: int = 1000) -> list[dict[str, Any]]:
    """The rows for test distortion ``test``: every detector, then every baseline (pooled
    over the runs of the default detector, or of the first one that has them: baselines do
    not depend on the detector's model, and their band statistics read its front end)."""
    level = level_of(runs, test)
    suffix = "_files" if level else ""
    groups = by_detector(runs)
    rows = []
    for detector, members in groups.items():
        row = pooled_row(client, members, f"predictions_{test}{suffix}.csv", label(detector),
                         detector, n_boot)
        if row is not None:
            rows.append(row)
    hosts = [members for members in groups.values() if baseline_names(members)]
    if hosts:
        host = hosts[0]
        source = label(detector_of(host[0]))
        for name in baseline_names(host):
            row = pooled_row(client, host, f"baselines/baseline_{name}_{test}{suffix}.csv",
                             f"baseline: {name}", ("baseline", name), n_boot)
            if row is not None:
                row["front end"] = "file metadata" if name == "recording_chain" else \
                    f"({source}'s runs)"
                rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], test: str, level: str) -> list[str]:
    lines = [f"## Detectors: test distortion {test} ({level.rstrip('/') or 'window'} level)", "",
             "Each detector's predictions pooled over all its runs (out of fold for a "
             "k-fold), AUROC and EER with 95 % intervals over groups; the shortcut baselines "
             "are rows of the same table. A detector is ahead of a baseline only where its "
             "interval clears the baseline's value.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    best = max((r for r in rows if r["model"] == "baseline"), key=lambda r: r["auroc"],
               default=None)
    if best is not None:
        ahead = [r["detector"] for r in rows if r["model"] != "baseline"
                 and r["auroc_low"] == r["auroc_low"] and r["auroc_low"] > best["auroc"]]
        lines += ["", (f"Ahead of the best shortcut baseline ({best['detector']}, AUROC "
                       f"{best['auroc']:.3f}): {', '.join(ahead)}." if ahead else
                       f"No detector's AUROC interval clears the best shortcut baseline "
                       f"({best['detector']}, {best['auroc']:.3f}).")]
    return [*lines, ""]


def roc_figure(rows: list[dict[str, Any]], test: str, path: Path) -> Path:
    """Every detector's and baseline's pooled ROC curve on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.5))
    for row in rows:
        fpr, tpr = row["curve"]
        style = "--" if row["model"] == "baseline" else "-"
        ax.plot(fpr, tpr, style, label=f"{row['detector']} ({row['auroc']:.3f})", lw=1.5)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set(xlabel="false positive rate (human called AI)", ylabel="true positive rate",
           title=f"Pooled ROC, test distortion {test}", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    return atomic.save_figure(fig, path)


def section(client: Any, runs: list[Any], tests: list[str], out_dir: Path,
            n_boot: int = 1000) -> tuple[list[str], dict[str, float], list[Path],
                                         dict[str, list[dict[str, Any]]]]:
    """Markdown lines, summary metrics (``detectors/<test>/<detector>/auroc``), ROC figures
    and the rows per test (without curves) when the runs compare detectors; else nothing."""
    if not compares_detectors(runs):
        return [], {}, [], {}
    lines: list[str] = []
    logged: dict[str, float] = {}
    figures: list[Path] = []
    tables: dict[str, list[dict[str, Any]]] = {}
    for test in tests:
        rows = table(client, runs, test, n_boot)
        if not rows:
            continue
        lines += markdown(rows, test, level_of(runs, test))
        figures.append(roc_figure(rows, test, out_dir / f"detectors_roc_{test}.png"))
        lines += [f"![pooled ROC]({figures[-1].name})", ""]
        for row in rows:
            key = row["key"]  # config names: the keys of earlier reports
            logged[f"detectors/{test}/{key}/auroc"] = row["auroc"]
            logged[f"detectors/{test}/{key}/eer"] = row["eer"]
        tables[test] = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    return lines, logged, figures, tables

