"""The engine against float64 per-pair loops; labels, directions, chunking, padding, recompilation, statistics."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from align.engine import LayerGrid
from align.engine import compiled_programs
from align.engine import bootstrap_ci
from align.engine import paired_difference
from align.engine import pairwise
from align.engine import pairwise_within
from align.engine import permutation_null
from align.metrics import Metric
from align.metrics import MetricInputError

N = 60
WIDTHS_X = (6, 20, 13)
WIDTHS_Y = (9, 9, 31, 4)


def _layers(seed=0, n=N):
    """Two 'models' sharing a latent, with widths that differ within and across models."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5))
    xs = [(z @ rng.normal(size=(5, d)) + rng.normal(size=(n, d)) * s).astype(np.float32)
          for d, s in zip(WIDTHS_X, (0.5, 1.0, 3.0))]
    ys = [(z @ rng.normal(size=(5, d)) + rng.normal(size=(n, d)) * s).astype(np.float32)
          for d, s in zip(WIDTHS_Y, (0.3, 1.0, 2.0, 4.0))]
    return xs, ys


def _cka64(X, Y):
    X = X.astype(np.float64) - X.mean(0)
    Y = Y.astype(np.float64) - Y.mean(0)
    return np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def _predictivity64(X, Y):
    """Pearson r per held-out fold and target column (sklearn RidgeCV per fold), averaged over columns, then folds."""
    per_fold = []
    for train, test in KFold(5, shuffle=True, random_state=0).split(X):
        model = RidgeCV(alphas=np.logspace(-3, 5, 17), alpha_per_target=True)
        pred = model.fit(X[train].astype(np.float64), Y[train].astype(np.float64)).predict(X[test])
        per_fold.append(np.mean([np.corrcoef(pred[:, j], Y[test, j])[0, 1] for j in range(Y.shape[1])]))
    return np.mean(per_fold)


def test_linear_cka_grid_matches_float64_loop():
    xs, ys = _layers()
    grid = pairwise("linear_cka", xs, ys)
    oracle = np.array([[_cka64(x, y) for y in ys] for x in xs])
    assert set(grid.scores) == {"symmetric"} and grid.directions == ("symmetric",)
    assert grid.scores["symmetric"].shape == (3, 4) and grid.score() is grid.scores["symmetric"]
    np.testing.assert_allclose(grid.score("symmetric"), oracle, atol=2e-6)


def test_linear_predictivity_grid_matches_sklearn_loop_both_directions():
    xs, ys = _layers(1)
    grid = pairwise("linear_predictivity", xs, ys)
    assert set(grid.scores) == {"x_to_y", "y_to_x"}
    x_to_y = np.array([[_predictivity64(x, y) for y in ys] for x in xs])
    y_to_x = np.array([[_predictivity64(y, x) for y in ys] for x in xs])
    # Alpha choice is an argmin over LOO errors: where two alphas are within float32 noise of each other, the
    # float32 engine may pick the other one for a column (seen once here, 1.3e-3 in the mean score, depending on
    # the XLA kernel used). Every other cell agrees with the float64 sklearn loop to 1e-4.
    for ours, oracle in ((grid.scores["x_to_y"], x_to_y), (grid.scores["y_to_x"], y_to_x)):
        close = np.abs(ours - oracle) <= 1e-4
        assert close.sum() >= close.size - 1, np.abs(ours - oracle)
        np.testing.assert_allclose(ours, oracle, atol=2e-3)
    assert not np.allclose(grid.scores["x_to_y"], grid.scores["y_to_x"], atol=1e-3)  # never filled symmetrically
    only = pairwise("linear_predictivity", xs, ys, direction="y_to_x")
    np.testing.assert_allclose(only.scores["y_to_x"], grid.scores["y_to_x"], atol=1e-6)


