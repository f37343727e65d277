"""report.html as a reader meets it, and the summary run: the study's own sections first
(with a pooled ROC figure), headers that say what the runs differ in, per-generator tables
that fit the page, nothing with one cell; one summary run per scope (ten reports leave one, a
killed report's RUNNING run is cleaned by the next); the page rendered by a real headless
Chromium where one is installed."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from deepfake_detect import tracking
from deepfake_detect.reporting import report
from deepfake_detect.reporting.report_html import (
    Section,
    Table,
    generator_table,
    sections_from_markdown,
)
from deepfake_detect.reporting.studies import differences

ODD = "ACE-Step_(probable)"  # a generator name MLflow refuses in a key, as folders give it
UNICODE = "Müsic Gen, v2.0"


def fake_run(tags: dict, params: dict | None = None, metrics: dict | None = None):
    return SimpleNamespace(data=SimpleNamespace(tags=tags, params=params or {},
                                                metrics=metrics or {}))


def test_a_wide_table_wraps_and_a_single_value_is_a_sentence() -> None:
    wide = Table(["generator", *(f"c{i}" for i in range(20))], [["g", *map(str, range(20))]])
    page = wide.html()
    assert page.count("<table>") == 3 and page.count("<td>g</td>") == 3  # 8 + 8 + 4 columns
    one = Section("s", [Table(["model", "AUROC"], [["CNN", "0.9"]])]).html()
    assert "<table>" not in one and "AUROC of CNN: <b>0.9</b>" in one


def test_markdown_sections_become_page_sections() -> None:
    found = sections_from_markdown(["## Cross-dataset", "", "Rows: training source.", "",
                                    "| train \\ test | a | b |", "|---|---|---|",
                                    "| x | 0.5 | 0.6 |", "", "## Next", "text"])
    assert [s.title for s in found] == ["Cross-dataset", "Next"]
    table = found[0].blocks[1]
    assert table.header == ["train \\ test", "a", "b"] and table.rows == [["x", "0.5", "0.6"]]
    assert "<td>0.6</td>" in found[0].html()


def test_a_whole_table_in_one_item_becomes_a_table_not_a_heading() -> None:
    found = sections_from_markdown(["# Detection costs", "## min_dcf\n\n| train \\ test | a |\n"
                                    "|---|---|\n| x | 0.25 |\n"])
    assert [s.title for s in found] == ["Detection costs", "min_dcf"]
    assert found[1].blocks[0].rows == [["x", "0.25"]] and "|" not in found[1].title


def test_headers_name_what_the_runs_differ_in() -> None:
    folds = [fake_run({"train_distortion": "base", "fold": str(i)}, {"seed": "0"})
             for i in range(5)]
    assert differences(folds) == ("5 runs: 5 folds (0–4); training distortion base, seed 0",
                                  "5 folds")
    held = [fake_run({"train_distortion": "base", "holdout_generator": g}, {"seed": "0"})
            for g in ("MusicGen", ODD)]
    assert differences(held)[0] == "2 runs: 2 held-out generators; training distortion base, " \
                                   "seed 0"
    grid = [fake_run({"train_distortion": d}, {"seed": str(s)})
            for d in ("base", "pitch") for s in (1, 2, 3)]
    assert differences(grid) == ("6 runs: 2 training distortions × 3 seeds (1, 2, 3)", "3 seeds")


def test_the_generator_table_grows_down_with_the_real_names() -> None:
    key = tracking.metric_key(ODD)
    values = {f"acc_{key}": {("base", "base"): [0.5, 0.7]}, "acc_human": {("base", "base"): [1.0]}}
    grid = report.Grid(["base"], ["base"], values, 2)
    table = generator_table(grid, {key: ODD})
    assert table.header == ["generator", "accuracy"]
    assert table.rows == [[ODD, "0.600 ± 0.141 (2)"], ["human", "1.000"]]


# --- a real sqlite store -------------------------------------------------------------------


def predictions(rng: np.random.Generator, fold: int, shift: float) -> str:
    """A predictions CSV as training writes it: 8 groups, one human and one AI clip each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["clip_id", "group", "file", "generator", "label", "score", "prediction"])
    for g in range(8):
        for label, generator in ((0, "human"), (1, ODD if g % 2 else UNICODE)):
            score = float(np.clip(rng.normal(0.5 + shift * (label - 0.5), 0.2), 0, 1))
            writer.writerow([f"f{fold}g{g}{label}", f"f{fold}g{g}", f"f{fold}g{g}{label}.wav",
                             generator, label, score, int(score >= 0.5)])
    return buffer.getvalue()


