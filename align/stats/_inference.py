"""Permutation p-values, percentile intervals and multiple-comparison control over a grid of cells.

One implementation each, used by the engine (:mod:`align.engine`) for every layer grid:

- :func:`permutation_p`: per-cell permutation p-value, ``(1 + #{null as or more extreme}) / (1 + n_perm)``, never 0
  (Phipson & Smyth 2010, "Permutation p-values should never be zero").
- :func:`percentile_interval`: percentile bootstrap interval.
- :func:`bh_adjust`: Benjamini-Hochberg adjusted p-values (false discovery rate) over every finite cell of an array
  (Benjamini & Hochberg 1995).
- :func:`maxstat_p`: family-wise p-values by the max statistic of the same permutations (Westfall & Young 1993;
  Nichols & Holmes 2002): for each permutation the most extreme null value over the grid's cells; a cell's p is the
  share of permutations whose most extreme value reaches the cell's observed score. Controls the family-wise error
  rate over the cells under any dependence between them (layer pairs of one model are strongly dependent).

Arrays of cells may have any shape; a null distribution has one leading axis of draws. NaN cells (undefined scores,
e.g. constant layers) get NaN and take no part in the adjustment of the others.
"""

from __future__ import annotations

import numpy as np


def permutation_p(null: np.ndarray, observed: np.ndarray, higher_is_better: bool,
                  two_sided: bool = False) -> np.ndarray:
    """Per-cell permutation p-value ``(1 + #{perm: null as or more extreme than observed}) / (1 + n_perm)``.

    Args:
      null: ``[n_perm, ...]`` the statistic under each permutation.
      observed: ``[...]`` the observed statistic.
      higher_is_better: one-sided towards larger values (``null >= observed``); False: towards smaller
        (``null <= observed``, for distances).
      two_sided: ``|null| >= |observed|`` (up to a relative 1e-12, so that a null equal to the observed value up to
        rounding counts), e.g. for a difference whose null is symmetric about 0; ``higher_is_better`` is ignored.

    Returns:
      ``[...]`` p-values in ``[1 / (1 + n_perm), 1]``; NaN where ``observed`` is NaN.
    """
    null = np.asarray(null, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    if two_sided:
        extreme = np.abs(null) >= np.abs(observed) - 1e-12 * np.abs(observed)
    elif higher_is_better:
        extreme = null >= observed
    else:
        extreme = null <= observed
    p = (1.0 + np.sum(extreme, axis=0)) / (1.0 + null.shape[0])
    return np.where(np.isnan(observed), np.nan, p)


def percentile_interval(dist: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of a bootstrap distribution: its ``(1 - level) / 2`` and ``1 - (1 - level) / 2``
    quantiles per cell (NaN draws ignored).

    Args:
      dist: ``[n_boot, ...]`` the statistic on each resample.
      level: coverage in (0, 1), e.g. 0.95.

    Returns:
      ``(low, high)``, each ``[...]``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"ci level must be in (0, 1), got {level}")
    lo, hi = np.nanquantile(dist, [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0], axis=0)
    return lo, hi


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over every finite cell of ``p`` (any shape; NaN cells stay NaN).

    With the m finite p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of the i-th is
    ``min(1, min_{j >= i} m p_(j) / j)``; rejecting the cells whose adjusted value is at most q controls the false
    discovery rate at q for independent or positively dependent tests. Equals
    ``scipy.stats.false_discovery_control(p, method="bh")`` on the finite cells.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    values = p[finite]
    m = values.size
    if m == 0:
        return out
    order = np.argsort(values, kind="stable")
    scaled = values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    ranked = np.empty(m)
    ranked[order] = adjusted
    out[finite] = ranked
    return out


def maxstat_p(null: np.ndarray, observed: np.ndarray, higher_is_better: bool,
              two_sided: bool = False) -> np.ndarray:
    """Family-wise (max-statistic) permutation p-value of every cell, from the same permutations as the per-cell p.

    For each permutation the most extreme null value over the cells is taken -- the maximum (the minimum for a
    lower-is-better metric; the maximum of ``|null|`` when ``two_sided``) over every cell whose observed value is
    finite -- and a cell's p is ``(1 + #{perm: extreme_perm >= observed_cell}) / (1 + n_perm)`` (``<=`` for
    lower-is-better; ``|observed|`` when two-sided). Every cell's max-statistic p is at least its per-cell
    permutation p.

    Args:
      null: ``[n_perm, ...]`` the statistic of every cell under each permutation (the same permutation for all
        cells).
      observed: ``[...]`` the observed statistic.
      higher_is_better: as :func:`permutation_p`.
      two_sided: as :func:`permutation_p`.

    Returns:
      ``[...]`` p-values; NaN where ``observed`` is NaN. NaN null values never count as extreme.
    """
    null = np.asarray(null, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    cells = np.isfinite(observed)
    out = np.full(observed.shape, np.nan)
    if not cells.any():
        return out
    draws = null.reshape(null.shape[0], -1)[:, cells.ravel()]
    obs = observed[cells]
    if two_sided:
        draws, obs = np.abs(draws), np.abs(obs)
    if higher_is_better or two_sided:
        extreme = np.max(np.where(np.isnan(draws), -np.inf, draws), axis=1)
        hits = extreme[:, None] >= (obs - 1e-12 * np.abs(obs) if two_sided else obs)[None, :]
    else:
        extreme = np.min(np.where(np.isnan(draws), np.inf, draws), axis=1)
        hits = extreme[:, None] <= obs[None, :]
    out[cells] = (1.0 + np.sum(hits, axis=0)) / (1.0 + null.shape[0])
    return out