def test_labels_mappings_and_long_form():
    xs, ys = _layers()
    grid = pairwise("rbf_cka(sigma_frac=0.5)", {f"v{i}": x for i, x in enumerate(xs)},
                    {f"l{i}": y for i, y in enumerate(ys)})
    assert isinstance(grid, LayerGrid)
    assert grid.layers_x == ("v0", "v1", "v2") and grid.layers_y == ("l0", "l1", "l2", "l3")
    assert grid.metric == "rbf_cka" and grid.kwargs == {"sigma_frac": 0.5}
    frame = grid.to_frame()
    assert list(frame.columns) == ["layer_x", "layer_y", "layer_name_x", "layer_name_y", "rel_depth_x",
                                   "rel_depth_y", "metric", "preprocess", "direction", "higher_is_more_aligned",
                                   "score", "n"]
    assert len(frame) == 12 and set(frame.direction) == {"symmetric"} and (frame.n == N).all()
    assert frame.rel_depth_x.max() == 1.0 and frame.rel_depth_y.min() == 0.0
    row = frame[(frame.layer_x == 2) & (frame.layer_y == 1)].iloc[0]
    assert row.layer_name_x == "v2" and row.score == pytest.approx(grid.score()[2, 1])
    lp = pairwise("linear_predictivity", xs[:2], ys[:1]).to_frame()
    assert sorted(lp.direction.unique()) == ["x_to_y", "y_to_x"] and len(lp) == 4


def test_chunking_loop_fallback_and_within_agree():
    xs, ys = _layers(2)
    ref = pairwise("linear_cka", xs, ys)
    for chunk in (1, 5, 100):
        np.testing.assert_allclose(pairwise("linear_cka", xs, ys, chunk_size=chunk).score(), ref.score(), atol=1e-6)
    loop = pairwise("linear_cka", xs, ys, batched=False)
    np.testing.assert_allclose(loop.score(), ref.score(), atol=1e-6)
    within = pairwise_within("linear_predictivity", xs)
    full = pairwise("linear_predictivity", xs, xs, chunk_size=2)
    np.testing.assert_allclose(within.scores["x_to_y"], full.scores["x_to_y"], atol=1e-6)
    np.testing.assert_allclose(within.scores["y_to_x"], full.scores["y_to_x"], atol=1e-6)


def test_width_dependent_prepare_without_pad_invariance_is_grouped():
    """A metric whose prepared form is the raw layer and whose value changes with zero padding (mean over
    columns): layers are grouped by width, one compiled grid per pair of groups, never padded."""
    metric = Metric(name="col_mean_gap", compare=lambda X, Y: jnp.abs(jnp.mean(X) - jnp.mean(Y)), pad_invariant=False)
    xs, ys = _layers(3)
    grid = pairwise(metric, xs, ys)
    oracle = np.array([[abs(x.mean() - y.mean()) for y in ys] for x in xs])
    np.testing.assert_allclose(grid.score(), oracle, rtol=1e-5, atol=1e-7)


def test_no_recompilation_on_second_call_and_alpha_sweep():
    xs, ys = _layers(4)
    pairwise("linear_predictivity", xs, ys)
    sizes = compiled_programs()
    assert sizes["grid_call"] > 0 and sizes["prepare_one"] > 0
    xs2, ys2 = _layers(5)
    pairwise("linear_predictivity", xs2, ys2)
    pairwise("linear_predictivity", xs2, ys2, metric_kwargs={"alphas": np.logspace(-2, 4, 17)})  # traced: same program
    assert compiled_programs() == sizes
    pairwise("linear_predictivity", xs2, ys2, metric_kwargs={"folds": 4})  # static: a new program
    assert compiled_programs()["grid_call"] > sizes["grid_call"]


def test_input_errors_name_the_layer():
    xs, ys = _layers()
    bad = [x.copy() for x in xs]
    bad[1][3, 2] = np.nan
    with pytest.raises(MetricInputError, match="layer '1' of Xs"):
        pairwise("linear_cka", bad, ys)
    with pytest.raises(MetricInputError, match="rows"):
        pairwise("linear_cka", xs, [ys[0][:-1]])
    with pytest.raises(ValueError, match=r"unknown argument.*\['sigma'\].*accepts \['debiased'\]"):
        pairwise("linear_cka", xs, ys, metric_kwargs={"sigma": 1.0})
    with pytest.raises(TypeError):
        pairwise("linear_cka", xs, ys, sigma=1.0)  # metric options only through metric_kwargs
    with pytest.raises(TypeError):
        pairwise("linear_cka", xs, ys, null=10)  # old names are gone, not aliased
    with pytest.raises(ValueError, match="coverage"):
        pairwise("linear_cka", xs, ys, n_boot=10, ci=100)  # ci is a level, the count is n_boot
    with pytest.raises(ValueError, match="n_perm must be"):
        pairwise("linear_cka", xs, ys, n_perm=-1)
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise("no_such_metric", xs, ys)


