"""``deepfake-detect-predict``: real and broken files, whole-song windows, MLflow model
references, usage errors, and the same score as the test loop for the same clip."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_detect.cli import predict as predict_cli
from deepfake_detect.data.audio import AUDIO_EXTENSIONS
from deepfake_detect.data.inputs import find_inputs
from deepfake_detect.inference import scoring as inference

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands

SHARED_AUDIO = Path(__file__).resolve().parents[3] / "shared" / "audio"
SR = 16000  # the tiny config's feature sample rate; its window is 1 s


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One tiny training run (test distortion base only), shared by the tests below."""
    from deepfake_detect.training.run import train
    from tests.helpers.configs import TINY, compose_cfg

    root = tmp_path_factory.mktemp("predict") / "out"
    cfg = compose_cfg([*TINY, "eval.distortions=[base]"], root)
    result = train(cfg)
    return {**result, "cfg": cfg}


def _tone(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
    if channels == 1:
        return wave.astype(np.float32)
    return np.stack([wave, 0.5 * wave], axis=1).astype(np.float32)


@pytest.fixture
def good_files(tmp_path: Path) -> Path:
    """Two usable files: one shorter than a window, one stereo 44.1 kHz FLAC of 2.5 windows."""
    folder = tmp_path / "good"
    (folder / "nested").mkdir(parents=True)
    sf.write(folder / "short.wav", _tone(0.3, SR), SR)
    sf.write(folder / "nested" / "stereo.flac", _tone(2.5, 44100, channels=2), 44100)
    (folder / "notes.txt").write_text("not audio")
    return folder


@pytest.fixture
def broken_files(tmp_path: Path) -> Path:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "random.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    return folder


def expected_windows(path: Path, hop_s: float) -> set[int]:
    """The window counts a file can have at the model's rate (1 s windows every ``hop_s``);
    a sample either way for resampling and compressed formats' frame counts."""
    info = sf.info(str(path))
    n = info.frames * SR / info.samplerate
    return {1 + max(0, math.ceil((m - SR) / (hop_s * SR))) for m in range(int(n) - 1, int(n) + 3)}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------
# Pure helpers


def test_windows_cover_the_whole_file() -> None:
    assert inference.window_starts(500, 1000, 1000) == [0]  # shorter: one (padded) window
    assert inference.window_starts(1000, 1000, 1000) == [0]
    assert inference.window_starts(3000, 1000, 1000) == [0, 1000, 2000]
    # the tail window ends at the end
    assert inference.window_starts(2500, 1000, 1000) == [0, 1000, 1500]
    assert inference.window_starts(2500, 1000, 500) == [0, 500, 1000, 1500]


@pytest.mark.parametrize("window,hop", [(1000, 1000), (1000, 300), (1000, 2500), (700, 700)])
def test_streamed_windows_are_the_whole_files(window: int, hop: int) -> None:
    """Windows cut from blocks as they arrive are those of the whole file, whatever the
    block sizes (and a file no longer than a window is one window)."""
    rng = np.random.default_rng(0)
    for n in (1, 500, 999, 1000, 1001, 2500, 7777):
        wave = rng.standard_normal(n).astype(np.float32)
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, 5), replace=False)) \
            if n > 1 else []
        windows = inference.Windows(window, hop)
        got = [w for block in np.split(wave, cuts) for w in windows.add(block)]
        got += windows.finish()
        starts = inference.window_starts(n, window, hop)
        assert [start for start, _ in got] == starts, n
        for (start, samples) in got:
            np.testing.assert_array_equal(samples, wave[start:start + window])


def test_inputs_from_folders_globs_and_missing_paths(good_files: Path, tmp_path: Path) -> None:
    items = find_inputs([good_files, str(good_files / "*.wav"), tmp_path / "missing.mp3"])
    paths = [Path(item.path).name for item in items]
    assert paths == ["short.wav", "stereo.flac", "missing.mp3"]  # recursive, deduplicated
    assert [bool(item.error) for item in items] == [False, False, True]
    assert "file not found" in items[-1].error


# ---------------------------------------------------------------------------------------------
# The CLI on real and broken files


