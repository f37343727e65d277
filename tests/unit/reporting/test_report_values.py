"""The report states the right numbers: mean ± sample std (ddof=1) over seeds, and n.

Fake MLflow runs (objects with ``.data.tags/.params/.metrics``) for ``collect`` and
``markdown``, and one real sqlite MLflow store through ``report.report``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepfake_detect.reporting import report


def fake_run(train: str | None, metrics: dict[str, float], *, by_param: bool = False,
             **tags: str) -> SimpleNamespace:
    """A run as ``collect`` sees it: training distortion as a tag (or the param)."""
    tags = dict(tags)
    params = {}
    if train is not None:
        if by_param:
            params["distortion.name"] = train
        else:
            tags["train_distortion"] = train
    return SimpleNamespace(data=SimpleNamespace(tags=tags, params=params, metrics=metrics))


def runs() -> list[SimpleNamespace]:
    """Three seeds trained on base, two on pitch (one with a NaN EER), one on tempo."""
    return [
        fake_run("base", {"test/pitch/accuracy": 0.6, "test/base/accuracy": 0.9,
                          "test/pitch/eer": 0.30, "train/loss": 0.1}),
        fake_run("base", {"test/pitch/accuracy": 0.7, "test/base/accuracy": 0.9,
                          "test/pitch/eer": 0.20}),
        fake_run("base", {"test/pitch/accuracy": 0.9, "test/base/accuracy": 0.9,
                          "test/pitch/eer": 0.10, "test/pitch/acc_suno": 0.5}),
        fake_run("pitch", {"test/pitch/accuracy": 0.8, "test/pitch/eer": float("nan")},
                 by_param=True),
        fake_run("pitch", {"test/pitch/accuracy": 0.6, "test/pitch/eer": 0.25},
                 by_param=True),
        fake_run("tempo", {"test/tempo/accuracy": 0.75}),
        fake_run(None, {"test/pitch/accuracy": 0.0}),  # no training distortion: not a row
    ]


def cell_text(md: str, metric: str, row: str, col: str) -> str:
    """The text of one cell of ``md``'s table for ``metric``."""
    section = md.split(f"## {metric}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == row:
            return cells[header.index(col)]
    raise AssertionError(f"no row {row!r} in\n{section}")


def test_cells_are_mean_sample_std_and_n() -> None:
    grid = report.collect(runs(), ("accuracy", "eer"))
    assert grid.rows == ["base", "pitch", "tempo"] and grid.cols == ["base", "pitch", "tempo"]
    assert grid.n_runs == 7
    # base -> pitch accuracy 0.6, 0.7, 0.9: mean 2.2/3 = 0.7333;
    # deviations -0.1333, -0.0333, 0.1667: squares sum 0.01778 + 0.00111 + 0.02778 = 0.04667,
    # / (n - 1 = 2) = 0.02333, sqrt = 0.15275 (ddof=0 would give 0.12472)
    mean, std, n = grid.cell("accuracy", "base", "pitch")
    assert (mean, std, n) == (pytest.approx(2.2 / 3), pytest.approx(0.0233333 ** 0.5), 3)
    # base -> base: 0.9 three times: std 0
    assert grid.cell("accuracy", "base", "base") == (pytest.approx(0.9), 0.0, 3)
    # pitch -> pitch accuracy 0.8, 0.6: mean 0.7, std sqrt(2 * 0.01 / 1) = 0.14142
    assert grid.cell("accuracy", "pitch", "pitch") == (pytest.approx(0.7),
                                                        pytest.approx(0.02 ** 0.5), 2)
    # pitch -> pitch EER: NaN left out, one run (0.25) left: std 0, n 1
    assert grid.cell("eer", "pitch", "pitch") == (0.25, 0.0, 1)
    # base -> pitch EER 0.3, 0.2, 0.1: mean 0.2, std 0.1
    assert grid.cell("eer", "base", "pitch") == (pytest.approx(0.2), pytest.approx(0.1), 3)
    # a cell without runs
    mean, std, n = grid.cell("accuracy", "tempo", "pitch")
    assert math.isnan(mean) and math.isnan(std) and n == 0


def test_collect_keeps_only_the_requested_test_metrics() -> None:
    grid = report.collect(runs(), ("accuracy",))
    assert set(grid.values) == {"accuracy"}
    # acc_suno (per generator) and train/loss are not cells; the run without a row is skipped
    assert all(len(key) == 2 for key in grid.values["accuracy"])
    assert sum(len(v) for v in grid.values["accuracy"].values()) == 3 + 3 + 2 + 1


def test_markdown_states_the_numbers() -> None:
    grid = report.collect(runs(), ("accuracy", "eer"))
    md = report.markdown(grid, ("accuracy", "eer"), "grid")
    assert md.startswith("# grid\n") and "7 runs" in md
    assert cell_text(md, "accuracy", "base", "pitch") == "0.733 ± 0.153 (3)"
    assert cell_text(md, "accuracy", "base", "base") == "0.900 ± 0.000 (3)"
    assert cell_text(md, "accuracy", "pitch", "pitch") == "0.700 ± 0.141 (2)"
    assert cell_text(md, "accuracy", "tempo", "tempo") == "0.750 ± 0.000 (1)"
    assert cell_text(md, "accuracy", "tempo", "pitch") == "–"
    assert cell_text(md, "eer", "base", "pitch") == "0.200 ± 0.100 (3)"
    assert cell_text(md, "eer", "pitch", "pitch") == "0.250 ± 0.000 (1)"
    assert cell_text(md, "eer", "pitch", "base") == "–"


def test_report_on_a_real_mlflow_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("values", artifact_location=(tmp_path / "art")
                                          .as_uri())
    accuracy = {("base", "pitch"): [0.6, 0.7, 0.9], ("pitch", "pitch"): [0.8, 0.6],
                ("base", "base"): [1.0, 1.0, 1.0]}
    seeds = {"base": 3, "pitch": 2}
    for train, n in seeds.items():
        for seed in range(n):
            run = client.create_run(experiment, tags={"train_distortion": train,
                                                      "sweep_id": "s1"})
            for (row, col), values in accuracy.items():
                if row == train:
                    client.log_metric(run.info.run_id, f"test/{col}/accuracy", values[seed])
                    client.log_metric(run.info.run_id, f"test/{col}/f1", values[seed] / 2)
            client.set_terminated(run.info.run_id, "FINISHED")
    unfinished = client.create_run(experiment, tags={"train_distortion": "base",
                                                     "sweep_id": "s1"})
    client.log_metric(unfinished.info.run_id, "test/pitch/accuracy", 0.0)  # RUNNING: left out
    other = client.create_run(experiment, tags={"train_distortion": "base", "sweep_id": "s2"})
    client.log_metric(other.info.run_id, "test/pitch/accuracy", 0.0)
    client.set_terminated(other.info.run_id, "FINISHED")  # another sweep: left out

    result = report.report(uri, "values", tmp_path / "out", sweep_id="s1",
                           metrics=("accuracy", "f1"))
    assert result["n_runs"] == 5
    md = result["markdown"].read_text()
    assert md.startswith("# values / sweep s1") and "5 runs" in md
    assert cell_text(md, "accuracy", "base", "pitch") == "0.733 ± 0.153 (3)"
    assert cell_text(md, "accuracy", "pitch", "pitch") == "0.700 ± 0.141 (2)"
    assert cell_text(md, "accuracy", "base", "base") == "1.000 ± 0.000 (3)"
    assert cell_text(md, "f1", "base", "pitch") == "0.367 ± 0.076 (3)"
    assert cell_text(md, "accuracy", "pitch", "base") == "–"

    summary = client.get_run(result["summary_run_id"])
    assert summary.data.tags["summary"] == "true" and summary.info.status == "FINISHED"
    assert summary.data.params["n_runs"] == "5"
    logged = summary.data.metrics
    expected = {
        "train_base/test_pitch/accuracy_mean": 2.2 / 3,
        "train_base/test_pitch/accuracy_std": 0.0233333 ** 0.5,
        "train_base/test_base/accuracy_mean": 1.0,
        "train_base/test_base/accuracy_std": 0.0,
        "train_pitch/test_pitch/accuracy_mean": 0.7,
        "train_pitch/test_pitch/accuracy_std": 0.02 ** 0.5,
        "train_base/test_pitch/f1_mean": 1.1 / 3,
        "train_pitch/test_pitch/f1_std": 0.005 ** 0.5,
    }
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-4), key
    assert not any(key.startswith("train_pitch/test_base/") for key in logged)  # empty cell
    # A second report reads the same runs: the summary run is not one of them.
    again = report.report(uri, "values", tmp_path / "again", sweep_id="s1",
                          metrics=("accuracy",), log_summary=False)
    assert again["n_runs"] == 5 and again["summary_run_id"] is None
    assert re.search(r"\| base \| 1\.000 ± 0\.000 \(3\) \| 0\.733 ± 0\.153 \(3\) \|",
                     again["markdown"].read_text())


def test_report_html_and_markdown_show_the_same_cells() -> None:
    from deepfake_detect.reporting.report_html import matrix

    values = {"accuracy": {("base", "base"): [0.8], ("base", "pitch"): [0.6, 0.7]},
              "accuracy_ci_low": {("base", "base"): [0.7]},
              "accuracy_ci_high": {("base", "base"): [0.9]}}
    grid = report.Grid(["base"], ["base", "pitch"], values, 2)
    page = matrix(grid, "accuracy")
    assert "<td>0.800 [0.700, 0.900] (1)</td>" in page  # one run: its interval
    assert "<td>0.650 ± 0.071 (2)</td>" in page  # runs: mean ± sd
    md = report.markdown(grid, ("accuracy",), "t")
    assert "| base | 0.800 [0.700, 0.900] (1) | 0.650 ± 0.071 (2) |" in md