def test_permutation_null_is_batched_equivalent_of_a_loop():
    xs, ys = _layers(6, n=40)
    grid, null = permutation_null("linear_predictivity", xs[:2], ys[:2], n_perm=3, seed=1, batch_size=2,
                                  return_null=True)
    assert null["x_to_y"].shape == (3, 2, 2) and set(null) == set(grid.directions)
    perms = np.random.default_rng(1).permuted(np.tile(np.arange(40), (3, 1)), axis=1)  # as documented
    # an asymmetric metric permutes each direction's target: Y for x_to_y, X for y_to_x (the source keeps its folds)
    for k, perm in enumerate(perms):
        g = pairwise("linear_predictivity", xs[:2], [y[perm] for y in ys[:2]], direction="x_to_y")
        np.testing.assert_allclose(null["x_to_y"][k], g.score("x_to_y"), atol=1e-5)
        g = pairwise("linear_predictivity", [x[perm] for x in xs[:2]], ys[:2], direction="y_to_x")
        np.testing.assert_allclose(null["y_to_x"][k], g.scores["y_to_x"], atol=1e-5)


def test_prepare_target_is_what_compare_reads_from_the_target():
    from align.metrics import get_metric

    m = get_metric("linear_predictivity")
    xs, ys = _layers(10, n=30)
    full, cheap = m.prepare(ys[0], folds=4), m.prepare_target(ys[0], folds=4)
    px = m.prepare(xs[0], folds=4)
    assert set(cheap) < set(full)
    a, b = m.compare(px, cheap), m.compare(px, full)
    assert set(a) == {"score", "alpha_median", "alpha_low_share", "alpha_high_share"}
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)


def test_linear_predictivity_grid_reports_chosen_alphas_and_warns_at_the_grid_edge():
    from align.metrics import AlphaGridWarning
    from align.metrics import ridge_cv_predict

    xs, ys = _layers(3, n=40)
    grid = pairwise("linear_predictivity", xs[:2], ys[:2])
    frame = grid.to_frame()
    assert {"alpha_median", "alpha_low_share", "alpha_high_share"} <= set(frame.columns)
    one = ridge_cv_predict(xs[1], ys[0])
    row = frame[(frame.direction == "x_to_y") & (frame.layer_x == 1) & (frame.layer_y == 0)].iloc[0]
    assert row.alpha_median == pytest.approx(one.alpha_median, rel=1e-5)
    assert row.alpha_low_share == pytest.approx(one.alpha_low_share, abs=1e-6)
    assert row.alpha_high_share == pytest.approx(one.alpha_high_share, abs=1e-6)
    with pytest.warns(AlphaGridWarning, match=r"4 of 4 layer pairs \(x_to_y.*are the smallest alpha"):
        pairwise("linear_predictivity(alphas=[1e5, 1e6])", xs[:2], ys[:2], direction="x_to_y")
    # a constant layer (scored NaN with constant_layers="skip") picks the first alpha everywhere: no warning for it
    constant = [np.tile(xs[0][:1], (xs[0].shape[0], 1))] + xs[1:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AlphaGridWarning)
        skipped = pairwise("linear_predictivity", constant, ys[:1], constant_layers="skip")
    assert np.isnan(skipped.stat("alpha_low_share", "x_to_y")[0, 0])


def test_permutation_and_bootstrap_statistics():
    xs, ys = _layers(7, n=40)
    g = permutation_null("linear_cka", xs[:2], ys[:2], n_perm=40, seed=0)
    p = g.stat("p_value")
    assert p.shape == (2, 2) and np.all(p >= 1 / 41) and np.all(p <= 1)
    assert np.all(p[0] == 1 / 41)  # a shared latent: no re-pairing beats the real one
    assert np.all(g.stat("null_mean") < g.score())
    b = bootstrap_ci("linear_cka", xs[:2], ys[:2], n_boot=30, ci=0.9)
    assert np.all(b.stat("ci_low") <= b.score() + 1e-6) and np.all(b.score() <= b.stat("ci_high") + 0.05)
    assert b.ci_level == 0.9 and b.n_boot == 30 and b.n_perm == 0
    frame = pairwise("cycle_knn", xs[:1], ys[:2], n_perm=4, n_boot=4, batch_size=4).to_frame()  # asymmetric
    assert {"p_value", "p_bh", "p_maxstat", "null_mean", "null_std", "ci_low", "ci_high"} <= set(frame.columns)
    assert len(frame) == 4 and frame.p_value.notna().all()


