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
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from align.engine import resolve_metric
from align.streaming._grid import STREAMABLE

#: Share of the available memory the in-memory path may plan to use (the rest: Python, JAX, the page cache).
MEMORY_FRACTION = 0.7


def available_memory() -> int | None:
    """Bytes of memory available to new allocations: psutil's ``available`` if psutil is installed, else
    ``MemAvailable`` of ``/proc/meminfo``; None where neither is readable."""
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
    """Bytes of ``prepare(X [n, width], **prep_kwargs)`` (shapes only; nothing is computed)."""
    if prepare is None:
        return 4 * n * width
    shapes = jax.eval_shape(functools.partial(prepare, **dict(prep_kwargs)),
                            jax.ShapeDtypeStruct((n, width), jnp.float32))
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
    m, _ = resolve_metric(metric, metric_kwargs)
    if available_bytes is None:
        available_bytes = available_memory()
        if available_bytes is None:
            raise ValueError("choose_path: the available memory cannot be read here (no psutil, no /proc/meminfo); "
                             "pass available_bytes")
    budget = MEMORY_FRACTION * available_bytes
    raw = 4 * n * (sum(widths_x) + sum(widths_y))
    if raw <= budget:
        need = in_memory_bytes(metric, n, widths_x, widths_y, metric_kwargs)
        if need <= budget:
            return "memory"
    else:
        need = raw
    if m.name in STREAMABLE:
        return "stream"
    raise ValueError(
        f"{m.name} on n={n} stimuli needs about {need / 2**30:.1f} GiB in memory (at least; the layers and their "
        f"prepared forms) but {available_bytes / 2**30:.1f} GiB are available, and it has no streamed form: the "
        f"metrics that stream from the store are {list(STREAMABLE)}; use one of them, fewer stimuli, or a machine "
        f"with more memory")
