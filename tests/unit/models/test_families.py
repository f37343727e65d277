"""Model families (``model.name``): each one learns a constructed signal and sits at chance
without one; the one-class model never sees an AI clip in fitting and scores like its
scikit-learn fit; every family's bundle scores files through predict exactly as the model
in memory; the registry refuses front ends a family cannot read; the embedding family end
to end with a tiny randomly initialised wav2vec2 saved by the test."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from deepfake_detect.data import audio
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.errors import ConfigError
from deepfake_detect.evaluation import stats
from deepfake_detect.inference.scoring import predict, window_starts
from deepfake_detect.models import families
from deepfake_detect.models.bundle import save_bundle
from deepfake_detect.models.detector import Detector, ModelConfig

SPECTRUM = FeatureConfig(sample_rate=16000, duration=0.5, n_mels=32)  # rows (32, 16)
PROFILE = FeatureConfig(kind="fakeprint", sample_rate=16000, duration=0.5, bins=64,
                        fmin=1000.0)
FAMILY_ROWS = {"resnet18": SPECTRUM, "lcnn": SPECTRUM, "cnn1d": PROFILE, "oneclass": SPECTRUM}


def constructed(features: FeatureConfig, n: int, signal: bool, seed: int,
                shape: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of noise in dB, half of them AI; with ``signal``, AI rows carry a decoder's
    trace: a steady line (2-D), peaks every 8 bands (1-D), four shifted units (embeddings)."""
    rng = np.random.default_rng(seed)
    shape = shape or tuple(features.shape)
    x = rng.normal(-40.0, 4.0, (n, *shape)).astype(np.float32)
    y = np.arange(n) % 2
    if signal:
        ai = y == 1
        if len(shape) == 1:
            x[ai, 4::8] += 8.0
        elif shape[0] < 8:  # embeddings (layers, width): four units of the last layer
            x[ai, -1, :4] += 8.0
        else:
            x[np.ix_(ai, np.arange(10, 12))] += 6.0
    return torch.from_numpy(x), torch.from_numpy(y)


