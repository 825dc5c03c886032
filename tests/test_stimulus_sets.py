"""Honest stimulus sets: `stimuli.n` (omitted = all, "all", bad values, too large), set names that say what they
hold, stores keyed by the ordered stimulus ids, and image/caption stores paired by image id."""

import json

import numpy as np
import pytest
from PIL import Image

import align
from align.cli import main
from align.config import SYNTHETIC_DEFAULT_N
from align.config import ConfigError
from align.config import parse_config
from align.data import StimulusError
from align.data import load_coco
from align.data import load_image_captions
from align.data import order_hash
from align.data import stimulus_set_name
from align.experiments import paired_layers
from align.store import StoreMismatchError
from align.store import StoreWriter
from align.store import open_store

N_IMAGES = 60
BASE = {"name": "t", "output": "results/t", "models": [{"name": "a"}, {"name": "b"}]}


@pytest.fixture
def folder(tmp_path):
    """A folder of 60 tiny images with 2 captions each (``captions.jsonl``), named ``sixty``."""
    root = tmp_path / "sixty"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(N_IMAGES):
        Image.fromarray(np.full((6, 8, 3), i, dtype=np.uint8)).save(root / "images" / f"im{i:02d}.png")
        rows += [{"image_id": f"im{i:02d}", "caption": f"picture {i}"}, {"image_id": f"im{i:02d}", "caption": "x"}]
    (root / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def _folder_config(folder, **stimuli):
    return {**BASE, "stimuli": {"kind": "folder", "images": str(folder / "images"),
                                "captions": str(folder / "captions.jsonl"), **stimuli}}


# ------------------------------------------------------------------------------------------------ [stimuli] n


@pytest.mark.parametrize("value", [-5, 0, 2, 2.5, "ten", True, "All"])
def test_bad_n_is_a_config_error_naming_key_and_value(value):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "stimuli": {"kind": "coco", "root": "x", "n": value}})
    assert f"stimuli.n = {value!r}" in str(err.value) and "'all'" in str(err.value)


def test_omitted_or_all_n_means_every_stimulus_and_one_fingerprint(folder):
    omitted = parse_config(_folder_config(folder))
    written = parse_config(_folder_config(folder, n="all"))
    assert omitted.stimuli.n is None and written.stimuli.n is None
    assert omitted.fingerprint() == written.fingerprint()
    assert parse_config(_folder_config(folder, n=30)).fingerprint() != omitted.fingerprint()


def test_synthetic_keeps_a_default_and_refuses_all():
    assert parse_config(BASE).stimuli.n == SYNTHETIC_DEFAULT_N == 500
    assert parse_config(BASE).fingerprint() == parse_config({**BASE, "stimuli": {"n": 500}}).fingerprint()
    with pytest.raises(ConfigError, match="'all' has no meaning for kind 'synthetic'.*default 500"):
        parse_config({**BASE, "stimuli": {"n": "all"}})


def test_omitted_n_uses_all_sixty_images(folder, tmp_path):
    from align.experiments._stimuli_from_config import stimuli_from_config

    stimuli = stimuli_from_config(parse_config(_folder_config(folder)).stimuli, tmp_path)
    assert len(stimuli) == N_IMAGES and stimuli.name == "sixty"
    assert stimuli_from_config(parse_config(_folder_config(folder, n="all")).stimuli, tmp_path).name == "sixty"
    first = stimuli_from_config(parse_config(_folder_config(folder, n=25)).stimuli, tmp_path)
    assert first.name == "sixty-first25" and first.image_ids == stimuli.image_ids[:25]
    every = stimuli_from_config(parse_config(_folder_config(folder, n=N_IMAGES)).stimuli, tmp_path)
    assert every.name == "sixty"  # n equal to the size uses all of them: the plain name
    named = stimuli_from_config(parse_config(_folder_config(folder, n=25, name="mine")).stimuli, tmp_path)
    assert named.name == "mine"  # a name the user gives is used as it is


def test_set_names_say_what_they_hold():
    assert stimulus_set_name("coco", 300, 300) == "coco"
    assert stimulus_set_name("coco", 40, 300) == "coco-first40"
    with pytest.raises(ValueError, match="used = 400"):
        stimulus_set_name("coco", 400, 300)


def test_n_above_the_set_size_names_both_numbers_and_the_source(folder):
    with pytest.raises(StimulusError) as err:
        load_image_captions(folder / "images", folder / "captions.jsonl", n=100)
    message = str(err.value)
    assert "n = 100" in message and f"only {N_IMAGES} images" in message and str(folder / "captions.jsonl") in message
    with pytest.raises(StimulusError, match="n = 0: must be a positive integer"):
        load_coco(folder, n=0)


