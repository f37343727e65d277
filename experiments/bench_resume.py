"""How much does re-running a finished sweep cost, next to running it the first time?

Runs one small sweep through the real CLI (``deepfake-detect-train -m seed=...``: 64 clips,
two full epochs per job; ``--tiny``: the one-batch debug config) into a temporary folder, then
the very same command again, and prints both wall times and their ratio (goal: under 5 %).
Every job of the second run finds its ``result.json`` and returns the stored result before
any data or torch work, so what is left is Hydra: starting, and composing each job's config
(twice per job in a multirun, about half a second each on 2 busy cores), plus whatever the
entry point imports before calling ``train`` (``--profile`` lists the slowest imports).

    python experiments/bench_resume.py --threads 1           # 4 jobs
    python experiments/bench_resume.py --tiny --seeds 1 2 3 4 5 6 7 8 --profile

Takes one to two minutes on 2 CPU cores, almost all of it the first (training) run. The cost
of a skipped job does not depend on its size, so the ratio shrinks as jobs grow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = ["debug=fast_dev_run", "trainer.enable_progress_bar=false", "eval.distortions=[base]"]
SMALL = [*TINY, "data.source.n_clips=64", "trainer.max_epochs=2",
         "trainer.limit_train_batches=null", "trainer.limit_val_batches=null",
         "trainer.limit_test_batches=null"]


def sweep_command(root: Path, seeds: list[int], job: list[str]) -> list[str]:
    return [sys.executable, "-m", "deepfake_detect.cli.train", "-m",
            f"seed={','.join(map(str, seeds))}", *job, f"paths.root={root}"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"command failed ({done.returncode}): {' '.join(command)}\n"
                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout + done.stderr


def import_profile(root: Path, seed: int, job: list[str], env: dict[str, str]) -> str:
    """The slowest top-level imports of one skipped job (``python -X importtime``)."""
    command = [sys.executable, "-X", "importtime", "-m", "deepfake_detect.cli.train",
               f"seed={seed}", *job, f"paths.root={root}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            name = fields[2].rstrip()
            if not name.startswith("  "):  # one space: imported by the program itself
                rows.append((int(fields[1]), name.strip()))
    rows.sort(reverse=True)
    return "\n".join(f"  {us / 1e6:6.2f} s  {name}" for us, name in rows[:8])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4],
                        help="one sweep job per seed (default: 1 2 3 4)")
    parser.add_argument("--tiny", action="store_true",
                        help="one-batch debug jobs (a few seconds each) instead of small ones")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the jobs (default: inherit)")
    parser.add_argument("--profile", action="store_true",
                        help="also list the slowest imports of one skipped job")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the sweep here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)

    env = dict(os.environ, MLFLOW_SQLALCHEMYSTORE_POOLCLASS="NullPool")
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_resume-"))
    try:
        job = TINY if args.tiny else SMALL
        command = sweep_command(root, args.seeds, job)
        print("command:", " ".join(command[2:]).replace(str(root), "<root>"), flush=True)
        first, _ = timed(command, env)
        again, output = timed(command, env)
        skipped = output.count("already finished")
        print(f"jobs: {len(args.seeds)}  skipped on the second run: {skipped}")
        print(f"first run (trains):       {first:7.2f} s")
        print(f"second run (all finished): {again:6.2f} s  "
              f"({again / len(args.seeds):.2f} s per job)")
        print(f"ratio: {100 * again / first:.1f} %  (goal < 5 %)")
        if skipped != len(args.seeds):
            sys.exit("error: the second run retrained finished jobs")
        if args.profile:
            print("slowest imports of one skipped job:\n" + import_profile(root, args.seeds[0], job,
                                                                            env))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
