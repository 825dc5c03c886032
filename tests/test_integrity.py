"""Integrity (issue 10, item 4): page checksums, duplicate ids on read, duplicated stimuli, reproducible store bytes."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import align
from align.config import ConfigError
from align.config import parse_config
from align.data import DuplicateStimulusError
from align.data import group_fold_ids
from align.data import load_image_captions
from align.data import order_hash
from align.experiments import score_pair
from align.results import read_results
from align.results import write_results
from align.store import StoreFormatError
from align.store import StoreWriter
from align.store import open_store


def _write_store(path, ids, layers, *, groups=None, batches=None):
    w = StoreWriter(path, stimulus_ids=ids, layer_names=[f"layer{i}" for i in range(len(layers))],
                    meta={"model": "m", "pooling": "mean", "modality": "vision" if groups is None else "language",
                          "condition": "original", "stimulus_set": "s"}, groups=groups)
    for rows in batches or [np.arange(len(ids))]:
        w.write_part([ids[r] for r in rows], [x[rows] for x in layers])
    return w.finalize()


@pytest.fixture
def small_store(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"img{i}" for i in range(40)]
    layers = [rng.standard_normal((40, 16)).astype(np.float32) for _ in range(3)]
    return _write_store(tmp_path / "store.parquet", ids, layers), layers


def _chunk(path, column_name):
    """(first byte, size) of a column chunk's pages in the file."""
    md = pq.ParquetFile(path).metadata
    for i in range(md.num_columns):
        c = md.row_group(0).column(i)
        if c.path_in_schema.split(".")[0] == column_name:
            return (c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset), c.total_compressed_size
    raise KeyError(column_name)


def _flip(path, offsets):
    data = bytearray(path.read_bytes())
    for off in offsets:
        data[off] ^= 0xFF
    path.write_bytes(bytes(data))


# -- 1. page checksums -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 2])
@pytest.mark.parametrize("where", [0.2, 0.5, 0.95])
def test_a_flipped_byte_in_a_data_page_is_an_error_naming_the_file(small_store, layer, where):
    path, layers = small_store
    np.testing.assert_array_equal(open_store(path).layer(layer), layers[layer])
    start, size = _chunk(path, f"layer{layer}")
    offset = start + int(size * where)
    assert 64 < offset - start < size and offset < len(path.read_bytes()) - 1000  # in the page data, not the footer
    _flip(path, [offset])
    store = open_store(path)  # ids and metadata are intact
    with pytest.raises(StoreFormatError, match=rf"{path.name}.*layer{layer}.*checksum.*delete it and re-extract"):
        store.layer(layer)
    other = (layer + 1) % 3
    np.testing.assert_array_equal(store.layer(other), layers[other])  # the other pages still read


def test_a_thousand_flipped_bytes_never_load_silently(small_store):
    path, _ = small_store
    start, size = _chunk(path, "layer1")
    rng = np.random.default_rng(1)
    _flip(path, start + 64 + rng.choice(size - 64, size=1000, replace=False))
    with pytest.raises(StoreFormatError, match="delete it and re-extract"):
        open_store(path).layer(1)