def test_cli_scores_real_audio_and_reports_broken_files(trained: dict, good_files: Path,
                                                       broken_files: Path, tmp_path: Path,
                                                       capsys) -> None:
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"no shared recordings at {SHARED_AUDIO}")
    real = sorted(p for p in SHARED_AUDIO.rglob("*")
                  if p.suffix.lower() in AUDIO_EXTENSIONS)
    out = tmp_path / "res" / "predictions.csv"
    code = predict_cli.main(["-m", trained["run_dir"], str(SHARED_AUDIO), str(good_files),
                   str(broken_files), "-o", str(out), "--hop", "10", "--batch-size", "16",
                   "--threads", "1"])  # one torch thread: much faster on a busy CI machine
    captured = capsys.readouterr()
    assert code == 1
    assert "3 of " in captured.err and "files could not be scored" in captured.err
    assert f"3 of {len(real) + 5} files could not be scored" in captured.err
    assert "Traceback" not in captured.err

    rows = {Path(r["path"]).name: r for r in _read_csv(out)}
    assert len(rows) == len(real) + 5  # one row per file
    assert not list(out.parent.glob(".*.tmp"))  # written atomically, nothing left behind
    for path in [*real, good_files / "short.wav", good_files / "nested" / "stereo.flac"]:
        row = rows[path.name]
        assert row["error"] == "", (path, row["error"])
        # A probability (its value is checked against the test loop in
        # test_score_matches_the_test_loop), and the decision that goes with it.
        assert 0.0 <= float(row["score"]) <= 1.0
        assert row["decision"] == ("ai" if float(row["score"]) >= float(row["threshold"])
                                   else "human")
        # Every 10 s (--hop 10) a 1 s window, plus one ending at the end of the file.
        assert int(row["n_windows"]) in expected_windows(path, hop_s=10), path
        assert row["threshold_rule"] == "fixed 0.5"
    assert rows["short.wav"]["n_windows"] == "1"
    reasons = {name: rows[name]["error"] for name in ("random.wav", "empty.wav", "silent.wav")}
    assert "empty" in reasons["empty.wav"]
    assert "silent" in reasons["silent.wav"]
    assert reasons["random.wav"]
    for name in reasons:
        assert rows[name]["score"] == "" and rows[name]["decision"] == ""


def test_all_good_inputs_exit_zero_json_per_window(trained: dict, good_files: Path,
                                                  tmp_path: Path, capsys) -> None:
    bundle = Path(trained["run_dir"]) / "model.ckpt"
    out = tmp_path / "p.json"
    code = predict_cli.main(["-m", str(bundle), str(good_files), "-o", str(out), "--per-window",
                   "--hop", "0.5", "--threshold", "0", "--threads", "1"])
    assert code == 0
    assert "could not be scored" not in capsys.readouterr().err
    rows = {Path(r["path"]).name: r for r in json.loads(out.read_text())}
    assert set(rows) == {"short.wav", "stereo.flac"}
    stereo = rows["stereo.flac"]
    assert stereo["window_starts_s"] == [0.0, 0.5, 1.0, 1.5]  # 2.5 s, 1 s windows, 0.5 s hop
    assert len(stereo["window_scores"]) == stereo["n_windows"] == 4
    assert stereo["score"] == pytest.approx(np.mean(stereo["window_scores"]), abs=1e-5)
    for row in rows.values():  # the override is used and said so
        assert row["threshold"] == 0.0 and row["threshold_rule"] == "--threshold"
        assert row["decision"] == "ai" and row["error"] == ""

    by_max = inference.predict(bundle, [good_files / "nested"], hop=0.5, aggregate="max",
                       per_window=True, device="cpu", threads=1)
    assert by_max[0]["score"] == pytest.approx(max(by_max[0]["window_scores"]))
    assert by_max[0]["threshold"] == 0.5 and by_max[0]["threshold_rule"] == "fixed 0.5"

    # Windows of consecutive files share batches; a window's score must not depend on that.
    kwargs = {"hop": 0.5, "per_window": True, "device": "cpu", "threads": 1}
    one = inference.predict(bundle, [good_files], batch_size=1, **kwargs)
    three = inference.predict(bundle, [good_files], batch_size=3, **kwargs)
    for a, b in zip(one, three, strict=True):
        assert a["window_scores"] == pytest.approx(b["window_scores"], abs=1e-5)
        assert a["window_scores"] == pytest.approx(rows[Path(a["path"]).name]["window_scores"],
                                                   abs=1e-5)


def test_a_score_equal_to_the_threshold_is_ai(trained: dict, good_files: Path) -> None:
    """``score >= threshold`` means ``ai``: a threshold equal to a file's score calls it ai,
    the next float above calls it human."""
    wav = good_files / "short.wav"
    kwargs = {"device": "cpu", "threads": 1}
    (row,) = inference.predict(trained["run_dir"], [wav], **kwargs)
    score = row["score"]
    assert 0.0 < score < 1.0
    (at,) = inference.predict(trained["run_dir"], [wav], threshold=score, **kwargs)
    assert at["score"] == score and at["threshold"] == score and at["decision"] == "ai"
    above_threshold = float(np.nextafter(score, 1.0))
    (above,) = inference.predict(trained["run_dir"], [wav], threshold=above_threshold, **kwargs)
    assert above["score"] == score and above["decision"] == "human"


# ---------------------------------------------------------------------------------------------
# Identity of preprocessing: the CLI gives the score the test loop gave


