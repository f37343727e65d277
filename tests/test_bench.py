"""The benchmark command runs at the tiny size and reports every figure (no timing asserted)."""

from __future__ import annotations

import json
import math

import torch

from deepfake_detect.bench.cli import main

FIGURES = {"a", "b", "b2", "c", "c0", "d", "e"}


def test_tiny_benchmark_reports_every_figure(tmp_path, capsys) -> None:
    threads = torch.get_num_threads()
    try:
        assert main(["--size", "tiny", "--threads", "1", "--out", str(tmp_path / "r.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "r.json").read_text())
    figures = {row["key"]: row for row in report["figures"]}
    assert set(figures) == FIGURES
    assert all(math.isfinite(row["value"]) for row in figures.values())
    assert all(figures[k]["value"] > 0 for k in ("a", "b", "b2", "c", "d"))
    assert all(figures[k]["ok"] in (True, False) for k in FIGURES - {"c0"})
    assert figures["c"]["details"]["identical"] is True  # any worker count, same cache
    assert figures["d"]["details"]["max_abs_db"] <= 0.01
    table = capsys.readouterr().out
    for key in FIGURES:
        assert any(line.startswith(f"{key} ") for line in table.splitlines()), key
    assert report["machine"]["cores"] >= 1
