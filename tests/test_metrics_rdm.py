# Oracle: scipy.spatial.distance.pdist in float64.
# Largest |float32 - float64 oracle| observed (n = 40, d = 30, 5 seeds): correlation 1.6e-7, cosine 2.6e-7,
# euclidean 2.0e-6 (values ~8, relative 3.5e-7), sqeuclidean 2.9e-5 (values ~60, relative 7.3e-7).
# Tests assert |diff| / max(1, |value|) < 1e-4. Sort keys, the key sort and the condensed median: exact (numpy
# np.sort / np.median, and jnp.median of the condensed entries).
"""Condensed RDMs against scipy's pdist."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist

import align.metrics as M
from align.metrics import _rdm


@pytest.mark.parametrize("kind", ["correlation", "cosine", "euclidean", "sqeuclidean"])
def test_rdm_matches_pdist(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 30)) + 2.0
    got = np.asarray(M.rdm(X, kind))
    want = pdist(X, kind)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) < 1e-4


def test_rdm_order_is_pdist_order():
    X = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(np.asarray(M.rdm(X, "euclidean")), [1, 3, 7, 2, 6, 4])


def test_rdm_rejects_rows_the_distance_cannot_use():
    X = np.random.default_rng(1).normal(size=(6, 4))
    X[2] = 5.0
    with pytest.raises(ValueError, match=r"constant rows .*\[2\]"):
        M.rdm(X, "correlation")
    X[2] = 0.0
    with pytest.raises(ValueError, match=r"all-zero rows .*\[2\]"):
        M.rdm(X, "cosine")
    assert np.all(np.isfinite(np.asarray(M.rdm(X, "euclidean"))))
    with pytest.raises(ValueError, match="unknown RDM kind"):
        M.rdm(X, "manhattan")


def test_sort_key_orders_every_float_and_round_trips():
    tiny = np.finfo(np.float32).smallest_subnormal
    big = np.finfo(np.float32).max
    x = np.array([-np.inf, -big, -1.5, -1.0, -2 * tiny, -tiny, 0.0, tiny, 3 * tiny, 1e-30, 1.0, big, np.inf],
                 np.float32)
    keys = np.asarray(_rdm.sort_key(x))
    assert keys.dtype == np.int32 and np.all(np.diff(keys) > 0)
    np.testing.assert_array_equal(np.asarray(_rdm.from_sort_key(keys)), x)
    assert int(_rdm.sort_key(np.float32(-0.0))) == int(_rdm.sort_key(np.float32(0.0))) == 0


def test_sort_float32_and_condensed_median_exact():
    rng = np.random.default_rng(3)
    v = np.r_[rng.normal(size=999), -0.0, 0.0, np.inf, -np.inf, rng.integers(-2, 3, 500)].astype(np.float32)
    np.testing.assert_array_equal(np.asarray(jax.jit(_rdm.sort_float32)(v)), np.sort(v))
    median = jax.jit(_rdm.condensed_median)
    old_median = jax.jit(lambda D: jnp.median(_rdm.condensed(D)))
    for n in (2, 3, 4, 5, 30, 31):  # 1, 3, 6, 10, 435 and 465 condensed entries: odd and even counts
        X = rng.integers(0, 3, size=(n, 2)).astype(np.float32)  # integer points: tied distances, many zeros
        signed = rng.normal(size=n * (n - 1) // 2)
        for v in (np.asarray(M.rdm(X, "sqeuclidean")), pdist(rng.normal(size=(n, 4))), signed):
            v = v.astype(np.float32)
            S = squareform_upper(v, n)
            got = np.asarray(median(S))
            assert got == np.median(v), (n, got)
            assert got == np.asarray(old_median(S)), n


def squareform_upper(v, n):
    """``[n, n]`` with the condensed ``v`` above the diagonal and -7 below it (only the upper triangle counts)."""
    S = np.full((n, n), -7.0, np.float32)
    S[np.triu_indices(n, 1)] = v
    np.fill_diagonal(S, 0.0)
    return S
