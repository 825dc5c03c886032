"""Pearson r per column, and the mean of per-column values over the columns where they are defined.

One definition, two ways to get there:

- :func:`column_pearson` centers the columns of two ``[m, q]`` arrays over (optionally weighted) rows: the accurate
  route, used where the rows are at hand (the held-out folds of linear predictivity, per-item scores);
- :func:`pearson_from_sums` takes the weighted sums of many resamples at once (``S @ x``, ``S @ x²``, ...), which
  bootstrap and permutation draws over fixed predictions need (``S [B, m]`` weights, no ``[B, m, q]`` copy).

Both give r = cov / (sd_x sd_y) with ``sd_x sd_y`` computed as ``sqrt(var_x) sqrt(var_y)`` (the product of the two
variances under- or overflows float32), and 0 where a column has no spread. They take NumPy or JAX arrays and
return the same kind (NumPy arrays keep their precision; JAX code may trace them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _namespace(*arrays):
    """``jax.numpy`` when any input is a JAX array (or tracer), else NumPy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def correlation(cov, var_x, var_y):
    """``cov / (sqrt(var_x) sqrt(var_y))`` elementwise, 0 where either variance is 0 (negative rounding clipped)."""
    xp = _namespace(cov, var_x, var_y)
    denom = xp.sqrt(xp.maximum(var_x, 0.0)) * xp.sqrt(xp.maximum(var_y, 0.0))
    return xp.where(denom > 0, cov / xp.where(denom > 0, denom, 1.0), 0.0)


def column_pearson(x, y, weights=None, *, axis: int = 0):
    """Pearson r between matching columns of ``x`` and ``y``.

    Args:
      x, y: ``[m, q]`` arrays (rows are observations with ``axis=0``; ``axis=1`` correlates rows over columns).
      weights: optional ``[m]`` 0/1 row weights (padding rows get 0); None = every row.
      axis: the axis of observations.

    Returns:
      ``[q]`` r per column (0 for a column with no spread over the weighted rows).
    """
    xp = _namespace(x, y, weights)
    if weights is None:
        xc = x - xp.mean(x, axis=axis, keepdims=True)
        yc = y - xp.mean(y, axis=axis, keepdims=True)
    else:
        w = xp.expand_dims(weights, 1 - axis)
        n_w = xp.maximum(xp.sum(weights), 1.0)
        xc = (x - xp.sum(w * x, axis=axis, keepdims=True) / n_w) * w
        yc = (y - xp.sum(w * y, axis=axis, keepdims=True) / n_w) * w
    return correlation(xp.sum(xc * yc, axis=axis), xp.sum(xc * xc, axis=axis), xp.sum(yc * yc, axis=axis))


def pearson_from_sums(w, sx, sy, sxy, sxx, syy):
    """Pearson r per column from weighted sums: ``w`` = Σ weights ``[B, 1]``, ``sx`` = Σ w x, ``sy`` = Σ w y,
    ``sxy`` = Σ w x y, ``sxx`` = Σ w x², ``syy`` = Σ w y² (each ``[B, q]``) -> ``[B, q]``.

    A row whose weights sum to 0 gives 0 (callers mark such draws themselves)."""
    xp = _namespace(w, sx, sy)
    w = xp.where(w > 0, w, 1.0)
    return correlation(sxy - sx * sy / w, sxx - sx * sx / w, syy - sy * sy / w)


def mean_valid(values, valid, axis=-1):
    """Mean of ``values`` over the entries where ``valid`` is True, along ``axis``; NaN where none is valid."""
    xp = _namespace(values, valid)
    n_valid = xp.sum(xp.where(valid, 1.0, 0.0), axis=axis)
    total = xp.sum(xp.where(valid, values, 0.0), axis=axis)
    return xp.where(n_valid > 0, total / xp.maximum(n_valid, 1.0), xp.nan)
