"""The paper's experiments (perturbation, aggregation, preference, layerwise null) on tiny random models and small
synthetic data, their statistics on planted signals, and the [experiment] config section."""

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from align.config import ConfigError
from align.config import parse_config
from align.experiments import contrast_scores
from align.experiments import derangement
from align.experiments import heldout_paired_difference
from align.experiments import mean_of_first
from align.experiments import run_experiment
from align.stats import paired_summary
from align.stats import ridge_fit
from align.stats import ridge_predict

sys.path.insert(0, str(Path(__file__).parent))
import _extract_tiny as tiny  # noqa: E402

BASE = {"name": "t", "output": "results/t", "models": [{"name": "a"}, {"name": "b"}]}


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("experiment, message", [
    ({"kind": "ablation"}, "experiment.kind = 'ablation'"),
    ({"kind": "perturbation", "colour": 1}, "experiment: unknown key(s) ['colour']"),
    ({"kind": "perturbation"}, "needs image_conditions and/or caption_conditions"),
    ({"kind": "perturbation", "image_conditions": ["sepia"]}, "unknown image condition 'sepia'"),
    ({"kind": "perturbation", "image_conditions": ["rotate(angel=3)"]}, "unknown parameter(s) ['angel']"),
    ({"kind": "perturbation", "caption_conditions": ["original"]}, "'original' is the baseline"),
    ({"kind": "perturbation", "image_conditions": ["grayscale"], "k_max": 3}, "do not apply to kind 'perturbation'"),
    ({"kind": "aggregation", "k_max": 1}, "experiment.k_max = 1"),
    ({"kind": "aggregation", "aggregate": ["words"]}, "experiment.aggregate = ['words']"),
    ({"kind": "preference", "contrasts": ["funny"]}, "experiment.contrasts = ['funny']"),
    ({"kind": "preference", "layers": [0.5, 2.0]}, "experiment.layers = (0.5, 2.0)"),
    ({"kind": "preference", "ci": 1.5}, "experiment.ci = 1.5"),
    ({"kind": "layerwise", "n_perm": -1}, "experiment.n_perm = -1"),
    ({"kind": "aggregation", "grid_metrics": ["rsa"]}, "experiment.grid_metrics: ['rsa'] are not in score.metrics"),
    # a key of another kind names the kinds it belongs to
    ({"kind": "layerwise", "ci": 0.9}, "['ci'] do not apply to kind 'layerwise' (ci: kind perturbation or aggregation"),
    ({"kind": "preference", "grid_metrics": []}, "(grid_metrics: kind perturbation or aggregation)"),
])
def test_bad_experiment_sections_are_named(experiment, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "experiment": experiment})
    assert message in str(err.value)


def test_experiment_defaults_and_new_stimulus_keys():
    cfg = parse_config(BASE)
    assert cfg.experiment.kind == "layerwise"
    cfg = parse_config({**BASE, "experiment": {"kind": "preference", "layers": [0.5, 1], "ci": 1 - 0.1}})
    assert cfg.experiment.layers == (0.5, 1) and cfg.experiment.contrasts == ("matched",)
    with pytest.raises(ConfigError, match="renderings applies to kind = 'synthetic'"):
        parse_config({**BASE, "stimuli": {"kind": "coco", "root": "x", "renderings": 3}})
    with pytest.raises(ConfigError, match="needs stimuli.root"):
        parse_config({**BASE, "stimuli": {"kind": "pick_a_pic"}})
    a = parse_config({**BASE, "experiment": {"kind": "aggregation", "k_max": 3}})
    b = parse_config({**BASE, "experiment": {"kind": "aggregation", "k_max": 4}})
    assert a.fingerprint() != b.fingerprint() and a.fingerprint("stimuli") == b.fingerprint("stimuli")


def test_paper_configs_are_valid():
    from align.config import load_config

    paths = sorted((Path(__file__).parents[1] / "paper_figures").glob("*.toml"))
    assert paths
    for path in paths:
        if path.name == "robustness.toml":  # not an experiment config: tests/test_robustness.py checks it
            continue
        assert load_config(path).experiment.kind


