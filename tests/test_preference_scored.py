"""Per-caption scores (loaders, StimulusSet, config) and the preference contrast "scored": an image's highest- vs
lowest-scored caption, on small generated data and planted activations."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from align.config import ConfigError
from align.config import parse_config
from align.data import Stimulus
from align.data import StimulusError
from align.data import StimulusSet
from align.data import load_coco
from align.data import load_image_captions
from align.data._perturb import CaptionCondition
from align.experiments import contrast_items
from align.experiments import direction_scores
from align.experiments import run_experiment
from align.stats import paired_summary
from align.experiments import scored_caption_pairs
from align.experiments._stimuli_from_config import stimuli_from_config
from align.store import StoreWriter
from align.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
import _extract_tiny as tiny  # noqa: E402

BASE = {"name": "t", "output": "results/t", "models": [{"name": "a"}, {"name": "b"}]}


def _images(folder, ids):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in ids:
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ loaders


def test_jsonl_scores_follow_their_captions(tmp_path):
    images = _images(tmp_path / "images", ["a", "b"])
    captions = _jsonl(tmp_path / "captions.jsonl", [
        {"image_id": "a", "caption": "a one", "clip_score": 0.25},
        {"image_id": "b", "caption": "b one", "clip_score": "0.5"},  # a numeric string is a number
        {"image_id": "a", "caption": "   ", "clip_score": 0.9},     # empty: removed with its score
        {"image_id": "a", "caption": "a three", "clip_score": 31},
    ])
    s = load_image_captions(images, captions, caption_score="clip_score", on_error="exclude")
    assert s.caption_score == "clip_score"
    assert s.stimuli[0].captions == ("a one", "a three") and s.stimuli[0].caption_scores == (0.25, 31.0)
    assert s.stimuli[1].caption_scores == (0.5,)
    assert s.subset(ids=["b"]).stimuli[0].caption_scores == (0.5,)
    # the default field name is "score", absent here: no scores, nothing fails
    plain = load_image_captions(images, captions, on_error="exclude")
    assert plain.caption_score is None and all(x.caption_scores is None for x in plain.stimuli)
    assert load_image_captions(images, captions, caption_score=None, on_error="exclude").caption_score is None
    # scores do not change what a model embeds: the stores' key stays the same
    assert s.fingerprint() == plain.fingerprint()


def test_csv_and_compact_coco_scores(tmp_path):
    images = _images(tmp_path / "images", ["a", "b"])
    (tmp_path / "c.csv").write_text("image_id,caption,score\na,first,1.5\nb,second,-2\na,third,0\n")
    s = load_image_captions(images, tmp_path / "c.csv")
    assert s.caption_score == "score" and [x.caption_scores for x in s.stimuli] == [(1.5, 0.0), (-2.0,)]
    coco = tmp_path / "coco"
    _images(coco / "images", ["139"])
    _jsonl(coco / "captions.jsonl", [{"image_id": 139, "caption_id": 1, "caption": "x", "clip_score": 0.3},
                                     {"image_id": 139, "caption_id": 2, "caption": "y", "clip_score": 0.1}])
    c = load_coco(coco, caption_score="clip_score")
    assert c.caption_score == "clip_score" and c.stimuli[0].caption_scores == (0.3, 0.1)
    assert load_coco(coco).caption_score is None


@pytest.mark.parametrize("value, problem", [
    (None, "missing"), ("high", "'high' is not a number"), (float("nan"), "NaN"), (True, "True is not a number"),
    (float("inf"), "is not finite"),
])
def test_bad_jsonl_scores_name_file_line_and_caption(tmp_path, value, problem):
    images = _images(tmp_path / "images", ["a", "b"])
    rows = [{"image_id": "a", "caption": "a one", "score": 0.1}, {"image_id": "a", "caption": "a two"},
            {"image_id": "b", "caption": "b one", "score": 0.2}]
    if value is not None:
        rows[1]["score"] = value
    captions = _jsonl(tmp_path / "captions.jsonl", rows)  # json writes NaN / Infinity literals, which it reads back
    with pytest.raises(ValueError) as err:
        load_image_captions(images, captions, on_error="exclude")
    message = str(err.value)
    assert isinstance(err.value, StimulusError)
    assert str(captions) in message and "captions.jsonl:2 (caption a#1)" in message and problem in message


def test_bad_csv_score_cell(tmp_path):
    images = _images(tmp_path / "images", ["a"])
    (tmp_path / "c.csv").write_text("image_id,caption,score\na,first,1\na,second,\na,third,n/a\n")
    with pytest.raises(StimulusError, match=r"2 caption\(s\) do not: c.csv:3 \(caption a#1\): missing; "
                                            r"c.csv:4 \(caption a#2\): 'n/a' is not a number"):
        load_image_captions(images, tmp_path / "c.csv")


def test_stimulus_set_checks_scores_and_conditions_carry_them(tmp_path):
    img = Path("unused.png")
    with pytest.raises(StimulusError, match="2 captions but 1 caption scores"):
        StimulusSet("s", [Stimulus("a", img, ("x", "y"), caption_scores=(1.0,))], caption_score="score")
    with pytest.raises(StimulusError, match="names no caption_score"):
        StimulusSet("s", [Stimulus("a", img, ("x",), caption_scores=(1.0,))])
    with pytest.raises(StimulusError, match="has none"):
        StimulusSet("s", [Stimulus("a", img, ("x",))], caption_score="score")
    with pytest.raises(StimulusError, match="not a finite number"):
        StimulusSet("s", [Stimulus("a", img, ("x",), caption_scores=(float("nan"),))], caption_score="score")
    s = StimulusSet("s", [Stimulus("a", img, ("keep one", "drop", "keep two"), caption_scores=(1.0, 2.0, 3.0))],
                    caption_score="score")
    drop = CaptionCondition("drop", "drop", {}, "", lambda texts, ids: ["" if t == "drop" else t for t in texts])
    out, report = drop.apply(s)
    assert out.stimuli[0].captions == ("keep one", "keep two") and out.stimuli[0].caption_scores == (1.0, 3.0)
    assert report.removed_captions == {"empty_after_condition": ("a#1",)}


# ------------------------------------------------------------------------------------------------ the contrast


def _scored_set(scores, name="s"):
    items = [Stimulus(f"i{i}", Path(f"i{i}.png"), tuple(f"caption {k}" for k in range(len(sc))),
                      caption_scores=tuple(float(v) for v in sc)) for i, sc in enumerate(scores)]
    return StimulusSet(name, items, caption_score="clip_score")


def test_scored_pairs_pick_highest_and_lowest_and_count_exclusions():
    s = _scored_set([[0.2, 0.9, 0.1], [0.5], [0.3, 0.3], [1.0, 0.0, 1.0, 0.0], [-1, 2]])
    pairs = scored_caption_pairs(s)
    assert pairs.ids == ["i0", "i3", "i4"]
    assert pairs.high.tolist() == [1, 0, 1] and pairs.low.tolist() == [2, 1, 0]  # ties: the earlier caption
    assert pairs.caption_ids("high") == ["i0#1", "i3#0", "i4#1"]
    assert pairs.report.n_in == 5 and pairs.report.n_out == 3 and pairs.report.n_excluded == 2
    assert pairs.report.excluded == {"fewer_than_2_captions": ("i1",), "equal_scores": ("i2",)}
    with pytest.raises(ValueError, match="carries none"):
        scored_caption_pairs(StimulusSet("plain", [Stimulus("a", Path("a.png"), ("x", "y"))]))


def _store(path, ids, layer, modality, groups=None):
    w = StoreWriter(path, stimulus_ids=ids, layer_names=["layer_0"],
                    meta={"model": f"m-{modality}", "modality": modality, "pooling": "mean", "stimulus_set": "s",
                          "condition": "original", "config_fingerprint": "f"}, groups=groups)
    w.write_part(ids, [layer.astype(np.float32)])
    return open_store(w.finalize())


def _planted(tmp_path, *, n=120, k=3, seed=0, scores_follow_quality=True):
    """Images share a latent z with their captions; caption j of image i carries it with weight q[i, j] in [0, 1]
    (plus unit noise), so a higher q is genuinely closer to the image. Scores are q, or random."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    X = z @ rng.normal(size=(4, 20)) + 0.5 * rng.normal(size=(n, 20))
    q = rng.uniform(size=(n, k))
    B = rng.normal(size=(4, 15))
    Y = 2.0 * q[:, :, None] * (z @ B)[:, None, :] + rng.normal(size=(n, k, 15))
    scores = q if scores_follow_quality else rng.uniform(size=(n, k))
    stimuli = _scored_set(scores)
    ids = stimuli.image_ids
    vision = _store(tmp_path / "v.parquet", ids, X, "vision")
    language = _store(tmp_path / "l.parquet", [f"{i}#{j}" for i in ids for j in range(k)], Y.reshape(n * k, 15),
                      "language", groups=[i for i in ids for _ in range(k)])
    return stimuli, vision, language


