"""``deepfake-detect-predict --model REF FILES...``: score audio files with a trained model.

The model is a bundle file, a run directory, an MLflow run id, ``runs:/`` or ``models:/``
(:mod:`deepfake_detect.models.refs`); scoring is :func:`deepfake_detect.inference.scoring.predict`.
Exit codes: 0 every file scored, 1 some could not be (their rows carry the reason), 2 usage
errors (no inputs, model not found, bad option).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfake_detect import atomic
from deepfake_detect.cli.common import add_verbosity, run_command
from deepfake_detect.data.audio import AUDIO_EXTENSIONS
from deepfake_detect.data.inputs import require_inputs
from deepfake_detect.errors import UsageError
from deepfake_detect.inference.scoring import (
    AGGREGATES,
    DEVICES,
    FORMATS,
    OVERRIDE_RULE,
    check_options,
    predict,
    render,
    resolve_device,
)
from deepfake_detect.models import provenance
from deepfake_detect.models.refs import load_model

log = logging.getLogger("deepfake_detect.cli.predict")


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
                             "(default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///$DEEPFAKE_DETECT_OUTPUTS/mlflow.db, outputs/ if unset)")
    add_verbosity(parser, "no progress bar and no summary")
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepfake-detect-predict``; returns the exit status."""
    return run_command(build_parser(), argv, _score,
                       lambda args: args.output or "the output")


def _score(args: argparse.Namespace) -> int:
    check_options(hop=args.hop, aggregate=args.aggregate, batch_size=args.batch_size,
                  threshold=args.threshold, threads=args.threads)
    output, fmt = output_target(args.output, args.format)
    require_inputs(args.inputs)
    resolve_device(args.device)
    loaded = load_model(args.model, args.tracking_uri)
    log.info("%s", loaded.describe())
    rows = predict(loaded, args.inputs, hop=args.hop, aggregate=args.aggregate,
                   batch_size=args.batch_size, device=args.device, threshold=args.threshold,
                   per_window=args.per_window, progress=not args.quiet, threads=args.threads)
    for warning in provenance.warnings_for(loaded.meta, rows):
        log.warning("%s", warning)
    text = render(rows, fmt, args.per_window)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic.write_text(output, text)
    return summarise(rows, output, fmt)


def summarise(rows: list[dict[str, Any]], output: str | None, fmt: str) -> int:
    """Say what was scored and what failed; exit 1 when any file failed."""
    failed = [row for row in rows if row["error"]]
    scored = [row for row in rows if not row["error"]]
    if rows:
        counts: dict[str, int] = {}
        for row in scored:
            counts[row["decision"]] = counts.get(row["decision"], 0) + 1
        split = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        rule = rows[0]["threshold_rule"]
        log.info("scored %d of %d files%s (threshold %.4g, %s)", len(scored), len(rows),
                 ": " + split if split else "", rows[0]["threshold"],
                 rule if rule == OVERRIDE_RULE else "from the model: " + rule)
        if output is not None:
            log.info("wrote %s (%s)", output, fmt)
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
