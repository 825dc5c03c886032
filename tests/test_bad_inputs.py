"""The bad-input catalogue (issue 10): every way a user can get a run wrong gives one clear line and exit 2, before
any work starts, and leaves nothing behind.

Each case writes a config (a valid base with one thing wrong) into its own tmp_path, runs the CLI in-process, and
asserts (1) the exit code, (2) that stderr names the problem (a distinctive substring) on one line with no
traceback, (3) that no file appeared under tmp_path besides the config (no store, table, stimulus or temp file).

The base config's models are placeholder checkpoint folders (a ``config.json`` and no weights): enough to resolve
a name and its modality offline, but any attempt to load them fails. So a case that slipped past validation into
extraction would fail with a different message, and the substring check catches it. Related coverage elsewhere:
tests/test_config.py (ConfigError per key), tests/test_cli_e2e.py, tests/test_stimulus_sets.py (n above the size),
tests/test_probes.py (check-probe).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align.cli import main
from align.config import load_config
from align.experiments import preflight

N_IMAGES = 10


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Read-only inputs shared by every case: placeholder model folders, a 10-image folder set (2 captions per
    image), a Latin-1 captions file, probe files."""
    root = tmp_path_factory.mktemp("bad_inputs_world")
    models = {}
    for name, config in (("vision", {"model_type": "dinov2", "architectures": ["Dinov2Model"]}),
                         ("language", {"model_type": "bert", "architectures": ["BertModel"]}),
                         ("cnn", {"model_type": "resnet", "architectures": ["ResNetModel"]})):
        folder = root / "models" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config))
        models[name] = str(folder)
    images = root / "folder" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"im{i}.png")
        lines += [json.dumps({"image_id": f"im{i}", "caption": f"picture {i} number {k}"}) for k in range(2)]
    (root / "folder" / "captions.jsonl").write_text("\n".join(lines) + "\n")
    (root / "latin1.csv").write_bytes("image_id,caption\nim0,un caf\xe9 au lait\n".encode("latin-1"))
    probes = root / "probes"
    probes.mkdir()
    (probes / "boom.py").write_text("import align\nraise RuntimeError('boom at import')\n")
    (probes / "silent.py").write_text("x = 1\n")
    (probes / "a_file").write_text("not a folder\n")
    return {"root": root, "models": models, "images": str(images), "captions": str(root / "folder" / "captions.jsonl"),
            "latin1": str(root / "latin1.csv"), "probes": probes}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def to_toml(cfg: dict) -> str:
    """A small TOML writer for these configs (scalars and lists at the top, tables, [[models]])."""
    top = [f"{k} = {_toml_value(v)}" for k, v in cfg.items() if not isinstance(v, (dict, list)) or
           (isinstance(v, list) and not (v and isinstance(v[0], dict)))]
    out = top[:]
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.append(f"[{key}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for entry in value:
                out.append(f"[[{key}]]")
                out += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(out) + "\n"


def base_config(world, tmp_path) -> dict:
    return {
        "name": "bad",
        "output": str(tmp_path / "out" / "run"),
        "stimuli": {"kind": "synthetic", "n": 8},
        "models": [{"name": world["models"]["vision"], "pooling": ["mean"]},
                   {"name": world["models"]["language"], "pooling": ["mean"]}],
        "score": {"metrics": ["linear_cka"]},
    }


def folder_stimuli(world, **extra) -> dict:
    return {"kind": "folder", "images": world["images"], "captions": world["captions"], **extra}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ---------------------------------------------------------------------------------------------- the catalogue
# (case id, edit(cfg, world, tmp_path) -> extra CLI args or None, command, expected substring)


def _set(section, **values):
    def edit(cfg, world, tmp_path):
        if section is None:
            cfg.update(values)
        else:
            cfg.setdefault(section, {}).update(values)
    return edit


def _model(i, **values):
    def edit(cfg, world, tmp_path):
        cfg["models"][i].update({k: (world["models"][v[1:]] if isinstance(v, str) and v.startswith("@") else v)
                                 for k, v in values.items()})
    return edit


def _args(*args):
    def edit(cfg, world, tmp_path):
        return list(args)
    return edit


def _with(*edits):
    def edit(cfg, world, tmp_path):
        extra = []
        for e in edits:
            extra += e(cfg, world, tmp_path) or []
        return extra
    return edit


def _folder(**extra):
    def edit(cfg, world, tmp_path):
        cfg["stimuli"] = folder_stimuli(world, **extra)
    return edit


def _probe(name):
    def edit(cfg, world, tmp_path):
        cfg["score"]["probes"] = [str(world["probes"] / name)]
    return edit


def _output_file(cfg, world, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run").write_text("I am a file\n")


def _output_under_file(cfg, world, tmp_path):
    cfg["output"] = str(world["probes"] / "a_file" / "run")


CASES = [
    # --- config types: lists, booleans, counts, strings
    ("pooling-string-is-one-item-list", _model(1, pooling="cls"), "run", "is a language model: pooling ['cls']"),
    ("metrics-string-is-one-item-list", _set("score", metrics="nope_metric"), "run", "unknown metric 'nope_metric'"),
    ("plot-enabled-not-boolean", _set("plot", enabled="no"), "run", "plot.enabled = 'no'"),
    ("set-plot-enabled-not-boolean", _args("--set", "plot.enabled=no"), "run", "plot.enabled = 'no'"),
    ("null-negative", _set("score", null=-5), "run", "score.null = -5"),
    ("null-fraction", _set("score", null=2.5), "run", "score.null = 2.5"),
    ("null-boolean", _set("score", null=True), "run", "score.null = True"),
    ("batch-size-zero", _set("extract", batch_size=0), "extract", "extract.batch_size = 0"),
    ("dpi-zero", _set("plot", dpi=0), "run", "plot.dpi = 0"),
    ("renderings-zero", _set("stimuli", renderings=0), "run", "stimuli.renderings = 0"),
    ("n-perm-negative", _set("experiment", n_perm=-1), "experiment", "experiment.n_perm = -1"),
    ("seed-negative", _set("experiment", seed=-3), "experiment", "experiment.seed = -3"),
    ("name-empty", _set(None, name=""), "run", "name = ''"),
    ("output-empty", _set(None, output=""), "run", "output = ''"),
    ("caption-boolean", _set("score", caption=True), "run", "score.caption = True"),
    ("caption-unknown", _set("score", caption="best"), "run", "score.caption = 'best'"),
    ("device-not-a-string", _set("extract", device=1), "run", "extract.device = 1"),
    ("device-unknown", _set("extract", device="tpu9"), "run", "extract.device = 'tpu9'"),
    ("dtype-unknown", _set("extract", dtype="int4"), "run", "extract.dtype = 'int4'"),
    ("stimuli-kind-unknown", _set("stimuli", kind="imagenet"), "run", "stimuli.kind = 'imagenet'"),
    ("stimuli-n-too-small", _set("stimuli", n=2), "run", "stimuli.n = 2"),
    ("stimuli-n-all-synthetic", _set("stimuli", n="all"), "run", "has no meaning for kind 'synthetic'"),
    ("unknown-top-level-key", _set(None, colour=1), "run", "unknown top-level key(s) ['colour']"),
    ("unknown-model-key", _model(0, widths=3), "run", "models[0]: unknown key(s) ['widths']"),
    ("duplicate-models", _model(1, name="@vision"), "run", "duplicate model names"),
    ("pooling-repeated", _model(0, pooling=["mean", "mean"]), "run", "repeats a name"),
    ("metrics-list-of-numbers", _set("score", metrics=[1, 2]), "run", "score.metrics = [1, 2]"),
    # --- --set
    ("set-into-a-string", _args("--set", "name.x=1"), "run", "'name' is the value 'bad', not a table"),
    ("set-into-models", _args("--set", "models.name=x"), "run", "'models' is an array, not a table"),
    ("set-without-equals", _args("--set", "stimuli.n"), "run", "--set expects KEY=VALUE"),
    ("set-unknown-section", _args("--set", "colour.x=1"), "run", "unknown top-level key(s) ['colour']"),
    # --- metrics, specs, probes
    ("metric-unknown", _set("score", metrics=["linear_cka", "nope"]), "score", "unknown metric 'nope'"),
    ("metric-spec-unparsable", _set("score", metrics=["rbf_cka(sigma_frac=)"]), "run", "cannot parse arguments"),
    ("metric-spec-unknown-keyword", _set("score", metrics=["linear_cka(sigma=2)"]), "run",
     "unknown argument(s) ['sigma']"),
    ("metric-spec-bad-value", _set("score", metrics=["rbf_cka(sigma_frac=-1)"]), "run", "sigma_frac must be > 0"),
    ("metric-k-above-n", _set("score", metrics=["mutual_knn(k=10)"]), "run", "k=10 neighbours need more than k"),
    ("metric-folds-above-n", _set("score", metrics=["linear_predictivity(folds=20)"]), "run", "folds"),
    ("probe-missing", _probe("missing.py"), "run", "does not exist"),
    ("probe-fails-to-import", _probe("boom.py"), "run", "boom at import"),
    ("probe-registers-nothing", _probe("silent.py"), "run", "registers no metric"),
    # --- models and poolings
    ("model-unknown", _model(0, name="not-a-model"), "run", "unknown model 'not-a-model'"),
    ("model-not-cached-short-id", _model(1, name="bert-base-uncased"), "run",
     "not in the local Hugging Face cache (no hub access here)"),
    ("model-catalog-id-not-cached", _model(0, name="facebook/dinov2-base"), "extract",
     "is not in the local Hugging Face cache"),
    ("model-uncatalogued-id", _model(1, name="someorg/some-model"), "run", "modality is unknown"),
    ("model-path-missing", _model(0, name="./no/such/model"), "run", "looks like a path"),
    ("model-modality-contradicts", _model(0, modality="language"), "run", "is a vision model"),
    ("cls-on-language-model", _model(1, pooling=["cls"]), "extract", "is a language model: pooling ['cls']"),
    ("last-on-vision-model", _model(0, pooling=["last"]), "run", "is a vision model: pooling ['last']"),
    ("cls-on-cnn", _model(0, name="@cnn", pooling=["cls"]), "run", "pooling 'cls' needs a class token"),
    ("cls-by-default-on-cnn", _model(0, name="@cnn", pooling=[]), "run", "the default poolings"),
    ("only-vision-models", lambda cfg, w, t: cfg.update(models=cfg["models"][:1]), "score",
     "list at least one of each"),
    # --- stimuli and captions
    ("caption-index-beyond-captions", _with(_folder(), _set("score", caption=7)), "run", "score.caption = 7"),
    ("caption-index-synthetic", _set("score", caption=4), "run", "only 4 caption(s)"),
    ("n-above-folder-size", _folder(n=50), "extract", f"only {N_IMAGES} images"),
    ("captions-not-utf8", lambda cfg, w, t: cfg.update(stimuli=folder_stimuli(w, captions=w["latin1"])), "run",
     "is not UTF-8 text"),
    ("captions-missing", _folder(captions="/no/such/captions.jsonl"), "run", "does not exist"),
    ("folder-without-captions-key", _set("stimuli", kind="folder"), "run", "needs stimuli.images and stimuli.captions"),
    ("pick-a-pic-file-missing", _set("stimuli", kind="pick_a_pic", root="/no/such/file.parquet"), "run",
     "no such file"),
    # --- devices and paths
    ("output-is-a-file", _output_file, "run", "is an existing file, not a folder"),
    ("output-under-a-file", _output_under_file, "run", "which is a file, not a folder"),
    # --- experiments
    ("peaks-from-missing", _set("experiment", kind="preference", peaks_from="/no/such/layerwise"), "experiment",
     "experiment.peaks_from = '/no/such/layerwise' does not exist"),
    ("preferred-without-pick-a-pic", _set("experiment", kind="preference", contrasts=["preferred"]), "experiment",
     "'preferred' compares"),
    ("wrong-caption-without-synthetic", _with(_folder(), _set("experiment", kind="preference",
                                                               contrasts="wrong_caption")), "experiment",
     "'wrong_caption' needs"),
    ("aggregation-k-above-captions", _with(_folder(), _set("experiment", kind="aggregation", k_max=5)),
     "experiment", "experiment.k_max = 5"),
    ("perturbation-unknown-condition", _set("experiment", kind="perturbation", image_conditions="sepia"),
     "experiment", "sepia"),
    ("experiment-key-of-another-kind", _set("experiment", kind="layerwise", k_max=3), "experiment",
     "do not apply to kind 'layerwise'"),
]


@pytest.mark.parametrize("case, edit, command, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_before_any_work(case, edit, command, expected, world, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(world["root"] / "empty_hf_cache"))  # no model is cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = base_config(world, tmp_path)
    extra = edit(cfg, world, tmp_path) or []
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    before = _files(tmp_path)
    code = main([command, str(path), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"align {command}: error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err
    assert _files(tmp_path) == before  # nothing half-written: no store, table, stimulus or temp file


def test_cuda_device_on_a_cpu_only_torch(world, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    cfg = base_config(world, tmp_path)
    cfg["extract"] = {"device": "cuda"}
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    before = _files(tmp_path)
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "extract.device = 'cuda'" in err and "sees no CUDA device" in err and "Traceback" not in err
    assert _files(tmp_path) == before


@pytest.mark.parametrize("argv, expected", [
    (["run", "{tmp}/missing.toml"], "does not exist"),
    (["run", "{tmp}/broken.toml"], "not valid TOML"),
    (["run", "{tmp}/no_output.toml"], "missing required key 'output'"),
    (["check-probe", "{tmp}/missing_probe.py"], "does not exist"),
    (["figures", "{tmp}"], "make_figures.py does not exist"),
], ids=["config-missing", "config-not-toml", "config-missing-key", "check-probe-missing", "figures-no-script"])
def test_bad_files_are_one_clear_line(argv, expected, tmp_path, capsys):
    (tmp_path / "broken.toml").write_text("name = [")
    (tmp_path / "no_output.toml").write_text('name = "x"\n[[models]]\nname = "m"\n')
    before = _files(tmp_path)
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert _files(tmp_path) == before


def test_the_base_config_passes_preflight(world, tmp_path, monkeypatch):
    """The control: without the one thing wrong, every check passes (so each case fails for its own reason)."""
    cfg = base_config(world, tmp_path)
    cfg["stimuli"] = folder_stimuli(world)
    cfg["score"]["metrics"] = ["linear_cka", "mutual_knn(k=3)", "rbf_cka(sigma_frac=0.5)"]
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    report = preflight(load_config(path))
    assert report.n_stimuli == N_IMAGES and report.min_captions == 2
    assert {s.modality for s in report.models.values()} == {"vision", "language"}
    assert not (tmp_path / "out").exists()


def test_an_internal_error_shows_its_traceback_and_says_it_is_a_bug(world, tmp_path, capsys, monkeypatch):
    import align.experiments

    def broken(*args, **kwargs):
        raise TypeError("an internal mistake")

    monkeypatch.setattr(align.experiments, "run", broken)
    path = tmp_path / "run.toml"
    path.write_text(to_toml(base_config(world, tmp_path)))
    assert main(["run", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "TypeError: an internal mistake" in err
    assert "this is a bug in align" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("loader", ["folder", "flickr", "coco"])
def test_a_captions_file_that_is_not_utf8_is_named(loader, world, tmp_path):
    from align.data import StimulusError
    from align.data import load_coco
    from align.data import load_flickr
    from align.data import load_image_captions

    latin1 = "un caf\xe9 au lait".encode("latin-1")
    if loader == "folder":
        path = Path(world["latin1"])
        call = lambda: load_image_captions(world["images"], path)  # noqa: E731
    elif loader == "flickr":
        path = tmp_path / "Flickr8k.token.txt"
        path.write_bytes(b"im0.png#0\t" + latin1 + b"\n")
        call = lambda: load_flickr(path, world["images"])  # noqa: E731
    else:
        path = tmp_path / "captions.jsonl"
        path.write_bytes(b'{"image_id": "im0", "caption": "' + latin1 + b'"}\n')
        call = lambda: load_coco(tmp_path, images_dir=world["images"])  # noqa: E731
    with pytest.raises(StimulusError) as err:
        call()
    assert str(path) in str(err.value) and "is not UTF-8 text" in str(err.value)
