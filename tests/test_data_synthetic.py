"""Synthetic scenes: deterministic, consistent captions / masks / wrong captions, atomic reuse."""

import json

import numpy as np
import pytest

from align.data import StimulusError
from align.data import synthetic_scenes
from align.data._synthetic import COLORS
from align.data._synthetic import POSITIONS

N = 24


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return synthetic_scenes(tmp_path_factory.mktemp("syn"), n=N, seed=0, image_size=96)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_name_layout_and_counts(scenes):
    assert scenes.name == "synthetic-n24-s0-px96"
    assert len(scenes) == N
    folder = scenes.stimuli[0].image.parent.parent
    assert {p.name for p in folder.iterdir()} == {"images", "masks", "captions.jsonl", "scenes.jsonl", "params.json"}
    assert len(list((folder / "images").glob("*.png"))) == N
    lines = (folder / "captions.jsonl").read_text().splitlines()
    assert len(lines) == sum(len(s.captions) for s in scenes.stimuli)
    assert json.loads(lines[0]) == {"image_id": "scene00000", "caption_id": "scene00000#0",
                                    "caption": scenes.stimuli[0].captions[0]}
    assert all(s.group is None for s in scenes.stimuli)


def test_same_seed_identical_bytes_and_different_seed_differs(scenes, tmp_path):
    folder = scenes.stimuli[0].image.parent.parent
    again = synthetic_scenes(tmp_path / "a", n=N, seed=0, image_size=96)
    assert _files(folder) == _files(again.stimuli[0].image.parent.parent)
    other = synthetic_scenes(tmp_path / "b", n=N, seed=1, image_size=96)
    assert other.name == "synthetic-n24-s1-px96"
    a, b = _files(folder), _files(other.stimuli[0].image.parent.parent)
    assert a["captions.jsonl"] != b["captions.jsonl"]
    assert sum(a[k] != b[k] for k in a if k.startswith("images/")) > N // 2


def test_scene_i_does_not_depend_on_n(scenes, tmp_path):
    small = synthetic_scenes(tmp_path, n=5, seed=0, image_size=96)
    for s, t in zip(small.stimuli, scenes.stimuli):
        assert s.captions == t.captions and s.extra == t.extra
        assert s.image.read_bytes() == t.image.read_bytes()


def test_reused_without_rerendering_and_params_checked(scenes, tmp_path):
    first = synthetic_scenes(tmp_path, n=3, seed=0, image_size=64)
    mtime = first.stimuli[0].image.stat().st_mtime_ns
    second = synthetic_scenes(tmp_path, n=3, seed=0, image_size=64)
    assert second.stimuli[0].image.stat().st_mtime_ns == mtime
    assert second.image_ids == first.image_ids
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    params = tmp_path / first.name / "params.json"
    params.write_text(params.read_text().replace('"version": 1', '"version": 0'))
    with pytest.raises(StimulusError, match="other parameters"):
        synthetic_scenes(tmp_path, n=3, seed=0, image_size=64)


def test_masks_match_drawn_objects(scenes):
    for i, s in enumerate(scenes.stimuli):
        desc = s.extra["description"]
        img, mask = np.asarray(scenes.load_image(i)), scenes.load_mask(i)
        assert mask.shape == img.shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask)) == set(range(desc["count"] + 1)), s.image_id
        is_colour = (img == np.array(COLORS[desc["color"]], dtype=np.uint8)).all(axis=-1)
        side = mask.shape[0]
        for k, pos in enumerate(desc["positions"], start=1):
            obj = mask == k
            assert is_colour[obj].mean() > 0.6, (s.image_id, k)  # object pixels (interior exact, rim blended)
            cy, cx = np.argwhere(obj).mean(axis=0) / side
            assert abs(cx - POSITIONS[pos][0]) < 0.06 and abs(cy - POSITIONS[pos][1]) < 0.06, (s.image_id, pos)
        assert is_colour[mask == 0].mean() < 0.005, s.image_id  # no object colour outside the mask


def test_captions_are_paraphrases_of_the_description(scenes):
    numbers = {1: ("one", "a", "an", "single"), 2: ("two",), 3: ("three",)}
    for s in scenes.stimuli:
        d = s.extra["description"]
        assert len(s.captions) >= 3 and len(set(s.captions)) == len(s.captions)
        for c in s.captions:
            words = c.lower().rstrip(".").replace(",", "").split()
            assert d["color"] in words and d["background"] in words, c
            assert any(w.startswith(d["shape"]) for w in words), c
            assert any(n in words for n in numbers[d["count"]]), c


def test_wrong_caption_changes_exactly_one_attribute(scenes):
    seen = set()
    for s in scenes.stimuli:
        d, w, attr = s.extra["description"], s.extra["wrong_description"], s.extra["wrong_attribute"]
        seen.add(attr)
        changed = {k for k in ("color", "shape", "count", "size", "background", "texture") if d[k] != w[k]}
        assert changed == {attr}, s.image_id
        assert s.extra["wrong_caption"] not in s.captions
        if attr != "count":
            assert w["positions"] == d["positions"]
            a, b = s.captions[0].split(), s.extra["wrong_caption"].split()
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
        else:
            assert len(w["positions"]) == w["count"] and w["positions"][:1] == d["positions"][:1]
    assert seen == {"color", "shape", "count"}


def test_renderings_share_a_description_and_group(tmp_path):
    s = synthetic_scenes(tmp_path, n=4, seed=3, image_size=64, renderings=3)
    assert s.name == "synthetic-n4-s3-px64-r3" and len(s) == 12
    assert s.image_ids[:3] == ["scene00000-r0", "scene00000-r1", "scene00000-r2"]
    first = s.stimuli[:3]
    assert {x.group for x in first} == {"scene00000"}
    assert len({x.captions for x in first}) == 1 and len({x.extra["wrong_caption"] for x in first}) == 1
    assert len({x.image.read_bytes() for x in first}) == 3


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="renderings"):
        synthetic_scenes(tmp_path, n=2, renderings=0)
