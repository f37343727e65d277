"""Results a researcher can trust: the packaged epoch is chosen on validation (and survives a
kill), file-level metrics are what the per-file CSV says, each shortcut baseline finds its
own cue and only that, the pooled cross-validation figure is the hand-computed one, folder
patterns name generators and groups, and predict says when a model never saw real audio."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect.cli import predict as predict_cli
from deepfake_detect.cli import report as report_cli
from deepfake_detect.data.sources import build_source
from deepfake_detect.evaluation import stats
from deepfake_detect.evaluation.baselines import run_baselines
from deepfake_detect.evaluation.evaluate import Intervals
from deepfake_detect.models import detector as detector_module
from deepfake_detect.training.plan import datamodule_of, plan
from deepfake_detect.training.run import train
from deepfake_detect.training.summary import results_table

pytestmark = pytest.mark.slow


def write_folder(root: Path, n: int, cue: str, seed: int = 0, seconds: float = 1.0) -> Path:
    """``n`` files per class of music-like sound made at 16 kHz; ``cue`` is what tells the AI
    files apart: ``rate`` (stored at 22.05 instead of 44.1 kHz, the same content), ``peaks``
    (faint steady tones at 2.5 and 3.5 kHz), ``none`` (nothing)."""
    import librosa

    rng = np.random.default_rng(seed)
    base = 16000  # every file's content is made here, then stored at its own rate
    for label, folder in ((0, "human"), (1, "ai")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rate = 22050 if (cue == "rate" and label == 1) else 44100
            t = np.arange(int(seconds * base)) / base
            notes = rng.uniform(110, 880, size=3)
            wave = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in notes) * 0.1
            wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)) \
                + 0.02 * rng.standard_normal(len(t))
            if cue == "peaks" and label == 1:
                wave = wave + 0.004 * (np.sin(2 * np.pi * 2500 * t) + np.sin(2 * np.pi * 3500 * t))
            wave = librosa.resample(wave, orig_sr=base, target_sr=rate, res_type="soxr_hq")
            sf.write(root / folder / f"{folder}_{i:03d}.wav", wave.astype(np.float32), rate,
                     subtype="PCM_16")
    return root


def folder_overrides(root: Path, *extra: str) -> list[str]:
    return ["data=folder", f"data.source.root={root}", "data.source.n_clips=null",
            "features.duration=1.0", "features.n_mels=32", "eval.distortions=[base]",
            "data.split.test=0.5", "data.split.val=0.15", *extra]


@pytest.mark.parametrize("cue,strong", [("rate", "recording_chain"), ("peaks", "fakeprint"),
                                        ("none", None)])
def test_each_baseline_finds_its_own_cue_and_only_that(cue: str, strong: str | None,
                                                       make_cfg, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", 40, cue)
    dm = datamodule_of(plan(make_cfg(*folder_overrides(root))))
    dm.prepare()
    values, _ = run_baselines(("recording_chain", "band_stats", "fakeprint"), dm,
                              tmp_path / "b", Intervals(200), "mean")
    auroc = {name: values[f"baseline/{name}/test/base/auroc"]
             for name in ("recording_chain", "band_stats", "fakeprint")}
    if strong is not None:
        assert auroc[strong] > 0.9, auroc
    for name, value in auroc.items():
        if name != strong and not (cue == "peaks" and name == "band_stats"):
            assert abs(value - 0.5) < 0.2, (name, auroc)  # no cue for it: chance


def scripted_auroc(monkeypatch, sequence: list[float]) -> None:
    """Make the epochs' val/auroc follow ``sequence`` (a validation score that peaks early)."""
    epochs = iter(sequence)

    def fake(self) -> None:
        self._val_parts = []
        if not self.trainer.sanity_checking:
            self.log("val/auroc", torch.tensor(next(epochs)))

    monkeypatch.setattr(detector_module.Detector, "on_validation_epoch_end", fake)


def test_the_epoch_best_on_validation_is_tested_and_packaged(make_cfg, monkeypatch) -> None:
    scripted_auroc(monkeypatch, [0.6, 0.9, 0.7])
    result = train(make_cfg("trainer.max_epochs=3", "eval.distortions=[base]"))
    assert result["selected_epoch"] == 2 and "0.9000" in result["selection"]
    run_dir = Path(result["run_dir"])
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    bundle = torch.load(run_dir / "model.ckpt", weights_only=True)
    assert best["epoch"] == 1  # 0-based: the second epoch
    for key, value in best["state_dict"].items():
        assert torch.equal(bundle["state_dict"][key], value), key
    assert bundle["selected_epoch"] == 2 and bundle["validation_score"] == pytest.approx(0.9)
    run = MlflowClient(tracking_uri=result["tracking_uri"]).get_run(result["run_id"])
    assert run.data.params["selected_epoch"] == "2"


