"""GPU check for "Scaling out": bf16 quickstart, a 2-job joblib sweep, wall times, and which
GPU and precision every run really used (read back from MLflow).

    python experiments/gpu_check.py                 # at most ~8 minutes (budget 420 s)
    python experiments/gpu_check.py --extra debug=fast_dev_run   # CPU smoke test of the script

Steps (each in its own process group, with a time limit; a failed step does not stop the
others; steps that no longer fit in the budget are skipped):

1. environment: ``nvidia-smi -L``, torch, CUDA, bfloat16 support;
2. quickstart, empty cache (``precision: auto`` -> bf16-mixed on a bf16 GPU);
3. 2-job sweep with ``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (quickstart data, so the
   cache from step 2 is reused; each job prints and tags its GPU when more than one is
   visible);
4. quickstart again with a warm cache (training + testing time only), bf16;
5. the same in 32-true without channels-last, for the speed and accuracy comparison;
6. with two or more GPUs: ``trainer=ddp trainer.devices=2`` (warm cache).

Logs go to ``$OUT`` (or ``--out``, default ``<outputs>/logs``); outputs (cache, MLflow sqlite
store, runs) to a temporary folder (``--root``). The last lines are a PASS/FAIL summary.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "deepfake_detect.cli.train"]
QUICK = ["experiment=quickstart", "trainer.enable_progress_bar=false"]


class Check:
    def __init__(self, out: Path, root: Path, budget: float):
        self.out, self.root, self.budget = out, root, budget
        self.start = time.monotonic()
        self.results: list[tuple[str, str]] = []

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def step(self, name: str, command: list[str], limit: float) -> tuple[int | None, float, str]:
        """Run ``command``; (exit code or None if skipped/timed out, wall seconds, output)."""
        limit = min(limit, self.left())
        if limit < 30:
            print(f"\n=== {name}: skipped ({self.left():.0f} s of the budget left)", flush=True)
            self.results.append((name, "SKIPPED (budget)"))
            return None, 0.0, ""
        print(f"\n=== {name} (limit {limit:.0f} s)\n$ {' '.join(command)}", flush=True)
        log = self.out / f"{name}.log"
        env = dict(os.environ, DEEPFAKE_DETECT_OUTPUTS=str(self.root), PYTHONUNBUFFERED="1")
        began = time.monotonic()
        with log.open("w") as handle:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                code = None
                _stop(proc)
        wall = time.monotonic() - began
        text = log.read_text(errors="replace")
        state = "ok" if code == 0 else ("TIMED OUT" if code is None else f"exit {code}")
        print(f"--- {name}: {state}, wall {wall:.1f} s (log: {log})", flush=True)
        if code != 0:
            print(_tail(text, 60), flush=True)
        return code, wall, text

    def verdict(self, name: str, ok: bool, detail: str) -> None:
        self.results.append((name, ("PASS " if ok else "FAIL ") + detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl+C the whole process group (runs are marked KILLED), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except (subprocess.TimeoutExpired, ProcessLookupError):
            continue


def _tail(text: str, lines: int) -> str:
    return "\n".join("    " + line[:240] for line in text.splitlines()[-lines:])


def epoch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"\] epoch \d+/\d+", line)]


def runs(root: Path, experiment: str) -> list:
    """The runs of ``experiment`` in the sqlite store under ``root`` (newest first)."""
    from mlflow.tracking import MlflowClient

    db = root / "mlflow.db"
    if not db.is_file():
        return []
    try:
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        found = client.get_experiment_by_name(experiment)
        return client.search_runs([found.experiment_id]) if found else []
    except Exception as err:  # noqa: BLE001 - report, and go on with the other steps
        print(f"could not read experiment {experiment!r} from {db}: {err}")
        return []


def describe(run) -> str:
    tags, metrics = run.data.tags, run.data.metrics
    accuracy = "  ".join(f"{name} {metrics[f'test/{name}/accuracy']:.3f}"
                         for name in ("base", "pitch", "tempo", "combined")
                         if f"test/{name}/accuracy" in metrics)
    return (f"{run.info.run_name}: {run.info.status}, device={tags.get('device')}, "
            f"gpu={tags.get('gpu', '-')}, precision={tags.get('precision')}, "
            f"channels_last={run.data.params.get('trainer.channels_last')}, "
            f"lr={run.data.params.get('model.lr')}; accuracy {accuracy}")


def environment(check: Check) -> tuple[int, bool]:
    """(number of GPUs torch sees, bf16 supported)."""
    if shutil.which("nvidia-smi"):
        check.step("nvidia-smi", ["nvidia-smi", "-L"], 30)
    probe = ("import torch, lightning, mlflow, hydra; print('torch', torch.__version__, "
             "'cuda', torch.version.cuda, 'lightning', lightning.__version__, 'mlflow', "
             "mlflow.__version__); n = torch.cuda.device_count(); print('gpus', n); "
             "print('bf16', n > 0 and torch.cuda.get_device_capability(0)[0] >= 8); "
             "[print('gpu', i, torch.cuda.get_device_name(i)) for i in range(n)]; "
             "import hydra_plugins.hydra_joblib_launcher, hydra_plugins.hydra_submitit_launcher")
    code, _, text = check.step("environment", [sys.executable, "-c", probe], 120)
    print(_tail(text, 20))
    if code != 0:
        print("environment probe failed: is the package installed (pip install -e "
              "\".[launchers]\")?")
    gpus = int(m.group(1)) if (m := re.search(r"^gpus (\d+)", text, re.M)) else 0
    return gpus, "bf16 True" in text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=420,
                        help="seconds of steps; a step is cut to what is left (default 420)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the logs (default $OUT, else <outputs>/logs)")
    parser.add_argument("--root", type=Path, default=None,
                        help="outputs folder (default: a new temporary folder)")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="overrides added to every training command")
    args = parser.parse_args()
    root = (args.root or Path(tempfile.mkdtemp(prefix="gpu-check-"))).resolve()
    out = args.out or Path(os.environ.get("OUT") or root / "logs")
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out.resolve(), root, args.budget)
    quick = [*QUICK, *args.extra]
    print(f"outputs: {root}, logs: {check.out}, budget {args.budget:.0f} s")
    gpus, bf16 = environment(check)
    expected = "bf16-mixed" if bf16 else "16-mixed"
    workers = f"data.cache.workers={max(1, min(os.cpu_count() or 1, 16))}"

    # 2. quickstart from an empty cache
    code, wall, text = check.step("quickstart_cold", [*TRAIN, *quick, workers], 300)
    print("\n".join(epoch_lines(text)[-3:]))
    found = runs(root, "quickstart")
    for run in found:
        print("   ", describe(run))
    ok = (code == 0 and len(found) == 1 and found[0].info.status == "FINISHED"
          and found[0].data.tags.get("precision") == expected
          and str(found[0].data.tags.get("device", "")).startswith("cuda"))
    check.verdict("quickstart_cold", ok, f"wall {wall:.1f} s, expected {expected} on cuda")

    # 3. two jobs in parallel on this machine
    code, wall, text = check.step("joblib_sweep", [
        *TRAIN, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *quick, workers,
        "model.lr=0.002,0.0005", "trainer.max_epochs=6", "logger.experiment_name=gpu-sweep"],
        300)
    for line in text.splitlines():
        if "sweep job" in line or "Joblib.Parallel" in line:
            print("   ", line[:200])
    found = runs(root, "gpu-sweep")
    for run in found:
        print("   ", describe(run))
    devices = {run.data.tags.get("gpu") for run in found}
    ok = (code == 0 and len(found) == 2 and all(
        r.info.status == "FINISHED" and r.data.tags.get("precision") == expected
        and str(r.data.tags.get("device", "")).startswith("cuda") for r in found)
          and (gpus < 2 or len(devices) == 2))
    check.verdict("joblib_sweep", ok, f"wall {wall:.1f} s for 2 jobs x 6 epochs; "
                  f"{'one GPU each' if gpus >= 2 else 'both on the one GPU'}")

    # 4.-5. warm cache: training + testing only, bf16 vs 32-true
    walls = {}
    for name, experiment, precision, extra in (
            ("quickstart_warm_bf16", "quickstart", expected, []),
            ("quickstart_warm_fp32", "quickstart-fp32", "32-true",
             ["trainer.precision=32-true", "trainer.channels_last=false",
              "logger.experiment_name=quickstart-fp32"])):
        code, wall, text = check.step(name, [*TRAIN, *quick, workers, "resume=false", *extra],
                                      180)
        if code is None and wall == 0.0:
            continue
        walls[name] = wall
        print("\n".join(epoch_lines(text)[-2:]))
        newest = runs(root, experiment)[:1]
        for run in newest:
            print("   ", describe(run))
        check.verdict(name, code == 0 and len(newest) == 1
                      and newest[0].data.tags.get("precision") == precision
                      and str(newest[0].data.tags.get("device", "")).startswith("cuda"),
                      f"wall {wall:.1f} s (cache warm), expected {precision} on cuda")
    if len(walls) == 2:
        print(f"warm quickstart wall, {expected} / 32-true: "
              f"{walls['quickstart_warm_bf16']:.1f} s / {walls['quickstart_warm_fp32']:.1f} s")

    # 6. DDP on two GPUs
    if gpus >= 2:
        code, wall, text = check.step("ddp", [*TRAIN, *quick, workers, "trainer=ddp",
                                              "trainer.devices=2",
                                              "logger.experiment_name=gpu-ddp"], 180)
        found = runs(root, "gpu-ddp") if wall else []
        for run in found:
            print("   ", describe(run))
        job_dirs = list((root / "hydra").rglob("train_ddp_process_1.log"))
        if wall:
            check.verdict("ddp", code == 0 and len(found) == 1 and len(job_dirs) == 1
                          and found[0].info.status == "FINISHED",
                          f"wall {wall:.1f} s, {len(found)} MLflow run(s)")

    print(f"\n=== summary ({time.monotonic() - check.start:.0f} s)")
    for name, result in check.results:
        print(f"{name:<22} {result}")
    return 0 if all(not r.startswith("FAIL") for _, r in check.results) else 1


if __name__ == "__main__":
    sys.exit(main())
