"""Thread pools sized to the CPUs this process may use, so that a shared or busy machine does not slow runs down.

By default OpenBLAS, MKL, OpenMP and XLA each start one worker per CPU of the machine and let idle workers
spin-wait for the next parallel region. On a node shared with other jobs (a cgroup CPU quota smaller than the
machine, or busy cores) those workers wait for cores that are running someone else, and OpenBLAS threads started
inside XLA's own pool compete with it: a cold ``make figures`` went from 13 minutes on a quiet machine to more than
48 beside two other jobs (issue 10). :func:`configure_threads`, called first thing by the ``align`` command line,
sizes the pools to :func:`usable_cpus` (OpenBLAS, which runs inside XLA's pool here, to one thread) and makes idle
workers sleep instead of spin:

- environment variables, read by libraries when they load (OpenBLAS, MKL, OpenMP, torch through OpenMP) and by
  subprocesses: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMEXPR_MAX_THREADS`` (the count);
  ``OPENBLAS_NUM_THREADS``, ``BLIS_NUM_THREADS`` (1, see :func:`configure_threads`); the waiting policies
  ``OMP_WAIT_POLICY=PASSIVE``, ``KMP_BLOCKTIME=0`` and ``OPENBLAS_THREAD_TIMEOUT=4`` (an idle OpenBLAS worker
  sleeps after 2^4 cycles instead of 2^28). Values the user already set are kept;
- the BLAS and OpenMP libraries already loaded (numpy's OpenBLAS; scipy's, which serves jaxlib's LAPACK calls, once
  loaded) are resized at run time through threadpoolctl;
- XLA sizes its CPU thread pool (``XLAEigen``) from the process's CPU affinity when its backend starts and has no
  flag for that size or for spinning: ``--xla_cpu_multi_thread_eigen=false`` is accepted but leaves the pool at one
  thread per allowed CPU (jaxlib 0.10.2), and ``--intra_op_parallelism_threads`` is unknown to XLA (an unknown
  ``XLA_FLAGS`` entry is a fatal error). So when fewer threads are wanted than the affinity allows (a cgroup quota,
  or ``ALIGN_THREADS``) and the backend has not started yet, the process's affinity is narrowed to that many of
  its allowed CPUs (inherited by subprocesses; which ones depends on the process id, so concurrent runs spread).

``ALIGN_THREADS=N`` overrides the count (e.g. ``ALIGN_THREADS=1`` on a crowded node; more than the usable CPUs is
allowed but only oversubscribes). Library users call :func:`align.configure_threads` themselves, first thing in
their script, before their first jax computation (importing ``align`` loads numpy and jax but starts no pool).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from pathlib import Path

#: Environment variable overriding the thread count (a positive integer).
ENV_OVERRIDE = "ALIGN_THREADS"

#: Variables set to the thread count (libraries read them when they load; subprocesses inherit them).
COUNT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS")
#: Variables set to the BLAS thread count (1 by default: see :func:`configure_threads`).
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS")
#: threadpoolctl ``internal_api`` names of the libraries sized to the BLAS thread count.
BLAS_LIBRARIES = ("openblas", "blis")
#: Variables that make idle workers sleep instead of spin-waiting (OpenMP, Intel OpenMP, OpenBLAS).
WAIT_VARIABLES = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0", "OPENBLAS_THREAD_TIMEOUT": "4"}


@dataclasses.dataclass(frozen=True)
class ThreadConfig:
    """What :func:`configure_threads` did.

    Attributes:
      threads: the thread count every pool was sized to.
      source: where the count came from: ``"ALIGN_THREADS"``, ``"cgroup quota"``, ``"affinity"`` or ``"argument"``.
      environment: the variables set (those the user had set are not included).
      blas_resized: the already-loaded BLAS/OpenMP libraries resized at run time, as ``"internal_api=threads"``
        (e.g. ``("openblas=1",)``); empty when none was loaded or threadpoolctl is missing.
      affinity: the CPUs the process was narrowed to, or None when its affinity was left alone.
      xla_started: True when XLA's CPU backend had already started, so its pool kept its size.
    """

    threads: int
    source: str
    environment: dict
    blas_resized: tuple
    affinity: tuple | None
    xla_started: bool

    def __str__(self) -> str:
        xla = ("XLA already started (pool unchanged)" if self.xla_started else
               f"XLA pinned to CPUs {list(self.affinity)}" if self.affinity is not None else "XLA pool = affinity")
        loaded = ", ".join(self.blas_resized) or "none loaded"
        return f"{self.threads} thread(s) ({self.source}); loaded BLAS/OpenMP: {loaded}; {xla}"


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota_v2(text: str | None) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max PERIOD"``), or None when unlimited/unreadable."""
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(quota: str | None, period: str | None) -> float | None:
    """CPUs of cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 = unlimited), or None."""
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup"
                     ) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 2.5), or None when there is none.

    Reads cgroup v2 ``cpu.max`` of the process's own cgroup and of every ancestor up to ``root`` (the smallest
    limit wins), else cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of the ``cpu`` controller's group and
    of its mount root. Inside a container the process's cgroup usually is ``root`` itself.

    Args:
      root: where the cgroup file system is mounted.
      proc_cgroup: the file listing the process's cgroups (``/proc/self/cgroup``).
    """
    root = Path(root)
    lines = (_read(Path(proc_cgroup)) or "").splitlines()
    limits = []
    v2_paths = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    for rel in v2_paths or ["/"]:
        group = root / rel.lstrip("/")
        while True:
            limit = _quota_v2(_read(group / "cpu.max"))
            if limit is not None:
                limits.append(limit)
            if group == root or root not in group.parents:
                break
            group = group.parent
    if not limits:
        v1_paths = [line.split(":", 2)[2] for line in lines
                    if len(line.split(":", 2)) == 3 and "cpu" in line.split(":", 2)[1].split(",")]
        for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            for rel in [*v1_paths, "/"]:
                group = root / controller / rel.lstrip("/")
                limit = _quota_v1(_read(group / "cpu.cfs_quota_us"), _read(group / "cpu.cfs_period_us"))
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _override(environ) -> int | None:
    raw = environ.get(ENV_OVERRIDE, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_OVERRIDE}={raw!r}: expected a positive whole number of threads (e.g. "
                         f"{ENV_OVERRIDE}=2), or unset it to use every CPU this process may use")
    return value


def usable_cpus(environ=None) -> int:
    """How many threads this process should run: ``ALIGN_THREADS`` if set, else the CPUs it may use.

    The CPUs it may use are those of its affinity mask (``taskset``, ``docker --cpuset-cpus``, Slurm, ...) capped
    by its cgroup CPU quota (``docker --cpus``, Kubernetes CPU limits), rounded up; at least 1.

    Raises:
      ValueError: ``ALIGN_THREADS`` is set to something other than a positive integer.
    """
    return _usable(os.environ if environ is None else environ)[0]


def _usable(environ) -> tuple[int, str]:
    override = _override(environ)
    if override is not None:
        return override, ENV_OVERRIDE
    affinity = _affinity()
    count = len(affinity) if affinity else (os.cpu_count() or 1)
    quota = cgroup_cpu_limit()
    if quota is not None and math.ceil(quota) < count:
        return max(1, math.ceil(quota)), "cgroup quota"
    return max(1, count), "affinity"


def _xla_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a jax without this module: assume the worst
        return True
    return bool(getattr(xla_bridge, "_backends", True))


def _env_count(name: str) -> int | None:
    """A positive integer the environment sets ``name`` to, else None."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value >= 1 else None


