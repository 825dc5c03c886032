# Oracle: scipy.linalg.orthogonal_procrustes in float64 on centered, unit-Frobenius, zero-padded inputs (its
# `scale` is the nuclear norm of AᵀB); the Procrustes distance identity ‖A R − B‖² = 2 − 2·similarity is checked too.
# Largest |float32 - float64 oracle| observed (n = 30, widths 8..60 covering both prep branches, 5 seeds):
# procrustes 4.5e-7, procrustes_angular 1.2e-6 (QR prep; 5.7e-7 and 1.5e-6 with the former SVD prep); rank-5
# inputs wider than n (both preps by QR): 2.6e-7.
"""Procrustes similarity and angular distance against scipy."""

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

import align.metrics as M
from align.metrics import _procrustes


def _pair(n=30, p=10, q=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) + 2.0
    Y = np.concatenate([X, X**2], axis=1) @ rng.normal(size=(2 * p, q)) + 3.0 * rng.normal(size=(n, q))
    return X, Y


def oracle(X, Y):
    A = X - X.mean(0)
    B = Y - Y.mean(0)
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    d = max(A.shape[1], B.shape[1])
    A = np.pad(A, ((0, 0), (0, d - A.shape[1])))
    B = np.pad(B, ((0, 0), (0, d - B.shape[1])))
    R, scale = orthogonal_procrustes(A, B)
    assert abs(np.linalg.norm(A @ R - B) ** 2 - (2 - 2 * scale)) < 1e-10
    return scale


@pytest.mark.parametrize(("p", "q"), [(10, 50), (50, 10), (8, 12), (60, 45)])
def test_procrustes_matches_scipy(p, q):
    X, Y = _pair(p=p, q=q)
    want = oracle(X, Y)
    assert abs(float(M.procrustes(X, Y)) - want) < 1e-4
    assert abs(float(M.procrustes_angular(X, Y)) - np.arccos(want)) < 1e-4


def test_procrustes_properties():
    X, Y = _pair(seed=1)
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    base = float(M.procrustes(X, Y))
    assert abs(float(M.procrustes(X, X)) - 1.0) < 1e-5
    assert float(M.procrustes_angular(X, X)) < 2e-3  # arccos near 1 amplifies float32 rounding
    assert abs(float(M.procrustes(Y, X)) - base) < 1e-5
    assert abs(float(M.procrustes(0.1 * X @ Q + 4.0, Y)) - base) < 1e-4
    assert abs(float(M.procrustes(X * np.linspace(0.1, 10, 10), Y)) - base) > 1e-2
    meta = M.get_metric("procrustes_angular")
    assert meta.higher_is_more_aligned is False and meta.bounds == (0.0, np.pi / 2)


def test_procrustes_rejects_constant_input():
    X, Y = _pair()
    with pytest.raises(ValueError, match="zero variance"):
        M.procrustes(X, np.full_like(Y, 2.0))


def test_wide_prep_keeps_the_gram_matrix():
    # The QR prep R^T of a layer wider than n must have the Gram matrix of the centered, unit-Frobenius layer.
    X, _ = _pair(n=30, p=10, q=50)
    X = np.concatenate([X, X**2, X**3, X**4, X**5], axis=1)  # [30, 50]
    A = X - X.mean(0)
    A = A / np.linalg.norm(A)
    prep = np.asarray(_procrustes.prepare_procrustes(X.astype(np.float32)), np.float64)
    assert prep.shape == (30, 30)
    np.testing.assert_allclose(prep @ prep.T, A @ A.T, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_rank_layers_wider_than_n(seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(40, 5))
    X = Z @ rng.normal(size=(5, 90))
    Y = (Z + 0.3 * rng.normal(size=(40, 5))) @ rng.normal(size=(5, 70))
    assert abs(float(M.procrustes(X, Y)) - oracle(X, Y)) < 1e-5
    assert abs(float(M.procrustes(Y, X)) - oracle(X, Y)) < 1e-5
