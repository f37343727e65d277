"""What a test watches a source do."""

from __future__ import annotations

from deepfake_detect.data.sources import SyntheticSource


def count_decodes(monkeypatch) -> list[str]:
    """The clip ids the synthetic source decodes from now on (builds run in this process)."""
    seen: list[str] = []
    original = SyntheticSource.load

    def load(self, clip, sample_rate):
        seen.append(clip.clip_id)
        return original(self, clip, sample_rate)

    monkeypatch.setattr(SyntheticSource, "load", load)
    return seen
