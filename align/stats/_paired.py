"""Summaries of paired per-item scores (e.g. each item's alignment with its matched and with a mismatched
partner): forced-choice accuracy with an exact binomial test, and the mean difference with a sign-flip permutation
p-value and a bootstrap interval."""

from __future__ import annotations

import numpy as np

from align.stats._inference import percentile_interval
from align.stats._inference import permutation_p


def paired_summary(pos: np.ndarray, neg: np.ndarray, *, n_perm: int, n_boot: int, ci: float, seed: int) -> list[dict]:
    """Summary rows of paired per-item scores: which of two sides each item prefers, and by how much.

    Args:
      pos, neg: ``[n]`` each item's score on the positive and on the negative side.
      n_perm: sign flips behind the mean difference's two-sided p-value (0: none).
      n_boot: bootstrap resamples of items behind its percentile interval (0: none).
      ci: coverage of the intervals.
      seed: NumPy seed of the flips, then the resamples.

    Returns:
      Rows (dicts with ``quantity``, ``score``, ``n`` and, where computed, ``p_value``, ``ci_low``, ``ci_high``,
      ``null_mean``): ``accuracy`` (forced choice: the share of items whose positive is higher, ties counting half;
      exact binomial p-value against 0.5 and Clopper-Pearson interval), ``mean_difference`` (mean of pos − neg),
      ``mean_positive`` and ``mean_negative``.
    """
    from scipy.stats import binomtest

    diff = pos - neg
    n = len(diff)
    wins = float(np.sum(diff > 0) + 0.5 * np.sum(diff == 0))
    test = binomtest(int(round(wins)), n, 0.5)
    interval = test.proportion_ci(confidence_level=ci)
    rows = [{"quantity": "accuracy", "score": wins / n, "p_value": float(test.pvalue),
             "ci_low": float(interval.low), "ci_high": float(interval.high), "null_mean": 0.5}]
    rng = np.random.default_rng(seed)
    observed = float(diff.mean())
    p = ci_low = ci_high = np.nan
    if n_perm:
        null = (rng.choice(np.array([-1.0, 1.0]), size=(n_perm, n)) * diff).mean(axis=1)
        p = float(permutation_p(null, np.asarray(observed), True, two_sided=True))
    if n_boot:
        low, high = percentile_interval(diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1), ci)
        ci_low, ci_high = float(low), float(high)
    rows.append({"quantity": "mean_difference", "score": observed, "p_value": p, "ci_low": ci_low,
                 "ci_high": ci_high, "null_mean": 0.0})
    rows.append({"quantity": "mean_positive", "score": float(pos.mean())})
    rows.append({"quantity": "mean_negative", "score": float(neg.mean())})
    for r in rows:
        r["n"] = n
    return rows
