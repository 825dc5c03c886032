"""Spreading a layer grid over several local JAX devices (``devices=`` of the grid functions).

A one-axis :class:`jax.sharding.Mesh` (axis :data:`AXIS`) over the first N local devices; computations are
``jax.shard_map`` programs compiled with ``jax.jit``:

- per-layer preparation: a part's layers stacked, padded to a multiple of the device count (repeats of the last
  layer, dropped afterwards) and sharded along the layer axis, each device preparing its own layers;
- observed scores: the prepared layers replicated, the flattened (x layer, y layer) pairs padded to a multiple of
  the device count and sharded along the pairs axis;
- permutation, bootstrap and condition-swap draws: sharded along the draws axis (each step padded to a multiple of
  the device count times the batch size), every device mapping over its own draws.

Every cell is computed by the same compiled compare on the same inputs as on one device, so the results equal the
one-device run up to float32 rounding of differently batched kernels. ``devices=None`` or ``1`` keeps the
single-device code path (no mesh at all).

Also here: :func:`free_bytes` and :func:`batch_from_memory`, the default number of draws per compiled step derived
from a device's free memory where JAX reports it (GPUs; the CPU reports nothing and keeps the default).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

#: Name of the mesh axis every sharded array is split along (layers, pairs or draws).
AXIS = "d"

#: Share of a device's free memory the draws of one compiled step may take (the rest: inputs, XLA scratch).
MEMORY_SHARE = 0.25

#: Most draws per compiled step chosen from free memory (more gains nothing once the device is busy).
MAX_MEMORY_BATCH = 64


def make_mesh(devices) -> Mesh | None:
    """The mesh of ``devices`` local JAX devices; None for one device (the unsharded code path).

    Args:
      devices: None or 1 (one device: None is returned), an integer N >= 1 (the first N of
        ``jax.local_devices()``) or ``"all"`` (every local device).

    Returns:
      A one-axis :class:`jax.sharding.Mesh` (axis :data:`AXIS`) of N > 1 devices, or None.

    Raises:
      ValueError: ``devices`` is not None, a positive integer or "all", or asks for more devices than exist (the
        message says how many do).
    """
    if devices is None:
        return None
    local = jax.local_devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be None, a positive integer or 'all', got {devices!r}")
        n = len(local)
    elif isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices must be None, a positive integer or 'all', got {devices!r}")
    else:
        n = int(devices)
    if n > len(local):
        raise ValueError(f"devices={devices!r} asks for {n} JAX devices, but only {len(local)} exist "
                         f"({local[0].platform}: {[str(d) for d in local]}); use devices <= {len(local)} or 'all'")
    return _mesh(tuple(local[:n])) if n > 1 else None


@functools.lru_cache(maxsize=None)
def _mesh(devs: tuple) -> Mesh:
    return Mesh(np.asarray(devs), (AXIS,))


def replicated(tree, mesh: Mesh):
    """``tree`` with every leaf copied to every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def padded_length(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return -(-n // multiple) * multiple


def pad_rows(a: np.ndarray, length: int) -> np.ndarray:
    """``a`` with its last row repeated along axis 0 up to ``length`` rows (results of the repeats are dropped)."""
    if len(a) == length:
        return a
    return np.concatenate([a, np.repeat(a[-1:], length - len(a), axis=0)])


@functools.partial(jax.jit, static_argnames=("body", "mesh", "pos", "static"))
def sharded_call(args: tuple, sharded, *, body, mesh: Mesh, pos: int, static: tuple):
    """``body(*args[:pos], sharded, *args[pos:], **dict(static))`` with ``sharded`` (and every output) split along
    its leading axis over ``mesh`` and ``args`` replicated: each device runs ``body`` on its own slice.

    ``sharded``'s leading length must be a multiple of the mesh size; ``body`` must map its leading axis
    independently (layers, pairs or draws), which is what makes the result equal to one ``body`` call.
    """
    def local(s, a):
        return body(*a[:pos], s, *a[pos:], **dict(static))

    return jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS), P()), out_specs=P(AXIS), check_vma=False)(
        sharded, args)


def free_bytes(stats: dict | None) -> int | None:
    """Free memory of a device from its ``device.memory_stats()``: ``bytes_limit - bytes_in_use``; None when JAX
    reports nothing (the CPU) or the keys are missing."""
    if not stats or "bytes_limit" not in stats:
        return None
    return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))


def batch_from_memory(stats: dict | None, bytes_per_draw: int, default: int) -> int:
    """Draws per compiled step: ``default`` when ``stats`` reports no memory (the CPU), else as many draws as fit in
    :data:`MEMORY_SHARE` of the free memory at ``bytes_per_draw`` each, between 1 and :data:`MAX_MEMORY_BATCH`.
    An explicit ``batch_size`` of the caller always wins over this."""
    free = free_bytes(stats)
    if free is None or bytes_per_draw <= 0:
        return default
    fit = int(free * MEMORY_SHARE) // int(bytes_per_draw)
    return int(min(MAX_MEMORY_BATCH, max(1, fit)))


def device_memory_stats(mesh: Mesh | None = None) -> dict | None:
    """``memory_stats()`` of the first device of ``mesh`` (else the default device); None where unsupported."""
    dev = mesh.devices.flat[0] if mesh is not None else jax.local_devices()[0]
    try:
        return dev.memory_stats()
    except Exception:  # some backends raise instead of returning None
        return None
