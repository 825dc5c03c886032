"""Colours and labels of heatmaps: one colour scale shared by every panel of a figure, readable metric labels.

A colour scale is diverging (``"RdBu_r"``, centred on zero by a ``TwoSlopeNorm``) when its range holds both signs,
as signed scores (e.g. RSA correlations, predictivity R^2 below zero) are read against zero; it is sequential
otherwise (``"viridis"``, reversed for a distance, so that the brightest cell is the most aligned one for every
metric). A given ``cmap`` always wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Colour maps chosen when none is given.
DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "viridis"

#: Words for the p-value column that a significance overlay reads, by ``correction``.
CORRECTIONS = {
    "bh": ("p_bh", "Benjamini-Hochberg (FDR) over the grid"),
    "maxstat": ("p_maxstat", "max-statistic (family-wise) over the grid"),
}


@dataclasses.dataclass(frozen=True)
class ColourScale:
    """How scores map to colours in a figure: ``cmap`` (a matplotlib colour map name) and ``norm`` (a
    ``matplotlib.colors.Normalize``; a ``TwoSlopeNorm`` centred on 0 when ``diverging``)."""

    cmap: str
    norm: object
    diverging: bool

    @property
    def limits(self) -> tuple[float, float]:
        """(vmin, vmax) of the scale."""
        return float(self.norm.vmin), float(self.norm.vmax)


def colour_scale(scores: Iterable[float] | pd.Series | np.ndarray, *, higher_is_more_aligned: bool = True,
                 vmin: float | None = None, vmax: float | None = None, cmap: str | None = None) -> ColourScale:
    """One colour scale for all ``scores`` of a figure (every panel drawn with it shares the range).

    Args:
      scores: the scores the figure shows (NaN ignored).
      higher_is_more_aligned: False for a distance: the default sequential map is then reversed.
      vmin, vmax: fixed limits (each one that is None comes from the scores; signed scores get limits symmetric
        about zero).
      cmap: a matplotlib colour map name; None: ``"RdBu_r"`` when the range holds both signs, else ``"viridis"``
        (``"viridis_r"`` for a distance).

    Returns:
      A ``ColourScale``; ``diverging`` (a ``TwoSlopeNorm`` with ``vcenter=0``) exactly when vmin < 0 < vmax.

    Raises:
      ValueError: ``vmin >= vmax`` or ``cmap`` names no matplotlib colour map.
    """
    import matplotlib
    from matplotlib.colors import Normalize
    from matplotlib.colors import TwoSlopeNorm

    values = np.asarray(pd.Series(list(scores) if not isinstance(scores, (pd.Series, np.ndarray)) else scores,
                                  dtype=float), dtype=float)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if lo < 0 < hi and vmin is None and vmax is None:
        lo, hi = -max(-lo, hi), max(-lo, hi)  # symmetric about zero: equal colour steps either side
    lo = float(vmin) if vmin is not None else lo
    hi = float(vmax) if vmax is not None else hi
    if vmin is not None and vmax is not None and lo >= hi:
        raise ValueError(f"heatmap colour range: vmin = {vmin!r} must be below vmax = {vmax!r}")
    if lo >= hi:  # constant scores, or one given limit beyond the data
        pad = max(abs(lo), abs(hi), 1.0) * 0.05
        if vmax is not None:
            lo = hi - 2 * pad
        elif vmin is not None:
            hi = lo + 2 * pad
        else:
            lo, hi = lo - pad, hi + pad
    if cmap is not None and cmap not in matplotlib.colormaps:
        raise ValueError(f"heatmap colour map {cmap!r} is not a matplotlib colour map (e.g. 'viridis', 'RdBu_r', "
                         f"'magma'; see matplotlib.colormaps)")
    diverging = lo < 0 < hi
    if cmap is None:
        cmap = DIVERGING_CMAP if diverging else SEQUENTIAL_CMAP + ("" if higher_is_more_aligned else "_r")
    norm = TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi) if diverging else Normalize(vmin=lo, vmax=hi)
    return ColourScale(cmap=cmap, norm=norm, diverging=diverging)


def metric_label(metric: str) -> str:
    """A results-table metric entry as a reader would write it: ``"procrustes_angular"`` -> ``"procrustes angular"``,
    ``"rbf_cka(sigma_frac=0.5)"`` -> ``"rbf cka (sigma_frac=0.5)"``."""
    name, _, args = str(metric).partition("(")
    return name.strip().replace("_", " ") + (f" ({args.rstrip(')').strip()})" if args.rstrip(")").strip() else "")


def direction_label(row) -> str:
    """The scoring direction of a results row in words: ``"symmetric"`` or ``"<source> predicts <target>"``."""
    d = row["direction"]
    if d in ("x_to_y", "y_to_x"):
        src, dst = (row["model_x"], row["model_y"]) if d == "x_to_y" else (row["model_y"], row["model_x"])
        return f"{src} predicts {dst}"
    return "symmetric" if d in (None, "", "sym", "symmetric") else str(d)


def colourbar_label(metric: str, *, lower_is_more_aligned: bool) -> str:
    """The colour bar's label: the metric's readable name and, for a distance, "(lower = more aligned)"."""
    return metric_label(metric) + (" (lower = more aligned)" if lower_is_more_aligned else "")


def settings_note(frame: pd.DataFrame) -> str:
    """``"preprocess zscore, n = 500"``: the preprocessing and the number of stimuli behind the rows (each part left
    out when the table lacks it; several values are joined by "/")."""
    parts = []
    for column, fmt in (("preprocess", "preprocess {}"), ("n", "n = {}")):
        if column in frame.columns:
            values = [v for v in pd.unique(frame[column]) if pd.notna(v)]
            if values:
                shown = [str(int(v)) if column == "n" else str(v) for v in values]
                parts.append(fmt.format("/".join(shown)))
    return ", ".join(parts)


def correction_column(correction: str) -> tuple[str, str]:
    """(p-value column, words for the caption) of a significance ``correction`` ("bh" or "maxstat").

    Raises:
      ValueError: another ``correction``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"heatmap correction = {correction!r}; must be one of {list(CORRECTIONS)} ('bh': "
                         f"Benjamini-Hochberg adjusted p_bh, 'maxstat': family-wise p_maxstat)")
    return CORRECTIONS[correction]
