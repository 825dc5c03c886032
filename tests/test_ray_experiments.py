"""Every experiment kind scores on Ray (``[execution] backend = "ray"``): the perturbation, aggregation and
preference experiments give the results tables of a local run, one Ray task per job (a killed worker's task is
retried), a rerun skips every finished job, and an unreachable cluster fails before any work. A 2-CPU local Ray
cluster, tiny random models, a few synthetic stimuli; the Ray runs score the stores the local run extracted."""

import functools
import shutil
import socket
import sys
import time

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")


import align.cluster  # noqa: E402
from align.cluster import CRASH_ONCE_ENV  # noqa: E402
from align.cluster import ClusterError  # noqa: E402
from align.config import parse_config  # noqa: E402
from align.experiments import run_experiment  # noqa: E402

# one Ray cluster for the module: its tests stay in one xdist worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

EXPERIMENTS = {
    "perturbation": ({"kind": "synthetic", "n": 8},
                     {"image_conditions": ["grayscale"], "caption_conditions": ["scramble"], "n_perm": 10,
                      "n_boot": 10}),
    "aggregation": ({"kind": "synthetic", "n": 8},
                    {"aggregate": ["captions"], "k_max": 2, "n_perm": 10, "n_boot": 10}),
    "preference": ({"kind": "synthetic", "n": 12},
                   {"contrasts": ["matched", "wrong_caption"], "folds": 3, "n_perm": 10, "n_boot": 10}),
    "layerwise": ({"kind": "synthetic", "n": 8}, {"n_perm": 5}),  # the grids and the peak null on Ray
}
#: Where each kind writes its job files, under its output folder.
JOB_FOLDER = {"perturbation": ("perturbation",), "aggregation": ("aggregation",), "preference": ("preference",),
              "layerwise": ("scores", "peak_null")}


