"""Score real audio with a trained model: ``deepfake-detect-predict`` or ``predict(model, inputs)``.

The model is an inference bundle (``model.ckpt``, see :mod:`deepfake_detect.models.bundle`)
given as a file, a run directory, an MLflow run id, a ``runs:/<id>/...`` URI or a registered
``models:/<name>/<version>``. Everything needed to preprocess (sample rate, window length,
log-mel settings, normalisation, threshold, label names) comes from the bundle, so no Hydra
config is involved.

A file is scored as a whole: it is decoded once (mono, the bundle's sample rate), cut into
windows of the training clip length every ``hop`` seconds -- plus one window ending at the end
of the file when the hops do not reach it, so the tail is always seen -- and each window goes
through exactly the feature function used in training (:func:`features.log_mel`). A file
shorter than one window gives one window, zero-padded at the end as in training. Window scores
(P(AI-generated)) are aggregated per file (mean or max) and compared with the threshold:
``score >= threshold`` means ``ai``. Windows from consecutive files share model batches.

Exit codes: 0 every file scored, 1 some could not be (their rows carry the reason), 2 usage
errors (no inputs, model not found, bad option).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect import LABEL_NAMES
from deepfake_detect.errors import DeepfakeDetectError

AGGREGATES = ("mean", "max")
FORMATS = ("csv", "json")
DEVICES = ("auto", "cpu", "cuda")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
BUNDLE_NAME = "model.ckpt"
BUNDLE_ARTIFACT = "model/model.ckpt"  # where train.py logs the bundle in the MLflow run
DEFAULT_OUTPUTS = "outputs"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
COLUMNS = ("path", "score", "decision", "n_windows", "duration_s", "threshold",
           "threshold_rule", "error")
WINDOW_COLUMNS = ("window_starts_s", "window_scores")
OVERRIDE_RULE = "--threshold"

log = logging.getLogger(__name__)


class UsageError(DeepfakeDetectError):
    """The command cannot run as given (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class LoadedModel:
    """A detector with its bundle metadata and where it came from."""

    detector: Any  # deepfake_detect.models.detector.Detector
    meta: dict[str, Any]
    source: str

    @property
    def features(self):
        from deepfake_detect.config import build
        from deepfake_detect.data.features import FeatureConfig

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
            parts.append(f"trained on '{self.meta['train_distortion']}'")
        if self.meta.get("run_id"):
            parts.append(f"MLflow run {self.meta['run_id']}")
        parts.append(f"{feats.sample_rate} Hz, {feats.duration:g} s windows, "
                     f"{feats.n_mels} mels")
        return "; ".join(parts)


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the training default ``sqlite:///outputs/mlflow.db``
    (``outputs`` being ``DEEPFAKE_DETECT_OUTPUTS`` when set, relative to the current directory)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = os.environ.get("DEEPFAKE_DETECT_OUTPUTS") or DEFAULT_OUTPUTS
    return f"sqlite:///{Path(root) / 'mlflow.db'}"


def load_model(ref: str | os.PathLike | LoadedModel, tracking_uri: str | None = None
               ) -> LoadedModel:
    """The bundle that ``ref`` names: a ``model.ckpt`` file, a run directory holding one, an
    MLflow run id, a ``runs:/<id>/<path>`` URI or a ``models:/<name>/<version>`` URI.

    Raises :class:`UsageError` when nothing can be found there.
    """
    if isinstance(ref, LoadedModel):
        return ref
    from deepfake_detect.models.bundle import load_bundle

    text = str(ref).strip()
    if not text:
        raise UsageError("no model given")
    if text.startswith(("runs:/", "models:/")) or _is_run_id(text):
        uri = tracking_uri or default_tracking_uri()
        with tempfile.TemporaryDirectory(prefix="deepfake-detect-model-") as tmp:
            path = _download(text, uri, Path(tmp))
            detector, meta = load_bundle(path)
        return LoadedModel(detector, meta, f"{text} (tracking URI {uri})")
    path = Path(text).expanduser()
    if path.is_dir():
        candidate = path / BUNDLE_NAME
        if not candidate.is_file():
            raise UsageError(f"model not found: {path} is a directory without {BUNDLE_NAME} "
                             "(give a run directory of a finished training run, or the "
                             "bundle file itself)")
        path = candidate
    elif not path.exists():
        raise UsageError(f"model not found: {text} is not a file, a run directory, an MLflow "
                         "run id (32 hex digits), a runs:/<run id>/... URI or a "
                         "models:/<name>/<version> URI")
    detector, meta = load_bundle(path)
    return LoadedModel(detector, meta, str(path))


def _is_run_id(text: str) -> bool:
    return bool(RUN_ID.match(text)) and not Path(text).exists()


def _download(ref: str, uri: str, dst: Path) -> Path:
    """Fetch the bundle that an MLflow reference points at into ``dst``."""
    _check_local_store(uri)
    import mlflow.artifacts

    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if ref.startswith("models:/"):
            source = _registered_source(ref, uri)
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


def _registered_source(ref: str, uri: str) -> str:
    """Where ``models:/<name>/<version|latest>[/path]`` or ``models:/<name>@<alias>[/path]``
    keeps its files. Resolved with an explicit client: MLflow's own ``models:/`` download
    reads the process-wide registry URI, not the one given here."""
    from mlflow.tracking import MlflowClient

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
        if wanted == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise UsageError(f"model not found: registered model {name!r} has no versions")
            version = str(max(int(v.version) for v in versions))
        else:
            version = wanted
    source = client.get_model_version_download_uri(name, version).rstrip("/")
    return "/".join([source, *rest])


def _check_local_store(uri: str) -> None:
    """A sqlite store that does not exist would be created empty: say so instead."""
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    if not db.is_file():
        raise UsageError(f"model not found: no MLflow store at {db} (tracking URI {uri}); "
                         "pass --tracking-uri or set MLFLOW_TRACKING_URI")


# ---------------------------------------------------------------------------------------------
# The inputs


@dataclass(frozen=True)
class Item:
    """One file to score; ``error`` set when it is known up front that it cannot be."""

    path: str
    error: str = ""


def find_inputs(inputs: Iterable[str | os.PathLike]) -> list[Item]:
    """Files, folders (searched recursively for .wav/.flac/.ogg/.mp3) and globs, in the order
    given, without duplicates. A named file that does not exist is kept as an error item;
    a folder or glob without audio only logs a warning."""
    items: list[Item] = []
    seen: set[str] = set()

    def add(path: str, error: str = "") -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            items.append(Item(path, error))

    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            found = _audio_below(path)
            if not found:
                log.warning("no audio files (%s) below %s", "/".join(AUDIO_EXTENSIONS), path)
            for file in found:
                add(str(file))
        elif path.exists():
            add(str(path))
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if Path(m).is_file()
                     and m.lower().endswith(AUDIO_EXTENSIONS)]
            for folder in (Path(m) for m in matches if Path(m).is_dir()):
                files += [str(f) for f in _audio_below(folder)]
            if not files:
                log.warning("no audio files match %s", text)
            for file in files:
                add(file)
        else:
            add(str(path), f"file not found: {path}")
    return items


