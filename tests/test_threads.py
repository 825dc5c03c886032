"""Thread pools sized to the CPUs this process may use (align._threads; issue 10, "speed that survives a busy
machine"). What a configured process ends up with is checked in a fresh subprocess: XLA's pool can only be sized
before its first computation, and the test process's own pools must stay as they are."""

import json
import os
import subprocess
import sys

import pytest

from align import _threads
from align._threads import cgroup_cpu_limit
from align._threads import usable_cpus
from align.cli import main


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_of_the_process_group_and_its_ancestors(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "jobs" / "cpu.max", "250000 100000\n")  # 2.5 CPUs for every job
    _write(root / "jobs" / "mine" / "cpu.max", "max 100000\n")
    proc = tmp_path / "proc_cgroup"
    _write(proc, "0::/jobs/mine\n")
    assert cgroup_cpu_limit(root, proc) == 2.5
    _write(root / "jobs" / "mine" / "cpu.max", "150000 100000\n")  # the tighter limit wins
    assert cgroup_cpu_limit(root, proc) == 1.5
    _write(proc, "0::/\n")
    assert cgroup_cpu_limit(root, proc) is None  # the root group is unlimited


def test_cgroup_v1_quota(tmp_path):
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc_cgroup"
    _write(proc, "4:memory:/x\n3:cpu,cpuacct:/job\n0::/\n")
    _write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "300000\n")
    _write(root / "cpu,cpuacct" / "job" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, proc) == 3.0
    _write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "-1\n")  # unlimited
    assert cgroup_cpu_limit(root, proc) is None
    assert cgroup_cpu_limit(tmp_path / "absent", tmp_path / "absent_proc") is None


def test_usable_cpus_is_capped_by_affinity_and_quota(monkeypatch):
    allowed = len(os.sched_getaffinity(0))
    assert 1 <= usable_cpus({}) <= allowed
    monkeypatch.setattr(_threads, "cgroup_cpu_limit", lambda: 0.5)  # half a CPU rounds up to one
    assert usable_cpus({}) == 1
    monkeypatch.setattr(_threads, "cgroup_cpu_limit", lambda: allowed + 7.0)  # a quota above the affinity
    assert usable_cpus({}) == allowed


def test_align_threads_overrides_and_is_validated():
    assert usable_cpus({"ALIGN_THREADS": "3"}) == 3
    assert usable_cpus({"ALIGN_THREADS": " "}) == usable_cpus({})
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match=f"ALIGN_THREADS='{bad}'.*positive whole number"):
            usable_cpus({"ALIGN_THREADS": bad})


def test_cli_reports_a_bad_align_threads_as_a_user_error(monkeypatch, capsys):
    monkeypatch.setenv("ALIGN_THREADS", "many")
    assert main(["metrics"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ALIGN_THREADS='many'" in err and "Traceback" not in err


_PROBE = """
import json, os, collections
import align
from align._threads import configure_threads
config = configure_threads()
import jax.numpy as jnp, numpy as np, threadpoolctl
x = jnp.ones((200, 200)); (x @ x).block_until_ready()
np.linalg.svd(np.ones((50, 40)))
names = collections.Counter(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
print(json.dumps({"threads": config.threads, "source": config.source, "xla_started": config.xla_started,
                  "affinity": sorted(os.sched_getaffinity(0)), "xla_pool": names.get("tf_XLAEigen", 0),
                  "openblas": [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"],
                  "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")},
                  "set": sorted(config.environment)}))
"""


def _configured(**env):
    full = {k: v for k, v in os.environ.items() if k not in _threads.COUNT_VARIABLES + _threads.BLAS_VARIABLES
            and k not in _threads.WAIT_VARIABLES and k != "ALIGN_THREADS"}
    done = subprocess.run([sys.executable, "-c", _PROBE], env={**full, **env}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_configured_process_sizes_xla_to_align_threads_and_runs_blas_on_one_thread():
    out = _configured(ALIGN_THREADS="1")
    assert out["threads"] == 1 and out["source"] == "ALIGN_THREADS" and not out["xla_started"]
    assert len(out["affinity"]) == 1 and out["xla_pool"] == 1  # XLA sized its pool from the narrowed affinity
    assert out["openblas"] and set(out["openblas"]) == {1}  # numpy's (loaded before the call) and any later one
    assert out["env"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def test_configured_process_keeps_the_users_own_settings():
    allowed = len(os.sched_getaffinity(0))
    out = _configured(OMP_NUM_THREADS="3", OPENBLAS_NUM_THREADS="2")
    assert out["threads"] == usable_cpus({}) and len(out["affinity"]) == min(allowed, out["threads"])
    assert out["env"]["OMP_NUM_THREADS"] == "3" and out["env"]["OPENBLAS_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in out["set"] and "OMP_WAIT_POLICY" in out["set"]
    assert set(out["openblas"]) == {2}  # the user's OPENBLAS_NUM_THREADS, not our default of 1
