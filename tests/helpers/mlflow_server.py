"""A real ``mlflow server`` on a free 127.0.0.1 port, for the tests that talk to one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(args: Sequence[str], port: int, home: Path, cwd: Path,
          env: dict[str, str]) -> Iterator[str]:
    """``python -m mlflow server ARGS --workers 1`` (ARGS naming ``port``) until its
    ``/health`` answers (180 s at most); its base URL; stopped, with its process group,
    on exit. The server's log is ``home/server.log`` and shows in a failure."""
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", *args, "--workers", "1"],
                            cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, (home / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
