"""Figures of the preference experiments (reads results/paper/preference_* only).

preference.png: per contrast (rows) and direction (columns), the forced-choice accuracy of every model pair
(positive item scores higher than negative) with its 95% Clopper–Pearson interval; chance = 0.5; the mean paired
difference of the per-item scores is printed above each bar (* p < 0.05).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fig_layerwise import DIRECTIONS

CONTRASTS = {"matched": "matched vs mismatched pair", "wrong_caption": "correct vs one-attribute-wrong caption",
             "preferred": "preferred vs rejected image"}


def plot_accuracy(summary: pd.DataFrame, *, ax=None):
    """Bars of forced-choice accuracy per model pair for one (dataset, contrast, direction)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    acc = summary[summary.quantity == "accuracy"].reset_index(drop=True)
    diff = summary[summary.quantity == "mean_difference"].set_index(["model_x", "model_y"])
    x = np.arange(len(acc))
    err = np.clip([acc.score - acc.ci_low, acc.ci_high - acc.score], 0, None)
    ax.bar(x, acc.score, yerr=err, capsize=3, color="tab:blue")
    for xi, r in zip(x, acc.itertuples()):
        d = diff.loc[(r.model_x, r.model_y)]
        star = "*" if pd.notna(d.p_value) and d.p_value < 0.05 else ""
        ax.text(xi, min(r.ci_high + 0.02, 1.02), f"Δ={d.score:.3f}{star}", ha="center", fontsize=6)
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set_ylim(0, 1.08)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r.model_x}\nx {r.model_y}" for r in acc.itertuples()], fontsize=6, rotation=30, ha="right")
    ax.set_ylabel("forced-choice accuracy")
    return ax.figure, ax


def draw(results: Path, figures: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from align.results import read_results

    tables = [read_results(p) for p in sorted(results.glob("preference_*/results.parquet"))]
    if not tables:
        return []
    table = pd.concat(tables, ignore_index=True)
    panels = list(dict.fromkeys(zip(table.dataset, table.contrast)))
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.9 * len(panels)), squeeze=False)
    for (dataset, contrast), row in zip(panels, axes):
        for direction, ax in zip(("x_to_y", "y_to_x"), row):
            part = table[(table.dataset == dataset) & (table.contrast == contrast) & (table.direction == direction)]
            plot_accuracy(part, ax=ax)
            ax.set_title(f"{CONTRASTS.get(contrast, contrast)} ({dataset}, n = {int(part.n.iloc[0])}): "
                         f"{DIRECTIONS[direction]}", fontsize=8)
    fig.suptitle("Per-item alignment (held-out ridge prediction vs actual embedding): accuracy of the forced choice; "
                 "Δ = mean paired difference of the item scores", fontsize=9)
    fig.tight_layout()
    path = figures / "preference.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