def _config(models, out, kind, backend, **execution):
    stimuli, experiment = EXPERIMENTS[kind]
    return parse_config({
        "name": f"ray-{kind}", "output": str(out / kind), "stimuli": stimuli,
        "models": [{"name": str(models / "vision"), "modality": "vision", "pooling": ["cls"]},
                   {"name": str(models / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 8, "device": "cpu"}, "score": {"metrics": ["linear_cka"]},
        "experiment": {"kind": kind, **experiment}, "execution": {"backend": backend, **execution}})


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in table.columns if table[c].dtype == object or c in ("layer_x", "layer_y", "k")]
    return table.sort_values(keys, kind="stable").reset_index(drop=True)


def _computed(lines):
    """The log lines of jobs computed (not skipped)."""
    return [line for line in lines if line.endswith(" s") and "exists, skipped" not in line and "]" in line]


@pytest.mark.parametrize("kind", ["perturbation", "aggregation", "preference", "layerwise"])
def test_experiment_on_ray_equals_local(ray_cluster, tiny_models, tmp_path, monkeypatch, kind):
    """Local run, then the same config with backend "ray" on the stores it extracted (job files removed): the same
    results table (and per-item scores); a rerun computes nothing. The perturbation run's first scoring task kills
    its worker: the retried task gives the same rows."""
    work = tmp_path / "work"  # both runs at the same paths (the stimulus set's fingerprint holds its file paths)
    local_lines = []
    t0 = time.perf_counter()
    local = run_experiment(_config(tiny_models, work, kind, "local"), progress=False, log=local_lines.append)
    local_s = time.perf_counter() - t0
    shutil.copytree(work, tmp_path / "local")
    out = work / kind
    for folder in JOB_FOLDER[kind]:
        shutil.rmtree(out / folder)
    for name in ("results.parquet", "items.parquet", "exclusions.json", "peak_null.parquet"):
        (out / name).unlink(missing_ok=True)
    markers, crash, sent = None, None, []
    if kind == "perturbation":
        markers = tmp_path / "crash-markers"
        markers.mkdir()
        crash = {"runtime_env": {"env_vars": {CRASH_ONCE_ENV: str(markers)}}}

    class Counting(align.cluster.RayExecutor):  # the Ray executor, counting the jobs sent to the cluster
        def __call__(self, jobs):
            sent.append(len(jobs))
            yield from super().__call__(jobs)

    monkeypatch.setattr(align.cluster, "RayExecutor", functools.partial(Counting, remote_args=crash))
    lines = []
    t0 = time.perf_counter()
    remote = run_experiment(_config(tiny_models, work, kind, "ray"), progress=False, log=lines.append)
    ray_s = time.perf_counter() - t0
    print(f"\n{kind}: local run (extract + {len(_computed(local_lines))} jobs) {local_s:.1f} s, "
          f"ray scoring ({len(_computed(lines))} jobs) {ray_s:.1f} s")
    if markers is not None:
        assert [p.name for p in markers.iterdir()] == ["score"]  # a worker was killed, its task retried
    assert remote == out / "results.parquet" and local == remote
    assert len(_computed(lines)) == len(_computed(local_lines)) == sum(sent) > 0  # every job once, on Ray
    a = pd.read_parquet(tmp_path / "local" / kind / "results.parquet")
    b = pd.read_parquet(remote)
    assert len(a) > 0 and sorted(a.columns) == sorted(b.columns)
    pd.testing.assert_frame_equal(_sorted(a), _sorted(b[a.columns]), check_exact=False, rtol=0, atol=1e-6)
    assert np.isfinite(b["score"]).any()
    for folder in JOB_FOLDER[kind]:
        job_files = sorted(p.name for p in (out / folder).glob("*.parquet"))
        assert job_files == sorted(p.name for p in (tmp_path / "local" / kind / folder).glob("*.parquet"))
    if kind == "layerwise":  # the shuffled-pairing null at each peak, scored on Ray too
        null_a = pd.read_parquet(tmp_path / "local" / kind / "peak_null.parquet")
        null_b = pd.read_parquet(out / "peak_null.parquet")
        assert len(null_a) > 0
        pd.testing.assert_frame_equal(_sorted(null_a), _sorted(null_b[null_a.columns]), check_exact=False, rtol=0,
                                      atol=1e-6)
    if kind == "preference":  # the per-item scores, written by the driver from what the tasks returned
        items_a = pd.read_parquet(tmp_path / "local" / kind / "items.parquet")
        items_b = pd.read_parquet(out / "items.parquet")
        pd.testing.assert_frame_equal(_sorted(items_a), _sorted(items_b), check_exact=False, rtol=0, atol=1e-6)
    if (tmp_path / "local" / kind / "exclusions.json").exists():
        assert (out / "exclusions.json").read_text() == (tmp_path / "local" / kind / "exclusions.json").read_text()

    again = []
    run_experiment(_config(tiny_models, work, kind, "ray"), progress=False, log=again.append)
    skipped = lambda log: sum("exists, skipped" in line for line in log)  # noqa: E731
    assert not _computed(again) and skipped(again) == len(_computed(lines)) + skipped(lines)
    pd.testing.assert_frame_equal(pd.read_parquet(remote), b)


def test_unreachable_cluster_or_no_ray_fails_before_any_work(ray_cluster, tiny_models, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for kind in EXPERIMENTS:
        cfg = _config(tiny_models, tmp_path / "bad", kind, "ray", address=f"127.0.0.1:{port}")
        with pytest.raises(ClusterError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
            run_experiment(cfg, progress=False, log=lambda m: None)
    assert not (tmp_path / "bad").exists()  # no stimuli rendered, no store, no job file
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    for kind in EXPERIMENTS:
        with pytest.raises(ClusterError, match=r"pip install 'align\[cluster\]'"):
            run_experiment(_config(tiny_models, tmp_path / "noray", kind, "ray"), progress=False, log=lambda m: None)
    assert not (tmp_path / "noray").exists()
