"""One pass over the rows of two stores: the sufficient statistics of the primal (feature-space) forms.

Per group of rows (the cross-validation folds of linear predictivity; one group for CKA), in float64:

- the row count, and per layer the column sums ``Σ x'`` ``[p]`` and the Gram ``Σ x' x'ᵀ`` ``[p, p]``, where
  ``x' = x − c`` is shifted by the mean ``c`` of the first chunk (a fixed shift keeps the later centering
  ``Σ x' x'ᵀ − n μ' μ'ᵀ`` free of cancellation: ``μ' = μ − c`` is small), and the column minima and maxima;
- per (x layer, y layer) pair the cross products ``Σ x' y'ᵀ`` ``[p, q]``;
- optionally (:class:`RowNorms`, debiased CKA) the products with the squared row norms ``a = ‖x'‖²`` that the
  unbiased HSIC needs beside the Grams.

Memory: ``G (Σ p² + Σ q² + Σ p q)`` float64 for the statistics, plus one chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from align.streaming._rows import Chunk


@dataclasses.dataclass
class SideMoments:
    """Per-layer statistics of one store (lists indexed by layer; ``G`` groups)."""

    shift: list[np.ndarray]  # [p] the shift c
    sums: list[np.ndarray]   # [G, p] Σ x'
    grams: list[np.ndarray]  # [G, p, p] Σ x' x'ᵀ
    lo: list[np.ndarray]     # [G, p] column minima (raw values; +inf for an empty group)
    hi: list[np.ndarray]     # [G, p] column maxima


@dataclasses.dataclass
class RowNorms:
    """Sums over rows with the squared shifted row norms ``a_l = ‖x'_l‖²`` of every layer ``l`` (x layers first,
    then y layers): ``a`` ``[L]`` = Σ a, ``aa`` ``[L, L]`` = Σ a aᵀ, ``ax`` ``[L]`` of ``[Lx][p]`` = Σ a_l x'_i
    per x layer i, ``ay`` the same per y layer."""

    a: np.ndarray
    aa: np.ndarray
    ax: list[list[np.ndarray]]
    ay: list[list[np.ndarray]]


@dataclasses.dataclass
class Moments:
    """Everything one pass accumulates; see the module docstring."""

    counts: np.ndarray                 # [G] rows per group
    x: SideMoments
    y: SideMoments
    cross: list[list[np.ndarray]]      # [Lx][Ly] of [G, p, q] Σ x' y'ᵀ
    norms: RowNorms | None = None

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def _side(first: list[np.ndarray], n_groups: int) -> SideMoments:
    shift = [x.astype(np.float64).mean(axis=0) for x in first]
    p = [s.shape[0] for s in shift]
    return SideMoments(shift=shift, sums=[np.zeros((n_groups, d)) for d in p],
                       grams=[np.zeros((n_groups, d, d)) for d in p],
                       lo=[np.full((n_groups, d), np.inf) for d in p], hi=[np.full((n_groups, d), -np.inf) for d in p])


def _add_side(side: SideMoments, g: int, shifted: list[np.ndarray], raw: list[np.ndarray]) -> None:
    for l, (xs, x) in enumerate(zip(shifted, raw)):
        side.sums[l][g] += xs.sum(axis=0)
        side.grams[l][g] += xs.T @ xs
        side.lo[l][g] = np.minimum(side.lo[l][g], x.min(axis=0))
        side.hi[l][g] = np.maximum(side.hi[l][g], x.max(axis=0))


def _add_norms(norms: RowNorms, xs: list[np.ndarray], ys: list[np.ndarray]) -> None:
    A = np.stack([np.einsum("ij,ij->i", z, z) for z in xs + ys], axis=1)  # [m, L]
    norms.a += A.sum(axis=0)
    norms.aa += A.T @ A
    for l in range(A.shape[1]):
        for i, x in enumerate(xs):
            norms.ax[l][i] += A[:, l] @ x
        for j, y in enumerate(ys):
            norms.ay[l][j] += A[:, l] @ y


def accumulate(chunks: Iterable[Chunk], fold_ids: np.ndarray | None = None, n_groups: int = 1, *,
               row_norms: bool = False, progress=None) -> Moments:
    """Sufficient statistics of every layer and (x, y) layer pair, per group of rows.

    Args:
      chunks: the paired row chunks of both stores (:meth:`align.streaming._rows.Pairing.chunks`).
      fold_ids: ``[n]`` group id (0..G-1) per row, or None for one group.
      n_groups: G.
      row_norms: also accumulate :class:`RowNorms` (one group only).
      progress: a bar updated by the rows of each chunk, or None.

    Returns:
      :class:`Moments`.
    """
    if row_norms and n_groups != 1:
        raise ValueError("row-norm statistics are accumulated for one group of rows only")
    m = None
    for chunk in chunks:
        if m is None:
            sx, sy = _side(chunk.xs, n_groups), _side(chunk.ys, n_groups)
            cross = [[np.zeros((n_groups, a.shape[0], b.shape[0])) for b in sy.shift] for a in sx.shift]
            norms = None
            if row_norms:
                L = len(sx.shift) + len(sy.shift)
                norms = RowNorms(a=np.zeros(L), aa=np.zeros((L, L)), ax=[[np.zeros(s.shape[0]) for s in sx.shift]
                                                                         for _ in range(L)],
                                 ay=[[np.zeros(s.shape[0]) for s in sy.shift] for _ in range(L)])
            m = Moments(counts=np.zeros(n_groups), x=sx, y=sy, cross=cross, norms=norms)
        xs = [x.astype(np.float64) - c for x, c in zip(chunk.xs, m.x.shift)]
        ys = [y.astype(np.float64) - c for y, c in zip(chunk.ys, m.y.shift)]
        if m.norms is not None:
            _add_norms(m.norms, xs, ys)
        if fold_ids is None:
            groups = [(0, slice(None))]
        else:
            ids = fold_ids[chunk.start:chunk.start + chunk.rows]
            groups = [(g, np.flatnonzero(ids == g)) for g in np.unique(ids)]
        for g, rows in groups:
            gx = [a[rows] for a in xs] if fold_ids is not None else xs
            gy = [a[rows] for a in ys] if fold_ids is not None else ys
            m.counts[g] += gx[0].shape[0]
            _add_side(m.x, g, gx, [a[rows] for a in chunk.xs])
            _add_side(m.y, g, gy, [a[rows] for a in chunk.ys])
            for i, a in enumerate(gx):  # block by block: no concatenated [m, Σ p] copy of the chunk
                for j, b in enumerate(gy):
                    m.cross[i][j][g] += a.T @ b
        if progress is not None:
            progress.update(chunk.rows)
    if m is None:
        raise ValueError("the stores have no rows")
    return m


def centred_gram(n, s, gram):
    """``Σ (x − μ)(x − μ)ᵀ`` from the count, shifted sums ``[p]`` and shifted Gram ``[p, p]`` of a set of rows."""
    return gram - np.outer(s, s) / n


def centred_cross(n, sx, sy, cross):
    """``Σ (x − μx)(y − μy)ᵀ`` from shifted sums ``[p]``, ``[q]`` and shifted cross products ``[p, q]``."""
    return cross - np.outer(sx, sy) / n
