"""Model references: a ``model.ckpt`` bundle, a run directory, an MLflow run id, a
``runs:/<id>/...`` URI or a registered ``models:/<name>/<version|latest>`` /
``models:/<name>@<alias>``, resolved to a loaded detector; and initialising a model from one.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect import LABEL_NAMES, tracking
from deepfake_detect.config import build
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.errors import ConfigError, DeepfakeDetectError, UsageError
from deepfake_detect.models import provenance
from deepfake_detect.models.bundle import RENAMED_1, load_bundle, read_bundle
from deepfake_detect.models.detector import Detector
from deepfake_detect.models.resnet import readable_file, torch_file_problem

BUNDLE_NAME = "model.ckpt"
BUNDLE_ARTIFACT = "model/model.ckpt"  # where training logs the bundle in its MLflow run
RUN_ID = re.compile(r"^[0-9a-f]{32}$")

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A detector with its bundle metadata and where it came from."""

    detector: Detector
    meta: dict[str, Any]
    source: str

    @property
    def features(self) -> FeatureConfig:
        return build(FeatureConfig, self.meta.get("features") or {}, "bundle.features")

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def threshold_rule(self) -> str:
        return str(self.meta.get("threshold_rule") or "default 0.5")

    @property
    def label_names(self) -> dict[int, str]:
        names = self.meta.get("label_map") or LABEL_NAMES
        return {int(k): str(v) for k, v in names.items()}

    def describe(self) -> str:
        feats = self.features
        parts = [f"model {self.source}"]
        if self.meta.get("train_distortion"):
            parts.append(f"training distortion '{self.meta['train_distortion']}'")
        if self.meta.get("run_id"):
            parts.append(f"MLflow run {self.meta['run_id']}")
        parts.append(f"{feats.sample_rate} Hz, {feats.duration:g} s windows, "
                     f"{feats.n_mels} mels")
        if trained := provenance.describe(self.meta):
            parts.append(trained)
        return "; ".join(parts)


def is_mlflow_ref(text: str) -> bool:
    """A ``runs:/`` or ``models:/`` URI, or a run id that is not also a path."""
    return text.startswith(("runs:/", "models:/")) or (bool(RUN_ID.match(text))
                                                       and not Path(text).exists())


def load_model(ref: str | os.PathLike | LoadedModel, tracking_uri: str | None = None
               ) -> LoadedModel:
    """The bundle that ``ref`` names; :class:`UsageError` when nothing can be found there."""
    if isinstance(ref, LoadedModel):
        return ref
    text = str(ref).strip()
    if not text:
        raise UsageError("no model given")
    if is_mlflow_ref(text):
        uri = tracking_uri or tracking.default_tracking_uri()
        with tempfile.TemporaryDirectory(prefix="deepfake-detect-model-") as tmp:
            detector, meta = load_bundle(download(text, uri, Path(tmp)))
        return LoadedModel(detector, meta, f"{text} (tracking URI {uri})")
    path = bundle_path(text)
    detector, meta = load_bundle(path)
    return LoadedModel(detector, meta, str(path))


def bundle_path(text: str) -> Path:
    """The bundle file a path names (the file, or ``model.ckpt`` in a run directory)."""
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / BUNDLE_NAME).is_file():
            raise UsageError(f"model not found: {path} is a directory without {BUNDLE_NAME} "
                             "(give a run directory of a finished training run, or the "
                             "bundle file itself)")
        return path / BUNDLE_NAME
    if not path.exists():
        raise UsageError(f"model not found: {text} is not a file, a run directory, an MLflow "
                         "run id (32 hex digits), a runs:/<run id>/... URI or a "
                         "models:/<name>/<version> URI")
    return path


def download(ref: str, uri: str, dst: Path) -> Path:
    """Fetch the bundle that an MLflow reference points at into ``dst``."""
    check_local_store(uri)
    try:
        if ref.startswith("models:/"):
            source = registered_source(ref, uri)
        elif ref.startswith("runs:/"):
            run_id, _, artifact = ref[len("runs:/"):].partition("/")
            source = f"runs:/{run_id}/{artifact.strip('/') or BUNDLE_ARTIFACT}"
        else:
            source = f"runs:/{ref}/{BUNDLE_ARTIFACT}"
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst),
                                                         tracking_uri=uri))
    except UsageError:
        raise
    except Exception as err:  # noqa: BLE001 - MlflowException, RestException, OSError ...
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"model not found: cannot fetch {ref} from MLflow at {uri} "
                         f"({message})") from None
    if local.is_dir():
        found = sorted(local.rglob(BUNDLE_NAME))
        if not found:
            raise UsageError(f"model not found: {ref} holds no {BUNDLE_NAME}")
        local = found[0]
    return local