#: The variable whose value (when the user set it) sizes a loaded library of each threadpoolctl ``internal_api``.
_LIBRARY_VARIABLE = {"openblas": "OPENBLAS_NUM_THREADS", "blis": "BLIS_NUM_THREADS", "mkl": "MKL_NUM_THREADS"}


def _resize_loaded_blas(threads: int, blas_threads: int, user_set: set[str]) -> tuple:
    try:
        import threadpoolctl
    except ImportError:  # scikit-learn's dependency; without it, only the environment variables apply
        return ()
    loaded = threadpoolctl.threadpool_info()

    def limit(info):
        variable = _LIBRARY_VARIABLE.get(info["internal_api"], "OMP_NUM_THREADS")
        if variable in user_set and _env_count(variable):  # the user's own setting wins
            return _env_count(variable)
        return blas_threads if info["internal_api"] in BLAS_LIBRARIES else threads

    limits = {info["prefix"]: limit(info) for info in loaded}
    if limits:
        threadpoolctl.threadpool_limits(limits=limits)  # applies now and stays (not used as a context manager)
    return tuple(f"{info['internal_api']}={limits[info['prefix']]}" for info in loaded)


def _spread(allowed: set[int], threads: int) -> tuple[int, ...]:
    """``threads`` of the ``allowed`` CPUs, starting at an offset given by the process id, so that several
    processes narrowed at once (e.g. ``ALIGN_THREADS=1`` jobs on one node) do not all land on the first CPU."""
    ordered = sorted(allowed)
    start = os.getpid() % len(ordered)
    return tuple(sorted((ordered[start:] + ordered[:start])[:threads]))


