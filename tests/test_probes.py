"""Custom probes: loading by path, the two worked examples against NumPy oracles, and use through the engine."""

from pathlib import Path

import numpy as np
import pytest

import align

PROBES = Path(__file__).resolve().parent.parent / "probes"


@pytest.fixture(scope="module")
def probes():
    return align.load_probe(PROBES / "cosine_centroid.py"), align.load_probe(str(PROBES / "gram_correlation.py"))


def _data(seed=0, n=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7))
    return X.astype(np.float32), (X @ rng.normal(size=(7, 11)) + rng.normal(size=(n, 11))).astype(np.float32)


def test_load_probe_registers_once_and_is_idempotent(probes):
    assert {"cosine_centroid", "gram_correlation"} <= set(align.list_metrics())
    assert align.load_probe(PROBES / "cosine_centroid.py") is probes[0]  # no second registration
    with pytest.raises(FileNotFoundError, match="does not exist"):
        align.load_probe("probes/no_such_probe.py")
    assert align.load_probe("align.metrics._rsa").__name__ == "align.metrics._rsa"  # module names work too


def test_cosine_centroid_matches_numpy(probes):
    X, Y = _data()
    a = np.linalg.norm(X - X.mean(0), axis=1)
    b = np.linalg.norm(Y - Y.mean(0), axis=1)
    expected = np.corrcoef(a, b)[0, 1]
    assert float(probes[0].cosine_centroid(X, Y)) == pytest.approx(expected, abs=1e-5)
    grid = align.pairwise("cosine_centroid", [X, Y], [Y])
    np.testing.assert_allclose(grid.scores[:, 0], [expected, 1.0], atol=1e-5)


def test_gram_correlation_matches_numpy(probes):
    X, Y = _data(1)
    iu = np.triu_indices(len(X), 1)
    gx = ((X - X.mean(0)) @ (X - X.mean(0)).T)[iu]
    gy = ((Y - Y.mean(0)) @ (Y - Y.mean(0)).T)[iu]
    expected = np.corrcoef(gx, gy)[0, 1]
    grid = align.pairwise("gram_correlation", {"x": X}, {"y": Y, "x": X})
    np.testing.assert_allclose(grid.scores[0], [expected, 1.0], atol=1e-5)
