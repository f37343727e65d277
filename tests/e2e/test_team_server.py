"""The team server as docs/guide.md documents it: its commands, run against a real
``mlflow server --app-name basic-auth`` on 127.0.0.1. Jobs log in by
MLFLOW_TRACKING_USERNAME / _PASSWORD and are refused without them in one line, before any
work; a stopped server is one line within seconds. Through the server's REST API: the
experiment opens as model training, the run's name says what differs, the data source is a
dataset input.

Needs the ``auth`` extra (``mlflow[auth]``, part of ``.[test]``); skipped, saying so, where
it is not installed."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepfake_detect import tracking
from deepfake_detect.cli import report as report_cli
from deepfake_detect.errors import StoreError
from tests.helpers.mlflow_server import free_port, serve
from tests.unit.test_readme import GUIDE, commands

pytest.importorskip("flask_wtf", reason="the auth extra is not installed: "
                                        "pip install -e '.[auth]' (mlflow[auth])")
pytestmark = pytest.mark.slow

SECTION = GUIDE[GUIDE.index("turn on MLflow's login"):GUIDE.index("What the login protects")]
PASSWORD = "a-long-admin-password-1"
AUTH_CONFIG = re.search(r"```ini\n(.*?)```", SECTION, flags=re.S).group(1)
TINY = ["debug=fast_dev_run", "trainer.enable_progress_bar=false", "eval.baselines=[]",
        "eval.distortions=[base]"]


def guide_line(start: str, needle: str) -> str:
    """The guide's command line that starts with ``start`` and holds ``needle``."""
    return next(c for c in commands(SECTION) if c.startswith(start) and needle in c)


def request(base: str, path: str, auth: tuple[str, str] | None = None,
            body: dict | None = None, **query: str) -> dict:
    """A REST call (POST when there is a ``body``), logged in as ``auth`` or anonymous."""
    url = f"{base}/api/2.0/mlflow/{path}?" + urllib.parse.urlencode(query)
    headers = {"Content-Type": "application/json", **({"Authorization": "Basic " + base64.b64encode(
        ":".join(auth).encode()).decode()} if auth else {})}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data, headers),
                                timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """The guide's basic-auth server command, with $HOME in a temporary folder and a free
    port; the environment ``source ~/mlflow/server.env`` gives it."""
    home = tmp_path_factory.mktemp("team")
    port = free_port()
    line = guide_line("mlflow server --app-name basic-auth", "sqlite")
    line = line.replace("$HOME", str(home)).replace("--port 5000", f"--port {port}")
    (home / "mlflow").mkdir()
    config = home / "mlflow" / "basic_auth.ini"  # the guide's: passwords checked once a minute
    config.write_text(AUTH_CONFIG)
    env = dict(os.environ, HOME=str(home), MLFLOW_AUTH_ADMIN_PASSWORD=PASSWORD,
               MLFLOW_AUTH_CONFIG_PATH=str(config),
               MLFLOW_FLASK_SERVER_SECRET_KEY="test-secret",
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    args = shlex.split(line)
    assert args[:2] == ["mlflow", "server"], line
    with serve(args[2:], port, home, home / "mlflow", env) as base:
        yield base, env


def run_command(line: str, base: str, env: dict[str, str], *extra: str,
                login: bool) -> subprocess.CompletedProcess:
    """A guide command line against ``base``, logged in (the guide's ``export`` lines) or
    not."""
    words = shlex.split(line.replace("http://127.0.0.1:5000", base))
    module = {"deepfake-detect-train": "deepfake_detect.cli.train",
              "deepfake-detect-report": "deepfake_detect.cli.report"}[words[0]]
    env = dict(env)
    if login:
        user = re.search(r"MLFLOW_TRACKING_USERNAME=(\S+)", SECTION).group(1)
        env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=PASSWORD)
    return subprocess.run([sys.executable, "-m", module, *words[1:], *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def test_the_guides_commands_log_in_and_are_refused_without(server, tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    base, env = server
    train = guide_line("deepfake-detect-train", "127.0.0.1:5000")
    report = guide_line("deepfake-detect-report", "127.0.0.1:5000")
    root = tmp_path / "out"
    started = time.monotonic()
    refused = run_command(train, base, env, *TINY, f"paths.root={root}", login=False)
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = [x for x in refused.stderr.splitlines() if "error" in x.lower()]
    assert len(lines) == 1 and base in lines[0] and "MLFLOW_TRACKING_USERNAME" in lines[0]
    assert "Traceback" not in refused.stderr and not (root / "runs").exists()  # before work
    assert time.monotonic() - started < 120

    done = run_command(train, base, env, *TINY, f"paths.root={root}", login=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with pytest.raises(urllib.error.HTTPError, match="401"):
        request(base, "experiments/get-by-name", experiment_name="quickstart")
    auth = ("admin", PASSWORD)
    experiment = request(base, "experiments/get-by-name", auth,
                         experiment_name="quickstart")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags[tracking.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND  # the runs table
    runs = request(base, "runs/search", auth, {"experiment_ids": [experiment["experiment_id"]]}
                   )["runs"]
    assert len(runs) == 1 and runs[0]["info"]["status"] == "FINISHED"
    assert runs[0]["info"]["run_name"] == "base-seed0"
    inputs = runs[0]["inputs"]["dataset_inputs"]
    assert [d["dataset"]["name"] for d in inputs] == ["synthetic"]
    assert re.fullmatch(r"[0-9a-f]{16}", inputs[0]["dataset"]["digest"])
    assert json.loads(inputs[0]["dataset"]["profile"])["num_files"] > 0

    out = tmp_path / "report"  # in this process (a subprocess costs its imports again)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    args = shlex.split(report.replace("http://127.0.0.1:5000", base))[1:]
    assert report_cli.main([*args, "--out", str(out)]) == 2
    assert "MLFLOW_TRACKING_USERNAME" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    assert report_cli.main([*args, "--out", str(out)]) == 0
    assert (out / "report.html").is_file()
    assert "Downloading artifacts" not in capsys.readouterr().err


def test_a_stopped_server_is_one_line_within_seconds() -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot be reached \(connection refused"):
        tracking.check_store(uri)
    assert time.monotonic() - started < 10
