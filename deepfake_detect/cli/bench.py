"""``python -m deepfake_detect.bench [--size tiny|full] [--out report.json]``: is the data
pipeline ever the bottleneck? Every figure measured side by side in one run
(:mod:`deepfake_detect.bench.suite`); the verdicts are printed, the exit code is 0 whenever
every figure was measured."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from deepfake_detect import atomic
from deepfake_detect.bench.suite import SIZES, machine, run_suite, say, table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deepfake_detect.bench",
                                     description="Is the data pipeline ever the bottleneck? "
                                     "Cache vs decoding, steps/s through the DataModule vs in "
                                     "memory, parallel cache builds, torch vs librosa log-mel, "
                                     "build memory; measured side by side in one run.")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    parser.add_argument("--audio", type=Path,
                        help="real audio files (a folder) for the log-mel parity and speed")
    parser.add_argument("--num-workers", type=int,
                        help="data.loader.num_workers (default: auto, the DataModule's)")
    parser.add_argument("--on-device", choices=["auto", "true", "false"],
                        help="data.loader.on_device (default: auto, the DataModule's)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--workdir", type=Path, help="keep the clips and caches here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = SIZES[args.size]
    loader: dict[str, Any] = {}
    if args.num_workers is not None:
        loader["num_workers"] = args.num_workers
    if args.on_device is not None:
        loader["on_device"] = {"true": True, "false": False}.get(args.on_device, "auto")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    say(f"size {args.size} on {info['cores']} cores ({info['cpu']}); GPU: {info['gpu']}")
    with tempfile.TemporaryDirectory(prefix="deepfake-detect-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        rows = run_suite(size, args.device, args.audio, workdir, loader)
    print(table(rows))
    if args.out:
        report = {"size": args.size, "machine": info, "settings": asdict(size),
                  "figures": [asdict(row) for row in rows]}
        atomic.write_text(args.out, json.dumps(report, indent=1, default=str))
    return 0
