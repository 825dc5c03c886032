"""Exact leave-one-out ridge errors, streamed: a pass over the training rows of every fold.

For training row i of fold f, with ``u = xc · proj`` its coordinates on the fold's basis (``u = U[i]`` of the
in-memory SVD), ``z`` the projected targets and ``g = α / (s² + α)``, the LOO residual is
``eᵢ = (null · ycᵢ + Σₖ uₖ (gₖ − null) zₖ) / (lev0ᵢ + Σₖ uₖ² gₖ)`` with ``lev0ᵢ = null (1 − 1/n_t − Σₖ uₖ²)``
(sklearn's intercept correction), exactly as ``align.stats.ridge_solve``. The per-row leverage cannot be reduced to
sums, so the rows are read again; each row serves the F − 1 folds it trains.

Per block of rows one compiled call (float32, as the in-memory path) evaluates every alpha for every target column
of one (source layer, fold); the squared residuals are summed per block and accumulated across blocks in float64.
Cost: ``n (F − 1) A p Q`` multiply-adds per source layer (Q target columns in all), the same as the in-memory path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from align.stats import loo_error_sums
from align.streaming._fold_fit import FoldModel

HIGHEST = lax.Precision.HIGHEST

#: Rows per compiled call (bounds the ``[rows, Q]`` residuals held per alpha).
BLOCK_ROWS = 2048


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


@jax.jit
def _block_errors(X, Y, w, mu_x, inv_sd_x, proj, mu_y, inv_sd_y, z, s2, null, n_t, alphas):
    """``[A, Q]`` Σ over the rows with weight ``w`` of the squared LOO residuals (see the module docstring)."""
    U = _mm((X - mu_x) * inv_sd_x, proj) * w[:, None]
    Yc = (Y - mu_y) * inv_sd_y * w[:, None]
    U2 = U * U
    lev0 = null * (1.0 - 1.0 / n_t - jnp.sum(U2, axis=1)) * w
    base = null * Yc

    return lax.map(lambda alpha: loo_error_sums(alpha, U, U2, base, lev0, null, s2, z, w), alphas)


def _pad(a: np.ndarray, rows: int) -> np.ndarray:
    return a if a.shape[0] == rows else np.concatenate([a, np.zeros((rows - a.shape[0],) + a.shape[1:], a.dtype)])


class LooAccumulator:
    """Sums of squared LOO residuals ``[A, Q]`` (float64) of every (source layer, fold) model of one direction.

    Args:
      models: ``models[l][f]`` the :class:`FoldModel` of source layer l on fold f.
      alphas: ``[A]`` penalties.
      block_rows: rows per compiled call.
    """

    def __init__(self, models: list[list[FoldModel]], alphas: np.ndarray, block_rows: int = BLOCK_ROWS):
        self.models = models
        self.block_rows = int(block_rows)
        self.alphas = jnp.asarray(alphas, jnp.float32)
        self.sums = [[np.zeros((len(alphas), m.z.shape[1])) for m in per] for per in models]
        self._device = [[_device_model(m) for m in per] for per in models]

    def add(self, sources: list[np.ndarray], targets: np.ndarray, folds: np.ndarray) -> None:
        """Add one chunk: ``sources[l]`` ``[m, p_l]`` float32, ``targets`` ``[m, Q]`` (target layers concatenated),
        ``folds`` ``[m]`` fold id per row."""
        b = self.block_rows
        for start in range(0, targets.shape[0], b):
            Y = jnp.asarray(_pad(targets[start:start + b], b))
            f_rows = _pad(folds[start:start + b], b)
            real = _pad(np.ones(min(b, targets.shape[0] - start), np.float32), b)
            for l, per in enumerate(self._device):
                X = jnp.asarray(_pad(sources[l][start:start + b], b))
                for f, dm in enumerate(per):
                    w = jnp.asarray(real * (f_rows != f), jnp.float32)
                    self.sums[l][f] += np.asarray(_block_errors(X, Y, w, *dm, self.alphas), np.float64)

    def errors(self, l: int, f: int) -> np.ndarray:
        """``[A, Q]`` mean squared LOO residual over fold f's training rows."""
        return self.sums[l][f] / self.models[l][f].centring.n_t


def _device_model(m: FoldModel) -> tuple:
    """The float32 arrays of one model in :func:`_block_errors`'s argument order (after ``w``)."""
    c, b = m.centring, m.basis
    f32 = lambda a: jnp.asarray(np.asarray(a, np.float64), jnp.float32)  # noqa: E731
    return (f32(c.mu), f32(1.0 / c.sd), f32(b.proj), f32(m.mu_y), f32(1.0 / m.sd_y), f32(m.z), f32(b.s2),
            f32(b.null), f32(c.n_t))
