"""Saliency maps over (mel, time): Grad-CAM or integrated gradients, and their group averages.

The explained quantity is the evidence for each clip's *true* class: the log-odds of
AI-generated, ``logsumexp(logits[1:]) - logits[0]`` (binary and attribution detectors alike),
negated for human clips. Maps keep the positive part (what pushes towards the true class) and
are scaled to sum to one per clip, so every clip weighs the same in a group average.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Logits = Callable[[torch.Tensor], torch.Tensor]  # (N, 1, n_mels, frames) dB -> (N, classes)


def evidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-odds of AI-generated (class 0 is human), signed towards the true class."""
    log_odds = torch.logsumexp(logits[:, 1:].float(), dim=1) - logits[:, 0].float()
    return torch.where(labels == 1, log_odds, -log_odds)


def integrated_gradients(forward: Logits, x: torch.Tensor, labels: torch.Tensor,
                         baseline: float | torch.Tensor, steps: int = 16) -> torch.Tensor:
    """(N, n_mels, frames) integrated-gradients attribution of the evidence, from a constant
    ``baseline`` input (midpoint Riemann sum over ``steps``)."""
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if base.ndim:
        base = base.reshape(len(x), 1, 1, 1)
    total = torch.zeros_like(x)
    with torch.enable_grad():
        for k in range(steps):
            alpha = (k + 0.5) / steps
            point = (base + alpha * (x - base)).detach().requires_grad_(True)
            out = evidence(forward(point), labels).sum()
            total += torch.autograd.grad(out, point)[0]
    return ((x - base) * total / steps)[:, 0].detach()


def gradcam(forward: Logits, layer: nn.Module, x: torch.Tensor,
            labels: torch.Tensor) -> torch.Tensor:
    """(N, n_mels, frames) Grad-CAM of the evidence at ``layer``, upsampled bilinearly."""
    kept: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        kept["act"] = output

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            point = x.detach().requires_grad_(True)
            out = evidence(forward(point), labels).sum()
            grads = torch.autograd.grad(out, kept["act"])[0]
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = (weights * kept["act"]).sum(dim=1, keepdim=True)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0].detach()


def normalise(maps: torch.Tensor) -> np.ndarray:
    """Positive part, scaled to sum to one per clip (an all-zero map stays zero)."""
    pos = maps.clamp(min=0).double()
    total = pos.sum(dim=(1, 2), keepdim=True)
    return (pos / torch.where(total > 0, total, torch.ones_like(total))).float().numpy()


def group_profiles(maps: np.ndarray, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Average maps per class (``human``, ``ai``) and per generator: the mean (mel, time) map,
    its profile over the mel axis (mean over time) and over time (mean over mel)."""
    labels = np.array([int(r["label"]) for r in rows])
    gens = np.array([str(r["generator"]) for r in rows])
    groups = {"human": labels == 0, "ai": labels == 1}
    for gen in sorted(set(gens[labels == 1])):
        groups[f"generator:{gen}"] = (gens == gen) & (labels == 1)
    out = {}
    for name, keep in groups.items():
        if keep.any():
            mean = maps[keep].mean(axis=0)
            out[name] = {"n": int(keep.sum()), "map": mean, "mel": mean.mean(axis=1),
                         "time": mean.mean(axis=0)}
    return out
