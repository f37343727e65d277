"""Names from the data in MLflow, and MLflow as a user meets it: any generator, source or
test-set name becomes a valid metric, param and tag key (tables keep the real name);
experiments open as model training; run names say what differs within a study; the data
source is a dataset input; the console stays quiet (one line per file for an MP3 whose
header overstates its length, however many windows and processes read it)."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from deepfake_detect import tracking
from deepfake_detect.cli import report as report_cli
from deepfake_detect.data import audio
from deepfake_detect.data.audio import Segment
from deepfake_detect.training.lifecycle import run_label
from deepfake_detect.training.run import train
from tests.helpers.audio_data import write_overstated_mp3
from tests.helpers.configs import TINY, compose_cfg

NAMES = ["ACE-Step_(probable)", "Müsic Gen, v2.0", "音乐", "..", "a/b", "Stable Audio Open",
         "x" * 300, "MusicGen_medium", "e\u0301t\u00e9"]  # the last: a decomposed accent


def test_every_name_is_a_valid_key_and_two_names_never_share_one(tmp_path: Path) -> None:
    keys = [tracking.metric_key(n) for n in NAMES]
    assert len(set(keys)) == len(NAMES)
    assert tracking.metric_key("MusicGen_medium") == "MusicGen_medium"  # kept as it was
    assert tracking.metric_key("ACE-Step_(probable)").startswith("ACE-Step_probable-")
    assert tracking.metric_key("Müsic Gen, v2.0").startswith("Music_Gen_v2.0-")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("names"))
    # MLflow takes each as a metric, a param and a tag key (it validates every one)
    client.log_batch(run.info.run_id, metrics=[Metric(f"test/{k}/acc_{k}", 1.0, 0, 0)
                                               for k in keys],
                     params=[Param(f"p.{k}", "v") for k in keys],
                     tags=[RunTag(f"t.{k}", "v") for k in keys]
                     + [RunTag(*next(iter(tracking.names_tag(NAMES).items())))])
    shown = tracking.real_names([client.get_run(run.info.run_id)])
    assert {shown.get(k, k) for k in keys} == set(NAMES)  # the real names come back


def test_run_names_say_what_differs_within_a_study() -> None:
    def plan(distortion: str, seed: int, **tags: str) -> SimpleNamespace:
        return SimpleNamespace(tags=tags, seed=seed, distortion=SimpleNamespace(name=distortion))

    assert run_label(plan("base", 0, folds="5", fold="2")) == "base-fold2-seed0"
    assert run_label(plan("base", 0, holdout_generator="MusicGen")) == "logo-MusicGen"
    assert run_label(plan("pitch", 1, holdout_generator="MusicGen")) == "logo-MusicGen-pitch-seed1"
    assert run_label(plan("combined", 3)) == "combined-seed3"


def test_experiments_open_as_model_training(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    made = tracking.ensure_experiment(uri, "new", None, tmp_path)
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("old")  # made before the tag: tagged when used
    tracking.ensure_experiment(uri, "old", None, tmp_path)
    for experiment_id in (made, old):
        tags = client.get_experiment(experiment_id).tags
        assert tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def _decode(task: tuple[Path, float]) -> int:
    return len(audio.decode(task[0], 16000, Segment(2.0, offset_s=task[1])))


def test_a_short_header_is_one_line_per_file_whatever_reads_it(tmp_path: Path, caplog) -> None:
    path = write_overstated_mp3(tmp_path / "song.mp3", seconds=8.0, sr=16000, excess=0.05)
    with caplog.at_level(logging.WARNING, logger="deepfake_detect"), \
            audio.collapsed_warnings():
        with ProcessPoolExecutor(2, mp_context=get_context("fork")) as pool:
            assert list(pool.map(_decode, [(path, o) for o in (0, 2, 4)])) == [32000] * 3
        _decode((path, 0.0))
    lines = [r.getMessage() for r in caplog.records if "header declares" in r.getMessage()]
    assert len(lines) == 1 and "(4 windows read)" in lines[0]


@pytest.mark.slow
def test_odd_generator_names_through_a_real_run_and_report(tmp_path: Path, capsys) -> None:
    """Folders named as real collections name them: a run and its report log every name
    under a valid key and show the real one."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for folder, n in (("human", 6), ("ai/ACE-Step_(probable)", 3), ("ai/Müsic Gen, v2.0", 3)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            wave = (0.1 * rng.standard_normal(8000)).astype(np.float32)
            sf.write(root / folder / f"f{i}.wav", wave, 8000)
    result = train(compose_cfg([*TINY, "data=folder", f"data.source.root={root}",
                                "data.source.n_clips=null", "features.duration=0.5",
                                "eval.distortions=[base]", "eval.baselines=[band_stats]",
                                "data.split.test=0.5", "trainer.limit_test_batches=1.0",
                                "data.split.holdout_generator=0",  # ACE-Step_(probable)
                                "logger.experiment_name=odd"], tmp_path / "out"))
    client = MlflowClient(tracking_uri=result["tracking_uri"])
    run = client.get_run(result["run_id"])
    odd = f"test/base/acc_{tracking.metric_key('ACE-Step_(probable)')}"
    for name in (odd, f"baseline/band_stats/{odd}"):  # MLflow's keys: under x/
        assert tracking.logged_key(name) in run.data.metrics, name
    assert run.inputs.dataset_inputs[0].dataset.name == "folder:data"
    assert report_cli.main(["--tracking-uri", result["tracking_uri"], "--experiment", "odd",
                            "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Leave one generator out" in page and "<td>ACE-Step_(probable)</td>" in page
    summary = client.search_runs([run.info.experiment_id], "tags.summary = 'true'")[0]
    assert f"logo/{tracking.metric_key('ACE-Step_(probable)')}/base/auroc" in \
        summary.data.metrics
    assert "Downloading artifacts" not in capsys.readouterr().err
