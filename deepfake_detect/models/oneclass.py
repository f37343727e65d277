"""The ``oneclass`` family: a density model of human music only (in the spirit of MusicDET,
arXiv 2605.18072, which fits flows over power-spectrogram bands of real music alone). Rows
become band features -- the frequency axis pooled into ``bands`` bands, each band's mean and
standard deviation over time (a 1-D profile: its pooled bands) -- standardised with the human
training rows' statistics; a Gaussian mixture with diagonal covariances (scikit-learn, EM) is
fitted on the human training clips and never sees an AI clip. A clip's score is how unlikely
it is under that model: its negative log-likelihood as a z-score against the human training
clips', and P(AI) = sigmoid(z). The mixture lives in buffers, scored in torch, so the bundle,
predict and every other caller treat it like any detector; the threshold and the epoch are
chosen on validation like any other model's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REG_COVAR = 1e-3  # added to each variance (the features are standardised)


class OneClass(nn.Module):
    """Band features -> a Gaussian mixture of human music -> logits ``[-z/2, z/2]`` (so
    softmax gives P(AI) = sigmoid(z), z the standardised negative log-likelihood)."""

    def __init__(self, num_classes: int, in_shape: tuple[int, ...], bands: int = 32,
                 components: int = 4, seed: int = 0):
        super().__init__()
        self.num_classes, self.bands, self.components, self.seed = (num_classes, bands,
                                                                    components, seed)
        self.bands = min(bands, in_shape[0])
        dim = self.bands * (2 if len(in_shape) == 2 else 1)
        for name, shape in (("center", (dim,)), ("scale", (dim,)), ("means", (components, dim)),
                            ("variances", (components, dim)), ("log_weights", (components,))):
            self.register_buffer(name, torch.ones(shape) if name in ("scale", "variances")
                                 else torch.zeros(shape))
        self.register_buffer("nll_mean", torch.tensor(0.0))
        self.register_buffer("nll_std", torch.tensor(1.0))
        self.register_buffer("fitted", torch.tensor(False))

    def band_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, freq[, time])`` -> ``(batch, features)``: the frequency axis pooled
        into ``bands`` (adaptive average), then per band the mean and std over time."""
        x = x.float()
        if x.dim() == 3:  # a 1-D profile
            return F.adaptive_avg_pool1d(x, self.bands)[:, 0]
        pooled = F.adaptive_avg_pool2d(x, (self.bands, x.shape[-1]))[:, 0]
        return torch.cat([pooled.mean(dim=-1), pooled.std(dim=-1)], dim=1)

    def log_likelihood(self, features: torch.Tensor) -> torch.Tensor:
        """log p(features) under the mixture, per row (diagonal covariances; the features
        are standardised first, as in fitting)."""
        z = (features - self.center) / self.scale
        diff = z[:, None, :] - self.means[None]
        per = -0.5 * ((diff.square() / self.variances[None]).sum(-1)
                      + self.variances.log().sum(-1)[None]
                      + z.shape[-1] * math.log(2 * math.pi))
        return torch.logsumexp(per + self.log_weights[None], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nll = -self.log_likelihood(self.band_features(x))
        z = (nll - self.nll_mean) / self.nll_std
        logits = torch.stack([-z / 2, z / 2], dim=1)
        if self.num_classes > 2:  # attribution: every AI class alike
            logits = torch.cat([logits, logits[:, 1:].expand(-1, self.num_classes - 2)], dim=1)
        return logits

    @torch.no_grad()
    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Fit on the rows whose target is 0 (human) of ``(inputs, targets)`` batches, and
        only on those: an AI row is dropped before anything is computed from it. Returns how
        many rows were used."""
        from sklearn.mixture import GaussianMixture

        parts = [self.band_features(x[y == 0]).double().cpu() for x, y in batches
                 if bool((y == 0).any())]
        feats = torch.cat(parts) if parts else torch.zeros(0)
        if len(feats) < 2:
            raise ValueError(f"the one-class model needs human training clips; got {len(feats)}")
        center = feats.mean(dim=0)
        scale = feats.std(dim=0).clamp(min=1e-6)
        z = ((feats - center) / scale).numpy()
        k = int(min(self.components, len(z)))
        gmm = GaussianMixture(k, covariance_type="diag", reg_covar=REG_COVAR,
                              random_state=self.seed, max_iter=500).fit(z)
        self.center.copy_(center.float())
        self.scale.copy_(scale.float())
        means, variances = np.zeros(self.means.shape), np.ones(self.variances.shape)
        log_weights = np.full(self.log_weights.shape, -np.inf)
        means[:k], variances[:k], log_weights[:k] = (gmm.means_, gmm.covariances_,
                                                     np.log(gmm.weights_))
        self.means.copy_(torch.from_numpy(means))
        self.variances.copy_(torch.from_numpy(variances))
        self.log_weights.copy_(torch.from_numpy(log_weights))
        nll = -self.log_likelihood(feats.float().to(self.center.device))
        self.nll_mean.fill_(float(nll.mean()))
        self.nll_std.fill_(float(nll.std().clamp(min=1e-6)))
        self.fitted.fill_(True)
        return len(feats)
