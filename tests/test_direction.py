"""Lower-is-better metrics: every place a peak is taken picks the MINIMUM of a distance (issue 9, item 1).

The data plant one matched layer pair, (vision layer 1, language layer 2): there a distance is ~0 and a similarity
~1. Each test checks that the planted pair is picked and that it is not the maximum of the distance grid, so a peak
finder that takes a maximum regardless of direction fails.
"""

import importlib.util
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import align
from align.config import parse_config
from align.results import LayerPair
from align.results import best_layer_pairs
from align.results import higher_is_more_aligned
from align.results import metric_direction
from align.results import peak_layer_pairs
from align.results import peak_rows
from align.results import read_results
from align.results import write_results
from align.store import StoreWriter
from align.store import open_store

ROOT = Path(__file__).resolve().parents[1]
PLANTED = (1, 2)
N = 24
IDS = [f"s{i:02d}" for i in range(N)]
PROBE = "direction_test_gram_distance"


@align.register_metric(name=PROBE, symmetric=True, higher_is_more_aligned=False, bounds=(0.0, 2.0),
                       overwrite=True)
def gram_distance(X, Y):
    """Frobenius distance between the unit-norm centered Gram matrices (0 = same geometry; lower = more aligned)."""
    def gram(A):
        A = A - A.mean(0)
        K = A @ A.T
        return K / jnp.linalg.norm(K)
    return jnp.linalg.norm(gram(X) - gram(Y))


