"""``deepfake-detect-report``: the train × test distortion matrix of an experiment (or one
sweep) from MLflow, as markdown, a heatmap and a summary run
(:mod:`deepfake_detect.reporting.report`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from deepfake_detect import tracking
from deepfake_detect.cli.common import add_verbosity, run_command
from deepfake_detect.reporting.comparison import comparison_markdown
from deepfake_detect.reporting.report import DEFAULT_METRICS, report

log = logging.getLogger("deepfake_detect.cli.report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect-report",
        description="The train x test distortion matrix of a sweep from MLflow: mean ± std "
                    "over seeds per cell, as report.md, heatmap.png and a summary run.")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///$DEEPFAKE_DETECT_OUTPUTS/mlflow.db, outputs/ if unset)")
    parser.add_argument("--experiment", default="deepfake-detect", help="MLflow experiment")
    parser.add_argument("--sweep-id", default=None, help="only runs with this sweep_id tag")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default <outputs>/report)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--no-summary-run", action="store_true",
                        help="do not log a summary run to MLflow")
    parser.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                        help="a paired comparison of B against A: two run ids, or two "
                             "training distortions (runs paired by seed); repeatable "
                             "(default: every training distortion against base)")
    parser.add_argument("--n-boot", type=int, default=1000,
                        help="bootstrap replicates of the paired intervals (default 1000)")
    add_verbosity(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepfake-detect-report``; returns the exit status."""
    return run_command(build_parser(), argv, _report, "the report")


def _report(args: argparse.Namespace) -> int:
    uri = args.tracking_uri or tracking.default_tracking_uri()
    out = args.out or tracking.outputs_root() / "report"
    result = report(uri, args.experiment, out, args.sweep_id, tuple(args.metrics),
                    not args.no_summary_run,
                    [tuple(p) for p in args.compare] if args.compare else None, args.n_boot)
    print(result["markdown"].read_text())
    if result["comparisons"]:
        print(comparison_markdown(result["comparisons"]))
    n = result["n_runs"]
    log.info("wrote %s, %s and %s from %d run%s%s", result["markdown"], result["heatmap"],
             result["html"], n, "" if n == 1 else "s",
             f"; summary run {result['summary_run_id']}" if result["summary_run_id"] else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
