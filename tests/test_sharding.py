"""Layer grids sharded over several JAX devices (``devices=``) equal the one-device run.

The multi-device cases run in ONE subprocess with 4 forced host (CPU) devices (``XLA_FLAGS`` must be set before
jax is imported): every registered metric, permutation and bootstrap statistics, a within-model grid, a paired
difference, the error for too many devices, and a tiny layerwise run with ``[execution] devices = 4`` (see
tests/_sharding_cases.py, which asserts inside and prints a JSON summary).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import align
from align.engine import batch_from_memory
from align.engine import free_bytes

HERE = Path(__file__).parent


@pytest.mark.slow
def test_four_devices_equal_one_device(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(HERE),
           "ALIGN_THREADS": "1", "ALIGN_PROGRESS": "0", "ALIGN_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(HERE / "_sharding_cases.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # the built-in metrics (this process's registry may also hold probes other tests registered)
    listing = "import json, align; print(json.dumps(align.list_metrics()))"
    builtin = json.loads(subprocess.run([sys.executable, "-c", listing], env=env, capture_output=True, text=True,
                                        check=True).stdout)
    assert set(builtin) <= set(summary)
    compared = {k: v for k, v in summary.items() if isinstance(v, dict) and "max_abs_diff" in v}
    assert len(compared) >= len(builtin) - 1, summary  # at most one metric broken on one device
    assert all(v["max_abs_diff"] <= v.get("tolerance", 1e-6) <= 1e-6 or k == "mlp_predictivity"
               for k, v in compared.items())
    assert all(v["max_abs_diff"] <= v.get("tolerance", 1e-6) for v in compared.values())
    assert summary["layerwise run"]["rows"] > 0


def test_too_many_devices_is_an_error_before_any_work():
    n = len(jax.local_devices())
    with pytest.raises(ValueError, match=f"only {n} exist"):
        align.pairwise("linear_cka", [[[0.0]]], [[[0.0]]], devices=n + 1)  # bad data: the device check comes first
    for bad in (0, -1, "gpu", 1.5, True):
        with pytest.raises(ValueError, match="devices must be"):
            align.pairwise("linear_cka", [[[0.0]]], [[[0.0]]], devices=bad)


def test_batch_from_memory_uses_free_bytes_and_keeps_the_default_without_stats():
    assert free_bytes(None) is None  # the CPU: memory_stats() is None
    assert free_bytes({"bytes_in_use": 5}) is None
    stats = {"bytes_limit": 100 * 2**20, "bytes_in_use": 20 * 2**20}
    assert free_bytes(stats) == 80 * 2**20
    assert batch_from_memory(None, 1000, 8) == 8
    assert batch_from_memory(stats, 2**20, 8) == 20  # a quarter of the 80 MiB free, 1 MiB per draw
    assert batch_from_memory(stats, 2**30, 8) == 1  # even one draw is over the share: one at a time
    assert batch_from_memory({"bytes_limit": 2**40, "bytes_in_use": 0}, 1, 8) == 64  # capped
