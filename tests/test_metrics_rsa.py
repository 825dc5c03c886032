# Oracles: scipy.stats.spearmanr / pearsonr / rankdata on scipy pdist RDMs (float64), and rsatoolbox's
# rdm.compare on one RDM each (copies passed: rsatoolbox edits inputs in place).
# Largest |float32 - float64 oracle| observed (n = 40, 5 seeds, all rdm kinds x compare modes): 1.8e-6 vs scipy,
# 1.8e-6 vs rsatoolbox; rankdata exact (0.0, also on ties, signed zeros, infinities, subnormals, all-equal);
# tied integer sqeuclidean RDMs vs spearmanr < 1e-6.
"""RSA and average-rank ranking against scipy and rsatoolbox."""

import jax
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from scipy.stats import rankdata as sp_rankdata
from scipy.stats import spearmanr

import align.metrics as M
from align.metrics import _rsa

KINDS = ["correlation", "cosine", "euclidean", "sqeuclidean"]


def _pair(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20)) + 1.0
    Y = X @ rng.normal(size=(20, 15)) + 2.0 * rng.normal(size=(n, 15))
    return X, Y


def oracle(X, Y, kind, compare):
    a, b = pdist(X, kind), pdist(Y, kind)
    if compare == "spearman":
        return spearmanr(a, b).statistic
    if compare == "pearson":
        return pearsonr(a, b).statistic
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


@pytest.mark.parametrize("compare", ["spearman", "pearson", "cosine"])
@pytest.mark.parametrize("kind", KINDS)
def test_rsa_matches_scipy(kind, compare):
    X, Y = _pair()
    assert abs(float(M.rsa(X, Y, rdm=kind, compare=compare)) - oracle(X, Y, kind, compare)) < 1e-4


@pytest.mark.parametrize("compare", ["spearman", "corr", "cosine"])
def test_rsa_matches_rsatoolbox(compare):
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.rdm import compare as rsa_compare

    X, Y = _pair(seed=1)
    a, b = pdist(X, "correlation"), pdist(Y, "correlation")
    want = rsa_compare(RDMs(a[None].copy()), RDMs(b[None].copy()), method=compare)[0, 0]
    ours = {"corr": "pearson"}.get(compare, compare)
    assert abs(float(M.rsa(X, Y, compare=ours)) - want) < 1e-4


def test_rankdata_ties_match_scipy():
    rankdata = jax.jit(M.rankdata)
    rng = np.random.default_rng(2)
    v = rng.integers(0, 7, size=200).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(rankdata(v)), sp_rankdata(v))
    w = rng.normal(size=50).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(rankdata(w)), sp_rankdata(w))
    np.testing.assert_array_equal(np.asarray(rankdata(np.ones(5, np.float32))), np.full(5, 3.0))


def _hard_vectors():
    """Vectors that stress an int32-key rank: ties, negatives, both zeros, infinities, subnormals, an outlier that
    puts almost every key in one bucket, all-equal, and very short ones."""
    rng = np.random.default_rng(7)
    tiny = np.finfo(np.float32).smallest_subnormal
    return {
        "ties": rng.integers(-3, 4, size=5000).astype(np.float32),
        "many ties, long": (rng.integers(0, 50, size=200_000) * 0.01).astype(np.float32),
        "normal": rng.normal(size=3000).astype(np.float32),
        "signed zeros and infinities": np.array([0.0, -0.0, 1.0, -np.inf, -1.0, 0.0, np.inf, -0.0, -1.0], np.float32),
        "subnormals": np.array([tiny, -tiny, 0.0, 3 * tiny, -2 * tiny, tiny, 1e-30], np.float32),
        "outlier": np.r_[rng.random(4000), 3e38, -3e38].astype(np.float32),
        "all equal": np.full(1000, 0.7, np.float32),
        "one": np.array([5.0], np.float32),
        "two equal": np.array([2.0, 2.0], np.float32),
        "two": np.array([2.0, -2.0], np.float32),
    }


def test_rankdata_exact_on_hard_vectors():
    rankdata = jax.jit(M.rankdata)
    for name, v in _hard_vectors().items():
        got = np.asarray(rankdata(v))
        assert got.dtype == np.float32, name
        np.testing.assert_array_equal(got, sp_rankdata(v), err_msg=name)


def test_tie_counts_against_numpy():
    for name, v in _hard_vectors().items():
        sorted_v, below, upto = (np.asarray(a) for a in jax.jit(_rsa.tie_counts)(v))
        np.testing.assert_array_equal(sorted_v, np.sort(v), err_msg=name)  # -0.0 == 0.0 for numpy too
        np.testing.assert_array_equal(below, np.searchsorted(np.sort(v), v, side="left"), err_msg=name)
        np.testing.assert_array_equal(upto, np.searchsorted(np.sort(v), v, side="right"), err_msg=name)


def test_spearman_with_tied_distances():
    # integer coordinates: squared euclidean distances are exact integers with many ties
    rng = np.random.default_rng(3)
    X = rng.integers(0, 3, size=(30, 3))
    Y = X + rng.integers(0, 2, size=(30, 3))
    a, b = pdist(X, "sqeuclidean"), pdist(Y, "sqeuclidean")
    assert len(np.unique(a)) < len(a) / 10  # heavily tied
    got = float(M.rsa(X, Y, rdm="sqeuclidean"))
    assert abs(got - spearmanr(a, b).statistic) < 1e-5


def test_rsa_properties_and_errors():
    X, Y = _pair(seed=4)
    base = float(M.rsa(X, Y))
    assert abs(float(M.rsa(X, X)) - 1.0) < 1e-5
    assert abs(float(M.rsa(Y, X)) - base) < 1e-6
    assert abs(float(M.rsa(5.0 * X, Y)) - base) < 1e-5
    perm = np.random.default_rng(0).permutation(40)
    assert abs(float(M.rsa(X[perm], Y[perm])) - base) < 1e-5
    with pytest.raises(ValueError, match="unknown compare"):
        M.rsa(X, Y, compare="kendall")
    with pytest.raises(ValueError, match="rows"):
        M.rsa(X, Y[:10])
    with pytest.raises(ValueError, match="at least 3"):
        M.rsa(X[:2], Y[:2])


def test_rsa_compiles_once_per_shape():
    X, Y = _pair(n=20, seed=5)
    M.rsa(X, Y)
    size = _rsa._rsa._cache_size()
    M.rsa(X + 1.0, Y * 2.0)
    assert _rsa._rsa._cache_size() == size
