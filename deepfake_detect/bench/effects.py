"""Figure f: what each distortion effect costs per 10-second clip, measured side by side on
the same generated clips at the features' sample rate (the study's pitch shift and time
stretch first, then every effect a chain can hold). A build's clip costs decode + effects +
log-mel; this says which effects matter next to pitch and tempo."""

from __future__ import annotations

import statistics
import time
from typing import Any

from deepfake_detect.bench.clips import tone_clip
from deepfake_detect.bench.figures import Figure
from deepfake_detect.data.distortions import Distortion, apply, draw_params
from deepfake_detect.data.presets import build_distortion

SECONDS = 10.0
# label -> the study's form or one effect of a chain, at a typical strength
EFFECTS: dict[str, dict[str, Any]] = {
    "pitch +2 st (study)": {"pitch": {"low": 2.0, "high": 2.0}},
    "tempo x1.1 (study)": {"tempo": {"low": 1.1, "high": 1.1}},
    "codec mp3 64 kbps": {"kind": "codec", "format": "mp3", "bitrate": 64},
    "codec mp3 192 kbps @ 44.1 kHz": {"kind": "codec", "format": "mp3", "bitrate": 192,
                                       "sample_rate": 44100},
    "codec vorbis q 0.3": {"kind": "codec", "format": "vorbis", "quality": 0.3},
    "codec opus 32 kbps": {"kind": "codec", "format": "opus", "bitrate": 32},
    "resample 8 kHz": {"kind": "resample", "rate": 8000},
    "eq lowpass 4 kHz": {"kind": "eq", "type": "lowpass", "cutoff": 4000},
    "eq highshelf -6 dB": {"kind": "eq", "type": "highshelf", "cutoff": 4000, "gain": -6},
    "noise pink 20 dB": {"kind": "noise", "color": "pink", "snr": 20},
    "reverb 1 s": {"kind": "reverb", "decay": 1.0, "wet": 0.3},
    "gain -6 dB": {"kind": "gain", "db": -6},
    "crop 5 s": {"kind": "crop", "offset": 2.0, "duration": 5.0},
}


def distortion(label: str) -> Distortion:
    spec = EFFECTS[label]
    node = {"name": "bench", **spec} if "kind" not in spec else {"name": "bench",
                                                                  "effects": [spec]}
    return build_distortion(node, f"bench {label}")


def effect_figures(sample_rate: int, clips: int = 4, repeats: int = 2) -> list[Figure]:
    """``f1``..: milliseconds per 10-second clip for each effect (median over ``clips``
    clips, best of ``repeats``), after one warm-up call each (imports, numba)."""
    waves = [tone_clip(i, sample_rate, SECONDS) for i in range(clips)]
    pitch_ms = None
    out = []
    for index, label in enumerate(EFFECTS, start=1):
        d = distortion(label)
        params = draw_params(d, 0, "bench")
        apply(d, waves[0], sample_rate, params)  # warm up
        per_clip = []
        for wave in waves:
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                apply(d, wave, sample_rate, params)
                best = min(best, time.perf_counter() - start)
            per_clip.append(best)
        ms = 1000 * statistics.median(per_clip)
        pitch_ms = ms if pitch_ms is None else pitch_ms
        out.append(Figure(
            f"f{index}", f"effect {label}, per {SECONDS:g} s clip", ms,
            f"{ms:.1f} ms at {sample_rate} Hz ({ms / pitch_ms:.2f}x the pitch shift)", "", None,
            {"ms_per_clip": ms, "clips": clips, "seconds": SECONDS,
             "sample_rate": sample_rate, "relative_to_pitch": ms / pitch_ms,
             "spec": EFFECTS[label]}))
    return out