@pytest.mark.parametrize("follow", [True, False])
def test_scored_accuracy_on_planted_and_random_scores(tmp_path, follow):
    stimuli, vision, language = _planted(tmp_path, scores_follow_quality=follow)
    pairs = scored_caption_pairs(stimuli)
    assert len(pairs.ids) == len(stimuli)
    items, folds = contrast_items("scored", stimuli, vision, language, None, 0, 5, pairs)
    assert [language.stimulus_ids[r] for r in items.y_pos] == pairs.caption_ids("high")
    assert [language.stimulus_ids[r] for r in items.y_neg] == pairs.caption_ids("low")
    assert all(len(r) == 3 for r in items.train_y)  # training caption: the mean of all three
    for direction in ("x_to_y", "y_to_x"):
        pos, neg = direction_scores("scored", direction, items, folds, vision.layer(0), language.layer(0))
        acc = {r["quantity"]: r for r in paired_summary(pos, neg, n_perm=0, n_boot=0, ci=0.95, seed=0)}["accuracy"]
        if follow:
            assert acc["score"] > 0.8 and acc["p_value"] < 1e-6, (direction, acc)
        else:
            assert 0.35 < acc["score"] < 0.65 and acc["p_value"] > 0.01, (direction, acc)


# ------------------------------------------------------------------------------------------------ config and run


