"""Public surface of align.metrics, the registered prepare/compare route, and boundary validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import align.metrics as M
from align.metrics import INVARIANCES  # noqa: F401
from align.metrics import Metric  # noqa: F401
from align.metrics import MetricInputError
from align.metrics import check_array
from align.metrics import check_pair
from align.metrics import cknna
from align.metrics import cycle_knn
from align.metrics import geotopological_transform  # noqa: F401
from align.metrics import get_metric
from align.metrics import linear_cka
from align.metrics import list_metrics
from align.metrics import mutual_knn
from align.metrics import parse_metric_spec
from align.metrics import procrustes
from align.metrics import procrustes_angular
from align.metrics import rankdata  # noqa: F401
from align.metrics import rbf_cka
from align.metrics import rdm  # noqa: F401
from align.metrics import register_metric  # noqa: F401
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

NON_DEFAULT = {
    "linear_cka": {"debiased": True},
    "rbf_cka": {"sigma_frac": 0.5, "debiased": True},
    "rsa": {"rdm": "euclidean", "compare": "pearson"},
    "topological_rsa": {"low": 0.1, "high": 0.4, "rdm": "cosine"},  # geodesic: test_metrics_topology
    "mutual_knn": {"k": 3},
    "cknna": {"k": 4},
    "cycle_knn": {"k": 3},
    "procrustes": {},
    "procrustes_angular": {},
    "svcca": {"keep": 0.8},
}


def _pair(n=24, p=9, q=14, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    Y = (X @ rng.normal(size=(p, q)) + rng.normal(size=(n, q))).astype(np.float32)
    return X, Y


def _via_registry(metric, X, Y, **kwargs):
    """What the engine does: split kwargs, jit prepare with its static names, jit compare."""
    pk, ck = metric.split_kwargs(kwargs)
    prep = jax.jit(metric.prepare, static_argnames=tuple(metric.static & set(pk)))
    comp = jax.jit(metric.compare, static_argnames=tuple(metric.static & set(ck)))
    return comp(prep(X, **pk), prep(Y, **pk), **ck)


def test_builtins_are_registered():
    assert set(PUBLIC) <= set(list_metrics())


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_registered_route_equals_public_function(name):
    metric = get_metric(name)
    X, Y = _pair()
    for kwargs in ({}, NON_DEFAULT[name]):
        want = float(PUBLIC[name](X, Y, **kwargs))
        assert abs(float(_via_registry(metric, X, Y, **kwargs)) - want) < 1e-5
    assert metric.invariances <= INVARIANCES
    assert set(metric.static) <= set(metric.defaults)
    assert set(metric.prepare_kwargs) <= set(metric.defaults)
    metric.validate(24, (9, 14), **metric.defaults)


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
