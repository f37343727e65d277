"""The verdict on one test set, in the order a reader needs it, from a run's logged metrics:

1. Is there evidence of detection at all? The detector's AUROC interval against 0.5.
2. Only then: is it distinguishable from the best shortcut baseline? (its interval's lower
   bound against the best baseline's AUROC).
3. Beside it, the shortcut probe (:mod:`shortcut_probe`): does the score read the recording
   chain within a class?

An interval bootstrapped over fewer than ``MIN_GROUPS`` groups in a class, or of zero width,
is not trusted: the verdict says so instead of deciding (docs/DESIGN.md has the coverage
simulation behind the number: ``python -m deepfake_detect.bench.coverage``). One function
gives the wording, for the summary, report.md and report.html. No heavy imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepfake_detect.models.names import display_name

METRIC = "auroc"
MIN_GROUPS = 6  # per class; below it a percentile bootstrap's 95 % covers < ~0.88
PROBE_FLAG = 0.15  # |probe AUROC - 0.5| at least this, with an interval that excludes 0.5
ATTRIBUTE_TEXT = {"rate": "native rate at or below the features' rate vs above",
                  "codec": "lossy codec vs lossless"}


@dataclass
class Verdict:
    """One test set's verdict: ``state`` is ``detects``, ``no_evidence``, ``inverted``,
    ``untrusted`` or ``missing``; ``lines`` the wording; ``flags`` the probe's warnings."""

    test: str
    state: str
    lines: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


def _interval(result: Mapping[str, Any], key: str) -> tuple[float | None, ...]:
    return tuple(_number(result.get(k)) for k in (key, f"{key}_ci_low", f"{key}_ci_high"))


def _text(value: float, low: float | None, high: float | None) -> str:
    return f"{value:.3f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None
                             and high is not None else "")


def fewest_groups(result: Mapping[str, Any], prefix: str) -> int | None:
    """The fewer groups of the two classes (else all groups) the interval was drawn over."""
    per_class = [_number(result.get(f"{prefix}n_groups_{c}")) for c in ("human", "ai")]
    if all(n is not None for n in per_class):
        return int(min(per_class))  # type: ignore[type-var]
    total = _number(result.get(f"{prefix}n_groups"))
    return None if total is None else int(total)


def best_baseline(result: Mapping[str, Any], test: str, level: str) -> tuple[float, str] | None:
    names = sorted({k.split("/")[1] for k in result if k.startswith("baseline/")})
    found = [(v, b) for b in names if (v := _number(
        result.get(f"baseline/{b}/test/{test}/{level}{METRIC}"))) is not None]
    return max(found, default=None)


def verdict(result: Mapping[str, Any], test: str, level: str, model: str | None = None,
            prefix: str = "test") -> Verdict:
    """The verdict of ``model`` (its display name, :mod:`deepfake_detect.models.names`; the
    default family's when None) on ``test``, from the metrics under
    ``<prefix>/<test>/<level>``."""
    model = model or display_name()
    base = f"{prefix}/{test}/{level}"
    value, low, high = _interval(result, base + METRIC)
    head = f"verdict ({test}):"
    if value is None:
        return Verdict(test, "missing")
    shown = f"{model} AUROC {_text(value, low, high)}"
    groups = fewest_groups(result, base)
    probe = probe_lines(result, base, model)
    if low is None or high is None or groups is None or groups < MIN_GROUPS or low == high:
        why = ("no interval" if low is None or high is None else "a zero-width interval"
               if low == high else f"an interval over {groups} group(s) in the smaller class, "
               f"fewer than {MIN_GROUPS}")
        return Verdict(test, "untrusted", [f"{head} undetermined, {shown} rests on {why}: "
                                           "no verdict", *probe[0]], probe[1])
    if high < 0.5:
        return Verdict(test, "inverted", [f"{head} no evidence of detection: {shown} lies "
                                          "below 0.5 (the scores rank the classes the wrong "
                                          "way round)", *probe[0]], probe[1])
    if low <= 0.5:
        return Verdict(test, "no_evidence", [f"{head} no evidence of detection: {shown} "
                                             "contains 0.5", *probe[0]], probe[1])
    line = f"{head} evidence of detection ({shown} excludes 0.5)"
    best = best_baseline(result, test, level)
    if best is not None:
        line += (f"; not distinguishable from the shortcut {best[1]} ({best[0]:.3f})"
                 if low <= best[0] else f"; above the best shortcut {best[1]} ({best[0]:.3f})")
    return Verdict(test, "detects", [line, *probe[0]], probe[1])


def probe_lines(result: Mapping[str, Any], base: str, model: str
                ) -> tuple[list[str], list[str]]:
    """(the probe's line, its flags) for the metrics under ``<base>probe/``."""
    parts, flags = [], []
    for attribute, text in ATTRIBUTE_TEXT.items():
        cells = []
        for name in ("human", "ai"):
            value, low, high = _interval(result, f"{base}probe/{attribute}/{name}/auroc")
            if value is None:
                continue
            cells.append(f"{name} {_text(value, low, high)}")
            if flagged(value, low, high):
                flags.append(f"shortcut probe: within {name} files, the {model} score tells "
                             f"{text} apart (AUROC {_text(value, low, high)}): it reads the "
                             "recording chain")
        if cells:
            parts.append(f"{attribute} ({text}): " + ", ".join(cells))
    if not parts:
        return [], []
    return [f"  shortcut probe, AUROC within each class: {'; '.join(parts)}", *
            (f"  FLAG {f}" for f in flags)], flags


def flagged(value: float, low: float | None, high: float | None) -> bool:
    if abs(value - 0.5) < PROBE_FLAG:
        return False
    return low is None or high is None or low > 0.5 or high < 0.5


def verdict_lines(result: Mapping[str, Any], names: Sequence[str], level: str,
                  model: str | None = None) -> list[str]:
    """Every test set's verdict lines (the summary's and report.md's wording) of ``model``
    (a display name)."""
    return [line for test in names for line in verdict(result, test, level, model).lines]
