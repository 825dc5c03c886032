"""Peer implementations that grid_s.py times against ``align.pairwise``.

Each peer computes one metric the way its library (or the reference code it is modelled on) does, on the same
float32 inputs, and is written here from the libraries' public APIs and the papers' formulas — no code is copied.

- ``per_pair`` peers score one (source, target) pair: ``fn(X [n, p], Y [n, q]) -> float`` (direction X -> Y). This
  is how every peer library is used over a layer grid: a Python loop over layer pairs that recomputes per-layer work.
- ``grid`` peers score a whole grid in one library call where the library offers one (rsatoolbox's ``compare``
  of two sets of RDMs): ``fn(Xs, Ys) -> [len(Xs), len(Ys)]``, direction X -> Y only (used for symmetric metrics).

Definitions follow the metrics' docstrings in align/metrics; where a peer's published code differs (platonic-rep's ``+ 1e-6`` in
the CKA/CKNNA denominators, a fixed RBF bandwidth, rsatoolbox's pooled tRSA quantiles) the peer is run with our
definition and the docstring says so, so that the score differences measure the implementations, not the
definitions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Peer:
    """One peer implementation of one metric.

    Attributes:
      name: short label for the table ("sklearn RidgeCV").
      mode: ``"per_pair"`` (``fn(X, Y) -> float``) or ``"grid"`` (``fn(Xs, Ys) -> [Lx, Ly]``).
      fn: the implementation.
      note: what differs from our definition or how the peer is run (dtype, folds, alpha selection).
      oracle: True when the peer computes exactly our definition, so its score difference is a correctness check.
    """

    name: str
    mode: str
    fn: Callable
    note: str = ""
    oracle: bool = True


# ----------------------------------------------------------------------------------------------------------------
# linear predictivity: sklearn RidgeCV and himalaya KernelRidgeCV, one pair-direction at a time


def _pearson_mean(Y, pred):
    """Mean over non-constant columns of the Pearson r between ``pred`` and ``Y`` (both ``[n, q]``)."""
    Y = np.asarray(Y, np.float64)
    pred = np.asarray(pred, np.float64)
    valid = Y.max(axis=0) > Y.min(axis=0)
    Yc = Y - Y.mean(axis=0)
    Pc = pred - pred.mean(axis=0)
    denom = np.sqrt((Yc * Yc).sum(axis=0) * (Pc * Pc).sum(axis=0))
    r = np.where(denom > 0, (Yc * Pc).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)
    return float(r[valid].mean())


def _outer_folds(n, folds, seed):
    from sklearn.model_selection import KFold

    return list(KFold(folds, shuffle=True, random_state=seed).split(np.arange(n)))


def sklearn_ridge_cv(alphas, folds=5, seed=0):
    """X -> Y with ``sklearn.linear_model.RidgeCV(alphas, alpha_per_target=True)`` fitted on each training fold of
    ``KFold(folds, shuffle=True, random_state=seed)`` (exact LOO alpha per target; sklearn works in float64); the
    held-out predictions of all folds are scored by Pearson r per target column, averaged."""
    from sklearn.linear_model import RidgeCV

    def score(X, Y):
        pred = np.empty(Y.shape, np.float64)
        for train, test in _outer_folds(X.shape[0], folds, seed):
            model = RidgeCV(alphas=alphas, alpha_per_target=True, fit_intercept=True).fit(X[train], Y[train])
            pred[test] = model.predict(X[test])
        return _pearson_mean(Y, pred)

    return score


def himalaya_kernel_ridge_cv(alphas, folds=5, seed=0, backend="torch"):
    """X -> Y with ``himalaya.kernel_ridge.KernelRidgeCV(alphas, kernel="linear", fit_intercept=True)`` on the same
    outer folds. himalaya chooses alpha per target by an inner 5-fold CV (its default; it has no exact LOO), so its
    scores differ slightly from sklearn's and ours by construction — a speed peer, not an oracle."""
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV

    def score(X, Y):
        be = set_backend(backend, on_error="raise")
        pred = np.empty(Y.shape, np.float64)
        for train, test in _outer_folds(X.shape[0], folds, seed):
            model = KernelRidgeCV(alphas=alphas, kernel="linear", fit_intercept=True, cv=5, warn=False)
            model.fit(X[train], Y[train])
            pred[test] = be.to_numpy(model.predict(X[test]))
        return _pearson_mean(Y, pred)

    return score


# ----------------------------------------------------------------------------------------------------------------
# CKA: the platonic-rep loop (torch, trace(K H L H) per HSIC) and a Kornblith-style numpy loop (Grams per pair)


def _torch():
    import torch

    torch.set_grad_enabled(False)
    return torch


def _hsic_biased_torch(K, L):
    torch = _torch()
    n = K.shape[0]
    H = torch.eye(n, dtype=K.dtype) - 1.0 / n
    return torch.trace(K @ H @ L @ H)  # two n^3 products, as platonic-rep's hsic_biased