def configure_threads(threads: int | None = None, blas_threads: int | None = None) -> ThreadConfig:
    """Size every thread pool of this process to ``threads`` (default :func:`usable_cpus`) and stop idle spinning.

    XLA, OpenMP and MKL (torch during extraction) get ``threads``. OpenBLAS and BLIS get ``blas_threads``, 1 by
    default: in this toolkit they run inside XLA's pool (jaxlib's LAPACK calls: the SVDs of linear predictivity,
    SVCCA and Procrustes' QR), whose threads already hold the cores, so more BLAS threads only wait for cores. A
    400 x 576 SVD (one training fold of the demo) took 37 ms on one OpenBLAS thread and 247 ms on two on this
    project's 2-core machine under other users' load, and 121 ms against 1111 ms beside two busy loops.

    Call it once, first thing in a program (the ``align`` command line does): environment variables only reach
    libraries not loaded yet, and XLA's pool can only be sized before its first computation. Safe to call again.

    Args:
      threads: the count to use; None: ``ALIGN_THREADS`` or the CPUs this process may use.
      blas_threads: the OpenBLAS/BLIS thread count; None: ``OPENBLAS_NUM_THREADS`` if the user set it, else 1.
        (A count the user set in ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS`` also sizes the
        loaded libraries it names; the variables themselves are never overwritten.)

    Returns:
      A :class:`ThreadConfig` saying what was set.

    Raises:
      ValueError: ``threads`` or ``blas_threads`` < 1, or a malformed ``ALIGN_THREADS``.
    """
    if threads is None:
        threads, source = _usable(os.environ)
    else:
        if int(threads) < 1:
            raise ValueError(f"configure_threads: threads must be a positive integer, got {threads!r}")
        threads, source = int(threads), "argument"
    if blas_threads is None:
        blas_threads = _env_count("OPENBLAS_NUM_THREADS") or 1
    elif int(blas_threads) < 1:
        raise ValueError(f"configure_threads: blas_threads must be a positive integer, got {blas_threads!r}")
    blas_threads = int(blas_threads)
    wanted = {**{name: str(threads) for name in COUNT_VARIABLES},
              **{name: str(blas_threads) for name in BLAS_VARIABLES}, **WAIT_VARIABLES}
    user_set = {name for name in wanted if name in os.environ}
    environment = {name: value for name, value in wanted.items() if name not in user_set}
    os.environ.update(environment)
    blas = _resize_loaded_blas(threads, blas_threads, user_set - set(BLAS_VARIABLES))
    started = _xla_started()
    affinity = None
    allowed = _affinity()
    if not started and allowed and threads < len(allowed):
        affinity = _spread(allowed, threads)
        os.sched_setaffinity(0, affinity)
    return ThreadConfig(threads, source, environment, blas, affinity, started)
