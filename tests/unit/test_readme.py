"""The README stays short and true: at most 200 lines, exactly two install lines (the second
is what CI runs), and every command it shows is accepted by the real parser or config (the
behaviour behind each is tested elsewhere: the quickstart in test_experiments, sweeps in
test_grid and test_scale, predict in test_predict, the report in test_grid)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from deepfake_detect.cli import explain as explain_cli
from deepfake_detect.cli import predict as predict_cli
from deepfake_detect.cli import report as report_cli
from deepfake_detect.cli import robustness as robustness_cli
from deepfake_detect.config import compose as compose_config
from deepfake_detect.config import conf_dir, to_plain
from deepfake_detect.data.presets import distortion_preset
from deepfake_detect.training.plan import plan

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


GUIDE = (REPO / "docs" / "guide.md").read_text()


def commands(text: str = README) -> list[str]:
    """Every command line in the bash blocks of ``text`` (continuations joined, comments cut;
    the README's by default)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    return found


def test_short_with_exactly_two_install_lines() -> None:
    assert len(README.splitlines()) <= 200
    installs = [c for c in commands() if c.startswith("pip install")]
    assert installs == ["pip install -e . && deepfake-detect-train experiment=quickstart",
                        'pip install -e ".[test]" && python -m pytest']
    assert installs[1] in (REPO / ".ci" / "run").read_text()


def train_overrides(command: str, music: Path) -> list[str]:
    """The overrides of a ``deepfake-detect-train`` line, sweeps reduced to their first value."""
    args = [a for a in shlex.split(command)[1:] if a not in ("-m", "-v", "--cfg", "job")]
    out = []
    for arg in args:
        key, _, value = arg.partition("=")
        if "," in value and not value.startswith("["):
            value = value.split(",")[0]
        out.append(f"{key}={value.replace('my_music', str(music))}")
    return out


@pytest.mark.parametrize("command", [c for c in commands()
                                     if "deepfake-detect-train" in c and "&&" not in c]
                         + ["deepfake-detect-train experiment=quickstart"])
def test_train_commands_compose_and_plan(command: str, tmp_path: Path) -> None:
    music = tmp_path / "my_music"
    for label in ("human", "ai"):
        (music / label).mkdir(parents=True)
        (music / label / "x.wav").write_bytes(b"")  # listed, never decoded by plan()
    overrides = [*train_overrides(command, music), f"paths.root={tmp_path / 'out'}"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    resolved = to_plain(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    assert plan(resolved).run_dir.path.parent == tmp_path / "out" / "runs"


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith(
    ("deepfake-detect-report", "deepfake-detect-predict", "deepfake-detect-explain",
     "deepfake-detect-robustness"))])
def test_other_commands_parse(command: str) -> None:
    prog, *args = shlex.split(command)
    cli = {"deepfake-detect-report": report_cli, "deepfake-detect-predict": predict_cli,
           "deepfake-detect-explain": explain_cli,
           "deepfake-detect-robustness": robustness_cli}[prog]
    if prog == "deepfake-detect-robustness":
        args = robustness_cli.join_values(args)
        parsed = cli.build_parser().parse_args(args)
        distortion_preset(parsed.distortion)  # a shipped preset
        GlobalHydra.instance().clear()
        compose_config("train", parsed.overrides)  # overrides the config accepts
        return
    cli.build_parser().parse_args(args)


@pytest.mark.parametrize("command", [c for c in commands() + commands(GUIDE)
                                     if c.startswith("mlflow ")])
def test_mlflow_commands_use_options_mlflow_has(command: str) -> None:
    words = shlex.split(command)
    done = subprocess.run([sys.executable, "-m", "mlflow", words[1], "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for option in (w for w in words if w.startswith("--")):
        assert option in done.stdout, option


def test_the_team_server_logs_in_listens_locally_and_keeps_secrets_off_the_command_line(
        ) -> None:
    servers = [c for c in commands(GUIDE) if c.startswith("mlflow server")]
    assert any("--app-name basic-auth" in c for c in servers)
    for command in commands(GUIDE):
        assert "0.0.0.0" not in command, command  # only named in prose, as a deliberate choice
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", command), command  # user:password@
        assert not re.search(r"PASSWORD=\S", command), command
    section = GUIDE[GUIDE.index("**A team MLflow server**"):]
    for words in ("What the login protects", "What it does not", "MLFLOW_TRACKING_PASSWORD",
                  ".pgpass", "HTTPS"):
        assert words in section, words
