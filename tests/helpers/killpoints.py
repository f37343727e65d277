"""Training that dies by SIGKILL at one exact point, in a forked child of the test process
(warm imports: no second start-up of torch, Lightning and MLflow per kill).

Points (epochs 0-based, as Lightning counts):

- ``best:E``  -- right after ``best.ckpt`` was made the checkpoint of epoch E;
- ``last:E``  -- right after epoch E's ``last.ckpt`` was written, before ``best.ckpt``;
- ``batch:E:B`` -- at training batch B of epoch E (mid-epoch).

Test-only: the library has no such hook; :func:`install` patches it from outside, in the
child alone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from deepfake_detect.models import detector
from deepfake_detect.training import checkpoints


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    """Patch the training stack of this process to SIGKILL itself at ``point``."""
    kind, *numbers = point.split(":")
    epoch, *rest = (int(n) for n in numbers)
    if kind in ("best", "last"):
        commit = checkpoints.BestCheckpoint.commit

        def patched(self, trainer, written):
            chosen = self._pending and trainer.global_step == self.step
            if kind == "last" and trainer.current_epoch == epoch:
                _die()
            commit(self, trainer, written)
            if kind == "best" and chosen and trainer.current_epoch == epoch:
                _die()

        checkpoints.BestCheckpoint.commit = patched
    elif kind == "batch":
        step = detector.Detector.training_step

        def patched_step(self, batch, batch_idx):
            if self.current_epoch == epoch and batch_idx == rest[0]:
                _die()
            return step(self, batch, batch_idx)

        detector.Detector.training_step = patched_step
    else:
        raise ValueError(f"unknown kill point {point!r}")


def killed_at(point: str, work: Callable[[], object], timeout: float = 300) -> int:
    """Run ``work()`` in a forked child that SIGKILLs itself at ``point``; the signal that
    ended the child (a child that returns or raises exits 0 or 1 instead)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test
        code = 1
        try:
            install(point)
            work()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"the child killed at {point} ran past {timeout} s")
        time.sleep(0.05)