def test_score_matches_the_test_loop(trained: dict, tmp_path: Path) -> None:
    from deepfake_detect.config import to_plain
    from deepfake_detect.data import synthetic

    source = to_plain(trained["cfg"].data.source)
    fields = {f.name for f in dataclasses.fields(synthetic.SyntheticConfig)}
    syn_cfg = synthetic.SyntheticConfig(**{k: v for k, v in source.items() if k in fields})
    features = to_plain(trained["cfg"].features)
    assert syn_cfg.sample_rate == features["sample_rate"]  # no resampling on either side
    clips = {clip.clip_id: clip for clip in synthetic.list_clips(syn_cfg)}

    expected = _read_csv(Path(trained["run_dir"]) / "artifacts" / "predictions_base.csv")
    assert expected
    folder = tmp_path / "test_clips"
    folder.mkdir()
    for row in expected:
        wave = synthetic.render(clips[row["clip_id"]], syn_cfg)
        sf.write(folder / f"{row['clip_id']}.wav", wave, syn_cfg.sample_rate, subtype="FLOAT")

    out = tmp_path / "identity.csv"
    assert predict_cli.main(["-m", trained["run_dir"], str(folder), "-o", str(out), "-q"]) == 0
    got = {Path(r["path"]).stem: r for r in _read_csv(out)}
    for row in expected:
        assert got[row["clip_id"]]["n_windows"] == "1"
        assert float(got[row["clip_id"]]["score"]) == pytest.approx(float(row["score"]),
                                                                    abs=1e-4)


def test_streamed_scores_equal_the_whole_file_path(trained: dict, tmp_path: Path) -> None:
    """Predict streams a file block by block; its window scores equal those of decoding the
    whole file at once (the previous path), for a multi-window 44.1 kHz stereo song."""
    import torch

    from deepfake_detect.data import audio
    from deepfake_detect.models.refs import load_model

    path = tmp_path / "song.wav"
    sf.write(path, _tone(37.3, 44100, channels=2, seed=3), 44100)
    loaded = load_model(trained["run_dir"])
    (row,) = inference.predict(loaded, [path], hop=0.35, per_window=True, device="cpu",
                               batch_size=16)
    cfg, detector = loaded.features, loaded.detector.eval()
    wave = audio.decode(path, cfg.sample_rate)
    starts = inference.window_starts(len(wave), cfg.n_samples, round(0.35 * cfg.sample_rate))
    rows = detector.front_end.rows([wave[s:s + cfg.n_samples] for s in starts])
    with torch.inference_mode():
        probs = detector(torch.from_numpy(rows)).float().softmax(dim=-1).numpy()
    assert row["error"] == "" and row["n_windows"] == len(starts) > 100
    assert row["duration_s"] == pytest.approx(len(wave) / cfg.sample_rate)
    assert row["window_starts_s"] == pytest.approx([s / cfg.sample_rate for s in starts])
    np.testing.assert_allclose(row["window_scores"], probs[:, 1], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The model from MLflow


def test_model_from_mlflow_run_id_and_uris(trained: dict, good_files: Path, tmp_path: Path,
                                          monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may create a default store here
    wav = str(good_files / "short.wav")
    uri, run_id = trained["tracking_uri"], trained["run_id"]
    reference = inference.predict(trained["run_dir"], [wav], device="cpu")[0]["score"]

    out = tmp_path / "by_id.csv"
    assert predict_cli.main(["-m", run_id, "--tracking-uri", uri, wav, "-o", str(out), "-q"]) == 0
    assert float(_read_csv(out)[0]["score"]) == pytest.approx(reference, abs=1e-6)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    rows = inference.predict(f"runs:/{run_id}/model/model.ckpt", [wav], device="cpu")
    assert rows[0]["score"] == pytest.approx(reference, abs=1e-6)

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("tiny-detector")
    client.create_model_version("tiny-detector", f"runs:/{run_id}/model", run_id=run_id)
    rows = inference.predict("models:/tiny-detector/1", [wav], device="cpu")
    assert rows[0]["score"] == pytest.approx(reference, abs=1e-6)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


# ---------------------------------------------------------------------------------------------
# Usage errors: exit 2, a clear message, no traceback


def test_usage_errors_exit_two(trained: dict, good_files: Path, tmp_path: Path,
                               capsys) -> None:
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    wav = str(good_files / "short.wav")
    cases = {
        "no input audio found": ["-m", trained["run_dir"], str(empty)],
        "model not found": ["-m", str(tmp_path / "nope.ckpt"), wav],
        "without model.ckpt": ["-m", str(empty), wav],
        "Run with id": ["-m", "0" * 32, "--tracking-uri", trained["tracking_uri"], wav],
        "no MLflow store": ["-m", "0" * 32, "--tracking-uri",
                            f"sqlite:///{tmp_path / 'absent.db'}", wav],
        "not a model bundle": ["-m", wav, wav],
        "--hop must be": ["-m", trained["run_dir"], wav, "--hop", "0"],
    }
    for expected, argv in cases.items():
        assert predict_cli.main([*argv, "-o", str(tmp_path / "x.csv")]) == 2, expected
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (expected, err)
    assert not (tmp_path / "x.csv").exists()
    assert predict_cli.main(["-m", trained["run_dir"]]) == 2  # argparse: no inputs at all
    capsys.readouterr()


def test_console_script_is_installed() -> None:
    exe = shutil.which("deepfake-detect-predict")
    if exe is None:
        pytest.skip("console script not installed (pip install -e .)")
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--per-window" in done.stdout
