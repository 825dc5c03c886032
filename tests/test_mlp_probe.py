"""mlp_predictivity (ridge plus a one-hidden-layer MLP, cross-validated) on planted data: it recovers a nonlinear map
that ridge misses, matches ridge on a linear one, is deterministic, ~0 on shuffled pairs, and runs through the
engine in both directions. The metric battery runs it in tests/test_battery.py."""

import warnings

import numpy as np
import pytest

import align
from align.metrics import linear_predictivity
from align.metrics import mlp_predictivity

N, P, Q = 120, 6, 4


def _planted(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, P))
    U = X @ (rng.normal(size=(P, Q)) / np.sqrt(P))
    Y = {"square": U ** 2, "linear": U}[kind] + 0.2 * rng.normal(size=(N, Q))
    return X.astype(np.float32), Y.astype(np.float32)


def _ridge(X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the alpha-grid warning fires on a target ridge cannot predict
        return float(linear_predictivity(X, Y))


def test_recovers_a_nonlinear_map_that_ridge_misses():
    X, Y = _planted("square")
    assert _ridge(X, Y) < 0.3
    assert float(mlp_predictivity(X, Y)) > 0.6


def test_matches_ridge_on_a_linear_map():
    X, Y = _planted("linear")
    ridge, mlp = _ridge(X, Y), float(mlp_predictivity(X, Y))
    assert ridge > 0.8 and mlp > 0.8
    assert abs(mlp - ridge) < 0.05


def test_deterministic_given_the_seed_and_seed_matters():
    X, Y = _planted("square")
    a, b = float(mlp_predictivity(X, Y, seed=3)), float(mlp_predictivity(X, Y, seed=3))
    assert a == b
    assert float(mlp_predictivity(X, Y, seed=4)) != a


def test_shuffled_pairing_scores_near_zero():
    X, Y = _planted("square")
    Y = Y[np.random.default_rng(1).permutation(N)]
    assert abs(float(mlp_predictivity(X, Y))) < 0.15


def test_registered_and_asymmetric_through_the_engine():
    assert "mlp_predictivity" in align.list_metrics()
    X, Y = _planted("square")
    grid = align.pairwise("mlp_predictivity", [X], [Y], progress=False)
    assert set(grid.scores) == {"x_to_y", "y_to_x"}
    # another compiled program: float32 rounding, amplified by training, moves the score by ~1e-4
    np.testing.assert_allclose(grid.scores["x_to_y"][0, 0], float(mlp_predictivity(X, Y)), atol=1e-3)
    np.testing.assert_allclose(grid.scores["y_to_x"][0, 0], float(mlp_predictivity(Y, X)), atol=1e-3)
    assert grid.scores["x_to_y"][0, 0] > 0.6  # square of a projection: predictable from X, not the reverse
    assert grid.scores["y_to_x"][0, 0] < grid.scores["x_to_y"][0, 0]


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_widths": ()}, "hidden_widths"),
    ({"weight_decays": (-1.0,)}, "weight_decays"),
    ({"max_epochs": 0}, "max_epochs"),
    ({"alphas": (0.0, 1.0)}, "alphas"),
    ({"folds": 200}, "folds"),
])
def test_bad_hyper_parameters_raise(kwargs, match):
    X, Y = _planted("linear")
    with pytest.raises(ValueError, match=match):
        mlp_predictivity(X, Y, **kwargs)
