"""A CLI that helps: examples in every --help, --version, a closed pipe, honest `models`, `metrics --config`,
`show-model` and `layers =` selection, and folder datasets whose config paths resolve against the config file."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import align
from align.cli import build_parser
from align.cli import main
from align.config import load_config
from align.config import parse_config
from align.data import StimulusError
from align.data import load_image_captions
from align.extract import list_models
from align.extract import select_layers

ROOT = Path(__file__).resolve().parents[1]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_help_ends_with_an_example(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out, f"`align {name} --help` shows no example"
    examples = out.split("example", 1)[1]
    assert f"align {name}" in examples


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"align {align.__version__}"


def test_a_closed_pipe_is_not_a_traceback():
    # like `align models --json | head -1`: the reader is gone before align writes
    proc = subprocess.Popen([sys.executable, "-m", "align", "models", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) in (0, 141)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Broken pipe" not in err, err


def test_models_says_when_first_use_converts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))  # nothing converted yet
    rows = {r["name"]: r for r in list_models()}
    pending = [n for n, r in rows.items() if r["needs_conversion"]]
    if not pending:
        pytest.skip("no packaged model that needs converting is installed")
    name = pending[0]
    assert rows[name]["available_offline"] and rows[name]["convert_minutes"] >= 1
    assert main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(name + " "))
    assert "first use converts" in line
    # once the conversion is in the cache (its completion marker written), the model is plainly offline
    folder = Path(rows[name]["resolves_to"])
    folder.mkdir(parents=True)
    (folder / "align_conversion.json").write_text("{}")
    assert not {r["name"]: r for r in list_models()}[name]["needs_conversion"]
    assert main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(name + " "))
    assert " yes " in line and "converts" not in line


def _config(folder: Path, extra: str = "", models: str = '[[models]]\nname = "minilm-l6"\n') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.toml"
    path.write_text(f'name = "t"\noutput = "out"\n{extra}\n{models}')
    return path


def test_metrics_lists_the_probes_of_a_config(tmp_path, capsys):
    probe = ROOT / "probes" / "cosine_centroid.py"
    cfg = _config(tmp_path, f'[score]\nprobes = ["{probe}"]\nmetrics = ["cosine_centroid"]\n')
    assert main(["metrics", "--config", str(cfg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(x.startswith("cosine_centroid") and f"[probe {probe}]" in x for x in lines)
    assert any(x.startswith("linear_cka") and "[probe" not in x for x in lines)
    bad = _config(tmp_path / "bad", '[score]\nprobes = ["no_such_probe.py"]\n')
    assert main(["metrics", "--config", str(bad)]) == 2
    assert "no_such_probe.py" in capsys.readouterr().err


# -- show-model and layers = ----------------------------------------------------------------------------------------


def test_select_layers():
    names = ["embeddings", "layer_1", "layer_2", "layer_10"]
    assert select_layers(names, None) == [0, 1, 2, 3]
    assert select_layers(names, "layer_?") == [1, 2]
    assert select_layers(names, ["layer_1*", "embeddings"]) == [0, 1, 3]  # depth order, not pattern order
    with pytest.raises(ValueError, match=r"encoder\.layer\.\*.*available layers.*layer_10"):
        select_layers(names, "encoder.layer.*", model="m")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    sys.path.insert(0, str(Path(__file__).parent))
    import _extract_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {"bert": _extract_tiny.language_model(root / "bert", "bert"),
            "dinov2": _extract_tiny.vision_model(root / "dinov2", "dinov2"), "module": _extract_tiny}


def test_show_model_lists_layers_with_the_shapes_of_a_direct_forward(tiny, capsys):
    import torch
    from transformers import AutoModel
    from transformers import AutoTokenizer

    folder = tiny["bert"].location
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(folder)(**tok(["a photo"], return_tensors="pt"),
                                                   output_hidden_states=True).hidden_states
    assert main(["show-model", folder, "--json", "--layers", "layer_*"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["modality"] == "language" and shown["architecture"] == "BertModel"
    assert [x["name"] for x in shown["layers"]] == ["embeddings", "layer_1", "layer_2"]
    assert [tuple(x["shape"]) for x in shown["layers"]] == [tuple(h.shape) for h in hidden]
    assert [x["selected"] for x in shown["layers"]] == [False, True, True]
    assert main(["show-model", tiny["dinov2"].location]) == 0
    text = capsys.readouterr().out
    assert "vision" in text and "layer_2" in text and "[1, 17, 32]" in text  # 28x28 / patch 7 = 16 tokens + CLS
    assert main(["show-model", folder, "--layers", "blocks.*"]) == 2
    assert "available layers" in capsys.readouterr().err


def test_show_model_of_a_hooked_module():
    import torch
    from torch import nn

    from align.extract import ModelSpec
    from align.extract import show_model

    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))

    def preprocess(images):
        return torch.stack([torch.from_numpy(np.asarray(im.resize((16, 16)), dtype=np.float32)).permute(2, 0, 1)
                            for im in images])

    spec = ModelSpec(name="seq", modality="vision", backend="torch_module", location="",
                     builder=lambda: (net, preprocess, ["0", "3"]))
    _, layers = show_model(spec)
    with torch.no_grad():
        conv = net[0](torch.zeros(1, 3, 16, 16))
    assert [(x.name, x.shape) for x in layers] == [("0", tuple(conv.shape)), ("3", (1, 5))]


def test_config_layers_store_only_the_matching_layers(tiny, tmp_path, monkeypatch, capsys):
    from align.store import open_store

    data = tmp_path / "project" / "data"
    stim = tiny["module"].stimulus_set(data / "images", n=4)
    (data / "captions.jsonl").write_text("".join(json.dumps({"image_id": s.image_id, "caption": c}) + "\n"
                                                 for s in stim.stimuli for c in s.captions))
    models = f'[[models]]\nname = "{tiny["dinov2"].location}"\npooling = "mean"\nlayers = "layer_*"\n'
    cfg = _config(tmp_path / "project", '[stimuli]\nkind = "folder"\nimages = "data/images"\n'
                                        'captions = "data/captions.jsonl"\n', models)
    assert load_config(cfg).models[0].layers == ("layer_*",)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the data paths are relative to the config file, not to here
    assert main(["extract", str(cfg), "--quiet", "--set", "extract.device='cpu'"]) == 0
    stores = sorted(elsewhere.rglob("*.parquet"))
    assert len(stores) == 1
    selected = open_store(stores[0])
    assert selected.layer_names == ["layer_1", "layer_2"] and selected.meta["layer_selection"] == ["layer_*"]
    # the same layers as a full extraction, in a store of its own
    cfg_all = _config(tmp_path / "project" / "all", '[stimuli]\nkind = "folder"\nimages = "../data/images"\n'
                                                    'captions = "../data/captions.jsonl"\n',
                      models.replace('layers = "layer_*"\n', ""))
    assert main(["extract", str(cfg_all), "--quiet", "--set", "extract.device='cpu'"]) == 0
    full = open_store(next(p for p in elsewhere.rglob("*.parquet") if p != stores[0]))
    assert full.layer_names == ["embeddings", "layer_1", "layer_2"]
    for name in selected.layer_names:
        np.testing.assert_allclose(selected[name], full[name], atol=1e-6)
    bad = _config(tmp_path / "project" / "bad", '[stimuli]\nkind = "folder"\nimages = "../data/images"\n'
                                                'captions = "../data/captions.jsonl"\n',
                  models.replace("layer_*", "encoder.layer.*"))
    assert main(["extract", str(bad), "--quiet", "--set", "extract.device='cpu'"]) == 2
    assert "available layers" in capsys.readouterr().err


# -- folder datasets ------------------------------------------------------------------------------------------------


def _images(folder: Path, ids):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(ids):
        Image.new("RGB", (8, 8), (10 * k, 0, 0)).save(folder / f"{i}.png")


def test_jsonl_and_csv_take_the_same_keys(tmp_path):
    ids = ["a1", "b2", "c3", "d4"]
    _images(tmp_path / "img", ids)
    caps = [(i, f"caption {k} of {i}") for i in ids for k in range(2)]
    loaded = []
    for key in ("image_id", "image"):
        value = (lambda i: i) if key == "image_id" else (lambda i: f"{i}.png")
        jsonl = tmp_path / f"{key}.jsonl"
        jsonl.write_text("".join(json.dumps({key: value(i), "caption": c}) + "\n" for i, c in caps))
        csv = tmp_path / f"{key}.csv"
        csv.write_text(f"{key},caption\n" + "".join(f"{value(i)},{c}\n" for i, c in caps))
        for path in (jsonl, csv):
            s = load_image_captions(tmp_path / "img", path, name="x")
            loaded.append([(x.image_id, Path(x.image).name, x.captions) for x in s.stimuli])
    assert all(x == loaded[0] for x in loaded) and len(loaded) == 4
    assert loaded[0][0] == ("a1", "a1.png", ("caption 0 of a1", "caption 1 of a1"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"file": "a1.png", "caption": "x"}) + "\n")
    with pytest.raises(StimulusError, match="'image_id'.*'image'"):
        load_image_captions(tmp_path / "img", bad)


def test_config_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    cfg = _config(tmp_path / "cfgs", '[stimuli]\nkind = "folder"\nimages = "../data/img"\n'
                                     'captions = "../data/captions.jsonl"\n')
    monkeypatch.chdir(tmp_path / "cfgs")
    loaded = load_config(cfg)
    monkeypatch.chdir("/")
    assert loaded.stimuli.path("images") == tmp_path / "data" / "img"
    assert loaded.stimuli.path("captions") == tmp_path / "data" / "captions.jsonl"
    # a config built from a mapping has no file: relative paths are relative to the working directory
    mapped = parse_config({"name": "t", "output": "o", "models": [{"name": "minilm-l6"}],
                           "stimuli": {"kind": "folder", "images": "i", "captions": "c.jsonl"}})
    assert mapped.stimuli.path("images") == Path("/i")
    # where the config file lies does not change the fingerprint
    moved = _config(tmp_path / "other" / "deeper", '[stimuli]\nkind = "folder"\nimages = "../data/img"\n'
                                                   'captions = "../data/captions.jsonl"\n')
    assert load_config(moved).fingerprint() == loaded.fingerprint()


def test_missing_data_errors_show_the_absolute_path_tried(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StimulusError, match=f"absolute path tried: {tmp_path / 'nope.jsonl'}"):
        load_image_captions("img", "nope.jsonl")
    (tmp_path / "c.jsonl").write_text(json.dumps({"image_id": "a", "caption": "x"}) + "\n")
    with pytest.raises(StimulusError, match=f"absolute path tried: {tmp_path / 'img'}"):
        load_image_captions("img", "c.jsonl")
    cfg = _config(tmp_path / "cfgs", '[stimuli]\nkind = "folder"\nimages = "img"\ncaptions = "caps.jsonl"\n')
    assert main(["extract", str(cfg), "--quiet"]) == 2
    assert str(tmp_path / "cfgs" / "caps.jsonl") in capsys.readouterr().err


def test_paper_configs_find_the_shared_data_from_their_own_folder():
    for path in sorted((ROOT / "paper_figures").rglob("*.toml")):
        if path.name == "robustness.toml":  # not an experiment config: its configs derive from the others
            continue
        stimuli = load_config(path).stimuli
        if stimuli.kind == "coco":
            assert stimuli.path("root") == ROOT.parent / "shared" / "data" / "coco_captions_subset", path