def _audio_below(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / name for name in sorted(filenames)
                  if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)]
    return found


# ---------------------------------------------------------------------------------------------
# Windows, features and batched scoring


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the windows over a file of ``n_samples``: every ``hop`` while a whole
    window fits, plus one window ending at the end when the hops leave a tail uncovered; a
    file no longer than one window gives the single start 0."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def window_features(wave: np.ndarray, cfg: Any, starts: Sequence[int]) -> np.ndarray:
    """(len(starts), 1, n_mels, frames) log-mels of the windows of ``wave`` at ``starts``,
    each through the training feature function (which zero-pads a short window)."""
    from deepfake_detect.data.features import log_mel

    feats = np.stack([log_mel(wave[s:s + cfg.n_samples], cfg) for s in starts])
    return feats[:, None]


class _Batcher:
    """Collects windows from consecutive files and scores them in full batches."""

    def __init__(self, detector: Any, device: str, batch_size: int, timings: dict[str, float]):
        self.detector, self.device, self.batch_size = detector, device, batch_size
        self.timings = timings
        self.pending: list[tuple[int, np.ndarray]] = []
        self.n_pending = 0
        self.probs: dict[int, list[np.ndarray]] = {}

    def add(self, key: int, feats: np.ndarray) -> None:
        self.pending.append((key, feats))
        self.n_pending += len(feats)
        while self.n_pending >= self.batch_size:
            self._run()

    def finish(self) -> dict[int, np.ndarray]:
        while self.n_pending:
            self._run()
        return {key: np.concatenate(parts) for key, parts in self.probs.items()}

    def _run(self) -> None:
        import torch

        keys, parts, taken = [], [], 0
        while self.pending and taken < self.batch_size:
            key, feats = self.pending[0]
            part, rest = feats[:self.batch_size - taken], feats[self.batch_size - taken:]
            if len(rest):
                self.pending[0] = (key, rest)
            else:
                self.pending.pop(0)
            keys.append((key, len(part)))
            parts.append(part)
            taken += len(part)
        self.n_pending -= taken
        start = time.perf_counter()
        with torch.inference_mode():
            batch = torch.from_numpy(np.concatenate(parts)).to(self.device)
            scores = self.detector(batch).float().softmax(dim=-1).cpu().numpy()
        self.timings["model_s"] += time.perf_counter() - start
        offset = 0
        for key, count in keys:
            self.probs.setdefault(key, []).append(scores[offset:offset + count])
            offset += count


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """BLAS limited to one thread: the mel projection multiplies small matrices, for which
    multi-threaded OpenBLAS costs more than it gives (up to 10x slower on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - librosa depends on scikit-learn, which brings it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def resolve_device(device: str) -> str:
    import torch

    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use cpu or auto)")
    return device


# ---------------------------------------------------------------------------------------------
# predict()


def check_options(*, hop: float | None, aggregate: str, batch_size: int,
                  threshold: float | None, threads: int | None = None) -> None:
    """Raise :class:`UsageError` for an option value that cannot work."""
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise UsageError(f"--threads must be an integer >= 1, got {threads!r}")
    if aggregate not in AGGREGATES:
        raise UsageError(f"--aggregate must be one of {', '.join(AGGREGATES)}, "
                         f"got {aggregate!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise UsageError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    if hop is not None and not (math.isfinite(hop) and hop > 0):
        raise UsageError(f"--hop must be a positive number of seconds, got {hop!r}")
    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise UsageError(f"--threshold must lie in [0, 1], got {threshold!r}")


def require_inputs(inputs: Sequence[str | os.PathLike]) -> list[Item]:
    """:func:`find_inputs`, raising :class:`UsageError` when no existing file is among them."""
    items = find_inputs(inputs)
    if not any(not item.error for item in items):
        shown = ", ".join(map(os.fspath, inputs)) or "(none)"
        raise UsageError(f"no input audio found in: {shown} (give files, folders holding "
                         f"{'/'.join(AUDIO_EXTENSIONS)} files, or globs)")
    return items


def predict(model: str | os.PathLike | LoadedModel, inputs: Sequence[str | os.PathLike], *,
            hop: float | None = None, aggregate: str = "mean", batch_size: int = 32,
            device: str = "auto", threshold: float | None = None, per_window: bool = False,
            tracking_uri: str | None = None, progress: bool = False, threads: int | None = None,
            timings: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Score every audio file in ``inputs`` with ``model``; one row per file, in input order.

    Each row: ``path``, ``score`` (P(AI-generated), aggregated over windows; None when the file
    could not be scored), ``decision`` (the bundle's label name for score >= threshold, i.e.
    ``ai``/``human``; empty on error), ``n_windows``, ``duration_s``, ``threshold``,
    ``threshold_rule`` (the bundle's rule, or ``--threshold`` for an override) and ``error``
    (empty when fine); with ``per_window`` also ``window_starts_s`` and ``window_scores``;
    for an attribution model also ``attribution`` (the most likely class: human or a generator).
    ``timings``, when given, receives seconds spent decoding, computing features and in the
    model. ``threads`` sets torch's CPU threads for the call (None: torch's default).
    Raises :class:`UsageError` for bad options, a missing model or no inputs.
    """
    import torch

    check_options(hop=hop, aggregate=aggregate, batch_size=batch_size, threshold=threshold,
                  threads=threads)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _predict(model, inputs, hop=hop, aggregate=aggregate, batch_size=batch_size,
                        device=device, threshold=threshold, per_window=per_window,
                        tracking_uri=tracking_uri, progress=progress, timings=timings)
    finally:
        torch.set_num_threads(before)