def _hsic_unbiased_torch(K, L):
    torch = _torch()
    m = K.shape[0]
    K = K.clone().fill_diagonal_(0)
    L = L.clone().fill_diagonal_(0)
    value = (torch.sum(K * L.T) + torch.sum(K) * torch.sum(L) / ((m - 1) * (m - 2))
             - 2 * torch.sum(torch.mm(K, L)) / (m - 2))  # Song et al. 2012 eq. 5, with an n^3 product
    return value / (m * (m - 3))


def _median_offdiag(D):
    iu = np.triu_indices(D.shape[0], 1)
    return float(np.median(np.asarray(D)[iu]))


def _rbf_torch(A, sigma_frac):
    torch = _torch()
    D = torch.cdist(A, A) ** 2
    sigma2 = sigma_frac ** 2 * _median_offdiag(D.numpy())
    return torch.exp(-D / (2 * sigma2))


def platonic_cka(kernel="linear", debiased=False, sigma_frac=1.0):
    """CKA as platonic-rep's ``AlignmentMetrics.cka`` computes it, per pair in torch: both Grams, then three HSICs
    (``trace(K H L H)``, or the unbiased estimator with a ``K @ L`` product). Differences from its code: no ``1e-6``
    in the denominator, and for ``rbf`` the bandwidth is our per-matrix median heuristic instead of a fixed sigma."""
    torch = _torch()
    hsic = _hsic_unbiased_torch if debiased else _hsic_biased_torch

    def score(X, Y):
        A, B = torch.from_numpy(X), torch.from_numpy(Y)
        if kernel == "linear":
            K, L = A @ A.T, B @ B.T
        else:
            K, L = _rbf_torch(A, sigma_frac), _rbf_torch(B, sigma_frac)
        return float(hsic(K, L) / torch.sqrt(hsic(K, K) * hsic(L, L)))

    return score


def _center_gram(G, unbiased):
    """Kornblith et al. 2019's centering of a Gram matrix (U-centering when ``unbiased``), in place."""
    n = G.shape[0]
    if unbiased:
        np.fill_diagonal(G, 0)
        means = G.sum(axis=0, dtype=np.float64) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
    else:
        means = G.mean(axis=0, dtype=np.float64)
        means -= means.mean() / 2
    G -= means[:, None].astype(G.dtype)
    G -= means[None, :].astype(G.dtype)
    if unbiased:
        np.fill_diagonal(G, 0)
    return G


def _gram_rbf_numpy(X, sigma_frac):
    G = X @ X.T
    sq = np.diag(G)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * G, 0)
    np.fill_diagonal(D, 0)
    return np.exp(-D / (2 * sigma_frac ** 2 * _median_offdiag(D)))


def kornblith_cka(kernel="linear", debiased=False, sigma_frac=1.0):
    """CKA per pair in numpy the way Kornblith et al.'s reference code does it (``gram_linear``/``gram_rbf``,
    ``center_gram``, then a normalised Frobenius product): O(n^2 d) per pair, no n^3 products. For ``rbf`` the
    bandwidth is the median of the off-diagonal squared distances (the reference takes the median including the
    zero diagonal)."""

    def gram(X):
        return X @ X.T if kernel == "linear" else _gram_rbf_numpy(X, sigma_frac)

    def score(X, Y):
        K = _center_gram(gram(X), debiased).ravel()
        L = _center_gram(gram(Y), debiased).ravel()
        return float(np.dot(K, L) / (np.linalg.norm(K) * np.linalg.norm(L)))

    return score


# ----------------------------------------------------------------------------------------------------------------
# RSA and topological RSA: rsatoolbox, RDMs once per layer, all pairs compared in one call


def _rsatoolbox_rdms(Xs, rdm, transform=None):
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm
    from rsatoolbox.rdm import concat

    rdms = []
    for X in Xs:
        r = calc_rdm(Dataset(np.array(X)), method=rdm)  # a copy: rsatoolbox may edit arrays in place
        rdms.append(transform(r) if transform else r)
    return concat(*rdms)


def rsatoolbox_rsa(rdm="correlation", compare="spearman"):
    """rsatoolbox: ``calc_rdm`` per layer, then ``rsatoolbox.rdm.compare(rdms_x, rdms_y, method)`` over the grid."""
    from rsatoolbox.rdm import compare as rsa_compare

    method = {"spearman": "spearman", "pearson": "corr", "cosine": "cosine"}[compare]

    def grid(Xs, Ys):
        return rsa_compare(_rsatoolbox_rdms(Xs, rdm), _rsatoolbox_rdms(Ys, rdm), method=method)

    return grid


