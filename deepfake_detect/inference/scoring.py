"""Scoring audio files with a trained model: windows, batching, aggregation, output rows.

A file is scored as a whole, streamed: it is decoded and resampled block by block
(:class:`~deepfake_detect.data.audio.Stream`, mono at the model's sample rate, the same
samples as decoding it at once), cut into windows of the training clip length every ``hop``
seconds -- plus one window ending at the end of the file when the hops do not reach it, so
the tail is always seen -- and each window becomes the kind of row the model trained on
(:meth:`FrontEnd.rows`: the very feature function of training). Memory holds a block, a
window and a batch of rows, whatever the file's length. A file shorter than one window gives
one window, zero-padded at the end as in training. Window scores (P(AI-generated)) are
aggregated per file (mean or max) and compared with the threshold: ``score >= threshold``
means ``ai``. Windows from consecutive files share model batches.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from deepfake_detect.data import audio
from deepfake_detect.data.inputs import Item, require_inputs
from deepfake_detect.errors import UsageError
from deepfake_detect.models.detector import Detector, ai_probability
from deepfake_detect.models.refs import LoadedModel, load_model

AGGREGATES = ("mean", "max")
FORMATS = ("csv", "json")
DEVICES = ("auto", "cpu", "cuda")
COLUMNS = ("path", "score", "decision", "n_windows", "duration_s", "sample_rate",
           "threshold", "threshold_rule", "error")
WINDOW_COLUMNS = ("window_starts_s", "window_scores")
OVERRIDE_RULE = "--threshold"


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


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; ``cuda`` must be there."""
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use cpu or auto)")
    return device


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


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """BLAS limited to one thread: the mel projection multiplies small matrices, for which
    multi-threaded OpenBLAS costs more than it gives (up to 10x slower on a busy machine)."""
    return threadpool_limits(1, user_api="blas")


class Batcher:
    """Collects rows from consecutive files and scores them in full batches."""

    def __init__(self, detector: Detector, device: str, batch_size: int,
                 timings: dict[str, float]):
        self.detector, self.device, self.batch_size = detector, device, batch_size
        self.timings = timings
        self.pending: list[tuple[int, np.ndarray]] = []
        self.n_pending = 0
        self.probs: dict[int, list[np.ndarray]] = {}

    def add(self, key: int, rows: np.ndarray) -> None:
        self.pending.append((key, rows))
        self.n_pending += len(rows)
        while self.n_pending >= self.batch_size:
            self._run()

    def finish(self) -> dict[int, np.ndarray]:
        while self.n_pending:
            self._run()
        return {key: np.concatenate(parts) for key, parts in self.probs.items()}

    def _take(self) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
        """Up to one batch of pending rows, with (file key, count) for each part."""
        keys, parts, taken = [], [], 0
        while self.pending and taken < self.batch_size:
            key, rows = self.pending[0]
            part, rest = rows[:self.batch_size - taken], rows[self.batch_size - taken:]
            if len(rest):
                self.pending[0] = (key, rest)
            else:
                self.pending.pop(0)
            keys.append((key, len(part)))
            parts.append(part)
            taken += len(part)
        self.n_pending -= taken
        return keys, parts

    def _run(self) -> None:
        keys, parts = self._take()
        start = time.perf_counter()
        with torch.inference_mode():
            batch = torch.from_numpy(np.concatenate(parts)).to(self.device)
            probs = self.detector(batch).float().softmax(dim=-1).cpu().numpy()
        self.timings["model_s"] += time.perf_counter() - start
        offset = 0
        for key, count in keys:
            self.probs.setdefault(key, []).append(probs[offset:offset + count])
            offset += count


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
    check_options(hop=hop, aggregate=aggregate, batch_size=batch_size, threshold=threshold,
                  threads=threads)
    items = require_inputs(inputs)
    device = resolve_device(device)
    loaded = load_model(model, tracking_uri)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        scorer = Scorer(loaded, device, hop, batch_size, threshold)
        rows = scorer.score(items, progress)
        scorer.finish(rows, aggregate, per_window)
    finally:
        torch.set_num_threads(before)
    if timings is not None:
        timings.update(scorer.clock)
    return rows