# ------------------------------------------------------------------------------------------------ pure parts


def test_derangement_and_mean_of_first():
    for n in (2, 3, 17):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    layer = np.arange(12, dtype=np.float32).reshape(6, 2)
    members = np.array([[0, 1, 2], [3, 4, 5]])
    np.testing.assert_allclose(mean_of_first(layer, members, 2), [[1, 2], [7, 8]])
    np.testing.assert_allclose(mean_of_first(layer, members, 1, units=np.array([1, 0])), [[6, 7], [0, 1]])


def test_ridge_fit_matches_sklearn():
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(0)
    alphas = np.logspace(-2, 3, 6)
    for p in (5, 60):  # primal and dual regimes (n = 40)
        X = rng.normal(size=(40, p)).astype(np.float32)
        Y = (X[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(40, 4))).astype(np.float32)
        Xq = rng.normal(size=(7, p)).astype(np.float32)
        ours = np.asarray(ridge_predict(ridge_fit(X, Y, alphas), Xq))
        ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X.astype(np.float64), Y).predict(Xq)
        np.testing.assert_allclose(ours, ref, rtol=2e-3, atol=2e-3)


def _planted(n=120, signal=1.0, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    X = (z @ rng.normal(size=(4, 20)) + rng.normal(size=(n, 20))).astype(np.float32)
    Y = (signal * z @ rng.normal(size=(4, 15)) + rng.normal(size=(n, 15))).astype(np.float32)
    return X, Y


def test_matched_beats_mismatched_on_a_planted_signal():
    X, Y = _planted()
    n = len(X)
    folds = np.arange(n) % 5
    partner = np.roll(np.arange(n), 1)
    alphas = np.logspace(-2, 4, 7)
    pos, neg = contrast_scores(X, Y, np.arange(n), X, Y, X, Y[partner], folds, alphas)
    summary = {r["quantity"]: r for r in paired_summary(pos, neg, n_perm=200, n_boot=200, ci=0.95, seed=0)}
    assert summary["accuracy"]["score"] > 0.8 and summary["accuracy"]["p_value"] < 1e-6
    assert summary["mean_difference"]["score"] > 0 and summary["mean_difference"]["ci_low"] > 0
    assert summary["mean_difference"]["p_value"] < 0.01
    X0, Y0 = _planted(signal=0.0, seed=1)  # no shared signal: chance
    pos, neg = contrast_scores(X0, Y0, np.arange(n), X0, Y0, X0, Y0[partner], folds, alphas)
    chance = {r["quantity"]: r for r in paired_summary(pos, neg, n_perm=200, n_boot=0, ci=0.95, seed=0)}
    assert 0.3 < chance["accuracy"]["score"] < 0.7 and chance["accuracy"]["p_value"] > 0.01


def test_heldout_paired_difference_detects_a_degraded_condition():
    X, Y = _planted(n=100)
    same = heldout_paired_difference(X, Y, X, Y, n_perm=100, n_boot=100, metric_kwargs={"folds": 5})
    assert same["score"] == 0 and same["p_value"] == 1.0 and same["ci_low"] == same["ci_high"] == 0
    noisy = X + np.random.default_rng(3).normal(scale=4.0, size=X.shape).astype(np.float32)
    worse = heldout_paired_difference(noisy, Y, X, Y, n_perm=200, n_boot=200, metric_kwargs={"folds": 5})
    assert worse["score"] < 0 and worse["score_a"] < worse["score_b"]
    assert worse["p_value"] < 0.05 and worse["ci_high"] < 0


# ------------------------------------------------------------------------------------------------ end to end


def _config(root, out, kind, *, stimuli=None, metrics=("linear_cka",), **experiment):
    return parse_config({
        "name": kind, "output": str(out / kind),
        "stimuli": stimuli or {"kind": "synthetic", "n": 16},
        "models": [{"name": str(root / "vision"), "modality": "vision", "pooling": ["cls"]},
                   {"name": str(root / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 8}, "score": {"metrics": list(metrics)},
        "experiment": {"kind": kind, "n_perm": 20, **({} if kind == "layerwise" else {"n_boot": 20}), **experiment}})


def test_perturbation_table(tiny_models, tmp_path, capsys):
    cfg = _config(tiny_models, tmp_path, "perturbation", metrics=("linear_cka", "linear_predictivity"),
                  grid_metrics=["linear_cka"], image_conditions=["grayscale", "thing_only"],
                  caption_conditions=["scramble"])
    table = pd.read_parquet(run_experiment(cfg, progress=False))
    conditions = {"grayscale|original", "thing_only(fill=mean)|original", "original|scramble(seed=0)"}
    peak = table[table.quantity == "peak_difference"]
    assert set(peak.condition) == conditions
    assert len(peak) == 3 * 3  # conditions x (CKA symmetric + LP both directions)
    assert peak.p_value.between(0, 1).all() and (peak.ci_low <= peak.ci_high).all()
    np.testing.assert_allclose(peak.score, peak.score_a - peak.score_b, atol=1e-6)
    diff = table[table.quantity == "difference"]
    assert set(diff.metric) == {"linear_cka"} and len(diff) == 3 * 3 * 3  # 3 conditions x 3 x 3 layers
    base = table[table.quantity == "baseline"]
    assert set(base.condition) == {"original|original"} and set(base.metric) == {"linear_cka", "linear_predictivity"}
    assert (table.n == 16).all()
    capsys.readouterr()
    run_experiment(cfg, progress=False)  # everything exists
    assert "exists, skipped" in capsys.readouterr().out


def test_every_row_names_its_preprocessing(tiny_models, tmp_path):
    """Peak and summary rows of an experiment run under a preprocessing option say which option made them (they
    once came out unlabelled, so a z-scored run's rows read as raw features)."""
    def run(option):
        return pd.read_parquet(run_experiment(parse_config({
            "name": "prep", "output": str(tmp_path / option), "stimuli": {"kind": "synthetic", "n": 16},
            "models": [{"name": str(tiny_models / "vision"), "modality": "vision", "pooling": ["cls"]},
                       {"name": str(tiny_models / "language"), "modality": "language", "pooling": ["mean"]}],
            "extract": {"batch_size": 8}, "score": {"metrics": ["linear_cka"], "preprocess": option},
            "experiment": {"kind": "perturbation", "n_perm": 20, "n_boot": 20, "grid_metrics": ["linear_cka"],
                           "image_conditions": ["grayscale"], "caption_conditions": []}}), progress=False))

    raw, z = run("none"), run("zscore")
    for table, option in ((raw, "none"), (z, "zscore")):
        for quantity in ("peak_difference", "grid_summary", "difference", "baseline"):
            assert set(table[table.quantity == quantity].preprocess) == {option}, (option, quantity)
    peak = lambda t: t[t.quantity == "baseline"].sort_values(["layer_x", "layer_y"]).score.to_numpy()  # noqa: E731
    assert not np.allclose(peak(raw), peak(z))  # each computed under its own option


def test_aggregation_over_captions_and_renderings(tiny_models, tmp_path):
    cfg = _config(tiny_models, tmp_path, "aggregation", stimuli={"kind": "synthetic", "n": 12, "renderings": 3},
                  aggregate=["captions", "images"], k_max=3)
    table = pd.read_parquet(run_experiment(cfg, progress=False))
    grids = table[table.quantity == "score"]
    assert set(grids.k) == {1, 2, 3} and set(grids.control) == {"matched", "shuffled"}
    assert len(grids) == 2 * 3 * 2 * 9  # sides x k x controls x 3 x 3 layers
    peak = table[table.quantity == "peak_difference"]
    assert len(peak) == 2 * 2 * 3  # sides x controls x k
    k1 = peak[peak.k == 1]
    assert (k1.score == 0).all() and k1.p_value.isna().all()
    assert set(grids[grids["aggregated"] == "images"].n) == {12}  # units are the 12 scenes
    assert set(grids[grids["aggregated"] == "captions"].n) == {36}  # units are the 36 rendered images


def _jpeg(seed):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_preference_contrasts(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    cfg = _config(tiny_models, tmp_path, "preference", contrasts=["matched", "wrong_caption"], folds=3)
    table = pd.read_parquet(run_experiment(cfg, progress=False))
    assert set(table.contrast) == {"matched", "wrong_caption"}
    assert set(table.quantity) == {"accuracy", "mean_difference", "mean_positive", "mean_negative"}
    assert len(table) == 2 * 2 * 4  # contrasts x directions x quantities
    acc = table[table.quantity == "accuracy"]
    assert acc.score.between(0, 1).all() and acc.p_value.between(0, 1).all() and (acc.n == 16).all()
    items = pd.read_parquet(Path(cfg.output) / "items.parquet")
    assert len(items) == 2 * 2 * 16 and items.positive.between(-1, 1).all()
    # Pick-a-Pic pairs from a generated file: preferred vs rejected
    path = tmp_path / "pairs.parquet"
    n = 12
    pq.write_table(pa.table({"caption": [tiny.CAPTIONS[i % 5][0] for i in range(n)],
                             "jpg_0": [_jpeg(2 * i) for i in range(n)], "jpg_1": [_jpeg(2 * i + 1) for i in range(n)],
                             "label_0": [float(i % 2) for i in range(n)],
                             "label_1": [1.0 - i % 2 for i in range(n)]}), path)
    cfg = _config(tiny_models, tmp_path, "preference", stimuli={"kind": "pick_a_pic", "root": str(path)},
                  contrasts=["preferred"], folds=3, layers=[1.0, 1.0])
    table = pd.read_parquet(run_experiment(cfg, progress=False))
    assert set(table.contrast) == {"preferred"} and (table.n == n).all() and len(table) == 2 * 4
    assert set(table.layer_x) == {2} and set(table.layer_y) == {2}


def test_layerwise_peak_null(tiny_models, tmp_path):
    cfg = _config(tiny_models, tmp_path, "layerwise")
    run_experiment(cfg, progress=False)
    null = pd.read_parquet(Path(cfg.output) / "peak_null.parquet")
    assert len(null) == 1 and null.p_value.between(1 / 21, 1).all() and null.quantity.eq("peak_null").all()
    grid = pd.read_parquet(Path(cfg.output) / "results.parquet")
    assert null.score.iloc[0] == pytest.approx(grid.score.max(), abs=1e-6)
    # the other experiments can take their peak layers from this table
    pref = _config(tiny_models, tmp_path, "preference", folds=3, peaks_from=str(cfg.output))
    table = pd.read_parquet(run_experiment(pref, progress=False))
    peaks = grid.loc[grid.groupby("direction").score.idxmax()]
    assert set(zip(table.layer_x, table.layer_y)) == {(peaks.layer_x.iloc[0], peaks.layer_y.iloc[0])}


def test_heldout_scores_are_the_metric_scores_of_each_condition():
    """The held-out statistics start from the metric's own numbers: per-fold r averaged over folds by default,
    one r over the concatenated predictions with cv_score="pooled"."""
    from align.metrics import ridge_cv_predict

    rng = np.random.default_rng(21)
    X = rng.normal(size=(60, 8))
    Y = X @ rng.normal(size=(8, 5)) + rng.normal(size=(60, 5))
    noisy = X + rng.normal(size=X.shape) * 2.0
    for cv_score in ("fold_mean", "pooled"):
        out = heldout_paired_difference(noisy, Y, X, Y, n_perm=0, n_boot=0,
                                        metric_kwargs={"folds": 5, "cv_score": cv_score})
        assert out["score_a"] == pytest.approx(ridge_cv_predict(noisy, Y, cv_score=cv_score).score, abs=1e-5)
        assert out["score_b"] == pytest.approx(ridge_cv_predict(X, Y, cv_score=cv_score).score, abs=1e-5)