def test_a_damaged_id_column_is_an_error_on_open(small_store):
    path, _ = small_store
    start, size = _chunk(path, "stimulus_id")
    _flip(path, [start + size // 2])
    with pytest.raises(StoreFormatError, match=rf"{path.name}.*stimulus ids.*delete it and re-extract"):
        open_store(path)


def test_a_store_written_without_checksums_still_reads(small_store, tmp_path):
    path, layers = small_store
    old = tmp_path / "old.parquet"
    pq.write_table(pq.read_table(path), old, write_page_checksum=False)
    np.testing.assert_array_equal(open_store(old).layer(1), layers[1])


def test_results_tables_are_checksummed(tmp_path):
    frame = pd.DataFrame({"experiment": "layerwise", "model_x": "a", "layer_x": np.arange(200) % 10,
                          "model_y": "b", "layer_y": np.arange(200) // 10, "metric": "linear_cka",
                          "direction": "symmetric", "score": np.linspace(0, 1, 200)})
    path = write_results(frame, tmp_path / "job.parquet")
    assert read_results(path)["score"].tolist() == frame["score"].tolist()
    start, size = _chunk(path, "score")
    _flip(path, [start + size // 2])
    with pytest.raises(ValueError, match=rf"{path.name}.*damaged.*delete it and rerun"):
        read_results(path)


# -- 2. duplicate ids on read ------------------------------------------------------------------------------------


def test_a_store_with_a_repeated_id_is_refused_naming_it(small_store, tmp_path):
    path, _ = small_store
    table = pq.read_table(path)
    ids = table.column("stimulus_id").to_pylist()
    rows = list(range(len(ids))) + [3]
    forged = table.take(pa.array(rows))
    meta = json.loads(table.schema.metadata[b"align"])
    meta.update(n_stimuli=len(rows), stimulus_order_hash=order_hash([ids[r] for r in rows]))
    forged = forged.replace_schema_metadata({b"align": json.dumps(meta).encode()})
    hand_made = tmp_path / "hand_made.parquet"
    pq.write_table(forged, hand_made)
    with pytest.raises(StoreFormatError, match=r"hand_made\.parquet: 1 stimulus id\(s\) occur more than once.*'img3'"):
        open_store(hand_made)


# -- 4. reproducible bytes ---------------------------------------------------------------------------------------


def test_a_store_written_twice_is_the_same_bytes_with_created_pinned(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    rng = np.random.default_rng(2)
    ids = [f"img{i}#0" for i in range(30)]
    layers = [rng.standard_normal((30, 8)).astype(np.float32), rng.standard_normal((30, 5)).astype(np.float32)]
    groups = [f"img{i}" for i in range(30)]
    a = _write_store(tmp_path / "a" / "s.parquet", ids, layers, groups=groups, batches=[np.arange(30)])
    b = _write_store(tmp_path / "b" / "s.parquet", ids, layers, groups=groups,
                     batches=[np.arange(20, 30), np.arange(0, 7), np.arange(7, 20)])  # other parts, other order
    assert a.read_bytes() == b.read_bytes()
    assert open_store(a).meta["created"] == "2023-11-14T22:13:20+00:00"


def test_a_bad_source_date_epoch_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH = 'yesterday'"):
        _write_store(tmp_path / "s.parquet", ["a", "b"], [np.ones((2, 3), np.float32)])


# -- 3. duplicated stimuli ---------------------------------------------------------------------------------------


@pytest.fixture
def folder_with_copies(tmp_path):
    """6 images: img1 is a byte copy of img0; img3 and img4 differ but have the same captions (up to case and
    punctuation); img5 shares one caption with img2 among different ones (not a copy)."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in (0, 2, 3, 4, 5):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"img{i}.png")
    (images / "img1.png").write_bytes((images / "img0.png").read_bytes())
    captions = {"img0": ["a cat"], "img1": ["a cat on a mat"], "img2": ["a dog", "a brown dog"],
                "img3": ["A red car.", "a car"], "img4": ["a  red car", "A car!"],
                "img5": ["a dog", "a black dog"]}
    lines = [json.dumps({"image_id": i, "caption": c}) for i, cs in captions.items() for c in cs]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return images, tmp_path / "captions.jsonl"


def test_copies_are_refused_by_default_naming_them(folder_with_copies):
    with pytest.raises(DuplicateStimulusError,
                       match=r"2 group\(s\).*\['img0', 'img1'\] \(same image bytes\); \['img3', 'img4'\] \(same "
                             r"captions\).*duplicates='group'"):
        load_image_captions(*folder_with_copies)


def test_copies_kept_with_group_share_one_fold(folder_with_copies):
    s = load_image_captions(*folder_with_copies, duplicates="group")
    assert s.copies() == [("img0", "img1"), ("img3", "img4")]
    assert s.fold_groups() == ["img0", "img0", "img2", "img3", "img3", "img5"]
    folds = s.fold_ids(folds=2, seed=0)
    assert folds[0] == folds[1] and folds[3] == folds[4] and set(folds) == {0, 1}
    with pytest.raises(ValueError, match="duplicates = 'drop'"):
        s.check_duplicates("drop")


def test_group_folds_without_copies_are_sklearn_kfold():
    from sklearn.model_selection import KFold

    expected = np.empty(23, int)
    for f, (_, test) in enumerate(KFold(5, shuffle=True, random_state=3).split(np.zeros(23))):
        expected[test] = f
    np.testing.assert_array_equal(group_fold_ids([f"s{i}" for i in range(23)], 5, seed=3), expected)
    with pytest.raises(ValueError, match="5 folds but only 3 groups"):
        group_fold_ids(list("aabbcc"), 5)


def _duplicated_random(n: int, p: int, q: int, seed: int):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, p)).astype(np.float32), rng.standard_normal((n, q)).astype(np.float32)
    return np.concatenate([x, x]), np.concatenate([y, y]), [f"s{i}" for i in range(n)] * 2


def test_every_stimulus_duplicated_scores_zero_with_grouped_folds():
    plain, grouped = [], []
    for seed in range(3):
        x, y, groups = _duplicated_random(40, 64, 48, seed)
        plain += list(align.pairwise("linear_predictivity", [x], [y]).to_frame()["score"])
        grouped += list(align.pairwise("linear_predictivity", [x], [y],
                                       metric_kwargs={"folds": group_fold_ids(groups, 5)}).to_frame()["score"])
    assert np.mean(plain) >= 0.4  # the silent wrong result: copies in training and held-out folds
    assert abs(np.mean(grouped)) < 0.05


def test_score_pair_groups_copies_for_linear_predictivity(tmp_path):
    x, y, _ = _duplicated_random(40, 64, 48, 0)
    image_ids = [f"img{i}" for i in range(80)]
    vision = open_store(_write_store(tmp_path / "v.parquet", image_ids, [x]))
    language = open_store(_write_store(tmp_path / "l.parquet", [f"{i}#0" for i in image_ids], [y],
                                       groups=image_ids))
    groups = {sid: f"img{i % 40}" for i, sid in enumerate(image_ids)}  # img40 is a copy of img0, ...
    plain = score_pair(vision, language, "linear_predictivity", preprocess="none")
    grouped = score_pair(vision, language, "linear_predictivity", preprocess="none", groups=groups)
    assert plain["score"].mean() >= 0.4 and abs(grouped["score"].mean()) < 0.1
    unique = score_pair(vision, language, "linear_predictivity", preprocess="none",
                        groups={sid: sid for sid in image_ids})
    np.testing.assert_allclose(unique["score"], plain["score"])  # no copies: the usual folds


def _config(duplicates=None, **stimuli):
    table = {"kind": "folder", **stimuli}
    if duplicates is not None:
        table["duplicates"] = duplicates
    return parse_config({"name": "t", "output": "out", "stimuli": table,
                         "models": [{"name": "tiny-dinov2"}, {"name": "tiny-gpt2"}]})


def test_config_duplicates_key(folder_with_copies):
    from align.experiments._stimuli_from_config import stimuli_from_config

    images, captions = folder_with_copies
    assert _config(images=str(images), captions=str(captions)).stimuli.duplicates == "error"
    with pytest.raises(ConfigError, match="stimuli.duplicates = 'drop'; allowed: 'error'"):
        _config("drop", images=str(images), captions=str(captions))
    with pytest.raises(DuplicateStimulusError, match="img0"):
        stimuli_from_config(_config(images=str(images), captions=str(captions)).stimuli, images.parent)
    kept = stimuli_from_config(_config("group", images=str(images), captions=str(captions)).stimuli, images.parent)
    assert len(kept) == 6 and kept.copies() == [("img0", "img1"), ("img3", "img4")]