def _layers(seed=0):
    """(3 vision layers, 4 language layers) of [N, d] float32; language layer 2 is vision layer 1 rotated."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(N, 6)) for _ in range(3)]
    ys = [rng.normal(size=(N, 5)) for _ in range(4)]
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    ys[2] = xs[1] @ q + 0.01 * rng.normal(size=(N, 6))
    return [x.astype(np.float32) for x in xs], [y.astype(np.float32) for y in ys]


def _grid_frame(metric="procrustes_angular"):
    """Results rows of the planted grid (labelled like a layerwise table)."""
    xs, ys = _layers()
    frame = align.pairwise(metric, xs, ys).to_frame()
    frame["experiment"], frame["dataset"], frame["condition"] = "layerwise", "t", "original|original"
    frame["model_x"], frame["pooling_x"], frame["model_y"], frame["pooling_y"] = "v", "cls", "l", "mean"
    return frame


def _argmax(frame):
    r = frame.loc[frame.score.idxmax()]
    return int(r.layer_x), int(r.layer_y)


@pytest.mark.parametrize("metric", ["procrustes_angular", PROBE])
def test_best_layer_pair_of_a_distance_is_its_minimum(metric):
    frame = _grid_frame(metric)
    best = best_layer_pairs(frame)
    assert len(best) == 1 and (int(best.layer_x[0]), int(best.layer_y[0])) == PLANTED
    assert best.score[0] == pytest.approx(frame.score.min()) and _argmax(frame) != PLANTED
    assert not frame.higher_is_more_aligned.any()
    # a similarity in the same table keeps its maximum
    both = best_layer_pairs(pd.concat([frame, _grid_frame("procrustes")], ignore_index=True))
    assert set(both.metric) == {metric, "procrustes"}
    assert {(int(r.layer_x), int(r.layer_y)) for r in both.itertuples()} == {PLANTED}


def test_the_results_table_records_the_direction(tmp_path):
    frame = _grid_frame()
    write_results(frame, tmp_path / "new.parquet")
    assert not read_results(tmp_path / "new.parquet").higher_is_more_aligned.any()
    # a table written before the column existed: inferred from the registered metric (spec strings too)
    old = frame.drop(columns="higher_is_more_aligned")
    old.to_parquet(tmp_path / "old.parquet", index=False)
    table = read_results(tmp_path / "old.parquet")
    assert table.higher_is_more_aligned.dtype == bool and not table.higher_is_more_aligned.any()
    assert peak_layer_pairs(table, ["metric"]) == {("procrustes_angular",): LayerPair(*PLANTED)}
    assert metric_direction("rbf_cka(sigma_frac=0.5)") and not metric_direction(PROBE)
    assert higher_is_more_aligned(_grid_frame("procrustes")) and not higher_is_more_aligned(old)
    # an unregistered probe's old table: read, but no peak is taken from it and no row is written without it
    old.assign(metric="unregistered_probe").to_parquet(tmp_path / "old.parquet", index=False)
    table = read_results(tmp_path / "old.parquet")
    assert table.higher_is_more_aligned.isna().all()
    with pytest.raises(ValueError, match="'unregistered_probe' is not a registered metric"):
        best_layer_pairs(table)
    with pytest.raises(ValueError, match="not a registered metric"):
        write_results(old.assign(metric="unregistered_probe"), tmp_path / "x.parquet")


def test_peak_rows_skips_undefined_scores_and_refuses_mixed_directions():
    frame = _grid_frame()
    frame.loc[frame.layer_x == 0, "score"] = np.nan  # an undefined (constant) layer
    curve = peak_rows(frame, ["layer_x"])
    assert list(curve.layer_x) == [1, 2]  # the all-NaN group gives no row
    assert int(curve.layer_y[curve.layer_x == 1].iloc[0]) == PLANTED[1]
    assert len(peak_rows(frame[frame.layer_x == 0], ["layer_x"])) == 0
    mixed = pd.concat([frame, _grid_frame("procrustes")], ignore_index=True)
    with pytest.raises(ValueError, match="mix higher- and lower-is-better"):
        peak_rows(mixed, ["direction"])


def test_cli_summary_reports_the_minimum(tmp_path):
    from align.cli import _summary  # the function `align run` / `align score` print

    write_results(_grid_frame(), tmp_path / "results.parquet")
    text = _summary(tmp_path / "results.parquet")
    line = next(l for l in text.splitlines() if "procrustes_angular" in l)
    assert f"layer {PLANTED[0]} " in line.split(" x ")[0] and f"layer {PLANTED[1]} " in line.split(" x ")[1]
    assert "(lower = more aligned)" in line


# ------------------------------------------------------------------------------------------- experiments


def _stores(tmp_path):
    """(vision store, caption store) holding the planted layers; caption ids ``<image>#0``."""
    xs, ys = _layers()

    def write(name, ids, layers, modality, groups=None):
        w = StoreWriter(tmp_path / f"{name}.parquet", stimulus_ids=ids,
                        layer_names=[f"layer_{i}" for i in range(len(layers))], groups=groups,
                        meta={"model": name, "modality": modality, "pooling": "mean", "stimulus_set": "t",
                              "condition": "original", "config_fingerprint": name})
        w.write_part(ids, layers)
        return open_store(w.finalize())

    return write("v", IDS, xs, "vision"), write("l", [f"{i}#0" for i in IDS], ys, "language", IDS)


def _config(tmp_path, kind, **experiment):
    return parse_config({
        "name": kind, "output": str(tmp_path / kind), "stimuli": {"kind": "synthetic", "n": N},
        "models": [{"name": "v", "modality": "vision"}, {"name": "l", "modality": "language"}],
        "score": {"metrics": ["procrustes_angular"]},
        "experiment": {"kind": kind, "n_perm": 4, "n_boot": 4,
                       **({} if kind == "preference" else {"grid_metrics": []}), **experiment}})


def _quiet(_):
    pass


def test_peaks_from_a_layerwise_table_are_minima(tmp_path):
    from align.experiments import read_peaks

    write_results(_grid_frame(), tmp_path / "layerwise" / "results.parquet")
    peaks = read_peaks(tmp_path / "layerwise", "t", log=_quiet)
    assert [(p.model_x, p.pooling_x, p.model_y, p.pooling_y, p.metric, p.direction, p.layers) for p in peaks] == [
        ("v", "cls", "l", "mean", "procrustes_angular", "symmetric", LayerPair(*PLANTED))]


