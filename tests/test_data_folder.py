"""Loaders: folder + JSONL/CSV, Flickr token file, COCO (compact shared subset and official json)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from align.data import StimulusError
from align.data import load_coco
from align.data import load_flickr
from align.data import load_image_captions


def _image(path, size=(8, 6), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    _image(tmp_path / "images" / "a.jpg")
    _image(tmp_path / "images" / "b.PNG", value=50)
    _image(tmp_path / "images" / "7.jpeg", value=90)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    return tmp_path


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_in_file_order_with_int_ids_and_masks(folder):
    _image(folder / "masks" / "b.png", value=1)
    captions = _jsonl(folder / "captions.jsonl", [
        {"image_id": "b", "caption_id": 1, "caption": "  second image  "},
        {"image_id": "a", "caption_id": 2, "caption": "first image"},
        {"image_id": 7, "caption_id": 3, "caption": "numbered"},
        {"image_id": "b", "caption_id": 4, "caption": "again b"},
    ])
    s = load_image_captions(folder / "images", captions, masks_dir=folder / "masks")
    assert s.name == folder.name and s.image_ids == ["b", "a", "7"]
    assert s.stimuli[0].captions == ("second image", "again b")
    assert s.stimuli[0].image.name == "b.PNG" and s.stimuli[2].image.name == "7.jpeg"
    assert s.stimuli[0].mask is not None and s.stimuli[1].mask is None
    assert s.reports == ()
    assert load_image_captions(folder / "images", captions, name="x", n=2).image_ids == ["b", "a"]


def test_csv_kaggle_flickr_layout_and_image_id_layout(folder):
    (folder / "captions.txt").write_text('image,caption\na.jpg,"A dog, running."\nb.PNG,A cat .\na.jpg,Another\n')
    s = load_image_captions(folder / "images", folder / "captions.txt", name="k")
    assert s.image_ids == ["a", "b"] and s.stimuli[0].captions == ("A dog, running.", "Another")
    (folder / "c.csv").write_text("image_id,caption,group\n7,seven,digits\na,letter,letters\n")
    s = load_image_captions(folder / "images", folder / "c.csv")
    assert [(x.image_id, x.group) for x in s.stimuli] == [("7", "digits"), ("a", "letters")]
    (folder / "bad.csv").write_text("file,text\na.jpg,x\n")
    with pytest.raises(StimulusError, match="image,caption"):
        load_image_captions(folder / "images", folder / "bad.csv")


def test_missing_image_and_empty_caption_are_named_or_reported(folder):
    captions = _jsonl(folder / "captions.jsonl", [
        {"image_id": "a", "caption": "ok"}, {"image_id": "ghost", "caption": "no file"},
        {"image_id": "b", "caption": "  "}, {"image_id": "7", "caption": "fine"}, {"image_id": "7", "caption": ""},
    ])
    with pytest.raises(StimulusError, match=r"ghost") as e:
        load_image_captions(folder / "images", captions)
    assert "b#0" in str(e.value) and "on_error='exclude'" in str(e.value)
    s = load_image_captions(folder / "images", captions, on_error="exclude")
    assert s.image_ids == ["a", "7"] and s.stimuli[1].captions == ("fine",)
    (report,) = s.reports
    assert report.n_in == 4 and report.n_out == 2 and report.n_excluded == 2
    assert report.excluded == {"missing_image": ("ghost",), "no_caption": ("b",)}
    assert report.removed_captions == {"empty_caption": ("b#0", "7#1")}
    with pytest.raises(ValueError, match="on_error"):
        load_image_captions(folder / "images", captions, on_error="skip")


def test_flickr_token_file(folder):
    token = folder / "Flickr8k.token.txt"
    token.write_text("a.jpg#1\tA second caption .\na.jpg#0\tA first caption .\n\nb.PNG#0\tB caption\n")
    s = load_flickr(token, folder / "images", name="flickr")
    assert s.image_ids == ["a", "b"] and s.stimuli[0].captions == ("A first caption .", "A second caption .")
    token.write_text("a.jpg#0 no tab here\n")
    with pytest.raises(StimulusError, match=r"Flickr8k.token.txt:1"):
        load_flickr(token, folder / "images")


def test_coco_compact_shared_subset(shared_data):
    root = os.path.join(shared_data, "coco_captions_subset")
    if not os.path.isdir(root):
        pytest.skip("coco_captions_subset is not present")
    s = load_coco(root, n=40)
    assert s.name == "coco_captions_subset-first40" and len(s) == 40  # the name says what the set holds
    first = s.stimuli[0]
    assert first.image_id == "139" and len(first.captions) == 5
    assert first.mask is not None and first.group == "tv" and first.extra["categories"][0] == "tv"
    mask, img = s.load_mask(0), s.load_image(0)
    assert mask.shape == (img.height, img.width) and mask.max() == len(first.extra["categories"])
    unmasked = [x for x in s.stimuli if x.mask is None]
    assert unmasked and all(x.group is None for x in unmasked)


def _official(tmp_path):
    root = tmp_path / "coco"
    _image(root / "val2017" / "000000000001.jpg", size=(20, 10))
    _image(root / "val2017" / "000000000002.jpg", size=(20, 10), value=60)  # distinct images: copies are refused
    _image(root / "val2017" / "000000000003.jpg", size=(20, 10), value=120)
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 10, "width": 20} for i in (1, 2, 3)]
    (root / "annotations").mkdir()
    captions = root / "annotations" / "captions_val2017.json"
    captions.write_text(json.dumps({"images": images, "annotations": [
        {"id": 10, "image_id": 1, "caption": "A box."}, {"id": 11, "image_id": 2, "caption": "Nothing."},
        {"id": 12, "image_id": 1, "caption": "A red box."}, {"id": 13, "image_id": 3, "caption": "Unlisted."}]}))
    counts = [5 * 10 + 3, 3, 144]  # uncompressed RLE (column-major, 10 x 20): rows 3..5 of column 5
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps({
        "images": images[:2],
        "categories": [{"id": 1, "name": "box"}, {"id": 5, "name": "stick"}],
        "annotations": [
            {"id": 100, "image_id": 1, "category_id": 5, "iscrowd": 1, "area": 3.0,
             "segmentation": {"size": [10, 20], "counts": counts}},
            {"id": 101, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 60.0,
             "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]]}]}))
    return root, captions


def test_coco_official_json_with_polygon_and_rle(tmp_path):
    root, captions = _official(tmp_path)
    s = load_coco(captions, cache_dir=tmp_path / "cache")
    assert s.name == "coco-val2017" and s.image_ids == ["1", "2", "3"]
    one, two, three = s.stimuli
    assert one.captions == ("A box.", "A red box.") and one.image.name == "000000000001.jpg"
    assert one.group == "box" and one.extra["categories"] == ["box", "stick"]
    mask = s.load_mask(0)
    assert mask.shape == (10, 20)
    assert (mask > 0).sum() == 60 and (mask[2:8, 2:12] > 0).all()  # the 10x6 polygon ...
    assert (mask == 2).sum() == 3 and (mask[3:6, 5] == 2).all()  # ... with the smaller stick painted over it
    assert two.group is None and s.load_mask(1).max() == 0  # listed, no instance: empty mask
    assert three.mask is None and three.group is None  # not in the instances file
    again = load_coco(captions, cache_dir=tmp_path / "cache", instances=False)
    assert all(x.mask is None for x in again.stimuli)
