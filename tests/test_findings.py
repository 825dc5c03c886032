"""The report's findings, decided from results tables by their definitions (paper_figures/finding_defs.py), and the
depth asymmetry (finding 8) from a bootstrap over stimuli on tiny activation stores with planted peaks.

The results tables are small synthetic ones with random scores; the model and data set names are made up, so a
report that names the models of the real run (hard-coded) fails."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from align.results import write_results
from align.store import StoreWriter
from align.store import open_store

ROOT = Path(__file__).resolve().parents[1]
LP = 'linear_predictivity(alpha_selection="gcv")'
VISION = [("visA-7", "cls"), ("visB-3", "mean")]
LANGUAGE = [("langP-2", "mean"), ("langQ-9", "mean")]
CONDITIONS = ("grayscale", "stuff_only", "thing_only", "scramble", "nouns_only", "nouns_verbs")


def _paper(name):
    spec = importlib.util.spec_from_file_location(f"_paper_{name}", ROOT / "paper_figures" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cases(rng, metrics=((LP, ("x_to_y", "y_to_x")), ("linear_cka", ("symmetric",)))):
    for mx, px in VISION:
        for my, py in LANGUAGE:
            for metric, directions in metrics:
                for d in directions:
                    yield {"model_x": mx, "pooling_x": px, "model_y": my, "pooling_y": py, "metric": metric,
                           "direction": d, "dataset": "made-up-set-42", "layer_x": int(rng.integers(0, 4)),
                           "layer_y": int(rng.integers(0, 5)), "n": 40}


def write_tables(root: Path, seed: int = 0, conditions=CONDITIONS) -> None:
    """Every results table the findings read, with random scores, under ``root``."""
    rng = np.random.default_rng(seed)
    grid = []
    for case in _cases(rng):
        for i in range(4):
            for j in range(5):
                grid.append({**case, "experiment": "layerwise", "layer_x": i, "layer_y": j, "rel_depth_x": i / 3,
                             "rel_depth_y": j / 4, "score": float(rng.uniform(0.0, 0.6)), "preprocess": "none"})
    write_results(pd.DataFrame(grid), root / "layerwise" / "results.parquet")
    null = [{**c, "experiment": "layerwise", "quantity": "peak_null", "score": rng.uniform(0.2, 0.5),
             "null_mean": rng.normal(0, 0.04), "null_std": 0.02, "p_value": rng.choice([0.03, 0.2]), "n_perm": 30}
            for c in _cases(rng)]
    write_results(pd.DataFrame(null), root / "layerwise" / "peak_null.parquet")
    pert = []
    for cond in conditions:
        for c in _cases(rng):
            base, diff = rng.uniform(0.2, 0.5), rng.normal(-0.02, 0.03)
            pert.append({**c, "experiment": "perturbation", "quantity": "peak_difference", "perturbation": cond,
                         "score_b": base, "score_a": base + diff, "score": diff, "p_value": rng.choice([0.01, 0.3]),
                         "ci_low": diff - 0.02, "ci_high": diff + 0.02})
    write_results(pd.DataFrame(pert), root / "perturbation" / "results.parquet")
    agg = []
    for c in _cases(rng):
        for k in (1, 3, 5):
            for control in ("matched", "shuffled"):
                gain = rng.normal(0.05 if control == "matched" else 0.0, 0.03)
                agg.append({**c, "experiment": "aggregation", "quantity": "peak_difference", "k": k,
                            "control": control, "score_b": 0.3, "score_a": 0.3 + gain, "score": gain,
                            "p_value": rng.choice([0.01, 0.4])})
    write_results(pd.DataFrame(agg), root / "aggregation_captions" / "results.parquet")
    pref = []
    for c in _cases(rng, ((LP, ("x_to_y", "y_to_x")),)):
        for q in ("accuracy", "mean_difference"):
            pref.append({**c, "experiment": "preference", "contrast": "matched", "quantity": q,
                         "score": rng.uniform(0.45, 0.9) if q == "accuracy" else rng.normal(0.05, 0.02),
                         "p_value": rng.choice([0.001, 0.2])})
    write_results(pd.DataFrame(pref), root / "preference_coco" / "results.parquet")


def _report(findings, results, tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir(exist_ok=True)
    return findings.write_report(results, figures, {}, [], coco=False, n_boot=20).read_text()


def test_report_names_the_models_and_data_sets_of_the_tables(tmp_path):
    findings = _paper("findings")
    write_tables(tmp_path / "paper")
    text = _report(findings, tmp_path / "paper", tmp_path)
    for name in [m for m, _ in VISION + LANGUAGE] + ["made-up-set-42", LP]:
        assert name in text
    for hard_coded in ("dinov2", "smollm2", "minilm", "gemma3", "mobilenetv2"):
        assert hard_coded not in text.lower()
    assert "nan" not in text.lower()
    # every definition is listed with its criterion, and findings 1-7 are decided on these tables
    for d in findings.FINDINGS:
        assert f"| {d.id} | {d.claim} |" in text and d.criterion in text
        result = findings.finding(d.id, tmp_path / "paper", n_boot=20)
        assert (result["verdict"] == "not computed") == (d.id == 8), (d.id, result)


def test_a_missing_quantity_says_why(tmp_path):
    findings = _paper("findings")
    write_tables(tmp_path / "paper", conditions=("grayscale", "scramble", "nouns_only"))  # no mask conditions
    four = findings.finding(4, tmp_path / "paper")
    assert four["verdict"] == "not computed"
    assert "stuff_only" in four["statistic"] and "mask" in four["statistic"] and "nan" not in four["statistic"]
    # a finding whose table is absent names it; finding 5 still holds or not without nouns_verbs
    (tmp_path / "paper" / "preference_coco" / "results.parquet").unlink()
    seven = findings.finding(7, tmp_path / "paper")
    assert seven["verdict"] == "not computed" and "preference_coco/results.parquet" in seven["statistic"]
    five = findings.finding(5, tmp_path / "paper")
    assert five["verdict"] != "not computed" and "nouns_verbs: not run" in five["statistic"]
    # no stores and no bootstrap rows: the depth asymmetry says so
    eight = findings.finding(8, tmp_path / "paper")
    assert eight["verdict"] == "not computed" and "no activation stores" in eight["statistic"]
    text = _report(findings, tmp_path / "paper", tmp_path)
    assert "nan" not in text.lower() and "+nan%" not in text


def test_verdicts_follow_the_share_of_cases(tmp_path):
    """Finding 3 (|relative change| <= 10%) on planted changes: 3 of 4 cases within -> holds; 2 of 4 -> partly."""
    findings = _paper("findings")
    write_tables(tmp_path / "paper")
    table = pd.read_parquet(tmp_path / "paper" / "perturbation" / "results.parquet")
    gray = (table.perturbation == "grayscale") & table.metric.eq(LP)
    for within, expected in ((6, "holds"), (4, "partly holds"), (3, "does not hold")):
        relative = np.where(np.arange(gray.sum()) < within, 0.05, -0.3)  # 8 LP cases: 2 pairs x 2 x 2 directions
        table.loc[gray, "score"] = relative * table.loc[gray, "score_b"].abs()
        write_results(table, tmp_path / "paper" / "perturbation" / "results.parquet")
        result = findings.finding(3, tmp_path / "paper")
        assert result["verdict"] == expected, (within, result)
        assert f"{within} of 8 within ±10%" in result["statistic"]


# ------------------------------------------------------------------------------------------ depth asymmetry


def _layers(n, vision_peak, language_peak, lx=5, ly=6, seed=0):
    """Vision layers [n, 6] and language layers [n, 5] of noise; language layer ``language_peak`` is vision layer
    ``vision_peak`` rotated (plus a little noise), so linear CKA peaks there."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(n, 6)) for _ in range(lx)]
    ys = [rng.normal(size=(n, 5)) for _ in range(ly)]
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    ys[language_peak] = xs[vision_peak] @ q + 0.1 * rng.normal(size=(n, 6))
    return [x.astype(np.float32) for x in xs], [y.astype(np.float32) for y in ys]


