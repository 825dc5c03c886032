"""Two `align run` of one config on one output at once: both succeed, the second waits for or reuses the first's
work, and the outputs are those of a single run (tiny random models, synthetic stimuli)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

sys.path.insert(0, str(Path(__file__).parent))

from align.store import open_store  # noqa: E402

METRICS = ("linear_cka", "rsa")


def _config(models: Path, folder: Path) -> Path:
    """A config whose output is ``folder/run`` (activations and stimuli go to ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.toml"
    path.write_text(f'''name = "concurrent"
output = {json.dumps(str(folder / "run"))}

[stimuli]
kind = "synthetic"
n = 12

[[models]]
name = {json.dumps(str(models / "vision"))}
modality = "vision"
pooling = ["cls", "mean"]

[[models]]
name = {json.dumps(str(models / "language"))}
modality = "language"
pooling = ["mean"]

[extract]
batch_size = 4

[score]
metrics = {json.dumps(list(METRICS))}

[plot]
dpi = 40
''')
    return path


def _align_run(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "align", "run", str(config), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _relative_files(root: Path, pattern: str) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob(pattern))


def _locks_free(root: Path) -> list[Path]:
    """Lock files under ``root`` that some process still holds."""
    from filelock import FileLock
    from filelock import Timeout

    held = []
    for path in root.rglob("*.lock"):
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            held.append(path)
        else:
            lock.release()
    return held


@pytest.mark.slow
def test_two_concurrent_runs_both_succeed_and_equal_a_single_run(tiny_models, tmp_path):
    shared, single = tmp_path / "shared", tmp_path / "single"
    # the reference: one run alone, moved aside (stores are keyed by the stimuli's paths, so both use one folder)
    reference = _align_run(_config(tiny_models, shared))
    _, err = reference.communicate(timeout=540)
    assert reference.returncode == 0, err
    shared.rename(single)
    config = _config(tiny_models, shared)
    runs = [_align_run(config), _align_run(config)]  # started at once, same config, same output
    outcomes = [p.communicate(timeout=540) + (p.returncode,) for p in runs]
    for out, err, code in outcomes:
        assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
        assert "Traceback" not in err
    # every scoring job was computed once, by one of the two runs; the other waited for it and reused its rows
    jobs = 2 * 1 * len(METRICS)  # (cls, mean) x mean x metrics
    computed = sum(out.count(" layers in ") for out, _, _ in outcomes)
    assert computed == jobs, [out for out, _, _ in outcomes]

    # the stores: same files, same rows, same values, same provenance (but the creation time)
    stores = _relative_files(shared, "activations/**/*.parquet")
    assert stores == _relative_files(single, "activations/**/*.parquet") and len(stores) == 3
    for rel in stores:
        a, b = open_store(shared / rel), open_store(single / rel)
        assert a.stimulus_ids == b.stimulus_ids and a.layer_names == b.layer_names
        for layer in range(a.n_layers):
            np.testing.assert_array_equal(a.layer(layer), b.layer(layer))
        assert {k: v for k, v in a.meta.items() if k != "created"} == {k: v for k, v in b.meta.items()
                                                                        if k != "created"}
    # the results: same job files, same table, same heatmaps
    assert _relative_files(shared / "run", "scores/*.parquet") == _relative_files(single / "run", "scores/*.parquet")
    keys = ["model_x", "pooling_x", "model_y", "metric", "direction", "layer_x", "layer_y"]
    got = pd.read_parquet(shared / "run" / "results.parquet").sort_values(keys, ignore_index=True)
    want = pd.read_parquet(single / "run" / "results.parquet").sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    heatmaps = _relative_files(shared / "run", "heatmaps/*")
    assert heatmaps == _relative_files(single / "run", "heatmaps/*") and len(heatmaps) == 2 * 2 * len(METRICS) + 1  # (png, csv) x 2 store pairs x metrics, + all_pairs.png
    for rel in heatmaps:
        if rel.suffix == ".csv":
            assert (shared / "run" / rel).read_text() == (single / "run" / rel).read_text()

    # nothing half-written is left, and no lock is held
    assert not [p for p in shared.rglob("*") if p.name.endswith((".tmp", ".parts")) or ".tmp-" in p.name]
    assert _locks_free(shared) == []