def test_perturbation_peak_is_the_baseline_minimum(tmp_path):
    from align.experiments._perturbation import compare
    from align.experiments._perturbation import condition_pairs

    vision, language = _stores(tmp_path)
    cfg = _config(tmp_path, "perturbation", image_conditions=["grayscale"])
    base = ({("v", "mean"): vision}, {("l", "mean"): language})
    pairs, cond = condition_pairs("same", "image", IDS, "t", base, ({}, {}))
    table = pd.concat(compare(cfg, pairs, cond, None, log=_quiet), ignore_index=True)
    base = table[table.quantity == "baseline"]
    peak = table[table.quantity == "peak_difference"]
    assert _argmax(base) != PLANTED
    assert list(zip(peak.layer_x, peak.layer_y)) == [PLANTED]
    assert peak.score_a.iloc[0] == pytest.approx(base.score.min(), abs=1e-6)


def test_aggregation_peak_is_the_k1_minimum(tmp_path):
    from align.experiments._aggregation import AggregatedPair
    from align.experiments._aggregation import aggregate

    vision, language = _stores(tmp_path)
    xs, ys = _layers()

    def rows(layers):
        return lambda l, k, units: layers[l] if units is None else layers[l][units]

    pair = AggregatedPair(vision, language, x_of=rows(xs), y_of=rows(ys), n_units=N, unit_key="u")
    frames = aggregate(_config(tmp_path, "aggregation", k_max=2), [pair], side="captions", dataset="t", peaks=None,
                       log=_quiet)
    table = pd.concat(frames, ignore_index=True)
    grid = table[(table.quantity == "score") & (table.k == 1) & (table.control == "matched")]
    assert len(grid) == 12 and _argmax(grid) != PLANTED
    peak = table[table.quantity == "peak_difference"]
    assert set(zip(peak.layer_x, peak.layer_y)) == {PLANTED}


def test_preference_peak_layers_are_the_minimum(tmp_path):
    from align.experiments import Cell
    from align.experiments import Pair
    from align.experiments._preference import layers_at

    vision, language = _stores(tmp_path)
    cell = Cell("grid", Pair(vision, language), "procrustes_angular")
    at = layers_at(_config(tmp_path, "preference", folds=3), cell, {cell: _grid_frame()}, None)
    assert at == {"x_to_y": PLANTED, "y_to_x": PLANTED}


# ---------------------------------------------------------------------------------------------- figures


def _paper_module(name):
    spec = importlib.util.spec_from_file_location(f"_paper_{name}", ROOT / "paper_figures" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_findings_layerwise_peak_is_the_minimum(tmp_path):
    frame = _grid_frame()
    write_results(frame, tmp_path / "layerwise" / "results.parquet")
    rows = _paper_module("findings").finding(1, tmp_path)["rows"]
    assert len(rows) == 1
    r = rows.iloc[0]
    assert r.peak == pytest.approx(frame.score.min(), abs=1e-6)
    assert (r["peak depth (vision)"], r["peak depth (language)"]) == (PLANTED[0] / 2, PLANTED[1] / 3)
    # the best over language layers at the first vision depth is that row's minimum
    assert r["best there"] == pytest.approx(frame[frame.layer_x == 0].score.min(), abs=1e-6)


def test_depth_curves_take_the_minimum_of_a_distance():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = _grid_frame()
    fig, axes = _paper_module("fig_layerwise").plot_depth_curves(frame, None)
    for ax, depth in zip(axes, ("rel_depth_x", "rel_depth_y")):
        (line,) = ax.get_lines()[:1]
        best = frame.groupby(depth).score
        np.testing.assert_allclose(line.get_ydata(), best.min().to_numpy())
        assert not np.allclose(line.get_ydata(), best.max().to_numpy())
    assert "lower = more aligned" in axes[0].get_ylabel()
    plt.close(fig)


def test_heatmap_colour_bar_says_lower_is_more_aligned():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from align.plots import plot_layer_heatmap

    labels = {}
    for metric in ("procrustes_angular", "procrustes"):
        fig, _ = plot_layer_heatmap(_grid_frame(metric))
        labels[metric] = fig.axes[-1].get_ylabel()
        plt.close(fig)
    assert labels["procrustes_angular"] == "procrustes angular (lower = more aligned)"
    assert labels["procrustes"] == "procrustes"