@pytest.mark.parametrize("stimuli, experiment, message", [
    ({"kind": "synthetic"}, {"kind": "preference", "contrasts": ["scored"]},
     "'scored' compares an image's highest- and lowest-scored captions, but stimuli.kind = 'synthetic' carries no"),
    ({"kind": "flickr", "images": "i", "captions": "c"}, {"kind": "preference", "contrasts": ["matched", "scored"]},
     "stimuli.kind = 'flickr' carries no caption scores"),
    ({"kind": "synthetic", "caption_score": "clip_score"}, {}, "stimuli.caption_score applies to kind 'folder' or"),
    ({"kind": "folder", "images": "i", "captions": "c", "caption_score": ""}, {}, "stimuli.caption_score = ''"),
    ({"kind": "coco", "root": "r", "caption_score": 3}, {}, "stimuli.caption_score = 3"),
])
def test_config_errors(stimuli, experiment, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "stimuli": stimuli, "experiment": experiment})
    assert message in str(err.value)


def test_config_reaches_the_loader_and_unscored_data_fail_before_extraction(tmp_path):
    images = _images(tmp_path / "images", [f"i{i}" for i in range(6)])
    rows = [{"image_id": f"i{i}", "caption": f"caption {j} of image {i}", "clip_score": float(i + j)}
            for i in range(6) for j in range(2)]
    captions = _jsonl(tmp_path / "scored.jsonl", rows)
    stimuli = {"kind": "folder", "images": str(images), "captions": str(captions), "caption_score": "clip_score"}
    cfg = parse_config({**BASE, "output": str(tmp_path / "out"), "stimuli": stimuli,
                        "experiment": {"kind": "preference", "contrasts": ["scored"], "folds": 3}})
    assert stimuli_from_config(cfg.stimuli, tmp_path).caption_score == "clip_score"
    # no such field in the file: a clear error before any model is resolved (models "a", "b" do not exist)
    unscored = dataclasses.replace(cfg, stimuli=dataclasses.replace(cfg.stimuli, caption_score="cider"))
    with pytest.raises(ValueError, match=r"carries none: its captions file has no score field.*stimuli.caption_score"):
        run_experiment(unscored, progress=False)
    equal = _jsonl(tmp_path / "equal.jsonl", [{**r, "clip_score": 1.0} for r in rows])
    flat = dataclasses.replace(cfg, stimuli=dataclasses.replace(cfg.stimuli, captions=str(equal)))
    with pytest.raises(ValueError, match=r"only 0 images .*\(equal_scores"):
        run_experiment(flat, progress=False)


