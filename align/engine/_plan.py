"""The plan of one grid: the metric, its jit-ready keyword arguments, both sides' layers in parts, the directions;
and the pieces every computation on it shares (preparing parts, the blocks of the grid, assembling block results
into full ``[..., Lx, Ly]`` arrays).

A plan is made once per call and re-used by the observed scores (:mod:`align.engine._observed`) and by every
statistic (:mod:`align.engine._stats`), which re-prepare the layers of a part under permuted or resampled rows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from align.engine._devices import make_mesh
from align.engine._inputs import Side
from align.engine._inputs import as_side
from align.engine._inputs import check_n
from align.engine._inputs import directions_of
from align.engine._inputs import pair_rows
from align.engine._inputs import preprocess_sides
from align.engine._inputs import resolve_metric
from align.engine._inputs import validate_side
from align.engine._jit import identity
from align.engine._jit import prepare_into
from align.engine._kwargs import Kwargs
from align.engine._kwargs import split_kwargs
from align.engine._layergrid import X_TO_Y
from align.engine._layergrid import Y_TO_X
from align.engine._parts import Part
from align.engine._parts import parts_of
from align.engine._sharded import prepare_part_sharded
from align.metrics import Metric
from align.preprocess import DEFAULT_PREPROCESS
from align.preprocess import parse_preprocess


@dataclasses.dataclass
class Plan:
    """Everything needed to compute (and re-compute under resampling) one grid.

    Attributes:
      metric: the metric.
      kw: its keyword arguments split for jit.
      xs, ys: the two sides (the same object for a grid of one model with itself, ``within``).
      parts_x, parts_y: each side's layers in parts of equal prepared shape.
      directions: the directions computed.
      within: one model against itself.
      chunk_size: layer pairs evaluated at once inside a compiled call (None: one row of the grid).
      n: number of stimuli.
      preprocess: canonical spec of the preprocessing applied.
      mesh: the device mesh the grid is sharded over (``devices=``); None: one device, the unsharded code path.
    """

    metric: Metric
    kw: Kwargs
    xs: Side
    ys: Side
    parts_x: list[Part]
    parts_y: list[Part]
    directions: tuple[str, ...]
    within: bool
    chunk_size: int | None
    n: int
    preprocess: str = DEFAULT_PREPROCESS
    mesh: Mesh | None = None


def make_plan(metric, Xs, Ys, *, metric_kwargs: Mapping[str, Any] | None = None, align_by_id: bool = False,
              direction: str | None = None, chunk_size: int | None = None, within: bool = False,
              preprocess: str = DEFAULT_PREPROCESS, devices=None) -> Plan:
    """Resolve the metric, read, pair, validate and preprocess both sides, and stack their layers into parts.

    ``within=True`` scores ``Xs`` against itself (``Ys`` and ``align_by_id`` are ignored). ``devices`` (None, N or
    "all") is resolved first, so asking for more devices than exist fails before any work.
    """
    mesh = make_mesh(devices)
    metric, kwargs = resolve_metric(metric, metric_kwargs)
    step = parse_preprocess(preprocess)
    xs = as_side(Xs, "Xs")
    ys = xs if within else as_side(Ys, "Ys")
    if not within:
        pair_rows(xs, ys, align_by_id)
    validate_side(xs, "Xs", metric)
    if not within:
        validate_side(ys, "Ys", metric)
    n = check_n((xs, "Xs"), (ys, "Ys"))
    kwargs = preprocess_sides(step, metric, kwargs, (xs, "Xs"), *(() if within else ((ys, "Ys"),)))
    kw = split_kwargs(metric, kwargs)
    if metric.validate is not None:
        widths = [a.shape[1] for a in xs.arrays] + ([] if within else [a.shape[1] for a in ys.arrays])
        metric.validate(n, widths, **kw.merged)
    parts_x = parts_of(metric, xs.arrays, kw)
    parts_y = parts_x if within else parts_of(metric, ys.arrays, kw)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive number of layer pairs, got {chunk_size}")
    return Plan(metric, kw, xs, ys, parts_x, parts_y, directions_of(metric, direction), within,
                metric.grid_chunk if chunk_size is None else int(chunk_size), n, step.spec, mesh)


def prepare_part(plan: Plan, part: Part, prepare=None):
    """The prepared layers of one part (by ``prepare``, default the metric's), stacked along a leading layer axis.

    Layer by layer into a preallocated stack that each step updates in place (donated), so the peak memory is the
    prepared stack plus one layer: no stacked copy of the raw activations is ever made. With a device mesh
    (``plan.mesh``) the layers are split over the devices instead and the prepared stack replicated on each
    (:func:`align.engine._sharded.prepare_part_sharded`).
    """
    kw = plan.kw
    prepare = prepare or plan.metric.prepare
    if plan.mesh is not None:
        return prepare_part_sharded(plan.mesh, part, kw, prepare)
    fn = functools.partial(prepare or identity, **dict(kw.static_prep))
    stack = None
    for i, X in enumerate(part.layers()):
        X = jnp.asarray(X)
        if stack is None:
            shapes = jax.eval_shape(lambda a, t: fn(a, **t), X, kw.traced_prep)
            stack = jax.tree_util.tree_map(lambda s: jnp.zeros((len(part.index),) + s.shape, s.dtype), shapes)
        stack = prepare_into(stack, jnp.int32(i), X, kw.traced_prep, prepare=prepare, static_kw=kw.static_prep)
    return stack


def prepare_parts(plan: Plan, parts: list[Part], prepare=None) -> list:
    """:func:`prepare_part` of each part."""
    return [prepare_part(plan, p, prepare) for p in parts]


def part_stacks(part: Part) -> tuple:
    """The raw layer stacks of a part as device arrays (for the statistics, which re-prepare them)."""
    return tuple(jnp.asarray(g) for g in part.stacks())


def score_of(out):
    """A compare result is a scalar or a small dict with a ``"score"`` entry."""
    return out["score"] if isinstance(out, dict) else out


def block_pairs(plan: Plan) -> list[tuple[int, int, tuple[str, ...]]]:
    """(part x index, part y index, directions to compute); within one side, y_to_x is x_to_y transposed."""
    dirs = plan.directions
    if plan.within and not plan.metric.symmetric:
        dirs = (X_TO_Y,)
    return [(a, b, dirs) for a in range(len(plan.parts_x)) for b in range(len(plan.parts_y))]


def assemble(plan: Plan, blocks: dict, lead_shape=(), transpose_within=True) -> dict[str, np.ndarray]:
    """Scatter per-block results ``{(a, b): {direction: [..., La, Lb]}}`` into full ``[..., Lx, Ly]`` arrays.

    With ``transpose_within`` (observed scores of one model against itself) y_to_x is x_to_y transposed.
    """
    lx, ly = len(plan.xs.arrays), len(plan.ys.arrays)
    full = {}
    for (a, b), res in blocks.items():
        ia, ib = plan.parts_x[a].index, plan.parts_y[b].index
        for d, arr in res.items():
            arr = np.asarray(arr, dtype=np.float64)
            grid = full.setdefault(d, np.full(lead_shape + (lx, ly), np.nan))
            grid[(...,) + np.ix_(ia, ib)] = arr
    if transpose_within and plan.within and not plan.metric.symmetric and X_TO_Y in full:
        if Y_TO_X in plan.directions:
            full[Y_TO_X] = np.swapaxes(full[X_TO_Y], -1, -2)
        if X_TO_Y not in plan.directions:
            del full[X_TO_Y]
    return {d: full[d] for d in plan.directions}

