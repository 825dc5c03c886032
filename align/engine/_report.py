"""The battery's report: one :class:`CheckResult` per check, gathered in a :class:`BatteryReport`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

#: Status of a check.
PASS, FAIL, SKIP = "pass", "fail", "skip"


class MetricCheckError(ValueError):
    """A metric failed the battery: a declared property (invariance, symmetry, bounds, pad invariance) is false."""


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check of the battery.

    Attributes:
      name: the check, e.g. ``"identity"``, ``"invariance:rotation"``, ``"padding"``.
      status: ``"pass"``, ``"fail"`` or ``"skip"`` (the metric declares nothing this check could test).
      detail: one line with the numbers (or the error) behind the status.
      values: those numbers by name.
    """

    name: str
    status: str
    detail: str
    values: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True unless the check failed (a skipped check passes)."""
        return self.status != FAIL


@dataclasses.dataclass(frozen=True)
class BatteryReport:
    """The battery's verdict on one metric: ``str(report)`` is one line per check.

    Attributes:
      metric: the metric's name.
      kwargs: the keyword arguments it was checked with (defaults not repeated).
      checks: every check, in battery order.
    """

    metric: str
    kwargs: Mapping[str, Any]
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if c.status == FAIL)

    def __getitem__(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; checks: {[c.name for c in self.checks]}")

    def lines(self) -> list[str]:
        """One line per check: ``metric  PASS|FAIL|skip  check  detail``."""
        label = {PASS: "PASS", FAIL: "FAIL", SKIP: "skip"}
        return [f"{self.metric:22s} {label[c.status]:4s} {c.name:32s} {c.detail}" for c in self.checks]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def raise_if_failed(self) -> BatteryReport:
        """Raise :class:`MetricCheckError` naming every failed check; return the report when none failed."""
        if not self.passed:
            failed = "\n".join(f"  {c.name}: {c.detail}" for c in self.failures)
            raise MetricCheckError(f"metric {self.metric!r} failed {len(self.failures)} check(s) of the battery:\n"
                                   f"{failed}\nfix the metric or its declaration (align.Metric fields)")
        return self
