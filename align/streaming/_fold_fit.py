"""Ridge regression on each training fold from the per-fold sufficient statistics (float64): the primal form.

For fold f the training statistics are the totals minus fold f's own (its held-out rows). With ``Xc`` the training
rows of a source layer centered with their training means (and, with ``scale``, divided by their population
standard deviations), ``Xcᵀ Xc = V diag(s²) Vᵀ`` (eigendecomposition of a ``[p, p]`` matrix) gives everything the
in-memory path (``align.stats.ridge_basis``, a thin SVD of the ``[n_train, p]`` rows) gets from ``U = Xc V / s``:

- ``proj = V / s`` (``[p, r]``, zero for dropped components), so a row's coordinates are ``U = xc · proj``;
- ``z = Uᵀ yc = projᵀ (Xcᵀ Yc)`` per target column, from the centred cross products;
- ``‖yc‖²`` per target column, the diagonal of the target's centred training Gram (for GCV).

Components are kept as ``ridge_basis`` keeps them: singular value above ``max(n, p) · eps(float32)`` times the
largest, and only the ``pca_components`` leading ones when that is set. GCV needs nothing more
(:func:`gcv_errors`); exact LOO needs one more pass over the training rows (:mod:`align.streaming._loo`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from align.streaming._moments import Moments
from align.streaming._moments import SideMoments
from align.streaming._moments import centred_cross
from align.streaming._moments import centred_gram

EPS32 = float(np.finfo(np.float32).eps)

#: A column whose centred training variance is at most this fraction of its mean shifted square is constant on
#: that fold (float64 rounding leaves ~1e-16 where the exact value is 0).
CONSTANT_VARIANCE = 1e-12


@dataclasses.dataclass(frozen=True)
class Centring:
    """How one layer is centred and scaled on one training fold: ``xc = (x − mu) / sd``."""

    n_t: float
    shifted_sums: np.ndarray  # [p] training Σ x'
    mu: np.ndarray            # [p] training mean, raw units
    sd: np.ndarray            # [p] training std (ones unless scale)
    gram: np.ndarray          # [p, p] Xcᵀ Xc (centred and scaled)


@dataclasses.dataclass(frozen=True)
class Basis:
    """The ridge basis of one source layer on one training fold (``r = p`` columns, dropped ones zero)."""

    proj: np.ndarray  # [p, p] V / s
    s2: np.ndarray    # [p] squared singular values, 0 where dropped
    null: float       # 1 when the kept components leave part of the centred training space outside their span


def centring(side: SideMoments, counts: np.ndarray, layer: int, fold: int, scale: bool) -> Centring:
    """Training-fold centring of one layer from its per-fold moments."""
    n_t = float(counts.sum() - counts[fold])
    sums = side.sums[layer].sum(axis=0) - side.sums[layer][fold]
    raw = side.grams[layer].sum(axis=0) - side.grams[layer][fold]
    C = centred_gram(n_t, sums, raw)
    if scale:
        var = np.diagonal(C) / n_t
        varies = var > CONSTANT_VARIANCE * np.diagonal(raw) / n_t
        sd = np.where(varies, np.sqrt(np.where(varies, var, 1.0)), 1.0)
        C = C / np.outer(sd, sd)
    else:
        sd = np.ones(sums.shape[0])
    return Centring(n_t, sums, side.shift[layer] + sums / n_t, sd, C)


def basis(c: Centring, n: int, pca_components: int = 0) -> Basis:
    """Eigendecomposition of the centred training Gram, truncated as ``align.stats.ridge_basis`` truncates."""
    lam, V = np.linalg.eigh(c.gram)
    lam, V = lam[::-1], V[:, ::-1]
    s = np.sqrt(np.maximum(lam, 0.0))
    p = s.shape[0]
    keep = s > s[0] * max(n, p) * EPS32
    if pca_components:
        keep &= np.arange(p) < pca_components
    spans_all = keep.sum() >= c.n_t - 1
    proj = np.where(keep, V / np.where(keep, s, 1.0), 0.0)
    return Basis(proj=proj, s2=np.where(keep, s * s, 0.0), null=0.0 if spans_all else 1.0)


def cross(m: Moments, source: str, i: int, target: str, j: int) -> np.ndarray:
    """``[G, p_i, q_j]`` per-fold shifted cross products of source layer i with target layer j."""
    if source == "x":
        return m.cross[i][j]
    return np.transpose(m.cross[j][i], (0, 2, 1))


def projected_targets(m: Moments, b: Basis, cs: Centring, source: str, i: int, target: str,
                      targets: list[Centring], fold: int) -> np.ndarray:
    """``z = projᵀ Xcᵀ Yc`` ``[p, Q]`` for every target layer (their columns concatenated) on one fold."""
    blocks = []
    for j, ct in enumerate(targets):
        per_fold = cross(m, source, i, target, j)
        raw = per_fold.sum(axis=0) - per_fold[fold]
        C = centred_cross(cs.n_t, cs.shifted_sums, ct.shifted_sums, raw) / np.outer(cs.sd, ct.sd)
        blocks.append(b.proj.T @ C)
    return np.concatenate(blocks, axis=1)


def gcv_errors(b: Basis, z: np.ndarray, yy: np.ndarray, n_t: float, alphas: np.ndarray) -> np.ndarray:
    """``[A, Q]`` generalised cross-validation errors (Golub, Heath & Wahba 1979) of every target column and alpha.

    ``‖r0‖² = ‖yc‖² − ‖z‖²`` is the part of the targets outside the span of the kept components;
    ``rss = ‖r0‖² + Σₖ gₖ² zₖ²`` with ``g = α / (s² + α)``, and ``tr(I − H) = n_t − 1 − Σₖ (1 − gₖ)`` (the
    intercept counted in H), as in ``align.stats.ridge_solve``.
    """
    r0 = b.null * np.maximum(yy - np.sum(z * z, axis=0), 0.0)
    g = alphas[:, None] / (b.s2[None, :] + alphas[:, None])  # [A, p]
    rss = r0[None, :] + (g * g) @ (z * z)
    dof = n_t - 1.0 - np.sum(1.0 - g, axis=1)
    return (rss / n_t) / ((dof / n_t) ** 2)[:, None]


def choose_alphas(errors: np.ndarray, alphas: np.ndarray, widths: list[int], alpha_per_target: bool) -> np.ndarray:
    """``[Q]`` the alpha of least error per target column (the first of equal errors, as sklearn), or one per target
    layer (columns ``widths``) by the mean error over its columns."""
    if alpha_per_target:
        return alphas[np.argmin(errors, axis=0)]
    out, start = [], 0
    for q in widths:
        out.append(np.full(q, alphas[np.argmin(errors[:, start:start + q].mean(axis=1))]))
        start += q
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class FoldModel:
    """One source layer on one training fold, against every target layer of a direction (columns concatenated).

    Attributes:
      centring: the source's training centring.
      basis: the source's ridge basis.
      z: ``[p, Q]`` projected targets.
      mu_y, sd_y: ``[Q]`` the targets' training means and stds.
      yy: ``[Q]`` ``‖yc‖²`` of the centred (scaled) training targets.
    """

    centring: Centring
    basis: Basis
    z: np.ndarray
    mu_y: np.ndarray
    sd_y: np.ndarray
    yy: np.ndarray


def fold_models(m: Moments, source: str, target: str, *, scale: bool, pca_components: int = 0
                ) -> list[list[FoldModel]]:
    """``[L_source][F]`` fold models of one direction (``source``/``target``: ``"x"`` or ``"y"``)."""
    src, tgt = getattr(m, source), getattr(m, target)
    n, F = m.n, len(m.counts)
    out = []
    for i in range(len(src.shift)):
        per_fold = []
        for f in range(F):
            cs = centring(src, m.counts, i, f, scale)
            ct = [centring(tgt, m.counts, j, f, scale) for j in range(len(tgt.shift))]
            b = basis(cs, n, pca_components)
            z = projected_targets(m, b, cs, source, i, target, ct, f)
            per_fold.append(FoldModel(cs, b, z, np.concatenate([c.mu for c in ct]), np.concatenate([c.sd for c in ct]),
                                      np.concatenate([np.diagonal(c.gram) for c in ct])))
        out.append(per_fold)
    return out
