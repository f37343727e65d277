"""One rule for where the MLflow store is, used by every command: an explicit URI, else
``MLFLOW_TRACKING_URI``, else ``sqlite:///<paths.root>/mlflow.db``."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from deepfake_detect import tracking
from deepfake_detect.cli import report as report_cli
from deepfake_detect.config import compose, to_plain
from deepfake_detect.models.refs import check_local_store


def finished_run(uri: str, experiment: str, accuracy: float) -> str:
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(experiment)
    run = client.create_run(experiment_id, tags={"train_distortion": "base"})
    client.log_metric(run.info.run_id, "test/base/accuracy", accuracy)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_the_rule(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DEEPFAKE_DETECT_OUTPUTS", str(tmp_path / "runs-here"))
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path / 'runs-here' / 'mlflow.db'}"
    assert tracking.default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.default_tracking_uri() == tracking.default_tracking_uri(tmp_path) \
        == "http://127.0.0.1:5999"


def test_report_finds_runs_in_a_store_given_only_by_the_environment(monkeypatch, tmp_path,
                                                                     capsys) -> None:
    db = tmp_path / "elsewhere" / "team.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    tracking.prepare_store()
    finished_run(uri, "env-experiment", 0.75)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # no outputs/mlflow.db here
    code = report_cli.main(["--experiment", "env-experiment", "--out", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr().err
    assert "0.750" in (tmp_path / "r" / "report.md").read_text()
    check_local_store(tracking.default_tracking_uri())  # predict resolves run ids there too


def test_training_honours_the_environment_too(monkeypatch, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = to_plain(compose("train", [f"paths.root={tmp_path / 'out'}"]))
    logger = tracking.LoggerConfig(**{k: v for k, v in cfg["logger"].items() if k != "tags"})
    store = tracking.open_store(logger, tmp_path / "out")
    assert store.uri == uri
    assert store.artifact_location == (tmp_path / "mlartifacts").as_uri()  # beside the db


def test_a_missing_store_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = report_cli.main(["--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}",
                            "--out", str(tmp_path / "r")])
    assert code == 2 and "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
