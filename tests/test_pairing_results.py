"""Pairing image rows with caption rows, results tables and heatmaps (no models involved)."""

import numpy as np
import pandas as pd
import pytest

from align.experiments import paired_layers
from align.plots import save_heatmaps
from align.results import RESULT_COLUMNS, best_layer_pairs, read_results, score_matrix, write_results
from align.store import StoreMismatchError, StoreWriter, open_store

IMAGES = ["a", "b", "c", "d", "e"]


def _store(path, ids, layers, modality, groups=None):
    w = StoreWriter(path, stimulus_ids=ids, layer_names=[f"layer_{i}" for i in range(len(layers))],
                    meta={"model": f"m-{modality}", "modality": modality, "pooling": "mean", "stimulus_set": "t",
                          "condition": "original", "config_fingerprint": "f"}, groups=groups)
    w.write_part(ids, layers)
    return open_store(w.finalize())


@pytest.fixture
def stores(tmp_path):
    rng = np.random.default_rng(0)
    vision = _store(tmp_path / "v.parquet", IMAGES, [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(2)], "vision")
    cap_ids = [f"{i}#{k}" for i in IMAGES for k in range(3)]
    groups = [i for i in IMAGES for _ in range(3)]
    lang_layers = [rng.normal(size=(15, 4)).astype(np.float32) for _ in range(3)]
    language = _store(tmp_path / "l.parquet", cap_ids, lang_layers, "language", groups)
    return vision, language, lang_layers


def test_first_and_mean_caption(stores):
    vision, language, lang_layers = stores
    ids, xs, ys = paired_layers(vision, language, "first")
    assert ids == IMAGES and len(xs) == 2 and len(ys) == 3
    np.testing.assert_array_equal(ys[1], lang_layers[1][0::3])
    _, _, ys_k = paired_layers(vision, language, 2)
    np.testing.assert_array_equal(ys_k[0], lang_layers[0][2::3])
    _, _, ys_mean = paired_layers(vision, language, "mean")
    np.testing.assert_allclose(ys_mean[2], lang_layers[2].reshape(5, 3, 4).mean(axis=1), rtol=1e-5, atol=1e-6)


def test_mismatched_order_is_refused_unless_aligned_by_id(tmp_path, stores):
    vision, _, _ = stores
    rng = np.random.default_rng(1)
    order = ["b", "a", "c", "d", "e", "f"]
    language = _store(tmp_path / "l2.parquet", [f"{i}#0" for i in order], [rng.normal(size=(6, 2)).astype(np.float32)],
                      "language", order)
    with pytest.raises(StoreMismatchError, match="same order"):
        paired_layers(vision, language)
    ids, xs, ys = paired_layers(vision, language, align_by_id=True)
    assert ids == IMAGES
    np.testing.assert_array_equal(ys[0][0], language.layer(0)[1])


def _frame(metric="linear_cka", direction="symmetric"):
    rows = [dict(experiment="layerwise", dataset="t", condition="original|original", model_x="v", pooling_x="cls",
                 layer_x=i, layer_name_x=f"layer_{i}", rel_depth_x=i / 2, model_y="l", pooling_y="mean", layer_y=j,
                 layer_name_y=f"layer_{j}", rel_depth_y=j / 3, metric=metric, direction=direction,
                 score=float(i * 10 + j), n=5) for i in range(3) for j in range(4)]
    return pd.DataFrame(rows)


def test_results_round_trip_and_queries(tmp_path):
    write_results(_frame(), tmp_path / "scores" / "a.parquet")
    write_results(_frame("linear_predictivity", "x_to_y"), tmp_path / "scores" / "b.parquet")
    table = read_results(tmp_path / "scores")
    assert list(table.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    assert len(table) == 24 and table["p_value"].isna().all()
    best = best_layer_pairs(table)
    assert set(zip(best.layer_x, best.layer_y)) == {(2, 3)}
    m = score_matrix(table[table.metric == "linear_cka"])
    assert m.shape == (3, 4) and m.loc[1, 2] == 12.0
    with pytest.raises(ValueError, match="one model pair"):
        score_matrix(table)
    with pytest.raises(ValueError, match="lacks required column"):
        write_results(pd.DataFrame({"score": [1.0]}), tmp_path / "x.parquet")


def test_heatmaps_one_png_and_csv_per_group(tmp_path):
    table = pd.concat([_frame(), _frame("linear_predictivity", "x_to_y"), _frame("linear_predictivity", "y_to_x")])
    paths = save_heatmaps(table, tmp_path / "maps")
    assert len(paths) == 3 and all(p.exists() and p.stat().st_size > 5000 for p in paths)
    csv = pd.read_csv(paths[0].with_suffix(".csv"), index_col=0)
    assert csv.shape == (3, 4)
