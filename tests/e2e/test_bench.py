"""The benchmark command runs at the tiny size and reports every figure (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepfake_detect.bench.effects import EFFECTS
from deepfake_detect.cli.bench import main

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands

EFFECT_FIGURES = {f"f{i}" for i in range(1, len(EFFECTS) + 1)}
FIGURES = {"a", "b", "b0", "b2", "c", "c0", "c1", "d", "e", *EFFECT_FIGURES}


def test_tiny_benchmark_reports_every_figure(tmp_path, capsys) -> None:
    threads = torch.get_num_threads()
    try:
        # as on a GPU: b with the rows on the device, b0 read on the host by a worker
        assert main(["--size", "tiny", "--threads", "1", "--on-device", "true",
                     "--num-workers", "1", "--out", str(tmp_path / "r.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "r.json").read_text())
    figures = {row["key"]: row for row in report["figures"]}
    assert set(figures) == FIGURES
    assert all(math.isfinite(row["value"]) for row in figures.values())
    assert all(figures[k]["value"] > 0 for k in ("a", "b", "b0", "b2", "c", "d"))
    b, b0 = figures["b"]["details"], figures["b0"]["details"]
    assert (b["rows_on_device"], b["num_workers"]) == (True, 0)
    assert (b0["rows_on_device"], b0["num_workers"]) == (False, 1)
    assert all(figures[k]["ok"] in (True, False)
               for k in FIGURES - {"c0", "c1", *EFFECT_FIGURES})
    assert figures["c1"]["value"] > 0 and figures["c1"]["details"]["clips_each"] == 4
    assert figures["c"]["details"]["identical"] is True  # any worker count, same cache
    c = figures["c"]["details"]
    assert c["no_work_s"] > 0 and c["warm_prepare_s"] > 0  # what the build costs besides work
    if c["cores"] > 1 and 2 * c["cores"] <= c["clips"]:  # a pool: its fork cost measured
        assert c["fork_s"] > 0
    assert figures["d"]["details"]["max_abs_db"] <= 0.01
    effects = [figures[k]["details"] for k in sorted(EFFECT_FIGURES, key=lambda k: int(k[1:]))]
    assert [e["spec"] for e in effects] == list(EFFECTS.values())  # every effect, in order
    assert all(e["ms_per_clip"] > 0 and e["seconds"] == 10.0 for e in effects)
    table = capsys.readouterr().out
    for key in FIGURES:
        assert any(line.startswith(f"{key} ") for line in table.splitlines()), key
    assert report["machine"]["cores"] >= 1


def test_build_timeline_reports_each_worker_count(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "experiments/build_timeline.py", "--clips", "8", "--workers", "2", "1",
         "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).parents[2], check=True).stdout
    lines = [line for line in out.splitlines() if " clips, " in line]
    assert [line.split(":")[0] for line in lines] == ["8 clips, 2 workers", "8 clips, 1 worker"]
    assert lines[0].endswith(" 0 of them here")  # a warm parent forks straight away
    assert lines[1].endswith("1 process ran clips, 8 of them here")


def test_scale_benchmark_counts_every_phase(tmp_path) -> None:
    """experiments/bench_scale.py at 300 files (and 100 beside them): every phase reported,
    the counts of the listing, the splits and the store consistent (no timing checked)."""
    path = Path(__file__).parents[2] / "experiments" / "bench_scale.py"
    spec = importlib.util.spec_from_file_location("bench_scale", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines: list[str] = []
    assert bench.main(["--files", "300", "--against", "100", "--dir", str(tmp_path)],
                      out=lines.append) == 0
    report, = (json.loads(line) for line in lines)
    assert list(tmp_path.iterdir()) == []  # the folders and the store are removed
    for result, files in ((report, 300), (report["against"], 100)):
        assert result["files"] == result["clips"] == files  # one window per 4.5-s file
        assert set(result["phases"]) == {*bench.TIMED, "write", "build", "plan_s"}
        assert all(v["s"] >= 0 and v["peak_mb"] > 0 for k, v in result["phases"].items()
                   if k != "plan_s")
        split = result["split"]
        assert sum(split.values()) == files and min(split.values()) > 0
        assert sum(result["kfold_test"]) == files and len(result["kfold_test"]) == 5
        assert sum(result["holdout"].values()) <= files
        sets = result["sets"]
        assert list(sets) == ["train", "val", "test/base", "test/pitch", "test/tempo",
                              "test/combined"]
        assert (sets["train"], sets["val"]) == (split["train"], split["val"])
        assert {sets[k] for k in sets if k.startswith("test/")} == {split["test"]}
        # base rows are shared by train, val and test/base; pitch, tempo and combined differ
        assert result["rows_keyed"] == files + 3 * split["test"]
        assert result["store_rows"] == result["rows_keyed"]
        assert result["row_shape"] == [64, 126] and result["store_mb"] > 0
    assert set(report["per_file"]) == set(bench.TIMED)
    assert report["worst"]["phase"] in bench.TIMED
