"""Joining a Ray cluster, and turning what goes wrong on it into errors that say what to do.

``connect`` checks before any work that Ray is installed (else ``pip install 'align[cluster]'``) and that the
cluster's address answers (a socket check with a timeout, so a wrong address fails in seconds instead of hanging);
it reuses a Ray session this process already holds. ``remote_call`` runs a function on a worker and re-raises the
worker's own exception (a missing model package, a bad stimulus) rather than Ray's wrapper.

Fault injection (tests): when the environment variable ``ALIGN_RAY_CRASH_ONCE`` names a folder on the workers,
the first worker call of each kind ("extract", "score") that finds no marker file ``<folder>/<kind>`` there creates
it and kills its own process (``os._exit``), as a node failure would; the retry then runs normally.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

#: Retries of a scoring task, and restarts of an extraction worker (and retries of its batches), after a worker dies.
MAX_RETRIES = 3
#: Seconds to wait for a cluster's address to answer before giving up.
CONNECT_TIMEOUT_S = 10.0
CRASH_ONCE_ENV = "ALIGN_RAY_CRASH_ONCE"
INSTALL_HINT = "pip install 'align[cluster]'"


class ClusterError(RuntimeError):
    """The Ray backend cannot run: Ray is missing, the cluster cannot be reached, or a worker lacks packages."""


def require_ray():
    """The ``ray`` module.

    Raises:
      ClusterError: Ray (with Ray Data) is not installed; names ``pip install 'align[cluster]'``.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ClusterError(f"execution.backend = 'ray' needs Ray, which is not installed here ({e}); install it with "
                           f"{INSTALL_HINT}, or use execution.backend = 'local'") from None
    return ray


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Check that a Ray address (``ray://host:port`` or ``host:port``) accepts TCP connections within ``timeout``
    seconds; "auto" and "local" are left to Ray.

    Raises:
      ClusterError: the address has no host and port, or nothing answers there.
    """
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ClusterError(f"execution.address = {address!r}: expected 'ray://host:port', 'host:port' or 'auto'")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ClusterError(f"execution.address = {address!r}: no Ray cluster answers at {host}:{port} within "
                           f"{timeout:g} s ({e}); start one there (ray start --head) or fix the address") from None


def connect(execution, *, log=None):
    """Join the cluster of ``execution`` (``address`` None: start a local one) and return the ``ray`` module.

    A Ray session this process already holds is reused as it is (after the address check).

    Args:
      execution: the ``[execution]`` section (``align.config.ExecutionConfig``): ``address``.
      log: called with one line saying where the run computes, or None.

    Raises:
      ClusterError: Ray is not installed, or the address is malformed or does not answer; before any work.
    """
    ray = require_ray()
    address = execution.address
    if address is not None:
        check_address(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=True)
    except ConnectionError as e:
        raise ClusterError(f"execution.address = {address!r}: cannot join the Ray cluster ({e})") from None
    if log is not None:
        resources = ray.cluster_resources()
        log(f"  ray: {address or 'local cluster'}, {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")
    return ray


def worker_limit(ray, execution, jobs: int) -> int:
    """How many workers asking ``execution.num_cpus`` / ``num_gpus`` each fit the cluster at once (at least 1, at
    most ``jobs``)."""
    resources = ray.cluster_resources()
    fits = [resources.get(k, 0.0) / need for k, need in (("CPU", execution.num_cpus), ("GPU", execution.num_gpus))
            if need > 0]
    return max(1, min([jobs] + [int(f) for f in fits]))


def unwrap(error: BaseException) -> BaseException:
    """The worker's own exception inside a Ray error (the error itself when it wraps none), with a hint when the
    worker could not import a package."""
    inner, where = error, None
    while _is_ray_error(inner):  # a task error wrapping a Ray Data error wrapping the worker's own ...
        where = where or getattr(inner, "ip", None)
        cause = getattr(inner, "cause", None)
        cause = cause if isinstance(cause, BaseException) else inner.__cause__
        if cause is None or cause is inner:
            break
        inner = cause
    if isinstance(inner, ModuleNotFoundError):
        return ClusterError(f"a Ray worker{f' on {where}' if where else ''} cannot import {inner.name!r} ({inner}); "
                            f"install align with the same extras on every node of the cluster (e.g. pip install "
                            f"'align[extract,cluster]')")
    return inner


def _is_ray_error(error: BaseException) -> bool:
    return any(c.__module__.split(".")[0] == "ray" for c in type(error).__mro__)


def crash_once(kind: str) -> None:
    """Fault injection: kill this worker process the first time ``kind`` runs while ``ALIGN_RAY_CRASH_ONCE`` names a
    folder (see the module docstring); otherwise nothing."""
    folder = os.environ.get(CRASH_ONCE_ENV)
    if not folder:
        return
    marker = Path(folder) / kind
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os._exit(1)