def _stores(root, xs, ys, vision="visA-7", language="langP-2", dataset="made-up-set-42"):
    n = len(xs[0])
    ids = [f"im{i:03d}" for i in range(n)]

    def write(model, stimulus_set, row_ids, layers, modality, groups=None):
        from align.store import store_path

        path = store_path(root, stimulus_set, "original", model, "mean", stimulus_ids=row_ids)
        w = StoreWriter(path, stimulus_ids=row_ids, layer_names=[f"layer_{i}" for i in range(len(layers))],
                        groups=groups, meta={"model": model, "modality": modality, "pooling": "mean",
                                             "stimulus_set": stimulus_set, "condition": "original",
                                             "config_fingerprint": model})
        w.write_part(row_ids, layers)
        return open_store(w.finalize())

    return (write(vision, dataset, ids, xs, "vision"),
            write(language, f"{dataset}~caption0", [f"{i}#0" for i in ids], ys, "language", ids))


def _linear_cka(x, y):
    """Independent oracle: linear CKA of two [n, d] matrices (centred)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_bootstrap_peaks_match_a_numpy_oracle(tmp_path):
    depth = _paper("depth_asymmetry")
    xs, ys = _layers(30, 1, 4, seed=3)
    for y in ys[:4]:  # make the planted peak less certain: another language layer carries part of vision layer 1
        y[:, :3] += 0.8 * xs[1][:, :3]
    vision, language = _stores(tmp_path, xs, ys)
    boot = depth.bootstrap_peak_depths(vision, language, "linear_cka", n_boot=15, seed=7)
    assert list(boot["draw"]) == list(range(-1, 15)) and set(boot.direction) == {"symmetric"}
    rng = np.random.default_rng(7)
    for b in range(-1, 15):
        idx = np.arange(30) if b < 0 else rng.integers(0, 30, 30)
        cka = np.array([[_linear_cka(x[idx].astype(np.float64), y[idx].astype(np.float64)) for y in ys] for x in xs])
        i, j = np.unravel_index(np.argmax(cka), cka.shape)
        row = boot[boot["draw"] == b].iloc[0]
        assert (row.layer_x, row.layer_y) == (i, j)
        assert (row.rel_depth_x, row.rel_depth_y) == pytest.approx((i / 4, j / 5))
        assert row.score == pytest.approx(cka[i, j], rel=1e-4)


@pytest.mark.parametrize("planted, verdict", [((1, 4), "deeper"), ((3, 1), "shallower"), ((2, 2), "the same")])
def test_depth_asymmetry_recovers_a_planted_peak(tmp_path, planted, verdict):
    """Vision peak at layer planted[0] of 5 (depth /4), language at planted[1] of 5 or 6 (depth /4 or /5); the
    layerwise table names the stores' models; finding 8 computes the bootstrap from the stores, writes its rows,
    and a second call reads them (the stores removed)."""
    findings = _paper("findings")
    ly = 5 if verdict == "the same" else 6
    xs, ys = _layers(40, *planted, ly=ly, seed=1)
    results = tmp_path / "paper"
    vision, language = _stores(results, xs, ys)
    import align
    from align.experiments import label_grid

    frame = label_grid(align.pairwise("linear_cka", xs, ys).to_frame(), vision, language, "linear_cka")
    if verdict == "the same":  # a table without the caption column: the first caption's stores are used
        frame = frame.drop(columns="caption")
    write_results(frame, results / "layerwise" / "results.parquet")
    result = findings.finding(8, results, n_boot=40, seed=0)
    row = result["rows"].iloc[0]
    want = (planted[0] / 4, planted[1] / (ly - 1))
    assert (row["vision depth"], row["language depth"]) == pytest.approx(want)
    assert row["vision CI low"] <= want[0] <= row["vision CI high"]
    assert row["language CI low"] <= want[1] <= row["language CI high"]
    assert row["language peak"] == verdict and row.resamples == 40
    assert result["verdict"] == ("does not hold" if verdict == "the same" else "holds")
    said = "at the same relative depth" if verdict == "the same" else verdict
    assert f"language models mostly peak {said}" in result["statistic"]
    cached = results / "layerwise" / "peak_depth_bootstrap.parquet"
    assert cached.exists()
    import shutil

    shutil.rmtree(results / "activations")
    again = findings.finding(8, results, n_boot=40, seed=0)
    pd.testing.assert_frame_equal(again["rows"], result["rows"])
    assert findings.finding(8, results, n_boot=41)["verdict"] == "not computed"  # other settings: not reused


def test_asymmetry_intervals_are_percentiles_of_the_draws():
    """Intervals against numpy's quantiles of planted draws; the verdict follows the difference's interval."""
    depth = _paper("depth_asymmetry")
    rng = np.random.default_rng(0)
    frames = []
    for name, shift in (("up", 0.3), ("flat", 0.0), ("down", -0.3)):
        dx = rng.choice([0.4, 0.5, 0.6], size=200)
        dy = np.clip(dx + shift + rng.choice([-0.1, 0.0, 0.1], size=200), 0, 1)
        frames.append(pd.DataFrame({"model_x": "v", "pooling_x": "cls", "model_y": name, "pooling_y": "mean",
                                    "metric": "linear_cka", "direction": "symmetric", "draw": np.arange(-1, 200),
                                    "rel_depth_x": np.r_[0.5, dx], "rel_depth_y": np.r_[0.5 + shift, dy]}))
    rows = depth.asymmetry_rows(pd.concat(frames, ignore_index=True), ci=0.9).set_index("model pair")
    for name, verdict in (("up", "deeper"), ("flat", "the same"), ("down", "shallower")):
        g = frames[["up", "flat", "down"].index(name)].iloc[1:]
        diff = g.rel_depth_y - g.rel_depth_x
        r = rows.loc[f"v x {name}"]
        np.testing.assert_allclose([r["difference CI low"], r["difference CI high"]], np.quantile(diff, [0.05, 0.95]))
        np.testing.assert_allclose([r["vision CI low"], r["vision CI high"]], np.quantile(g.rel_depth_x, [0.05, 0.95]))
        assert r["language peak"] == verdict and r.holds == (verdict != "the same") and r.resamples == 200


def test_ceiling_section_and_figure_report_the_peak_pairs_normalised(tmp_path):
    """With ceiling.parquet / normalised.parquet beside the layerwise table (``ceiling = true``), the report states
    each peak pair's score as a fraction of its language layer's ceiling, with the interval carried through, and
    fig_layerwise draws layerwise_ceiling.png."""
    from align.experiments import ceiling_normalised

    findings, figures = _paper("findings"), _paper("fig_layerwise")
    root = tmp_path / "paper"
    write_tables(root)
    table = pd.read_parquet(root / "layerwise" / "results.parquet")
    ceiling = pd.DataFrame([{"model": my, "pooling": "mean", "layer": j, "rel_depth": j / 4, "metric": metric,
                             "direction": d, "ceiling": 0.5 + 0.1 * j, "ci_low": 0.4 + 0.1 * j,
                             "ci_high": 0.6 + 0.1 * j, "n": 40, "n_boot": 20, "higher_is_more_aligned": True}
                            for my, _ in LANGUAGE for j in range(5) for metric, d in
                            ((LP, "x_to_y"), (LP, "y_to_x"), ("linear_cka", "symmetric"))])
    ceiling.to_parquet(root / "layerwise" / "ceiling.parquet")
    normalised = ceiling_normalised(table, ceiling)
    normalised.to_parquet(root / "layerwise" / "normalised.parquet")
    text = _report(findings, root, tmp_path)
    assert "## Caption noise ceiling (layerwise)" in text
    rows = figures.ceiling_rows(normalised)
    assert len(rows) == 2 * 2 * 3  # model pairs x (LP both directions + CKA)
    peak = normalised[(normalised.model_x == VISION[0][0]) & (normalised.model_y == LANGUAGE[0][0])
                      & (normalised.metric == "linear_cka")].sort_values("score").iloc[-1]
    expected = peak.score / (0.5 + 0.1 * peak.layer_y)
    assert expected == pytest.approx(rows[(rows["model pair"] == f"{VISION[0][0]} x {LANGUAGE[0][0]}")
                                          & (rows.metric == "linear_cka")].normalised.iloc[0])
    assert f"{expected:.3f}" in text
    out = figures.draw(root, tmp_path / "figures")
    assert tmp_path / "figures" / "layerwise_ceiling.png" in out
