"""Scoring jobs on Ray: one Ray task per job, the results collected on the driver.

``RayExecutor`` is what the experiment driver's ``run_plans(..., executor=...)`` calls with the jobs still to
compute (each a no-argument function returning the job's rows). Each job runs as one Ray task asking
``execution.num_cpus`` / ``num_gpus``; it reads its stores on the worker (so the activation folder must be on storage
every node sees, at the same path) and scores them with the engine there. A job is a closure over open stores
(``align.store.ActivationStore``); Ray sends each store as its path and the worker reopens it, so no layer the driver
holds in memory travels with a task. A task whose worker dies is retried (``MAX_RETRIES``); the driver writes each
job's file when its rows arrive, so the job files and results table are those of a local run. Every experiment kind
(layerwise, perturbation, aggregation, preference) runs its jobs so (``align.experiments`` picks the executor).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import pandas as pd

from align.cluster._backend import MAX_RETRIES
from align.cluster._backend import connect
from align.cluster._backend import crash_once
from align.cluster._backend import unwrap


def _store_path(store) -> str:
    return str(store.path)


def ship_stores_as_paths(ray) -> None:
    """Make Ray send ``ActivationStore`` objects as their paths, reopened (``open_store``) where they arrive."""
    from align.store import ActivationStore
    from align.store import open_store

    ray.util.register_serializer(ActivationStore, serializer=_store_path, deserializer=open_store)


def _run_job(job: Callable[[], pd.DataFrame]) -> tuple[pd.DataFrame, float]:
    """On a worker: the job's rows and the seconds they took."""
    crash_once("score")
    t0 = time.perf_counter()
    rows = job()
    return rows, time.perf_counter() - t0


class RayExecutor:
    """Runs jobs as Ray tasks: ``executor(jobs)`` yields ``(index in jobs, rows, seconds)`` as each job finishes.

    Args:
      execution: the ``[execution]`` section (``align.config.ExecutionConfig``): the cluster ``address`` and the
        ``num_cpus`` / ``num_gpus`` each task asks for.
      remote_args: further Ray task options (e.g. ``runtime_env``, ``resources``), or None.
      log: where ``connect`` says which cluster the run uses, or None.

    Raises (when called):
      ClusterError: Ray is missing, the cluster cannot be reached, or a worker lacks a package.
      Exception: the first error a job raised on its worker (the worker's own exception); the other tasks are
        cancelled.
    """

    def __init__(self, execution, *, remote_args: dict | None = None, log: Callable[[str], None] | None = None):
        self.execution = execution
        self.remote_args = dict(remote_args or {})
        self.log = log

    def __call__(self, jobs: Sequence[Callable[[], pd.DataFrame]]) -> Iterator[tuple[int, pd.DataFrame, float]]:
        if not jobs:
            return
        ray = connect(self.execution, log=self.log)
        ship_stores_as_paths(ray)
        task = ray.remote(_run_job).options(num_cpus=self.execution.num_cpus, num_gpus=self.execution.num_gpus,
                                            max_retries=MAX_RETRIES, retry_exceptions=False, **self.remote_args)
        index = {task.remote(job): i for i, job in enumerate(jobs)}
        pending = list(index)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                try:
                    rows, seconds = ray.get(ready[0])
                except ray.exceptions.RayError as e:
                    raise unwrap(e) from None
                yield index[ready[0]], rows, seconds
        finally:
            for ref in pending:
                ray.cancel(ref)