class Scorer:
    """One model scoring many files: decode, window, batch, aggregate."""

    def __init__(self, loaded: LoadedModel, device: str, hop: float | None, batch_size: int,
                 threshold: float | None):
        self.loaded, self.cfg = loaded, loaded.features
        self.cut = loaded.threshold if threshold is None else float(threshold)
        self.rule = loaded.threshold_rule if threshold is None else OVERRIDE_RULE
        self.hop = max(1, int(round((hop or self.cfg.duration) * self.cfg.sample_rate)))
        self.detector = loaded.detector.to(device).eval()
        self.clock = {"decode_s": 0.0, "features_s": 0.0, "model_s": 0.0}
        self.batcher = Batcher(self.detector, device, batch_size, self.clock)
        self.batch_size = batch_size
        self.starts: dict[int, list[int]] = {}

    def score(self, items: list[Item], progress: bool) -> list[dict[str, Any]]:
        """One row per item; windows queued in the batcher."""
        rows = []
        bar = tqdm(items, desc="scoring", unit="file", disable=not progress, dynamic_ncols=True)
        for index, item in enumerate(bar):
            row: dict[str, Any] = {"path": item.path, "score": None, "decision": "",
                                   "n_windows": 0, "duration_s": None, "sample_rate": None,
                                   "threshold": self.cut, "threshold_rule": self.rule,
                                   "error": item.error}
            rows.append(row)
            if not item.error:
                self._queue(index, item, row)
        return rows

    def _queue(self, index: int, item: Item, row: dict[str, Any]) -> None:
        """Stream the file's windows into the batcher; a problem with the file becomes the
        row's error (windows already queued are then left out of its score)."""
        cfg = self.cfg
        stream = audio.Stream(item.path, cfg.sample_rate)
        windows = Windows(cfg.n_samples, self.hop)
        starts = self.starts[index] = []
        ready: list[tuple[int, np.ndarray]] = []  # windows waiting for a batch's worth
        try:
            for block in self._timed(stream, "decode_s"):
                ready += windows.add(block)
                if len(ready) >= self.batch_size:
                    ready = self._score(index, ready, starts)
            self._score(index, ready + windows.finish(), starts, last=True)
        except audio.AudioError as err:
            row["error"] = str(err)
            return
        except _FeatureError as err:
            row["error"] = f"cannot compute features ({_one_line(err.__cause__ or err)})"
            return
        row["duration_s"] = stream.length / cfg.sample_rate
        row["sample_rate"] = stream.native_rate

    def _timed(self, blocks: Iterator[np.ndarray], key: str) -> Iterator[np.ndarray]:
        """``blocks``, adding the time spent producing each to ``self.clock[key]``; any error
        while producing one is the file's (an AudioError): one bad file must not stop the
        others. Model errors are not the file's fault: they raise."""
        iterator = iter(blocks)
        while True:
            tick = time.perf_counter()
            try:
                block = next(iterator)
            except StopIteration:
                return
            except audio.AudioError:
                raise
            except Exception as err:  # noqa: BLE001
                raise audio.AudioError(_one_line(err)) from err
            finally:
                self.clock[key] += time.perf_counter() - tick
            yield block

    def _score(self, index: int, ready: list[tuple[int, np.ndarray]], starts: list[int],
               last: bool = False) -> list[tuple[int, np.ndarray]]:
        """Rows of ``ready`` windows (start, samples), a whole batch at a time (and the rest
        when ``last``), into the batcher; returns the windows left for the next batch."""
        whole = len(ready) if last else len(ready) - len(ready) % self.batch_size
        for first in range(0, whole, self.batch_size):
            chunk = ready[first:min(first + self.batch_size, whole)]
            tick = time.perf_counter()
            try:
                with _single_threaded_blas():
                    rows = self.detector.front_end.rows([wave for _, wave in chunk])
            except Exception as err:  # noqa: BLE001
                raise _FeatureError() from err
            self.clock["features_s"] += time.perf_counter() - tick
            starts += [start for start, _ in chunk]
            self.batcher.add(index, rows)  # model errors are not the file's fault: they raise
        return ready[whole:]

    def finish(self, rows: list[dict[str, Any]], aggregate: str, per_window: bool) -> None:
        """Aggregate each file's window scores into its row."""
        names = self.loaded.label_names
        classes, attribution = tuple(self.detector.classes), self.detector.attribution
        for index, probs in self.batcher.finish().items():
            row = rows[index]
            if row["error"]:  # failed after some of its windows were queued
                continue
            window_scores = ai_probability(probs)
            score = float(window_scores.mean() if aggregate == "mean" else window_scores.max())
            row.update(score=score, decision=names[int(score >= self.cut)],
                       n_windows=len(window_scores))
            if attribution:  # the most likely class, from window-averaged class probabilities
                row["attribution"] = classes[int(probs.mean(axis=0).argmax())]
            if per_window:
                row["window_starts_s"] = [s / self.cfg.sample_rate for s in self.starts[index]]
                row["window_scores"] = [float(s) for s in window_scores]
        if per_window:
            for row in rows:
                row.setdefault("window_starts_s", [])
                row.setdefault("window_scores", [])


class _FeatureError(Exception):
    """The front end could not turn a file's windows into rows (the cause is chained)."""


class Windows:
    """Cuts streamed audio into the windows :func:`window_starts` gives for the whole file,
    holding only what a later window still needs (at most a window and a hop)."""

    def __init__(self, window: int, hop: int):
        self.window, self.hop = window, hop
        self.buffer = np.zeros(0, dtype=np.float32)
        self.offset = 0  # file position of buffer[0]
        self.next = 0  # start of the next hop window
        self.last: int | None = None  # start of the last window given

    def add(self, block: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """The windows complete once ``block`` (the next samples) is added."""
        self.buffer = np.concatenate([self.buffer, block])
        end = self.offset + len(self.buffer)
        ready = []
        while self.next + self.window <= end:
            ready.append(self._cut(self.next))
            self.next += self.hop
        keep = max(0, min(self.next, end - self.window) - self.offset)  # the tail may be needed
        self.buffer, self.offset = self.buffer[keep:], self.offset + keep
        return ready

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The window ending at the end of the file, when the hops did not reach it (the only
        window of a file no longer than one, zero-padded later as in training)."""
        end = self.offset + len(self.buffer)
        if self.last is None:
            return [(0, self.buffer[:self.window].copy())] if end else []
        if self.last + self.window < end:
            return [self._cut(end - self.window)]
        return []

    def _cut(self, start: int) -> tuple[int, np.ndarray]:
        self.last = start
        at = start - self.offset
        return start, self.buffer[at:at + self.window].copy()


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