def trained_auroc(name: str, features: FeatureConfig, signal: bool,
                  shape: tuple[int, ...] | None = None, steps: int = 40,
                  batch_size: int = 32) -> float:
    """AUROC on fresh rows after fitting ``name`` on 160 constructed rows."""
    torch.manual_seed(0)
    x, y = constructed(features, 160, signal, 1, shape)
    x_test, y_test = constructed(features, 200, signal, 2, shape)
    model = {"name": name, "lr": 3e-3, "dropout": 0.1}
    det = Detector(model=model, features=features.as_dict(),
                   feature_mean=float(x.mean()), feature_std=float(x.std()))
    if not det.family.trained:
        det.net.fit([(det.front_end(x), y)])
    else:
        optimizer = det.configure_optimizers()
        det.train()
        generator = torch.Generator().manual_seed(0)
        for _ in range(steps):
            batch = torch.randint(0, len(x), (batch_size,), generator=generator)
            loss = F.cross_entropy(det(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    det.eval()
    with torch.no_grad():
        return stats.auroc(det.score(x_test).numpy(), y_test.numpy())


@pytest.mark.parametrize("name", sorted(FAMILY_ROWS))
def test_each_family_finds_a_signal_and_sits_at_chance_without_one(name) -> None:
    features = FAMILY_ROWS[name]
    steps, batch = {"resnet18": (30, 16), "lcnn": (25, 16)}.get(name, (40, 32))
    assert trained_auroc(name, features, True, steps=steps, batch_size=batch) > 0.9
    assert abs(trained_auroc(name, features, False, steps=steps, batch_size=batch) - 0.5) < 0.15


def test_the_embedding_head_finds_a_signal_and_sits_at_chance_without_one(tiny_encoder) -> None:
    features = FeatureConfig(kind="embedding", encoder=str(tiny_encoder), duration=0.5)
    assert trained_auroc("embedding", features, signal=True, steps=60) > 0.9
    assert abs(trained_auroc("embedding", features, signal=False, steps=60) - 0.5) < 0.15


def one_class(features: FeatureConfig = SPECTRUM) -> Detector:
    return Detector(model={"name": "oneclass", "bands": 8, "components": 2},
                    features=features.as_dict(), feature_mean=-40.0, feature_std=4.0)


def test_the_one_class_model_never_sees_an_ai_clip_in_fitting() -> None:
    """AI rows made of NaN change nothing (any of them reaching the fit would make it fail,
    as the last check shows), and the fit equals one on the human rows alone."""
    x, y = constructed(SPECTRUM, 60, True, 3)
    poisoned = x.clone()
    poisoned[y == 1] = float("nan")
    det, alone = one_class(), one_class()
    batches = [(det.front_end(poisoned[i:i + 16]), y[i:i + 16]) for i in range(0, 60, 16)]
    assert det.net.fit(batches) == int((y == 0).sum())
    human = x[y == 0]
    alone.net.fit([(alone.front_end(human), torch.zeros(len(human), dtype=torch.long))])
    for key, value in det.net.state_dict().items():
        assert torch.equal(value, alone.net.state_dict()[key]), key
    assert torch.isfinite(det.score(x)).all()
    leaky = one_class()
    with pytest.raises(ValueError):
        leaky.net.fit([(leaky.front_end(poisoned), torch.zeros(60, dtype=torch.long))])


def test_the_one_class_likelihood_is_the_scikit_learn_mixture() -> None:
    from sklearn.mixture import GaussianMixture

    from deepfake_detect.models.oneclass import REG_COVAR

    x, y = constructed(SPECTRUM, 80, True, 4)
    det = one_class()
    det.net.fit([(det.front_end(x), y)])
    feats = det.net.band_features(det.front_end(x[y == 0])).double()
    z = ((feats - feats.mean(0)) / feats.std(0)).numpy()
    gmm = GaussianMixture(2, covariance_type="diag", reg_covar=REG_COVAR, random_state=0,
                          max_iter=500).fit(z)
    mine = det.net.log_likelihood(det.net.band_features(det.front_end(x))).double()
    theirs = gmm.score_samples(((det.net.band_features(det.front_end(x)).double()
                                 - feats.mean(0)) / feats.std(0)).numpy())
    assert np.allclose(mine.numpy(), theirs, atol=1e-3)


@pytest.mark.parametrize("name,kind", [("cnn1d", "logmel"), ("resnet18", "fakeprint"),
                                       ("lcnn", "fakeprint"), ("embedding", "stft")])
def test_a_family_refuses_a_front_end_it_cannot_read(name, kind) -> None:
    with pytest.raises(ConfigError, match="features.kind"):
        families.check(ModelConfig(name=name), FeatureConfig(kind=kind))
    with pytest.raises(ConfigError, match="model.weights"):
        families.check(ModelConfig(name="lcnn", weights="imagenet"), FeatureConfig())


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A randomly initialised wav2vec2 with two layers of width 16, saved like any local
    model folder (config.json and weights)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_feat_extract_layers=2,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=8)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoder") / "tiny-wav2vec2"
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def wav(path: Path, seconds: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 0.05, len(t)))
             .astype(np.float32), 16000)
    return str(path)


def expected_score(det: Detector, path: str) -> float:
    """What predict should give: the mean window score, or the whole file's."""
    wave = audio.decode(path, det.features.sample_rate)
    with torch.no_grad():
        if det.front_end.whole_file:
            return float(det.score(torch.from_numpy(det.front_end.rows([wave], True)))[0])
        n = det.features.n_samples
        starts = window_starts(len(wave), n, n)
        rows = det.front_end.rows([wave[s:s + n] for s in starts])
        return float(det.score(torch.from_numpy(rows)).mean())


