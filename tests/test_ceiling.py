"""Caption noise ceiling: caption a vs caption b of the same images, per language layer, on planted caption stores."""

import numpy as np
import pandas as pd
import pytest

from align.experiments import caption_ceiling
from align.experiments import ceiling_normalised
from align.experiments import NORMALISED_COLUMNS
from align.store import StoreWriter
from align.store import open_store

N, D, K = 240, 4, 5


def _store(tmp_path, noise, *, n_captions=K, name="l"):
    """A caption store with ``n_captions`` captions per image and one layer per entry of ``noise``: caption k of
    image i at layer l is ``z_i + noise[l] * e_ik`` (``None``: captions independent, no shared ``z``)."""
    rng = np.random.default_rng(0)
    images = [f"img{i}" for i in range(N)]
    ids = [f"{image}#{k}" for image in images for k in range(n_captions)]
    groups = [image for image in images for _ in range(n_captions)]
    layers = []
    for s in noise:
        z = np.repeat(rng.normal(size=(N, D)), n_captions, axis=0)
        e = rng.normal(size=(N * n_captions, D))
        layers.append((e if s is None else z + s * e).astype(np.float32))
    names = [f"layer_{i}" for i in range(len(noise))]
    w = StoreWriter(tmp_path / f"{name}.parquet", stimulus_ids=ids, layer_names=names, groups=groups,
                    meta={"model": name, "modality": "language", "pooling": "mean", "stimulus_set": "t",
                          "condition": "original", "config_fingerprint": name})
    w.write_part(ids, layers)
    return open_store(w.finalize())


def _numpy_cka(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))


def test_identical_captions_have_a_ceiling_of_one(tmp_path):
    store = _store(tmp_path, [0.0, 0.0])  # captions are all z: caption a rows == caption b rows
    cka = caption_ceiling(store, "linear_cka", n_boot=20)
    assert list(cka.columns[:5]) == ["model", "pooling", "layer", "layer_name", "rel_depth"]
    assert list(cka.layer) == [0, 1] and list(cka.layer_name) == ["layer_0", "layer_1"]
    assert list(cka.rel_depth) == [0.0, 1.0] and set(cka.direction) == {"symmetric"} and set(cka.n) == {N}
    np.testing.assert_allclose(cka.ceiling, 1.0, atol=1e-5)
    lp = caption_ceiling(store, "linear_predictivity", n_boot=0, caption_a=2, caption_b=4)
    assert sorted(set(lp.direction)) == ["x_to_y", "y_to_x"] and len(lp) == 4
    assert (lp.ceiling > 0.99).all() and lp.ci_low.isna().all()


def test_independent_captions_have_a_ceiling_near_zero(tmp_path):
    store = _store(tmp_path, [None])
    cka = caption_ceiling(store, "linear_cka", n_boot=0).ceiling.iloc[0]
    lp = caption_ceiling(store, "linear_predictivity", n_boot=0).ceiling
    assert 0 <= cka < 0.05 and (lp.abs() < 0.1).all()


def test_partial_agreement_lands_between_and_its_interval_covers_it(tmp_path):
    # caption = z + e (s = 1): population CKA 1 / (1 + s^2)^2 = 0.25, best linear prediction r = 1 / (1 + s^2) = 0.5
    store = _store(tmp_path, [1.0])
    rows = [store.stimulus_ids.index(f"img{i}#{k}") for k in (0, 1) for i in range(N)]
    a, b = store.layer(0)[rows[:N]], store.layer(0)[rows[N:]]
    cka = caption_ceiling(store, "linear_cka", n_boot=200).iloc[0]
    assert cka.ceiling == pytest.approx(_numpy_cka(a.astype(np.float64), b.astype(np.float64)), abs=1e-4)
    assert 0.1 < cka.ceiling < 0.5 and cka.ci_low < 0.25 < cka.ci_high
    lp = caption_ceiling(store, "linear_predictivity", n_boot=50)
    for row in lp.itertuples():
        assert 0.3 < row.ceiling < 0.7 and row.ci_low < row.ceiling < row.ci_high and row.ci_low < 0.5


def test_too_few_captions_is_a_clear_error(tmp_path):
    single = _store(tmp_path, [1.0], n_captions=1, name="one")
    with pytest.raises(ValueError, match="at least 2 captions per image"):
        caption_ceiling(single, "linear_cka", n_boot=0)
    with pytest.raises(ValueError, match="two different captions"):
        caption_ceiling(_store(tmp_path, [1.0]), "linear_cka", caption_a=1, caption_b=1)


def test_ceiling_normalised_divides_by_the_language_layer_ceiling(tmp_path):
    store = _store(tmp_path, [0.5, 1.0])
    ceiling = caption_ceiling(store, "linear_predictivity", n_boot=0)
    table = pd.DataFrame([{"model_x": "v", "model_y": "l", "pooling_y": "mean", "layer_x": i, "layer_y": j,
                           "metric": "linear_predictivity", "direction": d, "score": 0.1 * (i + 1) + 0.01 * j}
                          for i in range(3) for j in range(2) for d in ("x_to_y", "y_to_x")])
    table.loc[len(table)] = {**table.iloc[0].to_dict(), "metric": "linear_cka", "direction": "symmetric"}
    out = ceiling_normalised(table, ceiling)
    lookup = {(r.layer, r.direction): r.ceiling for r in ceiling.itertuples()}
    expected = [lookup[(j, d)] for j, d in zip(table.layer_y[:-1], table.direction[:-1])]
    np.testing.assert_allclose(out.ceiling[:-1], expected)
    np.testing.assert_allclose(out.score_ceiling_normalised[:-1], table.score[:-1] / np.array(expected))
    assert np.isnan(out.score_ceiling_normalised.iloc[-1])  # another metric: no ceiling
    assert list(out.columns[:len(table.columns)]) == list(table.columns)
    assert list(out.columns[len(table.columns):]) == list(NORMALISED_COLUMNS)
    assert out.normalised_ci_low.isna().all()  # a ceiling without an interval gives none
    with pytest.raises(ValueError, match="no row"):
        ceiling_normalised(table.assign(model_y="other"), ceiling)
    with pytest.raises(ValueError, match="distance"):
        ceiling_normalised(table, caption_ceiling(store, "procrustes_angular", n_boot=0))


def test_normalised_interval_carries_the_ceiling_interval(tmp_path):
    ceiling = pd.DataFrame({"metric": "m", "direction": "symmetric", "layer": [0, 1, 2], "ceiling": [0.5, 0.4, 0.2],
                            "ci_low": [0.4, 0.3, -0.1], "ci_high": [0.6, 0.5, 0.3], "higher_is_more_aligned": True})
    table = pd.DataFrame({"metric": "m", "direction": "symmetric", "layer_y": [0, 1, 2, 0], "score": [0.3, -0.2, 0.1,
                                                                                                       0.0]})
    out = ceiling_normalised(table, ceiling)
    np.testing.assert_allclose(out.score_ceiling_normalised, [0.6, -0.5, 0.5, 0.0])
    np.testing.assert_allclose(out.normalised_ci_low[[0, 1, 3]], [0.3 / 0.6, -0.2 / 0.3, 0.0])
    np.testing.assert_allclose(out.normalised_ci_high[[0, 1, 3]], [0.3 / 0.4, -0.2 / 0.5, 0.0])
    assert np.isnan(out.normalised_ci_low[2]) and np.isnan(out.normalised_ci_high[2])  # ceiling interval reaches 0
