# Oracles: rsatoolbox.rdm.transform.geotopological_transform on a single RDM (copy passed; it edits in place and
# pools quantiles across RDMs, so one RDM at a time), a slow float64 Floyd-Warshall loop for geodesic=True, and
# scipy spearmanr / pearsonr on the transformed float64 RDMs.
# Largest |float32 - float64 oracle| observed (n = 40, 5 seeds): transform 7.9e-7 vs rsatoolbox, geodesic
# transform 1.2e-7 vs the loop, topological_rsa 2.1e-7 (geodesic, n = 20: 7.4e-8) vs scipy. The ranks from one sort
# (geotopological_ranks) equal scipy's rankdata of the transformed values exactly.
"""Geo-topological transform and topological RSA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.spatial.distance import squareform
from scipy.stats import pearsonr
from scipy.stats import rankdata as sp_rankdata
from scipy.stats import spearmanr

import align.metrics as M
from align.metrics import _topology


def _pair(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20))
    Y = X @ rng.normal(size=(20, 15)) + 2.0 * rng.normal(size=(n, 15))
    return X, Y


def gt_numpy(v, low, high):
    lo, hi = np.quantile(v, low), np.quantile(v, high)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0)


def geodesic_loop(f):
    """All-pairs shortest paths over edges with f < 1 (weight f), plain triple loop, then / max, unreachable 1."""
    W = squareform(f)
    n = len(W)
    D = np.where(W < 1.0, W, np.inf)
    for i in range(n):
        D[i, i] = 0.0
    for k in range(n):
        for i in range(n):
            for j in range(n):
                if D[i, k] + D[k, j] < D[i, j]:
                    D[i, j] = D[i, k] + D[k, j]
    g = squareform(D, checks=False)
    top = g[np.isfinite(g)].max()
    return np.where(np.isfinite(g), g / top, 1.0)


@pytest.mark.parametrize(("low", "high"), [(0.2, 0.8), (0.0, 0.5), (0.1, 1.0)])
def test_transform_matches_rsatoolbox(low, high):
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.rdm.transform import geotopological_transform

    X, _ = _pair()
    # rsatoolbox (0.3) rescales the in-between values in place and only then sets values > u to 1, so when u < 1
    # some already-rescaled values are clipped to 1 wrongly; shifting the RDM by +1 (the transform is
    # translation-invariant) keeps u > 1 and the comparison meaningful.
    v = pdist(X, "correlation") + 1.0
    want = geotopological_transform(RDMs(v[None].copy()), low, high).get_vectors()[0]
    got = np.asarray(M.geotopological_transform(v.astype(np.float32), low, high))
    assert np.max(np.abs(got - want)) < 1e-4
    np.testing.assert_allclose(want, gt_numpy(v, low, high), atol=1e-12)
    got_unshifted = np.asarray(M.geotopological_transform((v - 1.0).astype(np.float32), low, high))
    assert np.max(np.abs(got_unshifted - gt_numpy(v - 1.0, low, high))) < 1e-4


def _rdm_like_vectors():
    rng = np.random.default_rng(8)
    X, _ = _pair(seed=7)
    return {
        "correlation RDM": pdist(X, "correlation").astype(np.float32),
        "tied integer RDM": pdist(rng.integers(0, 3, size=(30, 3)), "sqeuclidean").astype(np.float32),
        "negatives with ties": rng.integers(-4, 4, size=600).astype(np.float32),
        "normal": rng.normal(size=900).astype(np.float32),
        "all equal": np.full(45, 0.3, np.float32),
    }


@pytest.mark.parametrize(("low", "high"), [(0.2, 0.8), (0.0, 0.5), (0.1, 1.0), (0.0, 1.0), (0.45, 0.55)])
def test_ranks_from_one_sort_are_the_ranks_of_the_transform(low, high):
    ranks = jax.jit(_topology.geotopological_ranks)
    for name, v in _rdm_like_vectors().items():
        got = np.asarray(ranks(v, low, high))
        # ties blocks at the quantiles (jnp.quantile's float32 values), the values themselves in between
        lo, hi = np.asarray(jnp.quantile(jnp.asarray(v), jnp.array([low, high], jnp.float32)))
        blocks = np.where(v <= lo, -np.inf, np.where(v >= hi, np.inf, v))
        if lo == hi:
            blocks = np.where(v <= lo, 0.0, 1.0)
        np.testing.assert_array_equal(got, sp_rankdata(blocks), err_msg=name)
        # and the ranks of the transformed values themselves (no float32 rounding ties in these vectors)
        f = np.asarray(M.geotopological_transform(v, low, high))
        np.testing.assert_array_equal(got, sp_rankdata(f), err_msg=name)


def test_transform_quantiles_are_jnp_quantile():
    for name, v in _rdm_like_vectors().items():
        for low, high in [(0.2, 0.8), (0.0, 1.0), (0.33, 0.9)]:
            # both compiled (eager op-by-op evaluation may round a (1 − w) + b w differently by one ulp)
            got = np.asarray(jax.jit(_topology._quantiles_of_sorted)(np.sort(v), low, high))
            want = np.asarray(jnp.quantile(jnp.asarray(v), jnp.array([low, high], jnp.float32)))
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_geodesic_matches_floyd_warshall_loop():
    X, _ = _pair(n=20, seed=1)
    v = pdist(X, "euclidean")
    f = gt_numpy(v, 0.0, 0.3)  # low = 0: few zero-weight edges, so geodesic distances stay informative
    got = np.asarray(_topology.geodesic_distances(f.astype(np.float32)))
    want = geodesic_loop(f)
    assert np.max(np.abs(got - want)) < 1e-4
    # disconnected graph: two far-apart clusters, only within-cluster edges -> cross pairs are 1
    Z = np.concatenate([np.random.default_rng(2).normal(size=(6, 3)), 100.0 + np.random.default_rng(3).normal(size=(6, 3))])
    fz = gt_numpy(pdist(Z), 0.0, 0.4)
    gz = np.asarray(_topology.geodesic_distances(fz.astype(np.float32)))
    np.testing.assert_allclose(gz, geodesic_loop(fz), atol=1e-5)
    assert np.sum(gz == 1.0) >= 36


@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_topological_rsa_matches_scipy(compare):
    X, Y = _pair(seed=4)
    a, b = (gt_numpy(pdist(Z, "correlation"), 0.2, 0.8) for Z in (X, Y))
    want = (spearmanr if compare == "spearman" else pearsonr)(a, b).statistic
    assert abs(float(M.topological_rsa(X, Y, compare=compare)) - want) < 1e-4
    a, b = (geodesic_loop(gt_numpy(pdist(Z, "euclidean"), 0.0, 0.5)) for Z in (X[:20], Y[:20]))
    got = float(M.topological_rsa(X[:20], Y[:20], low=0.0, high=0.5, rdm="euclidean", geodesic=True))
    assert abs(got - spearmanr(a, b).statistic) < 1e-4


def test_quantiles_are_traced():
    X, Y = _pair(n=15, seed=5)
    M.topological_rsa(X, Y, low=0.1, high=0.9)
    size = _topology._topological_rsa._cache_size()
    M.topological_rsa(X, Y, low=0.3, high=0.6)
    assert _topology._topological_rsa._cache_size() == size


def test_topological_rsa_validation_and_properties():
    X, Y = _pair(seed=6)
    assert abs(float(M.topological_rsa(X, X)) - 1.0) < 1e-5
    assert abs(float(M.topological_rsa(Y, X)) - float(M.topological_rsa(X, Y))) < 1e-6
    for low, high in [(0.5, 0.5), (0.8, 0.2), (-0.1, 0.5), (0.2, 1.5)]:
        with pytest.raises(ValueError, match="low < high"):
            M.topological_rsa(X, Y, low=low, high=high)
    with pytest.raises(ValueError, match="low < high"):
        M.get_metric("topological_rsa").validate(40, (20, 15), low=0.9, high=0.1)


def test_geodesic_with_low_quantile_is_refused_not_nan():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 5))
    with pytest.raises(ValueError, match="needs low=0"):
        M.topological_rsa(X, Y, geodesic=True)
