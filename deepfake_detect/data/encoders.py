"""The ``embedding`` front end: a frozen pretrained encoder (wav2vec2, HuBERT, WavLM, MERT
with ``trust_remote_code``, ...) loaded from a local folder with Hugging Face
``transformers`` (``pip install -e ".[encoders]"``), nothing downloaded. A clip's row is
every hidden state (the input embedding and each layer) mean-pooled over time,
``(layers + 1, width)``; the model family ``embedding`` picks a layer or learns a weighted
sum and puts a head on it. Rows are cached like any features, so the encoder runs once per
clip and distortion.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect.data.features import FeatureConfig, encoder_config, fit_length
from deepfake_detect.errors import ConfigError

_LOADED: dict[tuple[str, bool], Any] = {}  # one encoder per process and folder


def check_encoder(cfg: FeatureConfig) -> None:
    """The folder holds an encoder config, ``transformers`` is installed, and the folder's
    sampling rate (where it states one) is the feature rate."""
    encoder_config(cfg.encoder)
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError("features.encoder", "the embedding front end needs Hugging Face "
                          "transformers: pip install -e \".[encoders]\"") from None
    extractor = Path(str(cfg.encoder)).expanduser() / "preprocessor_config.json"
    if extractor.is_file():
        rate = json.loads(extractor.read_text()).get("sampling_rate")
        if rate and int(rate) != cfg.sample_rate:
            raise ConfigError("features.sample_rate", f"the encoder at {cfg.encoder} takes "
                              f"{rate} Hz audio; set features.sample_rate={rate}")


def encoder_fingerprint(folder: str) -> str:
    """sha256 prefix of the folder's config and weight files (names, sizes, config text):
    a changed encoder gets a new cache key."""
    root = Path(folder).expanduser()
    digest = hashlib.sha256()
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
        if path.suffix == ".json":
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_encoder(cfg: FeatureConfig) -> Any:
    """The frozen encoder of ``cfg.encoder`` (eval mode, float32, CPU), loaded once per
    process; its own code runs only with ``features.trust_remote_code``."""
    key = (str(Path(str(cfg.encoder)).expanduser().resolve()), bool(cfg.trust_remote_code))
    if key not in _LOADED:
        check_encoder(cfg)
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(key[0], local_files_only=True,
                                              trust_remote_code=key[1])
        except ValueError as err:  # unknown architecture, remote code refused
            raise ConfigError("features.encoder", f"{key[0]}: {err}; a model whose code "
                              "lives in the folder needs features.trust_remote_code=true "
                              "(it runs that code)") from None
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        _LOADED[key] = model
    return _LOADED[key]


def embed(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """float32 ``(layers + 1, width)``: each hidden state of the clip, mean-pooled over time
    (the clip fitted to its length, normalised to zero mean and unit variance as wav2vec2's
    feature extractor does)."""
    import torch

    model = load_encoder(cfg)
    wave = fit_length(np.asarray(wave, dtype=np.float32), cfg.n_samples)
    wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    with torch.no_grad():
        out = model(torch.from_numpy(wave)[None], output_hidden_states=True)
    states = torch.stack([h[0] for h in out.hidden_states])  # (layers + 1, time, width)
    return states.mean(dim=1).float().numpy()
