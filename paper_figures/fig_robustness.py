"""Specification curve of one finding: every specification's effect, sorted, with the choices marked below.

Top: the median effect over the specification's cases (marker coloured by its verdict) and the range of its cases'
effects (grey bar); the finding's threshold as a dashed line where it has one. Bottom: one row per choice value, a
dot where the specification uses it.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


COLOURS = {"holds": "#1a9850", "partly holds": "#fdae61", "does not hold": "#d73027", "not computed": "#999999"}
#: Where the criterion of a finding puts its effect's threshold (None: no single line).
THRESHOLD = {"1": 0.1, "2": 0.05, "3": 0.10, "4": 0.0, "5a": 0.0, "5b": 0.0, "6": 0.0, "7": 0.5, "8": 0.0}
YLABEL = {"1": "rise to the peak / |peak|", "2": "mean of the shuffled-pairing null", "3": "relative change",
          "4": "relative change", "5a": "relative change", "5b": "relative change",
          "6": "gain, 5 captions vs 1", "7": "forced-choice accuracy", "8": "language − vision peak depth"}


def draw(specs: pd.DataFrame, cases: pd.DataFrame, finding: str, label: str, spec: dict, path: Path) -> Path:
    """Draw finding ``finding``'s specification curve to ``path`` (PNG, written atomically)."""
    from robustness_report import choice_columns

    g = specs[specs.finding == finding].sort_values("effect", na_position="first").reset_index(drop=True)
    columns = choice_columns(spec)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, 0.09 * len(g) + 3), 7.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2], "hspace": 0.05})
    x = range(len(g))
    top.vlines(x, g["effect min"], g["effect max"], color="#bbbbbb", lw=1.2, zorder=1)
    top.scatter(x, g.effect, c=[COLOURS[v] for v in g.verdict], s=18, zorder=2)
    threshold = THRESHOLD.get(finding)
    if threshold is not None:
        top.axhline(threshold, ls="--", lw=0.8, color="k")
        if finding in ("2", "3"):
            top.axhline(-threshold, ls="--", lw=0.8, color="k")
    top.set_ylabel(YLABEL.get(finding, "effect"))
    counts = g.verdict.value_counts()
    top.set_title(f"Finding {label}: " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in COLOURS) +
                  f" of {len(g)} specifications (bar: range over model pairs x directions)", fontsize=9)
    for k, c in COLOURS.items():
        top.scatter([], [], c=c, s=18, label=k)
    top.legend(fontsize=7, loc="upper left", frameon=False)
    for row, (axis, value, name) in enumerate(columns):
        used = [i for i, v in enumerate(g[axis]) if v == value]
        bottom.scatter(used, [row] * len(used), s=6, c="k", marker="s")
    bottom.set_yticks(range(len(columns)), [n for *_, n in columns], fontsize=7)
    bottom.invert_yaxis()
    bottom.set_xlabel("specification (sorted by median effect)")
    bottom.set_xlim(-1, len(g))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path

