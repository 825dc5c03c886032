"""Memory or stream: whether a layer grid fits the in-memory engine, by its shape and the memory available.

The scoring path calls :func:`choose_path` before reading a store pair::

    path = align.streaming.choose_path(metric, store_x.n, store_x.widths, store_y.widths)
    grid = (align.pairwise(metric, store_x, store_y, ...) if path == "memory"
            else align.streaming.stream_pairwise(metric, store_x, store_y, ...))

The in-memory estimate (:func:`in_memory_bytes`) is what the engine holds: both stores' layers as float32, every
layer's prepared form (its exact size from ``jax.eval_shape`` of the metric's ``prepare``: an ``[n, n]`` Gram for
CKA, an RDM for RSA, per-fold decompositions for linear predictivity) -- for an asymmetric metric with a
``prepare_target`` the cheap target forms of every layer plus one full source preparation, since the engine
prepares one source at a time -- and one more prepared layer of working space. The grid goes to memory when that
is at most :data:`MEMORY_FRACTION` of the available memory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from align.engine import resolve_metric
from align.streaming._grid import STREAMABLE

#: Share of the available memory the in-memory path may plan to use (the rest: Python, JAX, the page cache).
MEMORY_FRACTION = 0.7

#: Environment variable: plan with this many bytes of available memory instead of measuring it (a machine shared
#: with other jobs, or a test that forces the streamed path).
MEMORY_ENV = "ALIGN_MEMORY_BYTES"


def available_memory() -> int | None:
    """Bytes of memory available to new allocations: ``$ALIGN_MEMORY_BYTES`` when set, else psutil's ``available``
    if psutil is installed, else ``MemAvailable`` of ``/proc/meminfo``; None where none is readable.

    Raises:
      ValueError: ``ALIGN_MEMORY_BYTES`` is set but not a positive integer.
    """
    value = os.environ.get(MEMORY_ENV, "").strip()
    if value:
        try:
            limit = int(float(value))
        except ValueError:
            limit = 0
        if limit <= 0:
            raise ValueError(f"{MEMORY_ENV}={value!r} is not a positive number of bytes")
        return limit
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _prepared_bytes(prepare, prep_kwargs: tuple, n: int, width: int) -> int:
    """Bytes of ``prepare(X [n, width], **prep_kwargs)`` (shapes only; nothing is computed); an ``[n, n]`` float32
    matrix and the layer where the preparation cannot even be traced at this n."""
    if prepare is None:
        return 4 * n * width
    try:
        shapes = jax.eval_shape(functools.partial(prepare, **dict(prep_kwargs)),
                                jax.ShapeDtypeStruct((n, width), jnp.float32))
    except (OverflowError, ValueError, TypeError):  # n too large to even trace (int32 indices of n² entries)
        return 4 * n * (n + width)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(shapes))


def in_memory_bytes(metric, n: int, widths_x: Sequence[int], widths_y: Sequence[int],
                    metric_kwargs: Mapping[str, Any] | None = None) -> int:
    """Estimated peak bytes of ``align.pairwise`` on this grid (see the module docstring)."""
    m, kwargs = resolve_metric(metric, metric_kwargs)
    prep, _ = m.split_kwargs(kwargs)
    frozen = tuple(sorted(prep.items(), key=lambda kv: kv[0]))
    size = functools.lru_cache(maxsize=None)(lambda f, d: _prepared_bytes(f, frozen, n, d))
    widths = [int(d) for d in widths_x] + [int(d) for d in widths_y]
    raw = 4 * n * sum(widths)
    full = [size(m.prepare, d) for d in widths]
    if not m.symmetric and m.prepare_target is not None:
        held = sum(size(m.prepare_target, d) for d in widths) + max(full)
    else:
        held = sum(full)
    return raw + held + max(full)


def choose_path(metric, n: int, widths_x: Sequence[int], widths_y: Sequence[int], available_bytes: int | None = None,
                *, metric_kwargs: Mapping[str, Any] | None = None) -> str:
    """``"memory"`` when the grid fits the in-memory engine, else ``"stream"``.

    Args:
      metric: a registered name, spec string or Metric.
      n: number of stimuli.
      widths_x, widths_y: the layer widths of both stores.
      available_bytes: memory to plan with (default :func:`available_memory`).
      metric_kwargs: the metric's keyword arguments (they may change its prepared size, e.g. ``folds``).

    Raises:
      ValueError: the grid does not fit and the metric has no streamed form (names the metrics that have one), or
        the available memory cannot be read and was not given.
    """
    return explain_path(metric, n, widths_x, widths_y, available_bytes, metric_kwargs=metric_kwargs)[0]


def explain_path(metric, n: int, widths_x: Sequence[int], widths_y: Sequence[int], available_bytes: int | None = None,
                 *, metric_kwargs: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """:func:`choose_path` and why, in words (the estimate and the budget), for a log line.

    Returns:
      ``("memory" | "stream", reason)``.

    Raises:
      ValueError: as :func:`choose_path`.
    """
    m, _ = resolve_metric(metric, metric_kwargs)
    if available_bytes is None:
        available_bytes = available_memory()
        if available_bytes is None:
            raise ValueError("choose_path: the available memory cannot be read here (no psutil, no /proc/meminfo); "
                             f"pass available_bytes or set {MEMORY_ENV}")
    budget = MEMORY_FRACTION * available_bytes
    raw = 4 * n * (sum(widths_x) + sum(widths_y))
    if raw <= budget:
        need = in_memory_bytes(metric, n, widths_x, widths_y, metric_kwargs)
        if need <= budget:
            return "memory", (f"the in-memory grid needs about {_size(need)}, within {_size(budget)} "
                              f"({MEMORY_FRACTION:.0%} of {_size(available_bytes)} available)")
    else:
        need = raw
    if m.name in STREAMABLE:
        return "stream", (f"the in-memory grid needs about {_size(need)} (n={n}), more than {_size(budget)} "
                          f"({MEMORY_FRACTION:.0%} of {_size(available_bytes)} available)")
    raise ValueError(
        f"{m.name} on n={n} stimuli needs about {need / 2**30:.1f} GiB in memory (at least; the layers and their "
        f"prepared forms) but {available_bytes / 2**30:.1f} GiB are available, and it has no streamed form: the "
        f"metrics that stream from the store are {list(STREAMABLE)}; use one of them, fewer stimuli, or a machine "
        f"with more memory")


def _size(b: float) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"