def test_n_above_the_set_size_fails_before_extraction(folder, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'name = "t"\noutput = "{tmp_path / "out" / "t"}"\n'
                      f'[stimuli]\nkind = "folder"\nimages = "{folder / "images"}"\n'
                      f'captions = "{folder / "captions.jsonl"}"\nn = 100\n'
                      f'[[models]]\nname = "dinov2-small-imgfocus"\n')
    assert main(["extract", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "n = 100" in err and f"only {N_IMAGES} images" in err
    assert list(tmp_path.rglob("*.parquet")) == [] and not (tmp_path / "out" / "activations").exists()


# ------------------------------------------------------------------------------------------ stores keyed by ids


def test_two_n_give_two_stores_that_do_not_collide(folder, tmp_path):
    """Same set name (given), n = 6 then n = 8: two stores side by side, both valid; rerunning n = 6 reuses it."""
    torch = pytest.importorskip("torch")  # noqa: F841
    import _extract_tiny as tiny

    from align.extract import extract

    spec = tiny.vision_model(tmp_path / "model", "dinov2")
    paths = {}
    for n in (6, 8):
        stimuli = load_image_captions(folder / "images", folder / "captions.jsonl", name="mine", n=n)
        paths[n] = extract(spec, stimuli, tmp_path / "out", poolings="cls", device="cpu", progress=False)["cls"]
    assert paths[6] != paths[8] and paths[6].parent == paths[8].parent  # same set, condition, model folder
    for n, path in paths.items():
        store = open_store(path)
        assert store.stimulus_ids == [f"im{i:02d}" for i in range(n)]
        assert path.name == f"cls-{order_hash(store.stimulus_ids)}.parquet" == f"cls-{store.order_hash}.parquet"
    first6 = load_image_captions(folder / "images", folder / "captions.jsonl", name="mine", n=6)
    again = extract(spec, first6, tmp_path / "out", poolings="cls", device="cpu", progress=False)["cls"]
    assert again == paths[6]
    np.testing.assert_array_equal(open_store(again).layer(1), open_store(paths[8]).layer(1)[:6])


# ---------------------------------------------------------------------------------- image / caption pairing


def _store(path, ids, layers, groups=None):
    w = StoreWriter(path, stimulus_ids=ids, layer_names=[f"L{i}" for i in range(len(layers))],
                    meta={"model": "m", "pooling": "mean"}, groups=groups)
    w.write_part(ids, layers)
    return open_store(w.finalize())


def _image_and_caption_layers(n=24):
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(n, 4))
    xs = [shared @ rng.normal(size=(4, d)) + rng.normal(size=(n, d)) for d in (6, 9)]
    ys = [shared @ rng.normal(size=(4, d)) + rng.normal(size=(n, d)) for d in (5, 7, 8)]
    return [f"im{i:02d}" for i in range(n)], xs, ys


def test_image_store_pairs_with_its_caption_store_by_image_id(tmp_path):
    ids, xs, ys = _image_and_caption_layers()
    order = np.random.default_rng(1).permutation(len(ids))[:20]  # the caption store: 20 images, another order
    images = _store(tmp_path / "img.parquet", ids, xs)
    captions = _store(tmp_path / "cap.parquet", [f"{ids[i]}#0" for i in order], [y[order] for y in ys],
                      groups=[ids[i] for i in order])
    with pytest.raises(StoreMismatchError, match="images and their captions.*align_by_id=True"):
        align.pairwise("linear_cka", images, captions)
    grid = align.pairwise("linear_cka", images, captions, align_by_id=True)
    kept = sorted(order)  # image-store order
    manual = align.pairwise("linear_cka", [x[kept] for x in xs], [y[kept] for y in ys])
    np.testing.assert_allclose(grid.score(), manual.score(), rtol=1e-5, atol=1e-6)
    assert grid.n == 20
    # the other way round: captions as x, rows in the caption store's order
    back = align.pairwise("linear_cka", captions, images, align_by_id=True)
    manual_back = align.pairwise("linear_cka", [y[order] for y in ys], [x[order] for x in xs])
    np.testing.assert_allclose(back.score(), manual_back.score(), rtol=1e-5, atol=1e-6)
    # the experiments' pairing (score.caption = "first") gives the same rows
    _, px, py = paired_layers(images, captions, "first", align_by_id=True)
    np.testing.assert_allclose(align.pairwise("linear_cka", px, py).score(), grid.score(), rtol=1e-5, atol=1e-6)


def test_caption_store_with_several_captions_per_image_is_refused(tmp_path):
    ids, xs, ys = _image_and_caption_layers(8)
    images = _store(tmp_path / "img.parquet", ids, xs)
    cap_ids = [f"{i}#{k}" for i in ids for k in (0, 1)]
    rows = np.repeat(np.arange(len(ids)), 2)
    captions = _store(tmp_path / "cap.parquet", cap_ids, [y[rows] for y in ys], groups=[i for i in ids for _ in "01"])
    with pytest.raises(StoreMismatchError, match=r"several captions per image.*'im00#0', 'im00#1'.*captions=k"):
        align.pairwise("linear_cka", images, captions, align_by_id=True)


def test_unpairable_stores_name_both_stores_and_example_ids(tmp_path):
    ids, xs, ys = _image_and_caption_layers(8)
    images = _store(tmp_path / "img.parquet", ids, xs)
    others = _store(tmp_path / "other.parquet", [f"photo{i}#0" for i in range(8)], ys)
    with pytest.raises(StoreMismatchError) as err:
        align.pairwise("linear_cka", images, others, align_by_id=True)
    message = str(err.value)
    assert "share no stimulus id" in message and str(images.path) in message and str(others.path) in message
    assert "'im00'" in message and "'photo0#0'" in message
    # two caption stores of different captions (#0 vs #1) are not image/caption pairs either
    first = _store(tmp_path / "c0.parquet", [f"{i}#0" for i in ids], ys)
    second = _store(tmp_path / "c1.parquet", [f"{i}#1" for i in ids], ys)
    with pytest.raises(StoreMismatchError, match="share no stimulus id"):
        align.pairwise("linear_cka", first, second, align_by_id=True)
