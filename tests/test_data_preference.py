"""Pick-a-Pic style preference pairs from a generated Parquet file."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from align.data import StimulusError
from align.data import load_pick_a_pic


def _jpeg(value):
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), value, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def parquet(tmp_path):
    rows = [  # caption, label_0, label_1, jpg_1 decodable
        ("a red cube", 1.0, 0.0, True),
        ("a blue ball", 0.0, 1.0, True),
        ("a tie", 0.5, 0.5, True),
        ("no label", None, 1.0, True),
        ("nan label", float("nan"), 0.0, True),
        ("", 1.0, 0.0, True),
        ("broken image", 0.0, 1.0, False),
    ]
    table = pa.table({
        "caption": [r[0] for r in rows],
        "jpg_0": [_jpeg(10 * i) for i in range(len(rows))],
        "jpg_1": [_jpeg(200) if r[3] else b"not a jpeg" for r in rows],
        "label_0": pa.array([r[1] for r in rows], pa.float64()),
        "label_1": pa.array([r[2] for r in rows], pa.float64()),
    })
    path = tmp_path / "pickapic.parquet"
    pq.write_table(table, path)
    return path


def test_pairs_labels_and_exclusions(parquet):
    prefs = load_pick_a_pic(parquet)
    assert prefs.name == "pickapic" and len(prefs) == 3
    assert [(p.pair_id, p.caption, p.preferred) for p in prefs.pairs] == [
        ("pair000000", "a red cube", 0), ("pair000001", "a blue ball", 1), ("pair000006", "broken image", 1)]
    report = prefs.report
    assert report.unit == "pairs" and report.n_in == 7 and report.n_out == 3 and report.n_excluded == 4
    assert report.excluded == {"tie": ("pair000002",), "missing_label": ("pair000003", "pair000004"),
                               "empty_caption": ("pair000005",)}


def test_images_decode_lazily_and_errors_name_the_row(parquet):
    prefs = load_pick_a_pic(parquet)
    assert prefs._images is None
    img = prefs.load_image(1, 0)
    assert img.size == (8, 6) and abs(int(np.asarray(img).mean()) - 10) <= 2
    with pytest.raises(StimulusError, match=r"row 6 \(pair000006\), jpg_1"):
        prefs.load_image(2, 1)
    with pytest.raises(StimulusError, match="row 6"):
        prefs.to_stimulus_set(parquet.parent / "cache")


def test_as_stimulus_set_with_cache(parquet, tmp_path):
    prefs = load_pick_a_pic(parquet, name="pp", n=2)
    assert len(prefs) == 2 and prefs.report.is_empty
    s = prefs.to_stimulus_set(tmp_path / "cache")
    assert s.image_ids == ["pair000000_0", "pair000000_1", "pair000001_0", "pair000001_1"]
    assert [x.extra["preferred"] for x in s.stimuli] == [True, False, False, True]
    assert {x.group for x in s.stimuli[:2]} == {"pair000000"} and s.stimuli[0].captions == ("a red cube",)
    assert s.stimuli[0].image.suffix == ".jpg" and s.stimuli[0].image.read_bytes() == prefs.image_bytes(0, 0)
    assert np.asarray(s.load_image(3)).mean() > 150
    mtime = s.stimuli[0].image.stat().st_mtime_ns
    assert prefs.to_stimulus_set(tmp_path / "cache").stimuli[0].image.stat().st_mtime_ns == mtime


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"caption": ["x"], "label_0": [1.0]}), path)
    with pytest.raises(StimulusError, match="jpg_0"):
        load_pick_a_pic(path)
