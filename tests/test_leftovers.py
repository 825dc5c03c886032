"""What killed runs leave behind is removed by the next run (unless a live process is writing it), and a rerun never
shows an old heatmap: conversions, store parts and temporaries, scoring-job and results temporaries, synthetic
stimulus folders, heatmaps keyed by their rows."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from align.plots import save_heatmaps  # noqa: E402
from align.results import score_matrix  # noqa: E402

# ------------------------------------------------------------------------------------------------ helpers


class _Holder:
    """Another process that holds the lock ``<path>.lock`` (as a live run writing ``path`` does) until stopped."""

    def __init__(self, path: Path):
        code = ("import sys, time, filelock\nlock = filelock.FileLock(sys.argv[1])\nlock.acquire()\n"
                "print('held', flush=True)\ntime.sleep(120)\n")
        self.process = subprocess.Popen([sys.executable, "-c", code, f"{path}.lock"], stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout.readline().strip() == "held"

    def stop(self):
        self.process.kill()
        self.process.wait()


def _plant_file(path: Path, size: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def _plant_folder(path: Path) -> Path:
    _plant_file(path / "model.safetensors", 10_000)
    return path


# ------------------------------------------------------------------------------------------ model conversions


def test_interrupted_conversion_is_removed_unless_it_is_running(tmp_path):
    from align.extract._cache import build_once

    models = tmp_path / "models"
    killed = _plant_folder(models / ".smollm2-135m-0.1.2.tmp-k1ll3d")  # a conversion killed mid-way
    running = _plant_folder(models / ".gemma3-270m-0.1.0.tmp-l1v3")  # a conversion another process is running
    holder = _Holder(models / "gemma3-270m-0.1.0")
    try:
        target = build_once(models / "tiny-1.0", lambda out: (out / "config.json").write_text("{}"), "{}")
        assert (target / "config.json").read_text() == "{}"
        assert not killed.exists() and running.exists()
    finally:
        holder.stop()
    build_once(target, lambda out: None, "{}")  # finished already: nothing to build, leftovers still go
    assert not running.exists()
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == ["tiny-1.0"]


# ------------------------------------------------------------------------------------------------ stores


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("torch")
    import _extract_tiny as tiny

    root = tmp_path_factory.mktemp("tiny")
    tiny.vision_model(root / "vision", "dinov2")
    tiny.language_model(root / "language", "bert")
    return root


def _extract(models: Path, stimuli, root: Path):
    from align.extract import extract
    from align.extract import resolve_model

    spec = resolve_model(str(models / "vision"), modality="vision")
    return extract(spec, stimuli, root, poolings=["cls"], batch_size=2, device="cpu", progress=False)["cls"]


def test_store_leftovers_are_removed_or_resumed(tiny_models, tmp_path):
    import _extract_tiny as tiny

    from align.store import open_store

    stimuli = tiny.stimulus_set(tmp_path / "images", n=4)
    path = _extract(tiny_models, stimuli, tmp_path)
    path.unlink()
    parts = path.with_name(path.name + ".parts")
    # a killed writer of an unfinished store: its parts folder is resumed, its temporary files removed
    stray = _plant_file(parts / "part-00001.parquet.4242.tmp")
    half_merged = _plant_file(path.with_name(path.name + ".4242.tmp"))
    assert _extract(tiny_models, stimuli, tmp_path) == path
    assert open_store(path).stimulus_ids == stimuli.image_ids
    assert not parts.exists() and not stray.exists() and not half_merged.exists()
    # parts beside a finished store (a writer that lost a race) and a stray temporary: removed by the next run
    mtime = path.stat().st_mtime_ns
    orphan = _plant_file(parts / "part-00007.parquet")
    tmp = _plant_file(path.with_name(path.name + ".777.tmp"))
    sidecar_tmp = _plant_file(path.with_name(path.name + ".diagnostics.json.777.tmp"))  # not the store's
    holder = _Holder(path)  # ... but not while another process holds the store's lock
    try:
        _extract(tiny_models, stimuli, tmp_path)
        assert orphan.exists() and tmp.exists()
    finally:
        holder.stop()
    _extract(tiny_models, stimuli, tmp_path)
    assert not parts.exists() and not tmp.exists() and sidecar_tmp.exists()
    assert path.stat().st_mtime_ns == mtime  # the finished store was not touched


# ------------------------------------------------------------------------------------ runs: jobs, tables, plots


def _config(models: Path, out: Path, **score):
    from align.config import parse_config

    return parse_config({
        "name": "leftovers", "output": str(out / "run"), "stimuli": {"kind": "synthetic", "n": 12},
        "models": [{"name": str(models / "vision"), "modality": "vision", "pooling": ["cls"]},
                   {"name": str(models / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 6}, "score": {"metrics": ["linear_cka"], **score}, "plot": {"dpi": 40},
        "experiment": {"kind": "layerwise", "n_perm": 5}})


def _quiet(message: str) -> None:
    pass


def test_rerun_removes_job_table_plot_and_stimulus_temporaries(tiny_models, tmp_path):
    from align.experiments import run_experiment

    cfg = _config(tiny_models, tmp_path)
    run_experiment(cfg, progress=False, log=_quiet)
    out = cfg.output_dir
    jobs = sorted((out / "scores").glob("*.parquet"))
    planted = [
        _plant_file(out / "scores" / f".{jobs[0].name}.k1ll3d_x.tmp"),  # a killed scoring job
        _plant_file(out / "scores" / ".0123456789abcdef.parquet.a1b2c3d4.tmp"),  # ... of another config
        _plant_file(out / ".results.parquet.zz9_yy8x.tmp"),  # a killed write of the combined table
        _plant_file(out / "peak_null" / ".fedcba9876543210.parquet.q1w2e3r4.tmp"),  # a killed peak-null job
        _plant_file(out / "heatmaps" / ".some-heatmap.png.p0o9i8u7.tmp"),  # a killed heatmap write
        _plant_folder(tmp_path / "stimuli" / ".synthetic-n12-s0.tmp-4242-deadbeef"),  # a killed rendering
    ]
    live = _plant_file(out / "scores" / ".fedcba9876543210.parquet.l1v3l1v3.tmp")
    holder = _Holder(out / "scores" / "fedcba9876543210.parquet")  # a job another process is computing
    try:
        run_experiment(cfg, progress=False, log=_quiet)
    finally:
        holder.stop()
    assert [p for p in planted if p.exists()] == [] and live.exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name
                 or p.name.endswith(".parts")]
    assert leftovers == [live]


def test_caption_change_redraws_the_heatmap_from_the_new_table(tiny_models, tmp_path):
    from align.experiments import run
    from align.results import read_results

    first = run(_config(tiny_models, tmp_path, caption="first"), progress=False, log=_quiet)
    assert [p.name.split("__")[-2:] for p in first.heatmaps[:-1]] == [["caption=first", "preprocess=none.png"]]
    assert first.heatmaps[-1].name == "all_pairs.png"  # every model pair of the run on one page
    second = run(_config(tiny_models, tmp_path, caption=1), progress=False, log=_quiet)
    png, page = second.heatmaps
    assert "__caption=1__" in png.name and png.exists()
    table = read_results(second.results)
    assert set(table["caption"]) == {"1"}
    drawn = pd.read_csv(png.with_suffix(".csv"), index_col=0)
    np.testing.assert_allclose(drawn.to_numpy(), score_matrix(table).to_numpy(), equal_nan=True)
    assert not first.heatmaps[0].exists()  # the figure of the old caption is gone, not listed beside the new one
    assert sorted(p.name for p in png.parent.iterdir()) == sorted([png.name, png.with_suffix(".csv").name, page.name])


# --------------------------------------------------------------------------------------- heatmaps (no models)


def _table(scores: np.ndarray, **columns) -> pd.DataFrame:
    nx, ny = scores.shape
    lx, ly = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    return pd.DataFrame({"experiment": "layerwise", "dataset": "d", "condition": "original|original",
                         "model_x": "vis", "pooling_x": "cls", "model_y": "lang", "pooling_y": "mean",
                         "metric": "linear_cka", "direction": "symmetric", "layer_x": lx.ravel(),
                         "layer_y": ly.ravel(), "score": scores.ravel(), "n": 20, **columns})


def test_heatmaps_are_keyed_by_their_rows_and_never_truncated(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=(3, 4)), rng.uniform(size=(3, 4))
    folder = tmp_path / "maps"
    (png,) = save_heatmaps(_table(a), folder, dpi=30)
    csv = png.with_suffix(".csv")
    mtimes = (png.stat().st_mtime_ns, csv.stat().st_mtime_ns)
    time.sleep(0.01)
    assert save_heatmaps(_table(a), folder, dpi=30) == [png]  # same rows: kept as it is
    assert (png.stat().st_mtime_ns, csv.stat().st_mtime_ns) == mtimes
    # same name (a table without caption and preprocess columns), other scores: redrawn
    assert save_heatmaps(_table(b), folder, dpi=30) == [png]
    np.testing.assert_allclose(pd.read_csv(csv, index_col=0).to_numpy(), b)
    assert png.stat().st_mtime_ns != mtimes[0]
    # a PNG cut short (a kill during an old, non-atomic write) is redrawn, not kept
    size = png.stat().st_size
    png.write_bytes(png.read_bytes()[: size // 2])
    assert save_heatmaps(_table(b), folder, dpi=30) == [png]
    assert png.stat().st_size == size
    # a heatmap is named by its caption and preprocessing; remove_stale drops the figures of other settings
    (first,) = save_heatmaps(_table(a, caption="first", preprocess="none"), folder, dpi=30)
    (zscored,) = save_heatmaps(_table(b, caption="first", preprocess="zscore"), folder, dpi=30, remove_stale=True)
    assert "preprocess=zscore" in zscored.name and not first.exists() and not png.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([zscored.name, zscored.with_suffix(".csv").name])
    # both options in one table: one heatmap each (not the first option's scores under one name)
    both = pd.concat([_table(a, caption="first", preprocess="none"), _table(b, caption="first", preprocess="zscore")])
    maps = save_heatmaps(both, folder, dpi=30)
    assert len(maps) == 2
    for path, want in zip(sorted(maps), (a, b)):
        np.testing.assert_allclose(pd.read_csv(path.with_suffix(".csv"), index_col=0).to_numpy(), want)
