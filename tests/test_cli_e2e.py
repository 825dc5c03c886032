"""The CLI end to end on the smoke config (real packaged models), and the README's API example as written."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from align.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.realmodel
def test_smoke_config_end_to_end(tmp_path, capsys):
    out = tmp_path / "runs" / "smoke"
    args = ["run", str(ROOT / "configs/smoke.toml"), "--set", f'output="{out}"', "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    table = pd.read_parquet(out / "results.parquet")
    assert set(table.metric) == {"linear_cka"}
    assert table.layer_x.nunique() == 13 and table.layer_y.nunique() == 7  # DINOv2-S: 12+1, MiniLM: 6+1
    # DINOv2's CLS token at the embedding layer is the same for every image: scored NaN and said so
    constant = table.layer_x == 0
    assert table[constant].score.isna().all() and (table[constant].undefined == "constant x layer").all()
    assert table[~constant].score.between(0, 1).all() and (table.n == 24).all()
    pngs = sorted(p for p in (out / "heatmaps").glob("*.png") if p.name != "all_pairs.png")
    assert len(pngs) == 1 and pngs[0].with_suffix(".csv").exists()
    assert (out / "heatmaps" / "all_pairs.png").exists()  # every model pair on one page
    assert "heatmaps (2)" in printed and "best layer pair" in printed
    stores = sorted((tmp_path / "runs" / "activations").rglob("*.parquet"))
    assert len(stores) == 2
    mtimes = [p.stat().st_mtime_ns for p in stores + pngs]
    assert main(args) == 0  # second run: everything exists
    assert "exists, skipped" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in stores + pngs] == mtimes


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('name = "x"\noutput = "o"\n[[models]]\nname = "m"\n[extract]\ndtype = "int4"\n')
    assert main(["run", str(cfg)]) == 2
    assert "extract.dtype = 'int4'" in capsys.readouterr().err


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'name = "x"\noutput = "{tmp_path}/o"\n[stimuli]\nn = 8\n[[models]]\nname = "not-a-model"\n')
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert "not-a-model" in capsys.readouterr().err


def test_models_lists_the_packaged_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("smollm2-135m", "gemma3-270m", "minilm-l6", "dinov2-small-imgfocus", "mobilenetv2-imagenet",
                 "facebook/dinov2-large", "bigscience/bloom-560m", "openlm-research/open_llama_3b"):
        assert name in out


def test_readme_api_example_runs_as_written(capsys):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Python API\s+```python\n(.*?)```", readme, re.S).group(1)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "x_to_y" in out and "y_to_x" in out
    # what it prints is what it claims: a 3 x 2 CKA grid in [0, 1] that rises with the shared signal's share
    cka = scope["grid"].score()
    assert cka.shape == (3, 2) and np.all((cka > 0) & (cka <= 1))
    assert cka[2, 1] > cka[0, 0]