def registered_source(ref: str, uri: str) -> str:
    """Where ``models:/<name>/<version|latest>[/path]`` or ``models:/<name>@<alias>[/path]``
    keeps its files. Resolved with an explicit client: MLflow's own ``models:/`` download
    reads the process-wide registry URI, not the one given here."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    head, *rest = ref[len("models:/"):].strip("/").split("/")
    if "@" in head:
        name, alias = head.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    else:
        if not rest:
            raise UsageError(f"model not found: {ref} names no version "
                             "(models:/<name>/<version>, models:/<name>/latest or "
                             "models:/<name>@<alias>)")
        name, wanted, rest = head, rest[0], rest[1:]
        version = latest_version(client, name) if wanted == "latest" else wanted
    source = client.get_model_version_download_uri(name, version).rstrip("/")
    return "/".join([source, *rest])


def latest_version(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise UsageError(f"model not found: registered model {name!r} has no versions")
    return str(max(int(v.version) for v in versions))


def check_local_store(uri: str) -> None:
    """A sqlite store that does not exist would be created empty: say so instead."""
    if tracking.is_local_sqlite(uri) and not tracking.sqlite_path(uri).is_file():
        raise UsageError(f"model not found: no MLflow store at {tracking.sqlite_path(uri)} "
                         f"(tracking URI {uri}); pass --tracking-uri or set "
                         "MLFLOW_TRACKING_URI")


def check_ref(ref: Any, key: str, tracking_uri: str) -> None:
    """Before any work: ConfigError naming ``key`` unless ``ref`` names something to load --
    a readable file, a run directory holding ``model.ckpt``, or an MLflow run or registered
    model that the store at ``tracking_uri`` holds."""
    text = str(ref).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / BUNDLE_NAME).is_file():
            raise ConfigError(key, f"{path} is a directory without {BUNDLE_NAME} (give a "
                              "run directory of a finished training run, or the bundle file)")
        path = path / BUNDLE_NAME
    if path.is_file():
        readable_file(path, key)
        try:
            _state_dict_in(path)  # loaded without running pickled code
        except Exception as err:  # noqa: BLE001 - pickles, zips and text fail in many ways
            raise ConfigError(key, f"{path} is not a model bundle or a Lightning checkpoint: "
                              f"{torch_file_problem(path, err)}") from None
        return
    if not is_mlflow_ref(text):
        raise ConfigError(key, f"{text!r} is not a file, a run directory, an MLflow run id "
                          "(32 hex digits), a runs:/<run id>/... URI or a "
                          "models:/<name>/<version> URI")
    try:
        check_local_store(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        if text.startswith("models:/"):
            registered_source(text, tracking_uri)
        else:
            client.get_run(text[len("runs:/"):].split("/", 1)[0] if text.startswith("runs:/")
                           else text)
    except Exception as err:  # noqa: BLE001 - MlflowException, RestException, UsageError ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(key, f"{text} not found in MLflow at {tracking_uri} ({first})") \
            from None


def init_from(model: Detector, ref: str, tracking_uri: str | None = None) -> str:
    """Initialise ``model`` from another run: a ``model.ckpt`` bundle, a run directory, a
    Lightning checkpoint, or an MLflow reference (run id, ``runs:/``, ``models:/``). Returns
    a description for the run's tags."""
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / BUNDLE_NAME
    if path.is_file():
        state, source = _state_dict_in(path), str(path)
    else:
        loaded = load_model(ref, tracking_uri)
        state, source = loaded.detector.state_dict(), loaded.source
    own = model.state_dict()
    head = [k for k in state if k.startswith("net.fc.") and k in own
            and state[k].shape != own[k].shape]
    if head:  # e.g. a binary model initialising an attribution model: new classifier head
        log.info("init_from %s: classes differ (%d -> %d); the classifier head starts fresh, "
                 "the backbone is loaded", source, state[head[0]].shape[0],
                 own[head[0]].shape[0])
        state = {k: v for k, v in state.items() if k not in head}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head]
    if unexpected or missing:
        raise DeepfakeDetectError(f"{source} does not fit this model (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})")
    return source


def _state_dict_in(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a bundle or of a Lightning checkpoint."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and payload.get("format"):
        payload = read_bundle(path)
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise DeepfakeDetectError(f"{path} holds no state_dict to initialise from")
    return {RENAMED_1.get(k, k): v for k, v in state.items()}
