"""What a model was trained on, recorded in its bundle and checked when it scores files: the
source and a fingerprint of its listing, the generators, the features and distortion, the
selected epoch and its validation score, and the native sample rates and durations of the
training files. ``deepfake-detect-predict`` prints it and warns when a model trained on the
embedded simulation scores real audio, or when inputs lie far outside what it saw."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from deepfake_detect.data import audio

SIMULATED_SOURCES = ("synthetic",)
DURATION_SLACK = 2.0  # inputs shorter than min / 2 or longer than max * 2 are "far outside"


def file_profile(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Native sample rates (with counts) and the duration range of the rows' files."""
    rates: Counter[int] = Counter()
    durations: list[float] = []
    for path in sorted({str(r.get("path") or "") for r in rows} - {""}):
        try:
            meta = audio.describe_file(path)
        except (audio.AudioError, OSError):
            continue
        rates[meta["sample_rate"]] += 1
        durations.append(meta["duration_s"])
    return {"n_files": len(durations),
            "sample_rates": {str(k): v for k, v in sorted(rates.items())},
            "duration_s": [min(durations), max(durations)] if durations else None}


def describe(meta: Mapping[str, Any]) -> str:
    """One line: what the model was trained on (empty for a bundle without the record)."""
    seen = meta.get("trained_on") or {}
    if not seen:
        return ""
    parts = [f"trained on {seen.get('source')} ({seen.get('n_clips')} clips"
             + (f" from {seen['n_files']} files" if seen.get("n_files") else "") + ")"]
    if seen.get("generators"):
        parts.append("generators " + ", ".join(seen["generators"][:8])
                     + (" ..." if len(seen["generators"]) > 8 else ""))
    if seen.get("sample_rates"):
        parts.append("native rates " + ", ".join(f"{r} Hz" for r in seen["sample_rates"]))
    if meta.get("selected_epoch"):
        parts.append(f"epoch {meta['selected_epoch']} ({meta.get('selection')})")
    return "; ".join(parts)


def warnings_for(meta: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per reason to doubt this model's scores on these inputs (rows with the
    files' native ``sample_rate`` and ``duration_s``)."""
    seen = meta.get("trained_on") or {}
    out = []
    if seen.get("simulation"):
        out.append("this model was trained on the embedded simulation, not on real "
                   "recordings: its scores on real audio say nothing about real generators")
    scored = [r for r in inputs if r.get("sample_rate")]
    rates = {int(r) for r in seen.get("sample_rates") or {}}
    if rates and scored:
        unseen = sorted({int(r["sample_rate"]) for r in scored} - rates)
        count = sum(int(r["sample_rate"]) not in rates for r in scored)
        if count:
            out.append(f"{count} of {len(scored)} inputs have native sample rates the model "
                       f"never saw in training ({', '.join(map(str, unseen))} Hz; trained on "
                       f"{', '.join(map(str, sorted(rates)))} Hz)")
    span = seen.get("duration_s")
    if span and scored:
        far = sum(not span[0] / DURATION_SLACK <= float(r["duration_s"] or 0)
                  <= span[1] * DURATION_SLACK for r in scored)
        if far:
            out.append(f"{far} of {len(scored)} inputs are far shorter or longer than the "
                       f"training files ({span[0]:.1f}-{span[1]:.1f} s)")
    return out
