"""Verdict lines answer in order — evidence of detection at all, then against the best
shortcut — refuse to decide on intervals over too few groups, and carry the shortcut probe,
flagged when the score reads the recording chain within a class; the summary prints them."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from deepfake_detect.evaluation import shortcut_probe
from deepfake_detect.reporting.verdict import MIN_GROUPS, verdict, verdict_lines
from deepfake_detect.training.summary import results_table


def result(value: float, low: float, high: float, groups: int = 20,
           baseline: float | None = None, **extra: float) -> dict[str, float]:
    out = {"test/base/auroc": value, "test/base/auroc_ci_low": low,
           "test/base/auroc_ci_high": high, "test/base/n_clips": 100.0,
           "test/base/n_groups": 2.0 * groups, "test/base/n_groups_human": float(groups),
           "test/base/n_groups_ai": float(groups)}
    if baseline is not None:
        out["baseline/recording_chain/test/base/auroc"] = baseline
    return {**out, **extra}


def test_an_interval_containing_one_half_is_no_evidence_whatever_the_baselines() -> None:
    found = verdict(result(0.447, 0.33, 0.60, baseline=0.531), "base", "")
    assert found.state == "no_evidence"
    assert found.lines[0].startswith("verdict (base): no evidence of detection")
    assert "contains 0.5" in found.lines[0] and "recording_chain" not in found.lines[0]


def test_only_evidence_of_detection_is_compared_with_the_best_shortcut() -> None:
    close = verdict(result(0.80, 0.70, 0.90, baseline=0.75), "base", "")
    assert close.state == "detects"
    assert "evidence of detection" in close.lines[0]
    assert close.lines[0].index("excludes 0.5") < close.lines[0].index(
        "not distinguishable from the shortcut recording_chain")
    above = verdict(result(0.95, 0.90, 0.99, baseline=0.60), "base", "")
    assert "above the best shortcut recording_chain (0.600)" in above.lines[0]
    inverted = verdict(result(0.30, 0.20, 0.40), "base", "")
    assert inverted.state == "inverted" and "below 0.5" in inverted.lines[0]


@pytest.mark.parametrize("groups,low,high", [(MIN_GROUPS - 1, 0.53, 0.82), (30, 0.88, 0.88)])
def test_few_groups_or_a_zero_width_interval_give_no_verdict(groups: int, low: float,
                                                             high: float) -> None:
    found = verdict(result(0.7, low, high, groups=groups, baseline=0.5), "base", "")
    assert found.state == "untrusted"
    assert "undetermined" in found.lines[0] and found.lines[0].endswith("no verdict")
    assert verdict(result(0.7, 0.6, 0.8, groups=MIN_GROUPS), "base", "").state == "detects"


def test_the_probe_is_beside_the_verdict_and_flags_a_chain_reader() -> None:
    probe = {"test/base/probe/rate/ai/auroc": 0.80, "test/base/probe/rate/ai/auroc_ci_low": 0.7,
             "test/base/probe/rate/ai/auroc_ci_high": 0.9,
             "test/base/probe/rate/human/auroc": 0.52,
             "test/base/probe/rate/human/auroc_ci_low": 0.4,
             "test/base/probe/rate/human/auroc_ci_high": 0.64}
    found = verdict(result(0.72, 0.62, 0.81, **probe), "base", "")
    assert "shortcut probe" in found.lines[1] and "human 0.520" in found.lines[1]
    assert len(found.flags) == 1 and "within ai files" in found.flags[0]
    assert found.lines[2].startswith("  FLAG")
    table = results_table(result(0.72, 0.62, 0.81, **probe), ["base"])
    assert "FLAG shortcut probe" in table and "verdict (base): evidence of detection" in table
    assert verdict_lines(result(0.72, 0.62, 0.81, **probe), ["base"], "") == found.lines


def test_probe_reads_native_rates_and_codecs_within_each_class(tmp_path) -> None:
    paths, labels, scores, groups = [], [], [], []
    for label in (0, 1):
        for i in range(8):
            rate = 16000 if i % 2 else 44100  # half the files made at or below 16 kHz
            path = tmp_path / f"{label}_{i}.wav"
            sf.write(path, np.zeros(rate // 10, dtype=np.float32), rate)
            paths.append(str(path))
            labels.append(label)
            scores.append(0.2 + 0.5 * label + (0.2 if rate == 16000 else 0.0) + 0.01 * i)
            groups.append(f"{label}-{i}")
    found = shortcut_probe.probe(scores, labels, groups, paths, 16000, n_boot=200)
    assert found["rate/ai/auroc"] == 1.0 and found["rate/human/auroc"] == 1.0
    assert found["rate/ai/n_files"] == 8
    assert "codec/ai/auroc" not in found  # every file is PCM: nothing to compare
    assert shortcut_probe.probe(scores, labels, groups, [""] * 16, 16000) == {}