def _predict(model: str | os.PathLike | LoadedModel, inputs: Sequence[str | os.PathLike], *,
             hop: float | None, aggregate: str, batch_size: int, device: str,
             threshold: float | None, per_window: bool, tracking_uri: str | None,
             progress: bool, timings: dict[str, float] | None) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    from deepfake_detect.data import audio

    items = require_inputs(inputs)
    device = resolve_device(device)
    loaded = load_model(model, tracking_uri)
    cfg = loaded.features
    cut = loaded.threshold if threshold is None else float(threshold)
    rule = loaded.threshold_rule if threshold is None else OVERRIDE_RULE
    names = loaded.label_names
    hop_samples = max(1, int(round((hop or cfg.duration) * cfg.sample_rate)))
    detector = loaded.detector.to(device).eval()

    clock = {"decode_s": 0.0, "features_s": 0.0, "model_s": 0.0}
    batcher = _Batcher(detector, device, batch_size, clock)
    rows: list[dict[str, Any]] = []
    starts: dict[int, list[int]] = {}
    bar = tqdm(items, desc="scoring", unit="file", disable=not progress, dynamic_ncols=True)
    for index, item in enumerate(bar):
        row: dict[str, Any] = {"path": item.path, "score": None, "decision": "",
                               "n_windows": 0, "duration_s": None, "threshold": cut,
                               "threshold_rule": rule, "error": item.error}
        rows.append(row)
        if item.error:
            continue
        try:
            tick = time.perf_counter()
            with _single_threaded_blas():
                wave = audio.decode(item.path, cfg.sample_rate)
            clock["decode_s"] += time.perf_counter() - tick
        except audio.AudioError as err:
            row["error"] = str(err)
            continue
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the others
            row["error"] = _one_line(err)
            continue
        starts[index] = window_starts(len(wave), cfg.n_samples, hop_samples)
        row["duration_s"] = len(wave) / cfg.sample_rate
        # A batch of windows at a time: a long file never holds all its features at once.
        for first in range(0, len(starts[index]), batch_size):
            tick = time.perf_counter()
            try:
                with _single_threaded_blas():
                    feats = window_features(wave, cfg, starts[index][first:first + batch_size])
            except Exception as err:  # noqa: BLE001
                row["error"] = f"cannot compute features ({_one_line(err)})"
                break
            clock["features_s"] += time.perf_counter() - tick
            batcher.add(index, feats)  # model errors are not the file's fault: they propagate
    from deepfake_detect.models.detector import ai_probability

    probabilities = batcher.finish()
    classes, attribution = tuple(detector.classes), detector.attribution

    for index, probs in probabilities.items():
        row = rows[index]
        if row["error"]:  # failed after some of its windows were queued
            continue
        window_scores = ai_probability(probs)
        score = float(window_scores.mean() if aggregate == "mean" else window_scores.max())
        row.update(score=score, decision=names[int(score >= cut)],
                   n_windows=len(window_scores))
        if attribution:  # the most likely class, from window-averaged class probabilities
            row["attribution"] = classes[int(probs.mean(axis=0).argmax())]
        if per_window:
            row["window_starts_s"] = [s / cfg.sample_rate for s in starts[index]]
            row["window_scores"] = [float(s) for s in window_scores]
    if per_window:
        for row in rows:
            row.setdefault("window_starts_s", [])
            row.setdefault("window_scores", [])
    if timings is not None:
        timings.update(clock)
    return rows