def test_paired_difference():
    xs, ys = _layers(8, n=40)
    rng = np.random.default_rng(0)
    same = paired_difference("linear_cka", xs[:2], ys[:2], xs[:2], ys[:2], n_perm=20)
    np.testing.assert_allclose(same.score(), 0.0, atol=1e-7)
    assert np.all(same.stat("p_value") == 1.0)
    noisy = [x + rng.normal(size=x.shape).astype(np.float32) * 10 for x in xs[:2]]
    diff = paired_difference("linear_cka", xs[:2], ys[:2], noisy, ys[:2], n_perm=40, n_boot=20)
    assert diff.quantity == "difference" and np.all(diff.score() > 0)
    assert np.all(diff.stat("p_value") <= 2 / 41)
    assert np.all(diff.stat("p_maxstat") >= diff.stat("p_value")) and np.all(diff.stat("p_bh") >= diff.stat("p_value"))
    np.testing.assert_allclose(diff.score(), diff.stat("score_a") - diff.stat("score_b"))
    assert np.all(diff.stat("ci_low") > 0)


def test_stores_are_row_aligned_by_id(tmp_path):
    from align.store import StoreMismatchError
    from align.store import StoreWriter
    from align.store import open_store

    xs, ys = _layers(9, n=20)
    ids = [f"img{i}" for i in range(20)]
    order = np.random.default_rng(0).permutation(20)

    def write(path, rows, layers):
        w = StoreWriter(path, stimulus_ids=[ids[i] for i in rows], layer_names=[f"L{i}" for i in range(len(layers))],
                        meta={"model": "m", "modality": "vision", "pooling": "mean"})
        w.write_part([ids[i] for i in rows], [a[rows] for a in layers])
        return open_store(w.finalize())

    a = write(tmp_path / "a.parquet", np.arange(20), xs)
    b = write(tmp_path / "b.parquet", order, ys)
    with pytest.raises(StoreMismatchError):
        pairwise("linear_cka", a, b)
    grid = pairwise("linear_cka", a, b, align_by_id=True)
    np.testing.assert_allclose(grid.score(), pairwise("linear_cka", xs, ys).score(), atol=1e-6)
    assert grid.layers_x == ("L0", "L1", "L2")


def test_constant_layer_is_an_error_or_skipped_as_nan():
    xs, ys = _layers()
    xs = [np.tile(xs[0][:1], (xs[0].shape[0], 1))] + xs[1:]  # layer 0: every stimulus identical
    with pytest.raises(ValueError, match=r"layer\(s\) \['0'\] of Xs are constant"):
        pairwise("linear_cka", xs, ys)
    grid = pairwise("linear_predictivity", xs, ys, constant_layers="skip")
    assert grid.constant_x == ("0",) and grid.constant_y == ()
    for d in ("x_to_y", "y_to_x"):
        assert np.isnan(grid.scores[d][0]).all() and np.isfinite(grid.scores[d][1:]).all()
    with pytest.raises(ValueError, match="constant_layers must be"):
        pairwise("linear_cka", xs, ys, constant_layers="ignore")


def test_streamed_sources_match_the_all_layers_path():
    """linear_predictivity (it has prepare_target) is scored one source layer at a time; the same metric without
    prepare_target goes through the all-layers-prepared path. Mixed widths (two pad buckets), both directions,
    and within one model."""
    import dataclasses

    from align.metrics import get_metric

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((40, w)).astype(np.float32) for w in (8, 20, 30)]
    ys = [x[:, :5] @ rng.standard_normal((5, q)).astype(np.float32) + rng.standard_normal((40, q)).astype(np.float32)
          for x, q in zip(xs, (16, 40, 12))]
    plain = dataclasses.replace(get_metric("linear_predictivity"), prepare_target=None)
    four = {"folds": 4}
    streamed = pairwise("linear_predictivity", xs, ys, metric_kwargs=four)
    full = pairwise(plain, xs, ys, metric_kwargs=four)
    for d in ("x_to_y", "y_to_x"):
        np.testing.assert_array_equal(streamed.scores[d], full.scores[d])
    within = pairwise_within("linear_predictivity", xs, metric_kwargs=four)
    within_full = pairwise_within(plain, xs, metric_kwargs=four)
    for d in ("x_to_y", "y_to_x"):
        np.testing.assert_array_equal(within.scores[d], within_full.scores[d])
