"""Representational dissimilarity matrices (RDMs) in condensed form, as ``scipy.spatial.distance.pdist`` returns them.

The condensed vector lists the upper triangle row by row: pairs (0, 1), (0, 2), …, (0, n−1), (1, 2), …, length
``n (n − 1) / 2``. Pure JAX, float32, computed from one Gram matrix (no ``[n, n, d]`` intermediate).

Sorting RDM values (ranks, quantiles, the median bandwidth of RBF CKA) goes through :func:`sort_key`: XLA's CPU
sort of int32 is 4-5x faster than its float32 sort (0.12 s vs 0.5 s for 2M values, one core), and the key map is
exact, so sorting keys and mapping back gives the float sort.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from align.metrics import _kernels
from align.metrics._validate import MetricInputError
from align.metrics._validate import check_array

RDM_KINDS = ("correlation", "cosine", "euclidean", "sqeuclidean")


def square_rdm(X, kind: str = "correlation"):
    """Full ``[n, n]`` dissimilarity matrix between the rows of ``X`` ``[n, d]`` (zero diagonal).

    Args:
      X: ``[n, d]`` activations (rows = stimuli).
      kind: ``"correlation"`` (1 − Pearson r between two stimuli's feature vectors), ``"cosine"`` (1 − cosine
        similarity), ``"euclidean"`` or ``"sqeuclidean"``; static.

    Returns:
      ``[n, n]`` float32, symmetric. Correlation and cosine values are clipped to [0, 2]; a constant row
      (correlation) or an all-zero row (cosine) gives NaN — :func:`rdm` rejects those up front.
    """
    X = jnp.asarray(X, jnp.float32)
    n = X.shape[0]
    if kind in ("correlation", "cosine"):
        if kind == "correlation":
            X = X - jnp.mean(X, axis=1, keepdims=True)
        X = _kernels.unit_scale(X, axis=1)  # exact per-row power of two: row norms cannot under/overflow
        Xn = X / jnp.linalg.norm(X, axis=1, keepdims=True)
        D = jnp.clip(1.0 - _kernels.gram(Xn), 0.0, 2.0)
        return D * (1.0 - jnp.eye(n, dtype=D.dtype))
    if kind == "sqeuclidean":
        return _kernels.squared_distances(X)
    if kind == "euclidean":
        return jnp.sqrt(_kernels.squared_distances(X))
    raise ValueError(f"unknown RDM kind {kind!r}; choose one of {RDM_KINDS}")


def condensed_indices(n: int):
    """Row and column indices ``(i, j)``, i < j, of the condensed (``pdist``) order, each ``[n (n − 1) / 2]`` int32.

    Same values as ``numpy.triu_indices(n, 1)``, computed on device from the position (closed form, then exact
    integer corrections), so a large n neither embeds huge constants in the program nor compiles slowly. n < 46341.
    """
    m = n * (n - 1) // 2
    t = jnp.arange(m, dtype=jnp.int32)
    b = 2.0 * n - 1.0
    i = jnp.floor((b - jnp.sqrt(jnp.maximum(b * b - 8.0 * t.astype(jnp.float32), 0.0))) / 2.0).astype(jnp.int32)
    i = jnp.clip(i, 0, max(n - 2, 0))

    def row_start(r):
        return r * n - (r * (r + 1)) // 2

    for _ in range(2):  # the float32 estimate is off by at most one row
        i = jnp.where(t < row_start(i), i - 1, i)
        i = jnp.where(t >= row_start(i + 1), i + 1, i)
    return i, t - row_start(i) + i + 1


def condensed(D):
    """Upper triangle (without diagonal) of ``[n, n]`` in ``pdist`` order, ``[n (n − 1) / 2]``."""
    i, j = condensed_indices(D.shape[0])
    return D[i, j]


def sort_key(v):
    """Order-preserving int32 key of float32 values: ``a < b`` iff ``sort_key(a) < sort_key(b)``, ``a == b`` iff equal.

    A float32 is stored as sign and magnitude, and for a non-negative float the bit pattern read as int32 already
    increases with the value; a negative float's key is minus its magnitude bits (``−(bits & 0x7FFFFFFF)``), so a
    larger magnitude gives a smaller key and ``-0.0`` gets the key 0 of ``+0.0`` (they compare equal). Integer
    operations only, so exact for every non-NaN value, ±inf and subnormals included (XLA on CPU treats subnormals
    as zero in float comparisons; the keys keep them apart, as numpy does). ``[...] float32 -> [...] int32``;
    inverse :func:`from_sort_key`.
    """
    bits = lax.bitcast_convert_type(jnp.asarray(v, jnp.float32), jnp.int32)
    return jnp.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def from_sort_key(k):
    """Float32 values of :func:`sort_key` keys (``-0.0`` comes back as ``0.0``). ``[...] int32 -> [...] float32``."""
    bits = jnp.where(k < 0, (-k) | jnp.int32(-(2**31)), k)
    return lax.bitcast_convert_type(bits, jnp.float32)


def sort_float32(v):
    """``jnp.sort`` of a float32 vector ``[m]`` (no NaN) through its int32 keys; ``-0.0`` comes back as ``0.0``."""
    return from_sort_key(jnp.sort(sort_key(v)))


def condensed_median(D):
    """Median of the condensed entries of ``D`` ``[n, n]`` (upper triangle, diagonal excluded); a float32 scalar.

    Equal to ``jnp.median(condensed(D))`` (mean of the two middle values for an even count, computed as
    ``(a + b) * 0.5`` like it), but sorted as int32 keys (:func:`sort_float32`). The middle positions are integers,
    so they stay exact for any count (jnp.median finds them with a float32 product). ``D`` must have no NaN. The
    upper-triangle gather stays (8 ms at n = 2000): sorting the whole matrix instead, with its symmetric duplicates,
    would sort twice as many keys.
    """
    s = sort_float32(condensed(D))
    m = s.shape[0]
    return (s[(m - 1) // 2] + s[m // 2]) * 0.5


def condensed_rdm(X, kind: str = "correlation"):
    """Condensed RDM of ``X`` ``[n, d]``: ``[n (n − 1) / 2]`` float32 in ``scipy.spatial.distance.pdist`` order."""
    return condensed(square_rdm(X, kind))


@functools.partial(jax.jit, static_argnames=("kind",))
def _rdm(X, kind):
    return condensed_rdm(X, kind)


def check_rdm_input(X, kind: str, name: str = "X"):
    """Validate ``X`` for an RDM of ``kind`` (finite, 2-D, n >= 2, and rows usable by that distance); float32.

    Raises:
      MetricInputError: bad array, or rows with zero variance (correlation) / zero norm (cosine).
      ValueError: unknown ``kind``.
    """
    if kind not in RDM_KINDS:
        raise ValueError(f"unknown RDM kind {kind!r}; choose one of {RDM_KINDS}")
    X = check_array(X, name, min_n=2)
    if isinstance(X, jax.core.Tracer):
        return X
    if kind == "correlation":
        bad = np.flatnonzero(np.all(X == X[:, :1], axis=1))
        what, fix = "constant rows (zero variance across features)", "use rdm='euclidean' or drop those stimuli"
    elif kind == "cosine":
        bad = np.flatnonzero(~np.any(X != 0, axis=1))
        what, fix = "all-zero rows", "use rdm='euclidean' or drop those stimuli"
    else:
        bad = np.array([], dtype=int)
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise MetricInputError(f"{name}: {bad.size} {what} [{shown}] make the {kind} distance undefined; {fix}")
    return X


def rdm(X, kind: str = "correlation"):
    """Representational dissimilarity matrix of ``X`` in condensed form (``scipy.spatial.distance.pdist`` order).

    Args:
      X: ``[n, d]`` activations (rows = stimuli); integer or float64 input is converted to float32.
      kind: ``"correlation"`` (1 − Pearson r between stimuli), ``"cosine"``, ``"euclidean"`` or ``"sqeuclidean"``.

    Returns:
      ``[n (n − 1) / 2]`` float32 array; entry for pair (i, j), i < j, at ``n i − i (i + 1) / 2 + j − i − 1``.

    Raises:
      MetricInputError: non-finite values, n < 2, 1-D input, or rows for which ``kind`` is undefined.
    """
    X = check_rdm_input(X, kind)
    return _rdm(X, kind)
