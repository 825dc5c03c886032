"""The Ray backend (``[execution] backend = "ray"``): the same stores and results tables as a local run, resuming
each other, surviving killed workers, and clear errors before any work for a missing Ray, an unreachable cluster or
a worker without the model packages. A 2-CPU local Ray cluster, tiny random models, a few synthetic stimuli."""

import functools
import socket
import sys
import time

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")

import _extract_tiny as tiny  # noqa: E402

import align.cluster  # noqa: E402
from align.cluster import CRASH_ONCE_ENV  # noqa: E402
from align.cluster import ClusterError  # noqa: E402
from align.cluster import extract_on_ray  # noqa: E402
from align.config import ExecutionConfig  # noqa: E402
from align.config import parse_config  # noqa: E402
from align.experiments import run  # noqa: E402
from align.extract import extract  # noqa: E402
from align.store import StoreWriter  # noqa: E402
from align.store import open_store  # noqa: E402

RAY = ExecutionConfig(backend="ray")
# one Ray cluster for the module: its tests stay in one xdist worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_models")
    return {"vision": tiny.vision_model(root / "vision", "dinov2"),
            "language": tiny.language_model(root / "language", "bert"),
            "stimuli": tiny.stimulus_set(root / "stimuli", n=5), "root": root}


@pytest.fixture(autouse=True)
def pinned_time(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # store files comparable byte for byte


def _crashing(tmp_path):
    """Ray options making the first worker call of each kind kill its worker (``ALIGN_RAY_CRASH_ONCE``)."""
    folder = tmp_path / "crash-markers"
    folder.mkdir()
    return folder, {"runtime_env": {"env_vars": {CRASH_ONCE_ENV: str(folder)}}}


def _same_files(a, b):
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    assert files_a and files_a == sorted(p.relative_to(b) for p in b.rglob("*.parquet"))
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"
    return files_a


def test_ray_resumes_a_local_run_and_vice_versa(ray_cluster, made, tmp_path, monkeypatch):
    spec, stim = made["language"], made["stimuli"]
    reference = extract(spec, stim, tmp_path / "ref", batch_size=2, device="cpu", progress=False, captions=0)
    original = StoreWriter.write_part
    calls = []

    def interrupted(self, ids, layers):
        calls.append(list(ids))
        if len(calls) == 3:  # batch 1 in both stores, batch 2 in 'mean' only
            raise KeyboardInterrupt
        return original(self, ids, layers)

    monkeypatch.setattr(StoreWriter, "write_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract(spec, stim, tmp_path / "out", batch_size=2, device="cpu", progress=False, captions=0)
    monkeypatch.setattr(StoreWriter, "write_part", original)
    written = []
    monkeypatch.setattr(StoreWriter, "write_part", lambda self, ids, layers: (written.append(list(ids)),
                                                                             original(self, ids, layers))[1])
    extract_on_ray(spec, stim, tmp_path / "out", execution=RAY, batch_size=2, device="cpu", progress=False,
                   captions=0)
    # the Ray run wrote exactly what the local run had not: img2..img4 for 'last', img2 also for 'mean'
    ids = [f"img{i}#0" for i in range(5)]
    assert sorted(sum(written, [])) == sorted(ids[2:] * 2)
    _same_files(tmp_path / "ref", tmp_path / "out")
    assert [open_store(p).stimulus_ids for p in reference.values()] == [ids, ids]


def _config(models, out, backend, **execution):
    return parse_config({
        "name": "ray-demo", "output": str(out), "stimuli": {"kind": "synthetic", "n": 12},
        "models": [{"name": str(models / "vision"), "modality": "vision", "pooling": ["cls", "mean"]},
                   {"name": str(models / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 4, "device": "cpu"},
        "score": {"metrics": ["linear_cka", "linear_predictivity"], "null": 5},
        "execution": {"backend": backend, **execution}})


def test_run_on_ray_equals_local_with_killed_workers(ray_cluster, made, tmp_path, monkeypatch):
    """A whole layerwise run (extract + score) on Ray, the first extraction batch and the first scoring task each
    killing its worker: the stores, job files and results table equal those of a local run."""
    work = tmp_path / "work"  # both runs at the same paths (the stimulus set's fingerprint holds its file paths)
    t0 = time.perf_counter()
    local = run(_config(made["root"], work / "run", "local"), stages=("extract", "score"), progress=False,
                log=lambda m: None)
    local_s = time.perf_counter() - t0
    work.rename(tmp_path / "local")
    markers, crash = _crashing(tmp_path)
    monkeypatch.setattr(align.cluster, "extract_on_ray", functools.partial(extract_on_ray, remote_args=crash))
    monkeypatch.setattr(align.cluster, "RayExecutor", functools.partial(align.cluster.RayExecutor, remote_args=crash))
    lines = []
    t0 = time.perf_counter()
    remote = run(_config(made["root"], work / "run", "ray"), stages=("extract", "score"), progress=False,
                 log=lines.append)
    ray_s = time.perf_counter() - t0
    print(f"\nlocal run {local_s:.1f} s, ray run (2 worker kills) {ray_s:.1f} s")
    assert sorted(p.name for p in markers.iterdir()) == ["extract", "score"]
    assert sum(" layers in " in line for line in lines) == 4  # 2 store pairs x 2 metrics, each computed once
    files = _same_files(tmp_path / "local", work)  # stores, job files, results.parquet: byte for byte
    assert len(files) == 3 + 4 + 1  # 3 stores (vision cls + mean, language mean), 4 job files, the results table
    for key, path in remote.stores.items():  # every stimulus exactly once, in order, with the local provenance
        a, b = open_store(tmp_path / "local" / local.stores[key].relative_to(work)), open_store(path)
        assert b.stimulus_ids == a.stimulus_ids and len(set(b.stimulus_ids)) == b.n and a.meta == b.meta
    a, b = pd.read_parquet(tmp_path / "local" / "run" / "results.parquet"), pd.read_parquet(remote.results)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2 * (2 * 9 + 9) and a["p_value"].notna().any()  # pairs x (LP both ways + CKA) x 3x3 layers


def test_errors_before_any_work(ray_cluster, made, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        run(_config(made["root"], tmp_path / "bad" / "run", "ray", address=f"ray://127.0.0.1:{port}"),
            stages=("extract",), progress=False, log=lambda m: None)
    with pytest.raises(ClusterError, match="expected 'ray://host:port'"):
        align.cluster.check_address("ray://nohost")
    assert not (tmp_path / "bad" / "activations").exists()

    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    with pytest.raises(ClusterError, match=r"pip install 'align\[cluster\]'"):
        run(_config(made["root"], tmp_path / "noray" / "run", "ray"), stages=("extract",), progress=False,
            log=lambda m: None)
    assert not (tmp_path / "noray" / "activations").exists()


def test_worker_without_model_packages(ray_cluster, made, tmp_path):
    """A worker whose transformers cannot be imported: a ClusterError naming the install, and nothing written."""
    fake = tmp_path / "broken_site" / "transformers"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named transformers (simulated)')\n")
    broken = {"runtime_env": {"env_vars": {"PYTHONPATH": str(fake.parent)}}}
    with pytest.raises(ClusterError, match=r"cannot load model .*simulated.*pip install 'align\[extract\]'"):
        extract_on_ray(made["vision"], made["stimuli"], tmp_path / "out", execution=RAY, device="cpu",
                       progress=False, remote_args=broken)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".parquet", ".parts")]  # locks only


def test_local_backend_never_imports_ray(made, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    stores = run(_config(made["root"], tmp_path / "run", "local"), stages=("extract",), progress=False,
                 log=lambda m: None).stores
    assert len(stores) == 3
