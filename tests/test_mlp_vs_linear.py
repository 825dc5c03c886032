"""paper_figures/mlp_vs_linear.py: the comparison of mlp_predictivity with linear predictivity finds a planted peak
with both metrics, on the strided cells, and a planted perturbation effect at the peak."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "paper_figures"))
mlp_vs_linear = importlib.import_module("mlp_vs_linear")

#: A small, fast configuration of the probe (one width, one decay, few epochs): the planted signal is linear, so the
#: ridge part of the probe finds it whatever the network adds.
TINY_MLP = "mlp_predictivity(hidden_widths=(8,), weight_decays=(0.1,), max_epochs=10, patience=3)"
METRICS = {"linear": mlp_vs_linear.LINEAR, "mlp": TINY_MLP}
N, PEAK = 60, (2, 1)


def _planted(seed=0, signal=True):
    """4 x 3 layers of n = 60 stimuli; only x layer 2 and y layer 1 share a 3-d latent (plus noise)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, 3))
    xs = [rng.normal(size=(N, 12)).astype(np.float32) for _ in range(4)]
    ys = [rng.normal(size=(N, 10)).astype(np.float32) for _ in range(3)]
    if signal:
        xs[PEAK[0]] = (z @ rng.normal(size=(3, 12)) + 0.3 * rng.normal(size=(N, 12))).astype(np.float32)
        ys[PEAK[1]] = (z @ rng.normal(size=(3, 10)) + 0.3 * rng.normal(size=(N, 10))).astype(np.float32)
    return xs, ys


def test_strided_layers_keep_the_last():
    assert mlp_vs_linear.strided_layers(13, 3) == [0, 3, 6, 9, 12]
    assert mlp_vs_linear.strided_layers(31, 3)[-1] == 30
    assert mlp_vs_linear.strided_layers(4, 2) == [0, 2, 3]
    assert mlp_vs_linear.strided_layers(5, 1) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="stride"):
        mlp_vs_linear.strided_layers(5, 0)


def test_both_metrics_find_the_planted_peak():
    xs, ys = _planted()
    grid, peaks, agreement, seconds = mlp_vs_linear.compare_grids(xs, ys, METRICS, stride_x=2, stride_y=1,
                                                                   log=lambda s: None)
    assert set(seconds) == {"linear", "mlp"} and all(s > 0 for s in seconds.values())
    # linear on every cell (and again on the strided ones); the probe on x layers 0, 2, 3 only
    lin_all = grid[(grid["metric"] == "linear") & (grid["cells"] == "all")]
    mlp = grid[grid["metric"] == "mlp"]
    assert len(lin_all) == 2 * 4 * 3 and len(mlp) == 2 * 3 * 3
    assert sorted(mlp["layer_x"].unique()) == [0, 2, 3]
    assert set(peaks["metric"]) == {"linear", "mlp"}
    for p in peaks.itertuples():
        assert (p.layer_x, p.layer_y) == PEAK, p
        assert p.rel_depth_x == pytest.approx(PEAK[0] / 3) and p.rel_depth_y == pytest.approx(PEAK[1] / 2)
        assert p.score > 0.5
    # Spearman over the shared cells, per direction, as scipy computes it on the two grids
    keys = ["direction", "layer_x", "layer_y"]
    both = (grid[(grid["metric"] == "linear") & (grid["cells"] == "strided")][keys + ["score"]]
            .merge(mlp[keys + ["score"]], on=keys, suffixes=("_lin", "_mlp")))
    for a in agreement.itertuples():
        g = both[both["direction"] == a.direction]
        assert a.n_cells == len(g) == 9
        assert a.spearman == pytest.approx(spearmanr(g["score_lin"], g["score_mlp"]).statistic)
    assert set(agreement["direction"]) == {"x_to_y", "y_to_x"}


def test_peak_effect_of_destroying_the_shared_signal():
    xs, ys = _planted()
    _, noise = _planted(seed=1, signal=False)
    perturbed = (xs, [ys[0], noise[1], ys[2]])  # the planted language layer replaced by noise
    row = mlp_vs_linear.peak_effect(mlp_vs_linear.LINEAR, (xs, ys), perturbed, *PEAK, "x_to_y", n_perm=200,
                                    n_boot=200)
    assert row["effect"] == pytest.approx(row["score_condition"] - row["score_original"], abs=1e-5)
    assert row["effect"] < -0.4 and row["ci_high"] < 0 and row["p_value"] < 0.05
    assert row["ci_method"] == "held-out bootstrap" and row["n"] == N
    same = mlp_vs_linear.peak_effect(TINY_MLP, (xs, ys), (xs, ys), *PEAK, "x_to_y", n_perm=3, n_boot=0)
    assert same["effect"] == pytest.approx(0.0, abs=1e-6) and same["ci_method"] == "swap-null normal"