def family_detectors(encoder: Path | None) -> dict[str, Detector]:
    features = {"resnet18": SPECTRUM, "lcnn": dataclasses.replace(SPECTRUM, kind="stft"),
                "cnn1d": dataclasses.replace(PROFILE, whole_file=True),
                "oneclass": dataclasses.replace(SPECTRUM, kind="cqt", fmin=200.0,
                                                hop_length=256)}
    if encoder is not None:
        features["embedding"] = FeatureConfig(kind="embedding", encoder=str(encoder),
                                              duration=0.5)
    out = {}
    for name, cfg in features.items():
        torch.manual_seed(0)
        det = Detector(model={"name": name, "bands": 8, "components": 2},
                       features=cfg.as_dict(), feature_mean=-30.0, feature_std=10.0)
        if name == "oneclass":
            x, y = constructed(cfg, 40, False, 5)
            det.net.fit([(det.front_end(x), y)])
        out[name] = det.eval()
    return out


def test_a_bundle_of_every_family_scores_files_through_predict_like_the_model(
        tmp_path, tiny_encoder) -> None:
    files = [wav(tmp_path / "short.wav", 0.3, 0), wav(tmp_path / "long.wav", 1.3, 1)]
    detectors = family_detectors(tiny_encoder)
    assert set(detectors) == set(families.FAMILIES)
    for name, det in detectors.items():
        bundle = save_bundle(tmp_path / f"{name}.ckpt", det, 0.5, "fixed")
        rows = predict(bundle, files, device="cpu", threads=1)
        assert [r["error"] for r in rows] == ["", ""], name
        for row, path in zip(rows, files, strict=True):
            assert row["score"] == pytest.approx(expected_score(det, path), abs=1e-6), name
        assert rows[1]["n_windows"] == (1 if det.front_end.whole_file else 3), name


@pytest.mark.slow
def test_the_embedding_family_trains_and_predicts_end_to_end(tmp_path, tiny_encoder,
                                                              make_cfg) -> None:
    """A tiny randomly initialised wav2vec2 from a local folder: its embeddings cached like
    features (built by forked workers), a weighted-sum head trained, the bundle scores a
    file; the cache key names the encoder's files."""
    from deepfake_detect.training.run import train

    cfg = make_cfg("detector=embedding", f"features.encoder={tiny_encoder}",
                   "eval.distortions=[base]", "features.duration=0.5",
                   "data.source.duration=0.5", "data.cache.workers=2")
    result = train(cfg)
    head = 3 + 2 * 16 + 16 * 2 + 2  # layer weights, layer norm, linear head
    assert result["model/params"] == result["model/trainable_params"] == head
    bundle = Path(result["run_dir"]) / "model.ckpt"
    rows = predict(bundle, [wav(tmp_path / "a.wav", 0.7, 3)], device="cpu", threads=1)
    assert rows[0]["error"] == "" and 0.0 <= rows[0]["score"] <= 1.0
    metas = list(Path(cfg.data.cache.dir).rglob("config.json"))  # a store folder's key
    assert metas and all("encoder_files" in m.read_text() for m in metas
                         if '"kind": "embedding"' in m.read_text())
    assert any('"kind": "embedding"' in m.read_text() for m in metas)


DETECTORS = sorted(p.stem for p in (Path(__file__).parents[3] / "conf" / "detector").glob("*.yaml"))


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_preset_plans(name, make_cfg, tiny_encoder) -> None:
    """Each ``detector=<name>`` composes into a plan whose family reads its front end; the
    embedding preset without a folder names the key to set."""
    from deepfake_detect.training.plan import plan

    model, _, kind = name.partition("_")
    if name == "embedding":
        with pytest.raises(ConfigError, match="features.encoder"):
            plan(make_cfg(f"detector={name}"))
        p = plan(make_cfg(f"detector={name}", f"features.encoder={tiny_encoder}"))
        assert (p.model.name, p.features.kind) == ("embedding", "embedding")
        return
    p = plan(make_cfg(f"detector={name}"))
    assert (p.model.name, p.features.kind) == (model, kind)
    assert p.features.kind in families.FAMILIES[p.model.name].kinds
    if kind != "logmel":  # explain reads mel bands
        with pytest.raises(ConfigError, match="explain"):
            plan(make_cfg(f"detector={name}", "explain.enabled=true"))
