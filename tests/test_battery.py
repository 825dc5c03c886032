"""One battery for EVERY registered metric, built-in or probe (STYLE 6).

Identity, symmetry where declared, bounds, declared invariances (rotation, isotropic scale, translation, stimulus
order) and the declared non-invariance, jit = no-jit, no recompilation through the engine, degenerate input ->
ValueError. All transformed pairs of one metric are scored in ONE jitted, vmapped call (equal shapes), so the whole
battery compiles a handful of programs per metric.
"""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import align
import align.metrics  # noqa: F401  (registers the built-ins)
from align.engine import _pairwise

for _probe in sorted((Path(__file__).resolve().parent.parent / "probes").glob("*.py")):
    align.load_probe(_probe)

METRICS = align.list_metrics()
N, P, Q = 40, 10, 10  # the vmapped variants share one shape; the engine checks use other widths
TOL = 1e-4


def _orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _base(seed=0, p=P, q=Q, n=N):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    X = z @ rng.normal(size=(4, p)) + 0.5 * rng.normal(size=(n, p))
    Y = z @ rng.normal(size=(4, q)) + 0.5 * rng.normal(size=(n, q))
    return X.astype(np.float32), Y.astype(np.float32)


def _variants(metric):
    """Named (X, Y) pairs of equal shapes: the base pair, identity, swap, transformations of either side."""
    rng = np.random.default_rng(1)
    X, Y = _base()
    perm = rng.permutation(N)
    aniso_x = np.logspace(-1.5, 1.5, P)[rng.permutation(P)]
    transforms = {
        "rotation": lambda A: A @ _orthogonal(rng, A.shape[1]),
        "isotropic_scale": lambda A: 3.7 * A,
        "translation": lambda A: A + rng.normal(size=(1, A.shape[1])) * 5.0,
    }
    out = {"base": (X, Y), "identity": (X, X), "swap": (Y, X), "stimulus_order": (X[perm], Y[perm])}
    for name, fn in transforms.items():
        out[f"{name}:x"] = (fn(X), Y)
        out[f"{name}:y"] = (X, fn(Y))
    out["not:anisotropic_scale"] = (X * aniso_x, Y)
    out["not:permute_rows_of_one"] = (X, Y[perm])
    out["not:elementwise_nonlinear"] = (np.exp(X), Y)
    return {k: (np.asarray(a, np.float32), np.asarray(b, np.float32)) for k, (a, b) in out.items()}


def _pair_fn(metric):
    prep_kw, comp_kw = metric.split_kwargs({})
    prepare = metric.prepare or (lambda A: A)
    prep_kw = {k: v for k, v in prep_kw.items()} if metric.prepare else {}

    def score(X, Y):
        out = metric.compare(prepare(X, **prep_kw), prepare(Y, **prep_kw), **comp_kw)
        return out["score"] if isinstance(out, dict) else out

    return score


@functools.lru_cache(maxsize=None)
def _scores(name):
    """Scores of every variant of one metric, from one jitted vmapped call."""
    metric = align.get_metric(name)
    variants = _variants(metric)
    xs = jnp.stack([v[0] for v in variants.values()])
    ys = jnp.stack([v[1] for v in variants.values()])
    with jax.default_matmul_precision("highest"):
        values = jax.jit(jax.vmap(_pair_fn(metric)))(xs, ys)
    return dict(zip(variants, np.asarray(values, dtype=np.float64)))


def _top(metric):
    return metric.bounds[1] if metric.higher_is_more_aligned else metric.bounds[0]


@pytest.mark.parametrize("name", METRICS)
def test_identity(name):
    metric = align.get_metric(name)
    s = _scores(name)
    if metric.symmetric and metric.bounds is not None:
        assert s["identity"] == pytest.approx(_top(metric), abs=1e-3), "X with itself must reach the top of the bounds"
    else:
        assert s["identity"] > 0.9 if metric.higher_is_more_aligned else s["identity"] < 0.1
        better = s["identity"] >= s["base"] if metric.higher_is_more_aligned else s["identity"] <= s["base"]
        assert better, "X with itself must score at least as aligned as a related pair"


