"""ExclusionReport: what a data step left out and why, so that no item is ever dropped silently.

Loaders (``on_error="exclude"``), image-condition selection (``ImageCondition.select``), caption conditions
(``CaptionCondition.apply``) and the preference loader return or attach one. A ``StimulusSet`` keeps the reports
of the steps that made it in ``StimulusSet.reports``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

logger = logging.getLogger("align.data")


@dataclasses.dataclass(frozen=True)
class ExclusionReport:
    """What one data step excluded.

    Attributes:
      step: the step, e.g. ``"load_image_captions(captions.jsonl)"``, ``"thing_only(fill=mean)"``, ``"nouns_only"``.
      n_in: items (images, or pairs for preference data) before the step.
      n_out: items after the step.
      excluded: reason -> ids of the items left out (e.g. ``{"no_mask": ("139", ...)}``).
      removed_captions: reason -> caption ids ``f"{image_id}#{k}"`` (k counted before the step) of captions
        removed from items that were kept or excluded.
      unit: what an item is: "images" or "pairs".
    """

    step: str
    n_in: int
    n_out: int
    excluded: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    removed_captions: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    unit: str = "images"

    @property
    def n_excluded(self) -> int:
        """Number of items left out, over all reasons."""
        return sum(len(v) for v in self.excluded.values())

    @property
    def n_removed_captions(self) -> int:
        """Number of captions removed, over all reasons."""
        return sum(len(v) for v in self.removed_captions.values())

    @property
    def is_empty(self) -> bool:
        """True when the step left nothing out."""
        return self.n_excluded == 0 and self.n_removed_captions == 0

    def summary(self) -> str:
        """One line: counts per reason and the first few ids."""
        parts = [f"{self.step}: kept {self.n_out} of {self.n_in} {self.unit}"]
        for reason, ids in self.excluded.items():
            if ids:
                parts.append(f"excluded {len(ids)} ({reason}, e.g. {list(ids[:3])})")
        for reason, ids in self.removed_captions.items():
            if ids:
                parts.append(f"removed {len(ids)} captions ({reason}, e.g. {list(ids[:3])})")
        return "; ".join(parts)

    __str__ = summary

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {"step": self.step, "n_in": self.n_in, "n_out": self.n_out, "unit": self.unit,
                "excluded": {k: list(v) for k, v in self.excluded.items()},
                "removed_captions": {k: list(v) for k, v in self.removed_captions.items()}}


def make_report(step: str, n_in: int, n_out: int, excluded: Mapping[str, Sequence[str]] | None = None,
                removed_captions: Mapping[str, Sequence[str]] | None = None, unit: str = "images") -> ExclusionReport:
    """Build a report (empty reasons dropped) and log it at WARNING level when it left something out."""
    report = ExclusionReport(
        step=step, n_in=n_in, n_out=n_out,
        excluded={k: tuple(v) for k, v in (excluded or {}).items() if v},
        removed_captions={k: tuple(v) for k, v in (removed_captions or {}).items() if v},
        unit=unit)
    if not report.is_empty:
        logger.warning("%s", report.summary())
    return report
