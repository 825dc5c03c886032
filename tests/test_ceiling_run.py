"""``[experiment] ceiling = true``: config validation, the preflight's caption check, and the layerwise run writing
ceiling.parquet / normalised.parquet on tiny random models and small sets with several captions per image."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from align.config import ConfigError
from align.config import parse_config
from align.experiments import preflight
from align.experiments import run_experiment
from align.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
import _extract_tiny as tiny  # noqa: E402

BASE = {"name": "t", "output": "results/t", "models": [{"name": "a"}, {"name": "b"}]}


@pytest.mark.parametrize("experiment, message", [
    ({"ceiling": "yes"}, "experiment.ceiling = 'yes'; must be true or false"),
    ({"ceiling": 1}, "experiment.ceiling = 1; must be true or false"),
    ({"ceiling": True, "ceiling_boot": -1}, "experiment.ceiling_boot = -1"),
    ({"ceiling": True, "ceiling_boot": 2.5}, "experiment.ceiling_boot = 2.5"),
    ({"kind": "aggregation", "ceiling": True}, "['ceiling'] do not apply to kind 'aggregation' (ceiling: kind layerwise"),
])
def test_bad_ceiling_keys_are_named(experiment, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[").replace(")", r"\)")):
        parse_config({**BASE, "experiment": {"kind": "layerwise", **experiment}})


def test_ceiling_defaults_off():
    ex = parse_config(BASE).experiment
    assert ex.ceiling is False and ex.ceiling_boot == 100
    assert parse_config({**BASE, "experiment": {"ceiling": True, "ceiling_boot": 0}}).experiment.ceiling is True


def _folder_set(folder: Path, captions_per_image, n: int = 12) -> dict:
    """A folder stimulus set of ``n`` random images; image i has the captions ``captions_per_image(i)``."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(folder / "images" / f"i{i}.png")
        lines += [json.dumps({"image_id": f"i{i}", "caption": c}) for c in captions_per_image(i)]
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return {"kind": "folder", "images": str(folder / "images"), "captions": str(folder / "captions.jsonl")}


def _caption(i: int) -> str:
    w = tiny.WORDS
    return f"{w[i % len(w)]} {w[(3 * i + 1) % len(w)]} {w[(5 * i + 2) % len(w)]} {w[i // 3]}"


def _config(root, out, stimuli, metrics=("linear_cka",), **experiment):
    return parse_config({
        "name": "ceiling", "output": str(out / "ceiling"), "stimuli": stimuli,
        "models": [{"name": str(root / "vision"), "modality": "vision", "pooling": ["cls"]},
                   {"name": str(root / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 8}, "score": {"metrics": list(metrics)},
        "experiment": {"kind": "layerwise", "n_perm": 0, "ceiling": True, **experiment}})


def test_preflight_refuses_a_ceiling_with_one_caption_per_image(tiny_models, tmp_path):
    one = _config(tiny_models, tmp_path, _folder_set(tmp_path / "one", lambda i: [_caption(i)]))
    with pytest.raises(ConfigError, match=r"experiment.ceiling = true compares two captions.*no image of stimuli "
                                          r"\(kind 'folder'\) has more than 1 caption"):
        preflight(one)
    preflight(_config(tiny_models, tmp_path, _folder_set(tmp_path / "two", lambda i: [_caption(i)] * 2)))


def _numpy_cka(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))


def test_layerwise_run_writes_the_ceiling_and_normalised_scores(tiny_models, tmp_path):
    cfg = _config(tiny_models, tmp_path, {"kind": "synthetic", "n": 16},
                  metrics=("linear_cka", "linear_predictivity"), ceiling_boot=20)
    results = run_experiment(cfg, progress=False)
    out = Path(cfg.output)
    ceiling = pd.read_parquet(out / "ceiling.parquet")
    stores = [open_store(p) for p in (out.parent / "activations").rglob("mean-*.parquet")
              if "~caption" not in str(p)]
    assert len(stores) == 1  # the language model's store of every caption (rows <image>#<k>)
    store = stores[0]
    layers = store.n_layers
    assert len(ceiling) == 3 * layers and set(ceiling.n) == {16} and set(ceiling.n_boot) == {20}
    assert sorted(set(ceiling.direction)) == ["symmetric", "x_to_y", "y_to_x"]
    rows = [store.stimulus_ids.index(f"{image}#{k}") for k in (0, 1) for image in dict.fromkeys(store.groups)]
    for layer in range(layers):  # an independent oracle: numpy CKA of caption 0 vs caption 1 of each image
        value = store.layer(layer).astype(np.float64)
        cka = ceiling[(ceiling.metric == "linear_cka") & (ceiling.layer == layer)].iloc[0]
        assert cka.ceiling == pytest.approx(_numpy_cka(value[rows[:16]], value[rows[16:]]), abs=1e-4)
        assert cka.ci_low <= cka.ceiling <= cka.ci_high
        # CKA is recomputed per resample: its interval is the percentile width centred on the estimate
        assert (cka.ci_low + cka.ci_high) / 2 == pytest.approx(cka.ceiling)
        assert cka.ci_high - cka.ci_low == pytest.approx(cka.boot_high - cka.boot_low)
    lp = ceiling[ceiling.metric == "linear_predictivity"]  # held-out interval: the percentile one, as it is
    np.testing.assert_array_equal(lp[["ci_low", "ci_high"]].to_numpy(), lp[["boot_low", "boot_high"]].to_numpy())
    table = pd.read_parquet(results)
    assert "score_ceiling_normalised" not in table.columns  # results.parquet keeps its columns for its readers
    normalised = pd.read_parquet(out / "normalised.parquet")
    assert len(normalised) == len(table)
    lookup = {(r.metric, r.direction, r.layer): r.ceiling for r in ceiling.itertuples()}
    expected = [row.score / lookup[(row.metric, row.direction, row.layer_y)] for row in normalised.itertuples()]
    np.testing.assert_allclose(normalised.score_ceiling_normalised, expected, rtol=1e-6)
    # a second run reuses the ceiling jobs
    logged = []
    run_experiment(cfg, progress=False, log=logged.append)
    assert sum("exists, skipped" in line and "ceiling" in line for line in logged) == 2


def test_identical_captions_have_a_ceiling_of_one_through_the_config(tiny_models, tmp_path):
    stimuli = _folder_set(tmp_path / "same", lambda i: [_caption(i)] * 3)
    cfg = _config(tiny_models, tmp_path, stimuli, ceiling_boot=0)
    run_experiment(cfg, progress=False)
    ceiling = pd.read_parquet(Path(cfg.output) / "ceiling.parquet")
    assert set(ceiling.n) == {12} and ceiling.ci_low.isna().all()
    np.testing.assert_allclose(ceiling.ceiling, 1.0, atol=1e-5)
    normalised = pd.read_parquet(Path(cfg.output) / "normalised.parquet")
    np.testing.assert_allclose(normalised.score_ceiling_normalised, normalised.score, atol=1e-5)