def test_scored_end_to_end_with_tiny_models(tmp_path):
    tiny.vision_model(tmp_path / "vision", "dinov2")
    tiny.language_model(tmp_path / "language", "bert")
    n = 12
    images = _images(tmp_path / "images", [f"i{i}" for i in range(n)])
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        texts = tiny.CAPTIONS[i % 5] if i != 0 else tiny.CAPTIONS[0][:1]  # image 0: one caption
        for j, text in enumerate(texts):
            rows.append({"image_id": f"i{i}", "caption": text,
                         "clip_score": 0.5 if i == 1 else float(rng.uniform())})  # image 1: equal scores
    captions = _jsonl(tmp_path / "captions.jsonl", rows)
    cfg = parse_config({
        "name": "scored", "output": str(tmp_path / "out" / "scored"),
        "stimuli": {"kind": "folder", "images": str(images), "captions": str(captions),
                    "caption_score": "clip_score", "duplicates": "group"},  # tiny.CAPTIONS repeat every 5 images
        "models": [{"name": str(tmp_path / "vision"), "modality": "vision", "pooling": ["cls"]},
                   {"name": str(tmp_path / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 8}, "score": {"metrics": ["linear_cka"]},
        "experiment": {"kind": "preference", "contrasts": ["matched", "scored"], "folds": 3, "layers": [1.0, 1.0],
                       "n_perm": 20, "n_boot": 20}})
    table = pd.read_parquet(run_experiment(cfg, progress=False))
    scored = table[table.contrast == "scored"]
    assert len(scored) == 2 * 4 and (scored.n == n - 2).all() and (scored.n_excluded == 2).all()
    assert (scored.caption == "mean").all() and (table[table.contrast == "matched"].n == n).all()
    exclusions = json.loads((Path(cfg.output) / "exclusions.json").read_text())
    assert exclusions["scored"]["excluded"] == {"fewer_than_2_captions": ["i0"], "equal_scores": ["i1"]}
    items = pd.read_parquet(Path(cfg.output) / "items.parquet")
    mine = items[items.contrast == "scored"]
    assert len(mine) == 2 * (n - 2) and set(mine.item_id) == {f"i{i}" for i in range(2, n)}
    by_image = {r["image_id"]: [] for r in rows}
    for r in rows:
        by_image[r["image_id"]].append(r["clip_score"])
    for r in mine.itertuples():
        assert r.caption_high == f"{r.item_id}#{int(np.argmax(by_image[r.item_id]))}"
        assert r.caption_low == f"{r.item_id}#{int(np.argmin(by_image[r.item_id]))}"
