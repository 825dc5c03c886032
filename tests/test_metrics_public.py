"""Public surface of align.metrics, the registered prepare/compare route, and boundary validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from scipy.stats import spearmanr

import align
from align.metrics import INVARIANCES
from align.metrics import MetricInputError
from align.metrics import check_array
from align.metrics import check_pair
from align.metrics import cknna
from align.metrics import cycle_knn
from align.metrics import get_metric
from align.metrics import linear_cka
from align.metrics import list_metrics
from align.metrics import mutual_knn
from align.metrics import parse_metric_spec
from align.metrics import procrustes
from align.metrics import procrustes_angular
from align.metrics import rbf_cka
from align.metrics import rsa
from align.metrics import svcca
from align.metrics import topological_rsa

PUBLIC = {
    "linear_cka": linear_cka,
    "rbf_cka": rbf_cka,
    "rsa": rsa,
    "topological_rsa": topological_rsa,
    "mutual_knn": mutual_knn,
    "cknna": cknna,
    "cycle_knn": cycle_knn,
    "procrustes": procrustes,
    "procrustes_angular": procrustes_angular,
    "svcca": svcca,
}

def _pair(n=24, p=9, q=14, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    Y = (X @ rng.normal(size=(p, q)) + rng.normal(size=(n, q))).astype(np.float32)
    return X, Y


# ---- independent float64 oracles (NumPy / SciPy), written from the definitions in the metrics' docstrings (align/metrics)


def _centered(A):
    return A - A.mean(0)


def _hsic_unbiased(K, L):
    """Song et al. 2012, eq. 5 (vectorised)."""
    n = len(K)
    K, L = K * (1 - np.eye(n)), L * (1 - np.eye(n))
    value = np.sum(K * L.T) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 * K.sum(0) @ L.sum(1) / (n - 2)
    return value / (n * (n - 3))


def _cka_debiased(X, Y):
    K, L = _centered(X) @ _centered(X).T, _centered(Y) @ _centered(Y).T
    return _hsic_unbiased(K, L) / np.sqrt(_hsic_unbiased(K, K) * _hsic_unbiased(L, L))


def _rbf_cka(X, Y, sigma_frac):
    def kernel(A):
        D = ((A[:, None] - A[None]) ** 2).sum(-1)
        return np.exp(-D / (2 * sigma_frac**2 * np.median(D[np.triu_indices(len(A), 1)])))

    H = np.eye(len(X)) - 1.0 / len(X)
    K, L = H @ kernel(X) @ H, H @ kernel(Y) @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def _topological_rsa(X, Y, low, high, kind):
    def transform(d):
        lo, hi = np.quantile(d, low), np.quantile(d, high)
        return np.clip((d - lo) / (hi - lo), 0.0, 1.0)

    return spearmanr(transform(pdist(X, kind)), transform(pdist(Y, kind))).statistic


def _neighbours(A, k):
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    sim = An @ An.T
    np.fill_diagonal(sim, -np.inf)
    return [list(np.argsort(-row, kind="stable")[:k]) for row in sim]


def _mutual_knn(X, Y, k):
    a, b = _neighbours(X, k), _neighbours(Y, k)
    return np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(X))])


def _cycle_knn(X, Y, k):
    """Stimulus i is recovered when one of its Y-neighbours has i among its X-neighbours."""
    a, b = _neighbours(X, k), _neighbours(Y, k)
    return np.mean([any(i in a[j] for j in b[i]) for i in range(len(X))])


def _cknna(X, Y, k):
    n = len(X)

    def parts(A):
        An = A / np.linalg.norm(A, axis=1, keepdims=True)
        mask = np.zeros((n, n))
        for i, nb in enumerate(_neighbours(A, k)):
            mask[i, nb] = 1.0
        return An @ An.T, mask

    (K, mk), (L, ml) = parts(X), parts(Y)
    m = mk * ml
    return _hsic_unbiased(m * K, m * L) / np.sqrt(_hsic_unbiased(mk * K, mk * K) * _hsic_unbiased(ml * L, ml * L))


def _procrustes(X, Y):
    Xc, Yc = _centered(X), _centered(Y)
    return np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum() / (np.linalg.norm(Xc) * np.linalg.norm(Yc))


def _svcca(X, Y, keep):
    def reduce(A):
        U, s, _ = np.linalg.svd(_centered(A), full_matrices=False)
        r = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), keep - 1e-12) + 1)
        return np.linalg.qr(U[:, :r] * s[:r])[0]

    Qa, Qb = reduce(X), reduce(Y)
    return np.linalg.svd(Qa.T @ Qb, compute_uv=False)[: min(Qa.shape[1], Qb.shape[1])].mean()


#: Every built-in but linear predictivity (sklearn oracle in test_ridge/test_engine) with NON-default arguments, so
#: routing each argument to prepare or compare, static or traced, is what is tested.
ORACLES = {
    "linear_cka": ({"debiased": True}, _cka_debiased),
    "rbf_cka": ({"sigma_frac": 0.5}, lambda X, Y: _rbf_cka(X, Y, 0.5)),
    "rsa": ({"rdm": "euclidean", "compare": "pearson"}, lambda X, Y: pearsonr(pdist(X), pdist(Y)).statistic),
    "topological_rsa": ({"low": 0.1, "high": 0.4, "rdm": "cosine"},
                        lambda X, Y: _topological_rsa(X, Y, 0.1, 0.4, "cosine")),
    "mutual_knn": ({"k": 3}, lambda X, Y: _mutual_knn(X, Y, 3)),
    "cycle_knn": ({"k": 3}, lambda X, Y: _cycle_knn(X, Y, 3)),
    "cknna": ({"k": 4}, lambda X, Y: _cknna(X, Y, 4)),
    "procrustes": ({}, _procrustes),
    "procrustes_angular": ({}, lambda X, Y: np.arccos(_procrustes(X, Y))),
    "svcca": ({"keep": 0.8}, lambda X, Y: _svcca(X, Y, 0.8)),
}


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_registered_metric_through_the_engine_matches_oracle(name):
    kwargs, oracle = ORACLES[name]
    X, Y = _pair()
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    grid = align.pairwise(name, [X], [Y], metric_kwargs=kwargs)
    if grid.symmetric:
        assert grid.score()[0, 0] == pytest.approx(oracle(X64, Y64), abs=1e-5)
    else:
        assert grid.score("x_to_y")[0, 0] == pytest.approx(oracle(X64, Y64), abs=1e-5)
        assert grid.score("y_to_x")[0, 0] == pytest.approx(oracle(Y64, X64), abs=1e-5)
    assert float(PUBLIC[name](X, Y, **kwargs)) == pytest.approx(oracle(X64, Y64), abs=1e-5)


@pytest.mark.parametrize("name", list_metrics())
def test_declarations_are_consistent(name):
    metric = get_metric(name)
    assert metric.invariances <= INVARIANCES
    assert set(metric.static) <= set(metric.defaults)
    assert set(metric.prepare_kwargs) <= set(metric.defaults)
    if metric.validate is not None:
        metric.validate(24, (9, 14), **metric.defaults)  # the defaults pass their own validation


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_zero_padding_when_declared_invariant(name):
    metric = get_metric(name)
    X, Y = _pair(seed=1)
    Xp = np.pad(X, ((0, 0), (0, 5)))
    same = abs(float(PUBLIC[name](Xp, Y)) - float(PUBLIC[name](X, Y))) < 1e-5
    assert same == metric.pad_invariant


def test_compare_vmaps_over_stacked_preps():
    X, Y = _pair(seed=2)
    for name in ("linear_cka", "cknna", "svcca", "mutual_knn"):
        metric = get_metric(name)
        pk, _ = metric.split_kwargs({})
        prepare = jax.jit(metric.prepare, static_argnames=tuple(metric.static & set(pk)))
        px = jax.tree.map(lambda a, b: jnp.stack([a, b]), prepare(X, **pk), prepare(X[::-1].copy(), **pk))
        py = prepare(Y, **pk)
        out = jax.vmap(metric.compare, in_axes=(0, None))(px, py)
        assert abs(float(out[0]) - float(PUBLIC[name](X, Y))) < 1e-5


def test_spec_strings_parse():
    metric, kwargs = parse_metric_spec("topological_rsa(low=0.1, high=0.9, geodesic=True)")
    assert metric.name == "topological_rsa" and kwargs == {"low": 0.1, "high": 0.9, "geodesic": True}
    with pytest.raises(ValueError, match="unknown argument"):
        parse_metric_spec("linear_cka(sigma_frac=0.5)")


def test_check_array_converts_to_float32():
    assert check_array(np.arange(6).reshape(3, 2)).dtype == np.float32
    assert check_array(np.ones((3, 2), np.float64) * 0.1).dtype == np.float32
    assert check_array([[1, 2], [3, 4]]).dtype == np.float32
    assert float(linear_cka(np.arange(20).reshape(10, 2) ** 2, np.arange(30.0).reshape(10, 3) ** 0.5)) > 0.5


def test_check_array_errors_name_the_problem():
    X = np.random.default_rng(0).normal(size=(8, 3))
    X[2, 1] = np.nan
    X[5, 0] = np.inf
    with pytest.raises(MetricInputError, match=r"2 non-finite value\(s\).*\[2, 5\]"):
        check_array(X)
    with pytest.raises(MetricInputError, match="non-finite"):
        check_array(np.full((3, 2), 1e300))  # overflows float32
    with pytest.raises(MetricInputError, match="2-D"):
        check_array(np.ones(5))
    with pytest.raises(MetricInputError, match="zero width"):
        check_array(np.ones((5, 0)))
    with pytest.raises(MetricInputError, match="not numeric"):
        check_array(np.array([["a", "b"]]))
    with pytest.raises(MetricInputError, match="zero variance"):
        check_array(np.ones((4, 3)), require_variance=True)
    check_array(np.c_[np.ones(4), np.arange(4)], require_variance=True)  # a constant column is fine


def test_check_pair_errors():
    X = np.random.default_rng(0).normal(size=(8, 3))
    with pytest.raises(MetricInputError, match="X has 8 rows but Y has 7"):
        check_pair(X, X[:7])
    with pytest.raises(MetricInputError, match="at least 10"):
        check_pair(X, X, min_n=10)
    with pytest.raises(ValueError, match="non-finite"):
        linear_cka(X, np.where(X > 1, np.nan, X))


def test_check_array_under_jit_checks_shapes_only():
    @jax.jit
    def f(x):
        return check_array(x).sum()

    assert float(f(jnp.ones((3, 2)))) == 6.0
    with pytest.raises(MetricInputError, match="2-D"):
        f(jnp.ones(3))