def kfold_store(tmp_path: Path, folds: int = 3) -> tuple[str, MlflowClient, str]:
    """Three FINISHED folds, each with the CNN's and band_stats' predictions, per-generator
    accuracy under keys made by metric_key and the names tag, as training logs them."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("kfold", artifact_location=(tmp_path / "art").as_uri())
    rng = np.random.default_rng(0)
    for fold in range(folds):
        run = client.create_run(experiment, tags={"train_distortion": "base", "fold": str(fold),
                                                  "folds": str(folds),
                                                  **tracking.names_tag([ODD, UNICODE])})
        rid = run.info.run_id
        params = {"seed": 0, "data.split.folds": folds, "data.split.fold": fold,
                  "eval.distortions": "['base']"}
        folder = tmp_path / "src" / rid
        (folder / "baselines").mkdir(parents=True)
        (folder / "predictions_base.csv").write_text(predictions(rng, fold, 0.6))
        (folder / "baselines" / "baseline_band_stats_base.csv").write_text(
            predictions(rng, fold, 0.2))
        client.log_artifact(rid, str(folder / "predictions_base.csv"))
        client.log_artifact(rid, str(folder / "baselines" / "baseline_band_stats_base.csv"),
                            "baselines")
        values = {f"{prefix}/{metric}": float(rng.uniform(0.4, 0.9))
                  for prefix in ("test/base", "baseline/band_stats/test/base")
                  for metric in ("accuracy", "f1", "eer", "auroc")}
        values.update({f"test/base/acc_{tracking.metric_key(n)}": 0.5 + fold / 10
                       for n in (ODD, UNICODE, "human")})
        client.log_batch(rid, metrics=[Metric(k, v, 0, 0) for k, v in values.items()],
                         params=[Param(k, str(v)) for k, v in params.items()])
        client.set_terminated(rid, "FINISHED")
    return uri, client, experiment


def test_a_kfold_page_leads_with_the_study(tmp_path: Path) -> None:
    uri, client, _ = kfold_store(tmp_path)
    result = report.report(uri, "kfold", tmp_path / "out", n_boot=50)
    page = result["html"].read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles[0] == "Cross-validation: base, seed 0 (3 folds)"
    assert titles[-1] == "Accuracy per generator" and len(titles) == len(set(titles))
    assert "3 runs: 3 folds (0–2); training distortion base, seed 0" in page
    assert "seeds" not in page.split("<h2>")[0]  # the header says folds, not seeds
    assert page.count("data:image/png;base64,") == 1  # the pooled ROC; no 1 × 1 heatmap
    figure, = (tmp_path / "out").glob("roc_det_cv_*_base.png")  # the pooled ROC and DET
    assert figure.stat().st_size > 10_000
    assert "pooled out-of-fold AUROC" in page and "<td>band_stats</td>" in page
    assert f"<td>{ODD}</td>" in page and "<td>Müsic Gen, v2.0</td>" in page  # real names
    assert "Robustness curves" not in page and "Paired comparisons" not in page
    md = result["markdown"].read_text()
    assert "## Cross-validation: base, seed 0 (3 folds)" in md and "](roc_det_cv_" in md
    summary = client.get_run(result["summary_run_id"])
    assert "cv/base/band_stats/pooled_auroc" in summary.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result["summary_run_id"])}
    assert {"report.html", "report.md", figure.name} <= artifacts


def test_ten_reports_leave_one_summary_run_per_scope(tmp_path: Path) -> None:
    uri, client, experiment = kfold_store(tmp_path, folds=1)  # one run: a quick report
    client.set_tag(client.search_runs([experiment])[0].info.run_id, "sweep_id", "s1")
    for i in range(10):
        report.report(uri, "kfold", tmp_path / f"r{i}", n_boot=10)
    report.report(uri, "kfold", tmp_path / "sweep", sweep_id="s1", n_boot=10)
    summaries = report.summary_runs(client, experiment)
    assert sorted(report.scope_of(r.data.tags) for r in summaries) == ["all", "s1"]
    assert {r.info.status for r in summaries} == {"FINISHED"}


KILL_AFTER_PAGE = """
import os, signal, sys
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
log_artifact = MlflowClient.log_artifact
def then_die(self, run_id, path, *args, **kwargs):
    log_artifact(self, run_id, path, *args, **kwargs)
    if path.endswith("report.html"):
        os.kill(os.getpid(), signal.SIGKILL)  # a report killed right after writing the page
MlflowClient.log_artifact = then_die
from deepfake_detect.cli.report import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_reports_running_run_is_cleaned_by_the_next(tmp_path: Path) -> None:
    uri, client, experiment = kfold_store(tmp_path, folds=1)
    done = subprocess.run([sys.executable, "-c", KILL_AFTER_PAGE, "--tracking-uri", uri,
                           "--experiment", "kfold", "--out", str(tmp_path / "killed"),
                           "--n-boot", "10"], capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert [r.info.status for r in report.summary_runs(client, experiment)] == ["RUNNING"]
    report.report(uri, "kfold", tmp_path / "next", n_boot=10)
    left = client.search_runs([experiment])
    assert "RUNNING" not in {r.info.status for r in left}
    assert len(report.summary_runs(client, experiment)) == 1


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium here (apt-get install -y "
                                             "chromium; see docs/guide.md)")
def test_the_page_in_a_real_browser(tmp_path: Path) -> None:
    uri, _, _ = kfold_store(tmp_path)
    page = report.report(uri, "kfold", tmp_path / "out", n_boot=50,
                         log_summary=False)["html"]
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}"]
    env = dict(os.environ, HOME=str(tmp_path))
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, env=env).stdout
    for text in ("Cross-validation: base, seed 0 (3 folds)", "pooled out-of-fold AUROC",
                 "Accuracy per generator", ODD):
        assert text in dom, text
    shot = tmp_path / "report.png"
    subprocess.run([*browser, "--window-size=1400,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, env=env)
    assert shot.stat().st_size > 20_000  # drawn, not blank
