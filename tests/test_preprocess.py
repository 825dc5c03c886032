"""Per-layer preprocessing (align.preprocess) and the massive-activation diagnostic, against numpy/sklearn oracles."""

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

import align
from align.config import ConfigError, parse_config
from align.metrics import Metric
from align.preprocess import (
    DOMINANCE_THRESHOLD,
    DominantDimensionsWarning,
    PreprocessError,
    diagnostics_path,
    dominance_message,
    layer_diagnostics,
    parse_preprocess,
    preprocess_layer,
    preprocess_layers,
    store_diagnostics,
    warn_dominant_dimensions,
)


def _layer(n=40, d=12, seed=0, massive=None):
    """Gaussian ``[n, d]`` with column scales 1..3, optionally a planted massive dimension (scale ``massive``)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.linspace(1.0, 3.0, d) + rng.normal(size=d) * 5
    if massive is not None:
        X[:, 0] = massive * rng.normal(size=n) + 3 * massive
    return X.astype(np.float32)


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("spec, canonical", [
    ("none", "none"), (" zscore ", "zscore"), ("center", "center"), ("l2", "l2"), ("clip", "clip(q=0.95)"),
    ("clip(0.9)", "clip(q=0.9)"), ("clip(q=0.95)", "clip(q=0.95)"), ("pca(5)", "pca(k=5)"), ("pca(k=50)", "pca(k=50)"),
    ("ZSCORE", "zscore"),
])
def test_parse_gives_canonical_spec(spec, canonical):
    assert parse_preprocess(spec).spec == canonical
    assert parse_preprocess(canonical).spec == canonical  # canonical form is a fixed point


@pytest.mark.parametrize("spec, words", [
    ("whiten", ["unknown", "whiten"]), ("clip(q=1.0)", ["q = 1.0", "(0, 1)"]), ("clip(q=0)", ["(0, 1)"]),
    ("clip(k=3)", ["one argument", "q"]), ("pca", ["needs k"]), ("pca(k=0)", ["k = 0", ">= 1"]),
    ("pca(2.5)", [">= 1"]), ("zscore(1)", ["no arguments"]), ("clip(q=", ["cannot parse"]),
])
def test_parse_errors_name_the_option(spec, words):
    with pytest.raises(PreprocessError) as e:
        parse_preprocess(spec)
    for w in words:
        assert w in str(e.value)
    assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------------------------------------- oracles


def test_center_and_zscore_match_sklearn_standard_scaler():
    X = _layer()
    X[:, 3] = 7.0  # a constant column
    c = preprocess_layer(X, "center")
    z = preprocess_layer(X, "zscore")
    assert c.dtype == np.float32 and z.dtype == np.float32
    x64 = X.astype(np.float64)
    np.testing.assert_allclose(c, x64 - x64.mean(0), atol=1e-5)
    np.testing.assert_allclose(z, StandardScaler().fit_transform(x64), atol=1e-5)
    assert np.all(z[:, 3] == 0.0) and np.isfinite(z).all()


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_clip_is_platonic_rep_exact_order_statistic(q):
    X = _layer(n=37, d=11, massive=40.0)
    out = preprocess_layer(X, f"clip(q={q})")
    a = np.abs(X).ravel()
    t = np.sort(a)[int(q * a.size)]  # platonic-rep remove_outliers(exact=True), per layer
    np.testing.assert_array_equal(out, np.clip(X, -t, t))
    # the threshold is a q-quantile of |x| over the whole layer (inverted CDF where q * N is not an integer)
    if not float(q * a.size).is_integer():
        assert t == np.quantile(a, q, method="inverted_cdf")
    assert np.abs(out).max() == t and out.dtype == np.float32


def test_l2_rows_unit_norm_and_zero_rows_stay_zero():
    X = _layer()
    X[5] = 0.0
    out = preprocess_layer(X, "l2")
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    np.testing.assert_allclose(np.delete(norms, 5), 1.0, atol=1e-6)
    assert np.all(out[5] == 0.0)
    np.testing.assert_allclose(out[0], X[0] / np.linalg.norm(X[0].astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("k", [1, 4, 12])
def test_pca_matches_sklearn_up_to_sign(k):
    X = _layer(n=30, d=12)
    out = preprocess_layer(X, f"pca({k})")
    ref = PCA(n_components=k, svd_solver="full").fit_transform(X.astype(np.float64))
    assert out.shape == (30, k) and out.dtype == np.float32
    signs = np.sign(np.sum(out * ref, axis=0))
    np.testing.assert_allclose(out, ref * signs, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(out, preprocess_layer(X, f"pca({k})"))  # deterministic


def test_pca_k_above_min_n_d_is_an_error_naming_layer():
    with pytest.raises(PreprocessError, match=r"k = 13 exceeds min\(n, d\) = 12 of layer 1 of Xs"):
        preprocess_layers([_layer(d=20), _layer(d=12)], "pca(13)", label="Xs")
    with pytest.raises(ValueError, match=r"pca\(k=9\).*layer '1' of Ys"):
        align.pairwise("linear_cka", [_layer()], [_layer(d=20), _layer(d=8)], preprocess="pca(9)")


def test_preprocess_layers_keeps_mapping_names():
    out = preprocess_layers({"a": _layer(), "b": _layer(d=5)}, "zscore")
    assert list(out) == ["a", "b"] and out["b"].shape == (40, 5)


# ---------------------------------------------------------------------------------------------- engine


def test_pairwise_records_preprocess_and_equals_preprocessed_inputs():
    xs = [_layer(seed=1), _layer(seed=2, d=7)]
    ys = [_layer(seed=3, d=9)]
    for spec in ("center", "zscore", "clip(q=0.9)", "l2", "pca(k=5)"):
        grid = align.pairwise("linear_cka", xs, ys, preprocess=spec)
        ref = align.pairwise("linear_cka", preprocess_layers(xs, spec), preprocess_layers(ys, spec))
        np.testing.assert_allclose(grid.score(), ref.score(), rtol=1e-5)
        assert grid.preprocess == parse_preprocess(spec).spec and ref.preprocess == "none"
        frame = grid.to_frame()
        assert set(frame["preprocess"]) == {parse_preprocess(spec).spec}
    assert align.pairwise("linear_cka", xs, ys).preprocess == align.DEFAULT_PREPROCESS


def test_linear_cka_changes_under_zscore_with_massive_dimension_not_under_center():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(60, 10))
    X = Z @ rng.normal(size=(10, 16))
    Y = Z @ rng.normal(size=(10, 12))
    X[:, 0] = 300.0 * rng.normal(size=60)  # a massive dimension unrelated to Y
    score = {p: float(align.pairwise("linear_cka", [X], [Y], preprocess=p).score()[0, 0])
             for p in ("none", "center", "zscore")}
    assert score["center"] == pytest.approx(score["none"], abs=1e-5)  # CKA centers anyway
    assert score["none"] < 0.1 and score["zscore"] > score["none"] + 0.3


def test_pairwise_within_and_permutation_null_use_preprocessed_layers():
    xs = [_layer(seed=1, massive=50.0), _layer(seed=2, d=7)]
    grid = align.pairwise_within("linear_cka", xs, preprocess="zscore")
    ref = align.pairwise_within("linear_cka", preprocess_layers(xs, "zscore"))
    np.testing.assert_allclose(grid.score(), ref.score(), rtol=1e-5)
    assert grid.preprocess == "zscore"
    ys = [_layer(seed=3, d=9)]
    null = align.permutation_null("linear_cka", xs, ys, n_perm=20, preprocess="zscore")
    null_ref = align.permutation_null("linear_cka", preprocess_layers(xs, "zscore"), preprocess_layers(ys, "zscore"),
                                      n_perm=20)
    np.testing.assert_allclose(null.stat("p_value"), null_ref.stat("p_value"))
    assert null.preprocess == "zscore"


def _fold_probe(X, Y, pca_components=0):
    """Fake metric with held-out rows: reports the width it was given and the fold PCA it was asked for."""
    return X.shape[1] * 1000.0 + pca_components + 0.0 * Y.sum()


def test_pca_routed_to_metric_fold_pca_kwarg_instead_of_transforming():
    folded = Metric(name="fake_fold_pca", compare=_fold_probe, symmetric=False, defaults={"pca_components": 0},
                    static=frozenset({"pca_components"}), fold_pca_kwarg="pca_components")
    plain = Metric(name="fake_plain", compare=_fold_probe, symmetric=False, defaults={"pca_components": 0},
                   static=frozenset({"pca_components"}))
    xs, ys = [_layer(d=12)], [_layer(d=9, seed=5)]
    g = align.pairwise(folded, xs, ys, preprocess="pca(k=4)", direction="x_to_y")
    assert g.score("x_to_y")[0, 0] == 12 * 1000 + 4  # raw width, k passed through the keyword
    assert g.preprocess == "pca(k=4)" and g.kwargs["pca_components"] == 4
    g = align.pairwise(plain, xs, ys, preprocess="pca(k=4)", direction="x_to_y")
    assert g.score("x_to_y")[0, 0] == 4 * 1000 + 0  # transformed on all rows (no held-out rows declared)
    with pytest.raises(PreprocessError, match="exceeds"):  # k still checked against every layer
        align.pairwise(folded, xs, ys, preprocess="pca(k=10)")
    with pytest.raises(ValueError, match="disagree"):
        align.pairwise(folded, xs, ys, preprocess="pca(k=4)", metric_kwargs={"pca_components": 3})


def test_paired_difference_accepts_preprocess():
    xs, ys = [_layer(seed=1, massive=50.0)], [_layer(seed=2)]
    xb = [x + np.random.default_rng(9).normal(size=x.shape).astype(np.float32) for x in xs]
    g = align.paired_difference("linear_cka", xs, ys, xb, ys, n_perm=0, preprocess="zscore")
    a = align.pairwise("linear_cka", xs, ys, preprocess="zscore").score()
    b = align.pairwise("linear_cka", xb, ys, preprocess="zscore").score()
    np.testing.assert_allclose(g.score(), a - b, atol=1e-6)
    assert g.preprocess == "zscore"


# ---------------------------------------------------------------------------------------------- config, results


def _cfg(**score):
    return {"name": "t", "output": "o", "models": [{"name": "m"}], "score": score}


def test_config_preprocess_key_is_validated_canonical_and_fingerprinted():
    assert parse_config(_cfg()).score.preprocess_options == ("none",)
    one = parse_config(_cfg(preprocess="clip(0.95)"))
    assert one.score.preprocess == "clip(q=0.95)"
    assert one.fingerprint() == parse_config(_cfg(preprocess=["clip(q=0.95)"])).fingerprint()
    assert one.fingerprint() != parse_config(_cfg(preprocess="zscore")).fingerprint()
    two = parse_config(_cfg(preprocess=["none", "zscore"]))
    assert two.score.preprocess_options == ("none", "zscore")
    with pytest.raises(ConfigError, match="whiten"):
        parse_config(_cfg(preprocess="whiten"))
    with pytest.raises(ConfigError, match="more than once"):
        parse_config(_cfg(preprocess=["zscore", "zscore"]))
    bad = _cfg(preprocess=["none", "zscore"])
    bad["experiment"] = {"kind": "aggregation"}
    with pytest.raises(ConfigError, match="takes one"):
        parse_config(bad)


def test_results_table_has_preprocess_column():
    from align.results import RESULT_COLUMNS

    assert "preprocess" in RESULT_COLUMNS


# ---------------------------------------------------------------------------------------------- diagnostic


def test_layer_diagnostics_numbers_on_planted_layer():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10))
    X[:, 2] *= 10.0  # variance ~100
    X[:, 7] *= 5.0   # ~25
    X[5, 4] = 1000.0
    d = layer_diagnostics({"emb": X.astype(np.float32), "flat": np.ones((200, 3), np.float32)})
    var = np.sort(X.var(axis=0))[::-1]
    row = d.iloc[0]
    assert row.layer_name == "emb" and row.width == 10 and row.n == 200
    assert row.top1_share == pytest.approx(var[0] / var.sum(), rel=1e-5)
    assert row.top3_share == pytest.approx(var[:3].sum() / var.sum(), rel=1e-5)
    assert row.max_abs == pytest.approx(1000.0)
    assert row.max_over_median == pytest.approx(1000.0 / np.median(np.abs(X.astype(np.float32))), rel=1e-5)
    assert bool(row.dominated) == (row.top3_share > DOMINANCE_THRESHOLD)
    assert np.isnan(d.iloc[1].top1_share) and not d.iloc[1].dominated  # constant layer: share undefined


def test_dominant_dimensions_warning_names_layers():
    layers = [_layer(d=64, seed=1), _layer(d=64, seed=2, massive=500.0)]
    with pytest.warns(DominantDimensionsWarning, match=r"smol \(mean\): in 1 of 2 layers.*1: 1\.00"):
        diag = warn_dominant_dimensions(layers, "smol (mean)")
    assert list(diag["dominated"]) == [False, True]
    assert dominance_message(layer_diagnostics(layers[:1]), "x") is None


def test_store_diagnostics_sidecar_written_read_and_refreshed(tmp_path):
    from align.store import StoreWriter, open_store

    path = tmp_path / "s.parquet"
    ids = [f"s{i}" for i in range(20)]
    X = _layer(n=20, d=16, massive=100.0)
    w = StoreWriter(path, stimulus_ids=ids, layer_names=["l0", "l1"], meta={"model": "m", "pooling": "mean"})
    w.write_part(ids, [X, X[:, :8]])
    w.finalize()
    store = open_store(path)
    first = store_diagnostics(store)
    side = diagnostics_path(path)
    assert side.is_file() and side.name == "s.parquet.diagnostics.json"
    data = json.loads(side.read_text())
    assert data["store"]["stimulus_order_hash"] == store.order_hash
    data["layers"][0]["top1_share"] = 0.123  # a read uses the file, not a recomputation
    side.write_text(json.dumps(data))
    assert store_diagnostics(store).iloc[0].top1_share == 0.123
    data["store"]["stimulus_order_hash"] = "other"  # stale: recomputed and rewritten
    side.write_text(json.dumps(data))
    again = store_diagnostics(store)
    assert again.iloc[0].top1_share == pytest.approx(first.iloc[0].top1_share)
    assert json.loads(side.read_text())["store"]["stimulus_order_hash"] == store.order_hash


# ---------------------------------------------------------------------------------------------- end to end


def test_layerwise_run_scores_each_option_with_own_jobs_and_diagnostics(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import _extract_tiny as tiny
    from align.experiments import run_experiment
    from align.results import read_results

    tiny.vision_model(tmp_path / "vision", "dinov2")
    tiny.language_model(tmp_path / "language", "bert")
    cfg = parse_config({
        "name": "pp", "output": str(tmp_path / "out" / "pp"), "stimuli": {"kind": "synthetic", "n": 16},
        "models": [{"name": str(tmp_path / "vision"), "modality": "vision", "pooling": ["cls"]},
                   {"name": str(tmp_path / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 8}, "score": {"metrics": ["linear_cka"], "preprocess": ["none", "zscore"]},
        "plot": {"enabled": False}, "experiment": {"kind": "layerwise", "n_perm": 10}})
    table = read_results(run_experiment(cfg, progress=False, log=lambda msg: None))
    assert sorted(table["preprocess"].unique()) == ["none", "zscore"]
    per = table.groupby("preprocess").size()
    assert per["none"] == per["zscore"]
    assert len(list((tmp_path / "out" / "pp" / "scores").glob("*.parquet"))) == 2  # one job per option
    none, z = (table[table.preprocess == p].sort_values(["layer_x", "layer_y"]).score.to_numpy() for p in ("none", "zscore"))
    assert not np.allclose(none, z, equal_nan=True)
    sidecars = list((tmp_path / "out" / "activations").rglob("*.diagnostics.json"))
    assert len(sidecars) == 2
    null = read_results(tmp_path / "out" / "pp" / "peak_null.parquet")
    assert sorted(null["preprocess"].unique()) == ["none", "zscore"]
