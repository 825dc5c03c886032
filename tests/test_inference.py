"""Permutation p-values, intervals and multiple-comparison control (align.stats) and their use on engine grids."""

import numpy as np
import pytest
from scipy.stats import false_discovery_control

import align
from align.stats import bh_adjust
from align.stats import maxstat_p
from align.stats import percentile_interval
from align.stats import permutation_p


def _layers(seed=0, n=30, widths_x=(5, 7, 6), widths_y=(4, 8)):
    """Two models sharing a weak latent: some layer pairs aligned, others barely."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    xs = [(z @ rng.normal(size=(3, d)) * s + rng.normal(size=(n, d))).astype(np.float32)
          for d, s in zip(widths_x, (1.0, 0.3, 0.0))]
    ys = [(z @ rng.normal(size=(3, d)) * s + rng.normal(size=(n, d))).astype(np.float32)
          for d, s in zip(widths_y, (1.0, 0.2))]
    return xs, ys


def _maxstat_loop(null, observed, higher):
    """Brute force: per permutation the most extreme null value over the finite cells, then count per cell."""
    cells = [c for c in np.ndindex(observed.shape) if np.isfinite(observed[c])]
    out = np.full(observed.shape, np.nan)
    for c in cells:
        count = 0
        for k in range(null.shape[0]):
            values = [null[k][d] for d in cells if np.isfinite(null[k][d])]
            extreme = max(values) if higher else min(values)
            count += extreme >= observed[c] if higher else extreme <= observed[c]
        out[c] = (1 + count) / (1 + null.shape[0])
    return out


def test_bh_adjust_hand_example_and_scipy():
    # sorted 0.01, 0.03, 0.04, 0.20 -> m p / rank = 0.04, 0.06, 0.0533, 0.20 -> running min from the top
    np.testing.assert_allclose(bh_adjust(np.array([0.01, 0.04, 0.03, 0.20])), [0.04, 0.16 / 3, 0.16 / 3, 0.20])
    np.testing.assert_allclose(bh_adjust(np.array([0.5, 0.9])), [0.9, 0.9])
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4, 5)) ** 3
    p[1, 2] = p[3, 0] = np.nan
    adjusted = bh_adjust(p)
    finite = np.isfinite(p)
    assert np.isnan(adjusted[~finite]).all()
    np.testing.assert_allclose(adjusted[finite], false_discovery_control(p[finite], method="bh"), rtol=1e-12)
    assert np.all(adjusted[finite] >= p[finite])
    assert np.isnan(bh_adjust(np.full(3, np.nan))).all()


def test_permutation_p_and_percentile_interval_hand_examples():
    null = np.array([[0.1, 0.5], [0.3, 0.2], [0.6, 0.1], [0.2, 0.4]])
    observed = np.array([0.25, 0.3])
    np.testing.assert_allclose(permutation_p(null, observed, True), [(1 + 2) / 5, (1 + 2) / 5])
    np.testing.assert_allclose(permutation_p(null, observed, False), [(1 + 2) / 5, (1 + 2) / 5])
    np.testing.assert_allclose(permutation_p(null, np.array([0.7, np.nan]), True), [1 / 5, np.nan])
    np.testing.assert_allclose(permutation_p(-null, observed, True, two_sided=True), [3 / 5, 3 / 5])
    dist = np.random.default_rng(1).normal(size=(200, 3))
    lo, hi = percentile_interval(dist, 0.9)
    np.testing.assert_allclose(lo, np.quantile(dist, 0.05, axis=0))
    np.testing.assert_allclose(hi, np.quantile(dist, 0.95, axis=0))
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        percentile_interval(dist, 95)


def test_maxstat_p_hand_example_and_cell_order():
    null = np.array([[0.1, 0.5, 0.0], [0.3, 0.2, 0.1], [0.6, 0.1, 0.2]])  # per-permutation max: 0.5, 0.3, 0.6
    observed = np.array([0.55, 0.3, np.nan])  # the NaN cell's null (0.0, 0.1, 0.2) is excluded
    np.testing.assert_allclose(maxstat_p(null, observed, True), [2 / 4, 4 / 4, np.nan])
    # lower is better: per-permutation min over the finite cells 0.1, 0.2, 0.1
    np.testing.assert_allclose(maxstat_p(null, observed, False), [4 / 4, 4 / 4, np.nan])
    rng = np.random.default_rng(2)
    null, observed = rng.normal(size=(50, 3, 4)), rng.normal(size=(3, 4)) + 1.5
    for higher in (True, False):
        p = maxstat_p(null, observed, higher)
        np.testing.assert_allclose(p, _maxstat_loop(null, observed, higher))
        assert np.all(p >= permutation_p(null, observed, higher))
        order = rng.permutation(12)  # the same cells in another order: the same p per cell
        shuffled = maxstat_p(null.reshape(50, 12)[:, order], observed.ravel()[order], higher)
        np.testing.assert_allclose(shuffled, p.ravel()[order])
        np.testing.assert_allclose(bh_adjust(permutation_p(null, observed, higher).ravel()[order]),
                                   bh_adjust(permutation_p(null, observed, higher)).ravel()[order])


@pytest.mark.parametrize("metric", ["linear_cka", "procrustes_angular", "linear_predictivity"])
def test_engine_null_reports_bh_and_maxstat_from_its_null_samples(metric):
    xs, ys = _layers()
    grid, null = align.permutation_null(metric, xs, ys, n_perm=30, seed=4, return_null=True, progress=False)
    higher = align.get_metric(metric).higher_is_more_aligned
    assert grid.n_perm == 30 and set(null) == set(grid.directions)
    for d in grid.directions:
        p, p_bh, p_max = grid.stat("p_value", d), grid.stat("p_bh", d), grid.stat("p_maxstat", d)
        assert null[d].shape == (30, 3, 2)
        np.testing.assert_allclose(p, permutation_p(null[d], grid.score(d), higher))
        np.testing.assert_allclose(p_bh, false_discovery_control(p.ravel(), method="bh").reshape(p.shape))
        np.testing.assert_allclose(p_max, _maxstat_loop(null[d], grid.score(d), higher))
        assert np.all(p_bh >= p - 1e-12) and np.all(p_max >= p)
    frame = grid.to_frame()
    assert list(frame.columns[12:15]) == ["p_value", "p_bh", "p_maxstat"]
    # the cells in another order (layers reversed on both sides): the same null per cell, the same p per cell
    back = align.permutation_null(metric, xs[::-1], ys[::-1], n_perm=30, seed=4, progress=False)
    for d in grid.directions:
        for name in ("p_value", "p_bh", "p_maxstat"):
            np.testing.assert_allclose(back.stat(name, d), grid.stat(name, d)[::-1, ::-1], atol=1e-12)


def test_constant_layers_take_no_part_in_the_family():
    xs, ys = _layers(1)
    constant = [np.tile(xs[0][:1], (xs[0].shape[0], 1))] + xs[1:]
    grid, null = align.permutation_null("linear_cka", constant, ys, n_perm=20, constant_layers="skip",
                                        return_null=True, progress=False)
    for name in ("p_value", "p_bh", "p_maxstat"):
        assert np.isnan(grid.stat(name)[0]).all() and np.isfinite(grid.stat(name)[1:]).all()
    assert np.isnan(null["symmetric"][:, 0]).all()
    rest = align.permutation_null("linear_cka", xs[1:], ys, n_perm=20, progress=False)
    np.testing.assert_allclose(grid.stat("p_maxstat")[1:], rest.stat("p_maxstat"))
    np.testing.assert_allclose(grid.stat("p_bh")[1:], rest.stat("p_bh"))


def test_pairwise_with_n_perm_equals_permutation_null():
    xs, ys = _layers(2)
    a = align.pairwise("linear_cka", xs, ys, n_perm=15, n_boot=10, ci=0.8, seed=3, progress=False)
    b = align.permutation_null("linear_cka", xs, ys, n_perm=15, seed=3, progress=False)
    c = align.bootstrap_ci("linear_cka", xs, ys, n_boot=10, ci=0.8, seed=3, progress=False)
    for name in ("p_value", "p_bh", "p_maxstat", "null_mean"):
        np.testing.assert_array_equal(a.stat(name), b.stat(name))
    for name in ("ci_low", "ci_high"):
        np.testing.assert_array_equal(a.stat(name), c.stat(name))
    assert a.ci_level == 0.8 and a.n_perm == 15 and a.n_boot == 10