def rsatoolbox_topological_rsa(low=0.2, high=0.8, rdm="correlation", compare="spearman"):
    """rsatoolbox: ``calc_rdm`` per layer, ``geotopological_transform`` applied to each layer's RDM on its own (the
    function pools quantiles over all RDMs it is given; per RDM is our definition), then ``compare`` over the grid."""
    from rsatoolbox.rdm import compare as rsa_compare
    from rsatoolbox.rdm.transform import geotopological_transform

    method = {"spearman": "spearman", "pearson": "corr", "cosine": "cosine"}[compare]

    def transform(r):
        return geotopological_transform(r, low, high)

    def grid(Xs, Ys):
        return rsa_compare(_rsatoolbox_rdms(Xs, rdm, transform), _rsatoolbox_rdms(Ys, rdm, transform), method=method)

    return grid


# ----------------------------------------------------------------------------------------------------------------
# nearest-neighbour metrics: the platonic-rep loop (torch; rows L2-normalised first, as its measure_alignment does)


def _normalized_torch(X):
    torch = _torch()
    return torch.nn.functional.normalize(torch.from_numpy(X), dim=-1)


def _knn_torch(A, k):
    """Each row's k most similar rows by inner product, self excluded (platonic-rep: fill the diagonal with -1e8,
    argsort descending)."""
    return (A @ A.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]


def platonic_mutual_knn(k=10):
    """platonic-rep ``mutual_knn``: two n x n neighbour masks per pair, mean overlap / k."""
    torch = _torch()

    def score(X, Y):
        a, b = _knn_torch(_normalized_torch(X), k), _knn_torch(_normalized_torch(Y), k)
        n = a.shape[0]
        rows = torch.arange(n).unsqueeze(1)
        ma, mb = torch.zeros(n, n), torch.zeros(n, n)
        ma[rows, a] = 1.0
        mb[rows, b] = 1.0
        return float(((ma * mb).sum(dim=1) / k).mean())

    return score


def platonic_cycle_knn(k=10):
    """platonic-rep ``cycle_knn`` with A = X, B = Y: is i among ``knn_A[knn_B][i]``?"""
    torch = _torch()

    def score(X, Y):
        a, b = _knn_torch(_normalized_torch(X), k), _knn_torch(_normalized_torch(Y), k)
        n = a.shape[0]
        hit = a[b] == torch.arange(n).view(-1, 1, 1)
        return float(hit.float().view(n, -1).max(dim=1).values.mean())

    return score


def platonic_cknna(k=10):
    """platonic-rep ``cknna`` (unbiased=True): topk neighbour masks of K = A Aᵀ and L = B Bᵀ (self excluded), three
    unbiased HSICs of the masked kernels, each with an n^3 product. No ``1e-6`` in the denominator."""
    torch = _torch()

    def similarity(K, L):
        n = K.shape[0]
        ik = torch.topk(K.clone().fill_diagonal_(float("-inf")), k, dim=1).indices
        il = torch.topk(L.clone().fill_diagonal_(float("-inf")), k, dim=1).indices
        mask = torch.zeros(n, n).scatter_(1, ik, 1) * torch.zeros(n, n).scatter_(1, il, 1)
        return _hsic_unbiased_torch(mask * K, mask * L)

    def score(X, Y):
        A, B = _normalized_torch(X), _normalized_torch(Y)
        K, L = A @ A.T, B @ B.T
        return float(similarity(K, L) / torch.sqrt(similarity(K, K) * similarity(L, L)))

    return score


# ----------------------------------------------------------------------------------------------------------------
# Procrustes (scipy) and SVCCA (numpy), per pair


def scipy_procrustes():
    """``scipy.linalg.orthogonal_procrustes`` per pair on the centered, unit-Frobenius inputs zero-padded to equal
    width; its ``scale`` (sum of singular values of Xᵀ Y) is the normalised Bures similarity. float32 as given."""
    from scipy.linalg import orthogonal_procrustes

    def prep(X, width):
        Xc = X - X.mean(axis=0)
        Xc /= np.linalg.norm(Xc)
        return np.pad(Xc, ((0, 0), (0, width - X.shape[1])))

    def score(X, Y):
        width = max(X.shape[1], Y.shape[1])
        _, scale = orthogonal_procrustes(prep(X, width), prep(Y, width))
        return float(min(max(scale, 0.0), 1.0))

    return score


def numpy_svcca(keep=0.99):
    """SVCCA per pair in numpy (float64, as Raghu et al.'s cca_core): exact SVD of each centered layer, keep the
    leading components explaining ``keep`` of the variance, canonical correlations = singular values of Uxᵀ Uy,
    mean over min(rx, ry)."""

    def basis(X):
        Xc = np.asarray(X, np.float64)
        Xc = Xc - Xc.mean(axis=0)
        U, s, _ = np.linalg.svd(Xc, full_matrices=False)
        var = s * s
        before = (np.cumsum(var) - var) / var.sum()
        tol = s[0] * max(X.shape) * np.finfo(np.float32).eps
        return U[:, (before < keep) & (s > tol)]

    def score(X, Y):
        Ux, Uy = basis(X), basis(Y)
        rho = np.linalg.svd(Ux.T @ Uy, compute_uv=False)
        return float(np.clip(rho.sum() / min(Ux.shape[1], Uy.shape[1]), 0.0, 1.0))

    return score