@pytest.mark.parametrize("name", METRICS)
def test_symmetry_where_declared(name):
    metric = align.get_metric(name)
    if not metric.symmetric:
        pytest.skip(f"{name} is asymmetric")
    s = _scores(name)
    assert s["swap"] == pytest.approx(s["base"], abs=TOL)


@pytest.mark.parametrize("name", METRICS)
def test_bounds(name):
    metric = align.get_metric(name)
    if metric.bounds is None:
        pytest.skip(f"{name} declares no bounds")
    lo, hi = metric.bounds
    values = np.array(list(_scores(name).values()))
    assert np.all(np.isfinite(values))
    assert np.all(values >= lo - 1e-5) and np.all(values <= hi + 1e-5)


@pytest.mark.parametrize("name", METRICS)
def test_declared_invariances(name):
    metric = align.get_metric(name)
    s = _scores(name)
    checked = 0
    for inv in sorted(metric.invariances - {"stimulus_order"}):
        for side in ("x", "y"):
            assert s[f"{inv}:{side}"] == pytest.approx(s["base"], abs=TOL), f"{inv} of {side.upper()}"
            checked += 1
    if not checked:
        pytest.skip(f"{name} declares no feature-space invariance")


@pytest.mark.parametrize("name", METRICS)
def test_declared_non_invariance_changes_the_score(name):
    metric = align.get_metric(name)
    supported = ("anisotropic_scale", "permute_rows_of_one", "elementwise_nonlinear")
    if metric.not_invariant_to is None:
        pytest.skip(f"{name} declares no non-invariance")
    assert metric.not_invariant_to in supported, f"battery supports not_invariant_to in {supported}"
    s = _scores(name)
    assert abs(s[f"not:{metric.not_invariant_to}"] - s["base"]) > 1e-3


@pytest.mark.parametrize("name", METRICS)
def test_stimulus_order_invariance(name):
    metric = align.get_metric(name)
    if "stimulus_order" not in metric.invariances:
        pytest.skip(f"{name} does not declare stimulus-order invariance")
    s = _scores(name)
    assert s["stimulus_order"] == pytest.approx(s["base"], abs=TOL)


@functools.lru_cache(maxsize=None)
def _engine_runs(name):
    """Two pairwise calls with fresh data of the same shapes (widths differ across layers), and cache sizes."""
    X1, Y = _base(2, p=12, q=7)
    X2, _ = _base(3, p=5, q=7)
    first = align.pairwise(name, [X1, X2], [Y])
    sizes = (_pairwise._prepare_into._cache_size(), _pairwise._grid_call._cache_size())
    X1b, Yb = _base(4, p=12, q=7)
    X2b, _ = _base(5, p=5, q=7)
    second = align.pairwise(name, [X1b, X2b], [Yb])
    after = (_pairwise._prepare_into._cache_size(), _pairwise._grid_call._cache_size())
    return (X1, X2, Y), first, sizes, after, second


@pytest.mark.parametrize("name", METRICS)
def test_jit_through_engine_equals_eager(name):
    metric = align.get_metric(name)
    (X1, X2, Y), grid, *_ = _engine_runs(name)
    fn = _pair_fn(metric)
    with jax.default_matmul_precision("highest"):
        eager = [float(fn(jnp.asarray(X), jnp.asarray(Y))) for X in (X1, X2)]
    engine = grid.scores if metric.symmetric else grid.scores["x_to_y"]
    np.testing.assert_allclose(engine[:, 0], eager, atol=TOL)


@pytest.mark.parametrize("name", METRICS)
def test_no_recompilation_on_second_call(name):
    _, _, sizes, after, second = _engine_runs(name)
    assert after == sizes
    assert second.scores is not None


@pytest.mark.parametrize("name", METRICS)
def test_degenerate_input_raises_value_error(name):
    metric = align.get_metric(name)
    X, Y = _base(6, p=6, q=5)
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError):
        align.pairwise(name, [bad], [Y])
    with pytest.raises(ValueError):
        align.pairwise(name, [X], [Y[:-1]])
    small = metric.min_n - 1
    with pytest.raises(ValueError):
        align.pairwise(name, [X[:small]], [Y[:small]])
