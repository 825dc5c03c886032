"""Linear CKA, biased and debiased, from the feature-space sufficient statistics of one pass (float64).

With ``Xc``, ``Yc`` the column-centered layers (means from the column sums),

- biased (Kornblith et al. 2019): ``‖Xcᵀ Yc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F)``;
- debiased: the same cosine with each HSIC replaced by the unbiased estimator of Song et al. (2012, eq. 5) on
  ``K = Xc Xcᵀ``, ``L = Yc Ycᵀ`` (centering the features first changes neither estimator's value),
  ``HSIC_u ∝ tr(K̃ L̃) + 1ᵀK̃1 1ᵀL̃1 / ((n − 1)(n − 2)) − 2 / (n − 2) 1ᵀK̃ L̃1`` with ``K̃`` = K with its diagonal
  zeroed. Centred features make ``K 1 = 0``, so with ``kᵢ = ‖xcᵢ‖²`` and ``lᵢ = ‖ycᵢ‖²``:
  ``tr(K̃ L̃) = ‖Xcᵀ Yc‖²_F − Σ kᵢ lᵢ``, ``1ᵀK̃1 = −Σ kᵢ = −tr(Xcᵀ Xc)``, ``1ᵀK̃ L̃1 = Σ kᵢ lᵢ``. The only statistic
  beyond the Grams is ``Σ kᵢ lᵢ``; with ``x' = x − c`` (the pass's shift), ``μ' = μ − c``, ``a = ‖x'‖²``, ``b = ‖y'‖²``
  (``ν'`` for Y), expanding ``kᵢ = aᵢ − 2 x'ᵢ·μ' + ‖μ'‖²`` gives
  ``Σ k l = Σ a b − 2 ν'·Σ a y' − 2 μ'·Σ b x' + ‖ν'‖² Σ a + ‖μ'‖² Σ b + 4 μ'ᵀ (Σ x' y'ᵀ) ν' − 3 n ‖μ'‖² ‖ν'‖²``,
  sums that one pass accumulates (:class:`align.streaming._moments.RowNorms`).

The positive factor ``1 / (n (n − 3))`` of the estimator cancels in the cosine. ``n(n−3)·HSIC_u(K, K)`` is
``‖U-centred K‖²_F >= 0``, so the denominators are real.
"""

from __future__ import annotations

import numpy as np

from align.streaming._moments import Moments
from align.streaming._moments import centred_cross
from align.streaming._moments import centred_gram


def _layer(m: Moments, side: str, l: int):
    """(shifted sums ``[p]``, centred Gram ``[p, p]``) of one layer over all rows."""
    s = getattr(m, side)
    sums, gram = s.sums[l].sum(axis=0), s.grams[l].sum(axis=0)
    return sums, centred_gram(m.n, sums, gram)


def _sum_kl(m: Moments, u: int, v: int, mu_u, mu_v, cross_uv) -> float:
    """``Σᵢ kᵢ lᵢ`` for layers ``u`` and ``v`` (indices over x layers then y layers) from the row-norm sums."""
    nr = m.norms
    Lx = len(m.x.shift)

    def with_norm(of: int, layer: int):  # Σ a_of x'_layer, [p] of the given layer
        return nr.ax[of][layer] if layer < Lx else nr.ay[of][layer - Lx]

    nu2, mu2 = float(mu_v @ mu_v), float(mu_u @ mu_u)
    return float(nr.aa[u, v] - 2 * mu_v @ with_norm(u, v) - 2 * mu_u @ with_norm(v, u) + nu2 * nr.a[u]
                 + mu2 * nr.a[v] + 4 * mu_u @ cross_uv @ mu_v - 3 * m.n * mu2 * nu2)


def _hsic_u(n: int, cross_fro2: float, skl: float, sk: float, sl: float) -> float:
    """``n (n − 3) HSIC_u`` from ``‖Xcᵀ Yc‖²_F``, ``Σ kᵢ lᵢ``, ``Σ kᵢ`` and ``Σ lᵢ``."""
    return cross_fro2 - skl + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * skl


def cka_grid(m: Moments, debiased: bool = False) -> np.ndarray:
    """``[Lx, Ly]`` linear CKA of every (x layer, y layer) pair (NaN where a layer is constant).

    Args:
      m: one-group moments; with ``debiased``, accumulated with ``row_norms=True``.
      debiased: use the unbiased HSIC estimator (needs n >= 4).
    """
    n = m.n
    Lx, Ly = len(m.x.shift), len(m.y.shift)
    xs = [_layer(m, "x", i) for i in range(Lx)]
    ys = [_layer(m, "y", j) for j in range(Ly)]
    if debiased:
        self_x = [_self_hsic(m, i, *xs[i], m.x.grams[i].sum(axis=0)) for i in range(Lx)]
        self_y = [_self_hsic(m, Lx + j, *ys[j], m.y.grams[j].sum(axis=0)) for j in range(Ly)]
    else:
        self_x = [float(np.sum(C * C)) for _, C in xs]
        self_y = [float(np.sum(C * C)) for _, C in ys]
    out = np.full((Lx, Ly), np.nan)
    for i, (sx, Cx) in enumerate(xs):
        for j, (sy, Cy) in enumerate(ys):
            raw = m.cross[i][j].sum(axis=0)
            Cxy = centred_cross(n, sx, sy, raw)
            num = float(np.sum(Cxy * Cxy))
            if debiased:
                skl = _sum_kl(m, i, Lx + j, sx / n, sy / n, raw)
                num = _hsic_u(n, num, skl, float(np.trace(Cx)), float(np.trace(Cy)))
            denom = np.sqrt(self_x[i]) * np.sqrt(self_y[j])
            if denom > 0:
                out[i, j] = num / denom
    return out


def _self_hsic(m: Moments, u: int, sums, C, gram) -> float:
    """``n (n − 3) HSIC_u(K, K)`` of layer ``u`` (clipped at 0: it is a squared norm)."""
    mu = sums / m.n
    skk = _sum_kl(m, u, u, mu, mu, gram)
    return max(_hsic_u(m.n, float(np.sum(C * C)), skk, float(np.trace(C)), float(np.trace(C))), 0.0)


def constant_layers(m: Moments, side: str) -> list[int]:
    """Indices of the layers of one side whose rows are all identical (every column's minimum is its maximum)."""
    s = getattr(m, side)
    return [l for l in range(len(s.shift)) if np.all(s.lo[l].min(axis=0) == s.hi[l].max(axis=0))]
