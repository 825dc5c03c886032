"""Input validation at the boundary of the public metric functions (and the engine).

Metrics are pure JAX functions that assume clean input; these checks run once, eagerly, on concrete arrays before
anything is traced. Every failure raises :class:`MetricInputError` (a ``ValueError``) that names the array and
says what to do.

dtype policy: inputs are converted to float32 (the compute dtype of every metric). Integer, boolean, float16 and
float64 inputs are accepted and converted; float64 values beyond the float32 range become inf and are reported as
non-finite. Inside ``jax.jit`` (traced input) only the shape checks run, since values are unknown there.
"""

from __future__ import annotations

import jax
import numpy as np


class MetricInputError(ValueError):
    """An input array that a metric cannot use (non-finite values, wrong shape, too few stimuli, no variance)."""


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_array(X, name: str = "X", *, min_n: int = 1, require_variance: bool = False):
    """Validate one ``[n, d]`` activation matrix and return it as float32.

    Args:
      X: array-like ``[n, d]``: rows are stimuli, columns are features.
      name: how the array is named in error messages (e.g. ``"X"`` or ``"layer 7 of store A"``).
      min_n: the smallest number of rows (stimuli) accepted.
      require_variance: also refuse a matrix whose rows are all identical (zero total variance), for metrics that
        would divide by zero.

    Returns:
      ``X`` as a float32 array ``[n, d]`` (a NumPy array for concrete input; a traced input is cast and returned).

    Raises:
      MetricInputError: 1-D or >2-D input, zero width, fewer than ``min_n`` rows, NaN/inf values, or (when
        ``require_variance``) a constant matrix.
    """
    if _is_traced(X):
        _check_shape(X.shape, name, min_n)
        return X.astype(np.float32)
    try:
        A = np.asarray(X)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise MetricInputError(f"{name}: cannot be converted to an array ({e})") from None
    if A.dtype.kind not in "biuf":
        raise MetricInputError(f"{name}: dtype {A.dtype} is not numeric; pass a real-valued [n, d] array")
    _check_shape(A.shape, name, min_n)
    with np.errstate(over="ignore"):
        A = A.astype(np.float32, copy=False)
    bad = ~np.isfinite(A)
    if bad.any():
        n_bad = int(bad.sum())
        rows = np.flatnonzero(bad.any(axis=1))
        shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
        raise MetricInputError(
            f"{name}: {n_bad} non-finite value(s) (NaN or inf, after conversion to float32) in {len(rows)} row(s) "
            f"[{shown}]; re-extract the activations in float32 or drop those stimuli"
        )
    if require_variance and not np.any(A != A[:1]):
        raise MetricInputError(
            f"{name}: every row is identical (zero variance), so the metric is undefined; check that the layer "
            "actually depends on its input"
        )
    return A


def check_pair(X, Y, min_n: int = 3, *, require_variance: bool = False, names: tuple[str, str] = ("X", "Y")):
    """Validate a pair of activation matrices whose rows are paired by stimulus; return both as float32.

    Args:
      X: ``[n, p]`` array.
      Y: ``[n, q]`` array (widths may differ, the number of rows may not).
      min_n: the smallest number of stimuli the metric accepts.
      require_variance: refuse a matrix whose rows are all identical.
      names: names of the two arrays in error messages.

    Returns:
      ``(X, Y)`` as float32 arrays.

    Raises:
      MetricInputError: see :func:`check_array`; also when X and Y have different numbers of rows.
    """
    nx, ny = names
    X = check_array(X, nx, require_variance=require_variance)
    Y = check_array(Y, ny, require_variance=require_variance)
    if X.shape[0] != Y.shape[0]:
        raise MetricInputError(
            f"{nx} has {X.shape[0]} rows but {ny} has {Y.shape[0]}; rows are stimuli and must be paired one to one "
            "(align the two stores by stimulus id first)"
        )
    if X.shape[0] < min_n:
        raise MetricInputError(f"{nx} and {ny} have {X.shape[0]} stimuli; this metric needs at least {min_n}")
    return X, Y


def _check_shape(shape, name, min_n):
    if len(shape) != 2:
        hint = "; reshape a single stimulus' vector to [1, d] or a feature column to [n, 1]" if len(shape) == 1 else ""
        raise MetricInputError(f"{name}: expected a 2-D [n, d] array, got shape {tuple(shape)}{hint}")
    n, d = shape
    if d == 0:
        raise MetricInputError(f"{name}: has zero width (shape {tuple(shape)}); a layer needs at least one feature")
    if n < min_n:
        raise MetricInputError(f"{name}: has {n} rows (stimuli); at least {min_n} are needed")