def test_the_best_epoch_survives_a_failure_and_a_resume(make_cfg, monkeypatch) -> None:
    from deepfake_detect.training import checkpoints

    scripted_auroc(monkeypatch, [0.6, 0.95, 0.7, 0.8])
    cfg = make_cfg("trainer.max_epochs=4", "eval.distortions=[base]")
    original = checkpoints.EpochCheckpoint.on_train_epoch_end

    def fail_after_epoch_3(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if trainer.current_epoch == 2:
            raise RuntimeError("injected failure")

    monkeypatch.setattr(checkpoints.EpochCheckpoint, "on_train_epoch_end", fail_after_epoch_3)
    with pytest.raises(RuntimeError, match="injected failure"):
        train(cfg)
    monkeypatch.setattr(checkpoints.EpochCheckpoint, "on_train_epoch_end", original)
    result = train(cfg)  # resumes into epoch 4: only one more validation score is drawn
    assert result["selected_epoch"] == 2


def test_file_level_metrics_are_the_per_file_csv(make_cfg, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", 12, "none", seconds=3.0)
    result = train(make_cfg(*folder_overrides(root, "data.source.windows.mode=multi",
                                              "trainer.limit_test_batches=1.0",
                                              "eval.baselines=[]")))
    artifacts = Path(result["run_dir"]) / "artifacts"
    windows = list(csv.DictReader((artifacts / "predictions_base.csv").open()))
    files = list(csv.DictReader((artifacts / "predictions_base_files.csv").open()))
    assert {int(r["n_windows"]) for r in files} == {3}  # three 1 s windows per 3 s file
    for row in files:  # the file's score is the mean of its windows'
        mine = [float(w["score"]) for w in windows if w["file"] == row["file"]]
        assert float(row["score"]) == pytest.approx(np.mean(mine), abs=2e-6)
    scores = np.array([float(r["score"]) for r in files])
    labels = np.array([int(r["label"]) for r in files])
    threshold = result["threshold"]
    assert result["test/base/file/accuracy"] == pytest.approx(
        np.mean((scores >= threshold) == labels), abs=1e-6)
    assert result["test/base/file/auroc"] == pytest.approx(stats.auroc(scores, labels),
                                                           abs=1e-4)
    assert result["test/base/file/n_files"] == len(files)
    assert result["test/base/n_clips"] == len(windows) == 3 * len(files)
    low, high = (result[f"test/base/file/accuracy_ci_{end}"] for end in ("low", "high"))
    assert low <= result["test/base/file/accuracy"] <= high


def test_audio_files_with_one_window_each_report_the_file_level_once(make_cfg,
                                                                      tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", 8, "none", seconds=1.0)
    result = train(make_cfg(*folder_overrides(root, "trainer.limit_test_batches=1.0",
                                              "eval.baselines=[band_stats]")))
    for prefix in ("test/base", "baseline/band_stats/test/base"):
        for metric in ("accuracy", "auroc", "accuracy_ci_low", "accuracy_ci_high"):
            assert result[f"{prefix}/file/{metric}"] == result[f"{prefix}/{metric}"]
    assert result["test/base/file/n_files"] == result["test/base/n_clips"] > 0
    table = results_table(result, ["base"])
    assert "file level (one window per file)" in table and "window level" not in table
    assert (Path(result["run_dir"]) / "artifacts" / "predictions_base_files.csv").is_file()


def test_cross_validation_pools_the_folds_as_by_hand(tmp_path: Path, capsys) -> None:
    import subprocess
    import sys

    root = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "deepfake_detect.cli.train", "-m", "experiment=kfold",
         "data.split.folds=3", "data.split.fold=0,1,2", "debug=fast_dev_run",
         "data.source.n_clips=36", "trainer.limit_test_batches=1.0",
         "eval.baselines=[band_stats]", "eval.fusion=true", "eval.calibration=platt",
         "eval.distortions=[base]", f"paths.root={root}"],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert report_cli.main(["--tracking-uri", uri, "--experiment", "kfold",
                            "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Cross-validation" in text and "(3 folds)" in text
    scores, labels, groups = [], [], []
    for result in root.glob("runs/*/artifacts/predictions_base.csv"):
        for row in csv.DictReader(result.open()):
            scores.append(float(row["score"]))
            labels.append(int(row["label"]))
            groups.append(row["group"])
    assert len(set(groups)) == len(groups) / 2  # every composition tested once, both versions
    pooled = stats.auroc(scores, labels)
    assert "| ResNet18 |" in text and f"{pooled:.3f} [" in text  # the default family
    # The field's scores: the fusion row, the pooled verdict and ROC/DET figure, the costs.
    assert "| fusion |" in text and "pooled verdict (base):" in text
    assert list((tmp_path / "r").glob("roc_det_cv_*_base.png")), text
    assert "detection costs" in text and "| min_dcf |" not in text and "## min_dcf" in text
    assert "# Verdicts" in text and "verdict (base):" in text


def test_folder_patterns_name_generators_and_groups(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("human/demoA_01.wav", "human/demoB_02.wav", "ai/demoA_sunoish_03.wav",
                 "ai/demoB_udioish_04.wav", "ai/other_05.wav"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, np.zeros(800, dtype=np.float32) + 0.1, 8000)
    (root / "names.csv").write_text("path,generator,group\nai/other_05.wav,listed_gen,g9\n")
    source = build_source({"name": "folder", "root": str(root), "duration": 0.1,
                           "generator_pattern": r"_(?P<generator>[a-z]+ish)_",
                           "group_pattern": r"^[^/]+/(demo[AB])_",
                           "generators_csv": "names.csv"})
    clips = {c.clip_id: c for c in source.clips()}
    assert clips["ai/demoA_sunoish_03.wav"].generator == "sunoish"
    assert clips["ai/demoB_udioish_04.wav"].generator == "udioish"
    assert clips["ai/other_05.wav"].generator == "listed_gen"
    assert clips["ai/other_05.wav"].group == "g9"
    assert clips["human/demoA_01.wav"].group == clips["ai/demoA_sunoish_03.wav"].group == "demoA"


def test_predict_warns_when_the_model_never_saw_real_audio(make_cfg, tmp_path: Path,
                                                           capsys) -> None:
    result = train(make_cfg("eval.distortions=[base]", "eval.baselines=[]"))
    song = tmp_path / "song.wav"
    sf.write(song, (0.1 * np.sin(np.arange(44100) / 10)).astype(np.float32), 44100)
    code = predict_cli.main(["-m", result["run_dir"], str(song), "-o", str(tmp_path / "p.csv"),
                             "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0
    assert "trained on the embedded simulation" in err
    assert "trained on synthetic" in err  # the provenance line