# ---------------------------------------------------------------------------------------------
# Output


def render(rows: Sequence[dict[str, Any]], fmt: str, per_window: bool = False) -> str:
    """The rows as CSV (window lists ';'-joined) or JSON (a list of objects)."""
    extra = ("attribution",) if any("attribution" in row for row in rows) else ()
    columns = [*COLUMNS, *extra, *(WINDOW_COLUMNS if per_window else ())]
    if fmt == "json":
        records = [{key: _json_value(key, row.get(key)) for key in columns} for row in rows]
        return json.dumps(records, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(key, row.get(key)) for key in columns])
    return buffer.getvalue()


def _json_value(key: str, value: Any) -> Any:
    if key == "window_scores":
        return [round(v, 6) for v in value or []]
    if key == "window_starts_s":
        return [round(v, 3) for v in value or []]
    if key in ("score", "threshold") and value is not None:
        return round(float(value), 6)
    if key == "duration_s" and value is not None:
        return round(float(value), 3)
    return value


def _csv_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "window_scores":
        return ";".join(f"{v:.6f}" for v in value)
    if key == "window_starts_s":
        return ";".join(f"{v:.3f}" for v in value)
    if key in ("score", "threshold"):
        return f"{float(value):.6f}"
    if key == "duration_s":
        return f"{float(value):.3f}"
    return str(value)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def output_target(output: str | None, fmt: str | None) -> tuple[str | None, str]:
    """(output path or None for stdout, format); the format follows ``--format``, else the
    output's suffix, else csv. The default output is ``predictions.<format>``."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output and output != "-" else ""
        fmt = suffix if suffix in FORMATS else "csv"
    if output == "-":
        return None, fmt
    path = Path(output) if output else Path(f"predictions.{fmt}")
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    probe = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise UsageError(f"--output {path}: {probe} is not writable")
    return str(path), fmt


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect-predict",
        description="Score audio files with a trained deepfake-detect model: one row per file "
                    "with P(AI-generated), aggregated over windows of the training clip "
                    "length, and the decision ai/human at the model's threshold.",
        epilog="Exit status: 0 every file scored, 1 some files could not be scored (their "
               "rows say why), 2 usage error.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (searched recursively for "
                             f"{', '.join(AUDIO_EXTENSIONS)}) or globs")
    parser.add_argument("-m", "--model", required=True,
                        help="model.ckpt bundle, run directory, MLflow run id, "
                             "runs:/<run id>/model/model.ckpt or models:/<name>/<version>")
    parser.add_argument("-o", "--output", default=None,
                        help="output file (default predictions.csv, or predictions.json with "
                             "--format json; '-' writes to stdout)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="csv or json (default: from the --output suffix, else csv)")
    parser.add_argument("--per-window", action="store_true",
                        help="add each window's start and score to every row")
    parser.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                        help="seconds between window starts (default: the window length, "
                             "i.e. the model's training clip duration)")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="mean",
                        help="how window scores make the file score (default mean)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold on P(AI-generated) (default: the one "
                             "chosen at training time, stored in the model)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="windows per model batch (default 32)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the model runs (default auto: cuda when available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI for run ids and runs:/ or models:/ URIs "
                             "(default: $MLFLOW_TRACKING_URI, else sqlite:///outputs/mlflow.db)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepfake-detect-predict``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        check_options(hop=args.hop, aggregate=args.aggregate, batch_size=args.batch_size,
                      threshold=args.threshold, threads=args.threads)
        output, fmt = output_target(args.output, args.format)
        require_inputs(args.inputs)
        resolve_device(args.device)
        info = sys.stderr if output is None else sys.stdout
        loaded = load_model(args.model, args.tracking_uri)
        if not args.quiet:
            print(f"[deepfake-detect] {loaded.describe()}", file=info, flush=True)
        rows = predict(loaded, args.inputs, hop=args.hop, aggregate=args.aggregate,
                       batch_size=args.batch_size, device=args.device,
                       threshold=args.threshold, per_window=args.per_window,
                       progress=not args.quiet, threads=args.threads)
        text = render(rows, fmt, args.per_window)
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_atomic(Path(output), text)
    except DeepfakeDetectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write {args.output or 'the output'}: {err}", file=sys.stderr)
        return 2
    return _summarise(rows, output, fmt, args.quiet)


def _summarise(rows: list[dict[str, Any]], output: str | None, fmt: str, quiet: bool) -> int:
    failed = [row for row in rows if row["error"]]
    scored = [row for row in rows if not row["error"]]
    info = sys.stderr if output is None else sys.stdout
    if not quiet and rows:
        counts: dict[str, int] = {}
        for row in scored:
            counts[row["decision"]] = counts.get(row["decision"], 0) + 1
        split = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        rule = rows[0]["threshold_rule"]
        print(f"[deepfake-detect] scored {len(scored)} of {len(rows)} files"
              f"{': ' + split if split else ''} (threshold {rows[0]['threshold']:.4g}, "
              f"{rule if rule == OVERRIDE_RULE else 'from the model: ' + rule})", file=info)
        if output is not None:
            print(f"[deepfake-detect] wrote {output} ({fmt})", file=info)
    if failed:
        print(f"{len(failed)} of {len(rows)} files could not be scored:", file=sys.stderr)
        for row in failed[:10]:
            print(f"  {row['path']}: {row['error']}", file=sys.stderr)
        if len(failed) > 10:
            print(f"  ... and {len(failed) - 10} more (see the error column)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
