"""MLflow 3.17's UI as the tests meet it: the layout of a run's Model metrics page computed
from its metric keys as the UI computes it, a real ``mlflow server`` on a store, and that
page rendered by headless Chromium.

The layout (mlflow/server/js, ``RunsChartsCardConfig.getBaseChartAndSectionConfigs`` and
``extractChartSectionName``): one section per key up to its last ``/``, sections sorted by
JavaScript's default sort (UTF-16 code units: Python's sort for these keys), the keys
without ``/`` last as "Model metrics"; a section's charts sorted by key; ``system/`` keys
belong to the System metrics tab."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.mlflow_server import free_port, serve

MODEL_METRICS = "Model metrics"
SYSTEM_PREFIX = "system/"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
NO_CHROMIUM = "no headless Chromium here (apt-get install -y chromium; see docs/guide.md)"
HEADER = 'data-testid="experiment-view-compare-runs-section-header"'


def run_page(keys: Iterable[str]) -> list[tuple[str, list[str]]]:
    """The Model metrics page of a run with these metric keys: (section, its chart keys) in
    the order the UI draws them."""
    sections: dict[str, list[str]] = {}
    for key in sorted(k for k in keys if not k.startswith(SYSTEM_PREFIX)):
        sections.setdefault(key.rpartition("/")[0] or MODEL_METRICS, []).append(key)
    named = sorted(s for s in sections if s != MODEL_METRICS)
    return [(s, sections[s]) for s in [*named, MODEL_METRICS] if s in sections]


@contextmanager
def mlflow_server(home: Path, backend_uri: str | None = None) -> Iterator[str]:
    """``mlflow server`` (one worker, no job runners) on a free 127.0.0.1 port over
    ``backend_uri`` (default: a new sqlite file in ``home``); its base URL."""
    port = free_port()
    with serve(["--backend-store-uri", backend_uri or f"sqlite:///{home / 'server.db'}",
                "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
                "--port", str(port)], port, home, home,
               dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")) as base:
        yield base


def browser(profile: Path) -> list[str]:
    """Headless Chromium with its own profile (the run page keeps its layout per run in
    local storage: a fresh profile sees the page as a first visit)."""
    assert CHROMIUM is not None, NO_CHROMIUM
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--window-size=1400,1800",
            "--virtual-time-budget=15000"]


def rendered_sections(url: str, profile: Path) -> list[tuple[str, int]]:
    """The section headers of the page at ``url`` as Chromium draws them: (name, number of
    charts), top to bottom."""
    dom = subprocess.run([*browser(profile), "--dump-dom", url], capture_output=True,
                         text=True, timeout=180, env=dict(os.environ, HOME=str(profile))).stdout
    found = []
    for start in (dom.index(">", m.end()) + 1 for m in re.finditer(re.escape(HEADER), dom)):
        text = html.unescape(re.sub(r"<[^>]+>", "\n", dom[start:start + 2000]))
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        count = next(i for i, line in enumerate(lines) if re.fullmatch(r"\(\d+\)", line))
        found.append((" ".join(lines[:count]), int(lines[count][1:-1])))
    return found


def screenshot(url: str, profile: Path, path: Path) -> Path:
    """A PNG of the page at ``url``."""
    subprocess.run([*browser(profile), f"--screenshot={path}", url], capture_output=True,
                   timeout=180, env=dict(os.environ, HOME=str(profile)))
    return path
