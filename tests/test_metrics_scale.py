"""Stable numerics: metrics declared invariant to isotropic scaling give the same value for inputs scaled by 1e-12
to 1e8 (issue 10: linear CKA was 0.0000 at 1e8 and NaN at 1e-12, because float32 squares of the Gram entries
overflowed or flushed to zero). ``align.check_metric``'s ``scale_extremes`` check runs the same sweep on small
layers for every metric (tests/test_battery.py); these tests use layers large enough to overflow float32 before
the fix, through the public functions and the engine."""

import numpy as np
import pytest

import align
from align.metrics import cknna
from align.metrics import cycle_knn
from align.metrics import linear_cka
from align.metrics import linear_predictivity
from align.metrics import mutual_knn
from align.metrics import procrustes
from align.metrics import procrustes_angular
from align.metrics import rbf_cka
from align.metrics import rdm
from align.metrics import rsa
from align.metrics import svcca
from align.metrics import topological_rsa

SCALES = (1e-12, 1e-6, 1e4, 1e8)
SIDES = ("x", "y", "both")


def related(n, widths, seed=0):
    """Layers sharing an 8-dimensional latent plus noise, ``[n, d]`` float32 each."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8))
    return [(z @ rng.normal(size=(8, d)) + rng.normal(size=(n, d))).astype(np.float32) for d in widths]


def scaled(X, Y, factor, side):
    """(X, Y) with ``side`` multiplied by ``factor`` (in float64, then rounded once to float32)."""
    def s(A):
        return (A.astype(np.float64) * factor).astype(np.float32)

    return (s(X) if side in ("x", "both") else X), (s(Y) if side in ("y", "both") else Y)


def assert_scale_invariant(fn, X, Y, rtol=1e-4):
    base = float(fn(X, Y))
    assert np.isfinite(base)
    for factor in SCALES:
        for side in SIDES:
            value = float(fn(*scaled(X, Y, factor, side)))
            assert abs(value - base) <= rtol * (1 + abs(base)), f"{side} scaled by {factor:g}: {value} vs {base}"


def test_linear_cka_at_the_demo_shape_survives_every_scale():
    """The issue's case: n = 500, widths 384 and 576 (DINOv2-S x SmolLM2); 1e8 gave 0.0000, 1e-12 NaN."""
    X, Y = related(500, (384, 576))
    assert_scale_invariant(linear_cka, X, Y)
    assert_scale_invariant(lambda a, b: linear_cka(a, b, debiased=True), X, Y)


PUBLIC = {
    "rbf_cka": rbf_cka,
    "rbf_cka_debiased": lambda X, Y: rbf_cka(X, Y, debiased=True),
    "procrustes": procrustes,
    "procrustes_angular": procrustes_angular,
    "svcca": svcca,
    "mutual_knn": mutual_knn,
    "cycle_knn": cycle_knn,
    "cknna": cknna,
    "topological_rsa": topological_rsa,
    "topological_rsa_sqeuclidean_pearson": lambda X, Y: topological_rsa(X, Y, rdm="sqeuclidean", compare="pearson"),
    **{f"rsa_{kind}_{compare}": (lambda kind, compare: lambda X, Y: rsa(X, Y, rdm=kind, compare=compare))(kind, compare)
       for kind in ("correlation", "cosine", "euclidean", "sqeuclidean") for compare in ("spearman", "pearson", "cosine")},
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_scale_invariant_metrics_survive_every_scale(name):
    # n 120, widths 200 and 300: at 1e8 a Gram entry's square times n² (or an RDM's squared distances summed)
    # exceeds float32's 3.4e38; at 1e-12 the squares are below its smallest normal number.
    X, Y = related(120, (200, 300), seed=1)
    assert_scale_invariant(PUBLIC[name], X, Y)


def test_engine_grid_of_scaled_layers_equals_the_unscaled_grid():
    xs, ys = related(200, (96, 128, 160)), related(200, (64, 192), seed=2)
    base = align.pairwise("linear_cka", xs, ys, progress=False).score()
    for factor in (1e-12, 1e8):
        grid = align.pairwise("linear_cka", [x * np.float32(factor) for x in xs], ys, progress=False).score()
        np.testing.assert_allclose(grid, base, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["correlation", "cosine"])
def test_scale_free_rdms_survive_every_scale(kind):
    (X,) = related(30, (50,))
    base = np.asarray(rdm(X, kind))
    for factor in SCALES:
        np.testing.assert_allclose(rdm(*scaled(X, X, factor, "x")[:1], kind), base, rtol=1e-4, atol=1e-6)


def test_linear_predictivity_declares_no_scale_invariance_but_standardised_ridge_has_it():
    """Ridge penalties are in the units of X, so scaling X changes which alpha wins: the metric declares only
    translation invariance. With ``scale=True`` (training-fold z-scores) both sides may be scaled; with the default
    the target may (its errors scale by s² for every alpha alike, so the same alpha wins)."""
    assert "isotropic_scale" not in align.get_metric("linear_predictivity").invariances
    X, Y = related(60, (20, 10), seed=3)

    def standardised(a, b):
        return linear_predictivity(a, b, scale=True)

    assert_scale_invariant(standardised, X, Y)
    base = float(linear_predictivity(X, Y))
    for factor in SCALES:
        value = float(linear_predictivity(*scaled(X, Y, factor, "y")))
        assert abs(value - base) <= 1e-4, f"Y scaled by {factor:g}: {value} vs {base}"
    # X scaled down by 1e-6: every default alpha is huge against its singular values, the fit shrinks to the mean
    assert abs(float(linear_predictivity(*scaled(X, Y, 1e-6, "x"))) - base) > 0.1
