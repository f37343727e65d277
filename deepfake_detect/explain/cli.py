"""``deepfake-detect-explain --model REF [overrides]``: explain any trained model on the test
split of any source under any distortion.

The model is anything ``deepfake-detect-predict`` takes (bundle file, run directory, MLflow
run id, ``runs:/``, ``models:/``); its feature config comes from the bundle. The data comes
from ``conf/train.yaml`` composed with Hydra-style overrides (``data=folder
data.source.root=DIR``, ``distortion=pitch``, ``experiment=quickstart``, ``seed=1``,
``explain.method=gradcam`` ...), through the same feature cache as training: pass the
training run's data overrides and seed to explain its own test split. Files go to ``--out``
and, when the model's MLflow run is in the store, to that run under ``explain/``.

Exit codes: 0 done, 2 usage errors (bad option or override, model or data not found).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfake_detect.errors import ConfigError, DeepfakeDetectError

log = logging.getLogger(__name__)


def compose_config(overrides: Sequence[str]) -> dict[str, Any]:
    """``conf/train.yaml`` with ``overrides``, resolved to plain containers."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from deepfake_detect.config import to_plain
    from deepfake_detect.train import CONF_DIR

    try:
        if GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return to_plain(compose("train", overrides=list(overrides)))
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DeepfakeDetectError(f"bad override: {first}") from None


def distortions_to_explain(resolved: dict[str, Any], names: Sequence[str] | None) -> list[Any]:
    """The distortions to explain: ``explain.distortions``, else the ``distortion`` group."""
    from deepfake_detect.train import build_distortion, distortion_preset

    group = build_distortion(resolved["distortion"], "distortion")
    out = []
    for name in names or (group.name,):
        try:
            out.append(group if name == group.name else distortion_preset(name))
        except ConfigError as err:
            raise ConfigError("explain.distortions", str(err).split(": ", 1)[1]) from None
    return out


def explain_model(model: Any, overrides: Sequence[str] = (), *, out: Path | None = None,
                  label: str | None = None, mlflow: bool = True, tracking_uri: str | None = None,
                  device: str = "auto") -> dict[str, Any]:
    """Explain ``model`` on the configured data; returns the files written, where they were
    logged (MLflow run id or None) and the output folder."""
    from deepfake_detect import tracking
    from deepfake_detect.config import build, require
    from deepfake_detect.data.datamodule import AudioDataModule
    from deepfake_detect.explain.analysis import ExplainConfig, explain_test_set
    from deepfake_detect.predict import load_model, resolve_device

    resolved = compose_config(overrides)
    cfg = build(ExplainConfig, resolved.get("explain"), "explain")
    seed = resolved.get("seed", 0)
    require(isinstance(seed, int) and seed >= 0, "seed", f"must be an integer >= 0, got {seed!r}")
    outputs = Path(resolved["paths"]["root"]).expanduser().resolve()
    logger = build(tracking.LoggerConfig, resolved["logger"], "logger", ignore=("tags",))
    uri = tracking_uri or logger.tracking_uri or tracking.default_tracking_uri(outputs)
    distortions = distortions_to_explain(resolved, cfg.distortions)
    loaded = load_model(model, uri)
    features = loaded.features
    cfg.check_features(features)
    detector = loaded.detector.to(resolve_device(device))
    run_id = loaded.meta.get("run_id")
    out = Path(out) if out else outputs / "explain" / str(run_id or Path(loaded.source).parent.name)
    dm = AudioDataModule(resolved["data"], features, distortions[0], distortions, seed)
    prefix = label or str(resolved["data"]["source"].get("name", "data"))
    print(f"[deepfake-detect] {loaded.describe()}", flush=True)
    files = []
    for distortion in distortions:
        entry = dm.split_entry("test", distortion)
        files += explain_test_set(detector, entry.features, entry.rows, features, cfg,
                                  loaded.threshold, out, f"{prefix}-{distortion.name}",
                                  dm.to_log_mel)
    logged = _log(files, run_id, uri) if mlflow else None
    return {"files": [str(f) for f in files], "out": str(out), "run_id": logged}


def _log(files: list[Path], run_id: str | None, uri: str) -> str | None:
    """Log ``files`` under ``explain/`` in the model's run when the store has it."""
    from deepfake_detect import tracking

    if not run_id:
        print("[deepfake-detect] the model names no MLflow run; files not logged")
        return None
    if tracking.is_local_sqlite(uri) and not Path(uri[len("sqlite:///"):]).is_file():
        print(f"[deepfake-detect] no MLflow store at {uri}; files not logged "
              "(--tracking-uri names another)")
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking.prepare_store()
    client = MlflowClient(tracking_uri=uri)
    try:
        tracking.retry(lambda: client.get_run(run_id), "read run")
    except MlflowException:
        print(f"[deepfake-detect] MLflow run {run_id} is not in {uri}; files not logged")
        return None
    for path in files:
        tracking.retry(lambda f=path: client.log_artifact(run_id, str(f), "explain"),
                       "log explain artifact")
    print(f"[deepfake-detect] logged {len(files)} files to MLflow run {run_id} under explain/")
    return run_id


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect-explain",
        description="What does a trained detector look at? Mel-band occlusion (drop in AUROC "
                    "and accuracy per masked band, against Hz) and saliency maps (per class "
                    "and generator, over the mel axis and time) on the test split of any "
                    "source under any distortion.",
        epilog="Overrides compose conf/train.yaml as in deepfake-detect-train, e.g. "
               "experiment=quickstart explain.distortions=[base,pitch] "
               "explain.band_width=2. Exit status: 0 done, 2 usage error.")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Hydra overrides for the data, seed, distortion and explain.*")
    parser.add_argument("-m", "--model", required=True,
                        help="model.ckpt bundle, run directory, MLflow run id, "
                             "runs:/<run id>/model/model.ckpt or models:/<name>/<version>")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="output folder (default <paths.root>/explain/<run id>)")
    parser.add_argument("--label", default=None,
                        help="file name prefix (default: the source name, e.g. synthetic); "
                             "files are <kind>_<label>-<distortion>.*")
    parser.add_argument("--no-mlflow", action="store_true",
                        help="do not log the files to the model's MLflow run")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: logger.tracking_uri, else "
                             "sqlite:///<paths.root>/mlflow.db)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepfake-detect-explain``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        print(f"error: {bad[0]!r} is not a KEY=VALUE override", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = explain_model(args.model, args.overrides, out=args.out, label=args.label,
                               mlflow=not args.no_mlflow, tracking_uri=args.tracking_uri,
                               device=args.device)
    except DeepfakeDetectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write the explain files: {err}", file=sys.stderr)
        return 2
    print(f"[deepfake-detect] wrote {len(result['files'])} files to {result['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
