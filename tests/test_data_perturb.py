"""Image and caption perturbations: exact pixel semantics, seeded scrambles, spaCy filters, never-silent reports."""

import numpy as np
import pytest
from PIL import Image

from align.data import Stimulus
from align.data import StimulusError
from align.data import StimulusSet
from align.data import caption_condition
from align.data import image_condition
from align.data import list_caption_conditions
from align.data import list_image_conditions


@pytest.fixture
def img_and_mask():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    arr[:10, :20] = (250, 10, 10)  # asymmetric block
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:20, 5:15] = 1
    mask[22:30, 20:28] = 2
    return Image.fromarray(arr), arr, mask


def test_canonical_names_and_specs():
    assert list_image_conditions() == ["original", "grayscale", "rotate(angle=90)", "blur(radius=2)",
                                       "thing_only(fill=mean)", "stuff_only(fill=mean)"]
    assert list_caption_conditions() == ["original", "scramble(seed=0)", "nouns_only", "nouns_verbs"]
    assert image_condition("rotate", angle=45.0).name == "rotate(angle=45)"
    assert image_condition("rotate(angle=45)") == image_condition("rotate", angle=45)
    assert image_condition("stuff_only(fill=inpaint)").name == "stuff_only(fill=inpaint)"
    assert image_condition("blur(radius=1.5)").name == "blur(radius=1.5)"
    assert image_condition("thing_only").needs_mask and not image_condition("blur").needs_mask
    with pytest.raises(ValueError, match="accepts"):
        image_condition("rotate", radius=3)
    with pytest.raises(ValueError, match="fill must be one of"):
        image_condition("thing_only", fill="zero")
    with pytest.raises(ValueError, match="unknown image condition 'spin'"):
        image_condition("spin")


def test_grayscale_has_equal_channels(img_and_mask):
    img, arr, mask = img_and_mask
    out = np.asarray(image_condition("grayscale").apply(img, None))
    assert out.shape == arr.shape and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_rotate_90_matches_rot90_and_keeps_size(img_and_mask):
    img, arr, mask = img_and_mask
    out = np.asarray(image_condition("rotate", angle=90).apply(img, None))
    np.testing.assert_allclose(out.astype(float), np.rot90(arr).astype(float), atol=1)
    wide = Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8) + 100)
    rotated = image_condition("rotate(angle=30)").apply(wide, None)
    assert rotated.size == (40, 20)
    assert (np.asarray(rotated)[0, 0] == 100).all()  # corner filled with the mean colour


def test_blur_changes_pixels_but_keeps_the_mean(img_and_mask):
    img, arr, mask = img_and_mask
    out = np.asarray(image_condition("blur", radius=2).apply(img, None)).astype(float)
    assert np.abs(out - arr).mean() > 10
    np.testing.assert_allclose(out.mean(axis=(0, 1)), arr.mean(axis=(0, 1)), atol=3)


@pytest.mark.parametrize("fill", ["mean", "blur", "inpaint"])
def test_thing_only_keeps_exactly_the_mask_pixels(img_and_mask, fill):
    img, arr, mask = img_and_mask
    out = np.asarray(image_condition("thing_only", fill=fill).apply(img, mask))
    objects = mask > 0
    assert (out[objects] == arr[objects]).all()
    assert (out[~objects] != arr[~objects]).any(axis=-1).mean() > 0.9
    if fill == "mean":
        assert (out[~objects] == np.rint(arr[objects].astype(float).mean(axis=0))).all()


@pytest.mark.parametrize("fill", ["mean", "blur", "inpaint"])
def test_stuff_only_keeps_exactly_the_background(img_and_mask, fill):
    img, arr, mask = img_and_mask
    out = np.asarray(image_condition("stuff_only", fill=fill).apply(img, mask))
    background = mask == 0
    assert (out[background] == arr[background]).all()
    assert (out[~background] != arr[~background]).any(axis=-1).mean() > 0.9
    if fill == "mean":
        assert (out[~background] == np.rint(arr[background].astype(float).mean(axis=0))).all()


def test_mask_conditions_refuse_missing_or_mismatched_masks(img_and_mask):
    img, arr, mask = img_and_mask
    with pytest.raises(StimulusError, match="needs a mask"):
        image_condition("thing_only").apply(img, None)
    with pytest.raises(StimulusError, match="does not match"):
        image_condition("stuff_only").apply(img, mask[:-1])


def _set(tmp_path, masks):
    stimuli = []
    for i, m in enumerate(masks):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)
        mask_path = None
        if m is not None:
            mask_path = tmp_path / f"{i}_mask.png"
            Image.fromarray(m).save(mask_path)
        stimuli.append(Stimulus(image_id=f"im{i}", image=path, captions=(f"caption {i}",), mask=mask_path))
    return StimulusSet(name="tiny", stimuli=stimuli)


def test_select_excludes_and_reports(tmp_path):
    good = np.zeros((8, 8), np.uint8)
    good[2:4, 2:4] = 1
    stimuli = _set(tmp_path, [good, None, np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8), good])
    for name in ("thing_only", "stuff_only(fill=inpaint)"):
        subset, report = image_condition(name).select(stimuli)
        assert subset.image_ids == ["im0", "im4"] and subset.name == "tiny-masked"
        assert report.n_in == 5 and report.n_out == 2 and report.n_excluded == 3
        assert report.excluded == {"no_mask": ("im1",), "empty_mask": ("im2",), "mask_covers_image": ("im3",)}
        assert subset.reports == (report,)
    same, report = image_condition("grayscale").select(stimuli)
    assert same is stimuli and report.is_empty
    with pytest.raises(StimulusError, match="has none"):
        image_condition("thing_only").select(_set(tmp_path, [None, None]))


def test_scramble_is_a_seeded_permutation_of_words():
    cond = caption_condition("scramble")
    texts = ["A man riding a wave on top of a surfboard.", "two dogs play in the snow together today"]
    out = cond.transform(texts, ["x#0", "y#0"])
    for t, o in zip(texts, out):
        assert sorted(o.split()) == sorted(t.split()) and o != t
    assert cond.transform(texts, ["x#0", "y#0"]) == out  # deterministic
    assert cond.transform(texts[:1], ["x#0"]) == out[:1]  # depends on the caption id, not the batch
    assert caption_condition("scramble(seed=1)").transform(texts, ["x#0", "y#0"]) != out


def test_nouns_only_and_nouns_verbs():
    pytest.importorskip("spacy")
    text = ["A man riding a wave on top of a surfboard."]
    assert caption_condition("nouns_only").transform(text, ["x#0"]) == ["man wave top surfboard"]
    assert caption_condition("nouns_verbs").transform(text, ["x#0"]) == ["man riding wave top surfboard"]


def test_empty_captions_are_removed_and_reported(tmp_path):
    pytest.importorskip("spacy")
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(paths[-1])
    stimuli = StimulusSet(name="s", stimuli=[
        Stimulus("a", paths[0], ("It is in there.", "A dog on a sofa.")),
        Stimulus("b", paths[1], ("It is.", "Of the.")),
    ])
    out, report = caption_condition("nouns_only").apply(stimuli)
    assert out.image_ids == ["a"] and out.stimuli[0].captions == ("dog sofa",)
    assert out.stimuli[0].extra["caption_index"] == [1] and out.name == "s"
    assert report.removed_captions == {"empty_after_condition": ("a#0", "b#0", "b#1")}
    assert report.excluded == {"no_caption_left": ("b",)} and report.n_out == 1
    assert out.reports == (report,)
    same, report = caption_condition("scramble").apply(stimuli)
    assert report.is_empty and same.image_ids == ["a", "b"]
