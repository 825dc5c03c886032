"""Observed scores of a plan: every (x layer, y layer) pair, per direction, in one compiled call per pair of parts.

The per-layer work is done once (``metric.prepare`` on each layer, one layer at a time into a stack updated in
place, so the raw activations are never copied as a whole) and ``metric.compare`` is evaluated on every pair inside
one jitted call (:func:`align.engine._jit.grid_call`). ``batched=False`` is the documented fallback: a Python loop
over pairs (one small compiled call per pair), for a custom probe whose compare cannot be ``vmap``-ed. An asymmetric
metric with a ``prepare_target`` (linear predictivity) streams its sources instead: per direction the targets are
prepared cheaply once, and each source layer is fully prepared, scored against every target and dropped, so memory
holds one source's preparation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from align.engine._jit import grid_call
from align.engine._jit import pair_call
from align.engine._jit import prepare_one
from align.engine._layergrid import AUX_NAMES
from align.engine._layergrid import X_TO_Y
from align.engine._layergrid import Y_TO_X
from align.engine._layergrid import LayerGrid
from align.engine._plan import Plan
from align.engine._blocks import add_source_rows
from align.engine._plan import assemble
from align.engine._plan import block_pairs
from align.engine._plan import prepare_parts
from align.engine._plan import score_of
from align.engine._progress import bar as progress_bar
from align.engine._sharded import grid_block_sharded
from align.engine._sharded import streamed_blocks_sharded


def observed(plan: Plan, batched: bool = True, aux: dict | None = None,
             progress: bool | None = False) -> dict[str, np.ndarray]:
    """``{direction: [Lx, Ly]}`` observed scores; auxiliary per-pair outputs go to ``aux[name][direction]``."""
    if not batched:
        if plan.mesh is not None:
            raise ValueError("batched=False (one compiled compare per pair, from a Python loop) runs on one device; "
                             "drop devices= or use batched=True")
        return _observed_loop(plan, aux, progress)
    if plan.metric.prepare_target is not None and not plan.metric.symmetric:
        return _observed_streamed(plan, aux, progress)
    kw = plan.kw
    blocks, extra = {}, {}
    pairs = block_pairs(plan)
    with jax.default_matmul_precision("highest"), progress_bar(len(pairs), f"{plan.metric.name} grid", "block",
                                                               progress) as bar:
        preps_x = prepare_parts(plan, plan.parts_x)
        preps_y = preps_x if plan.within else prepare_parts(plan, plan.parts_y)
        for a, b, dirs in pairs:
            if plan.mesh is not None:
                out = grid_block_sharded(plan.mesh, preps_x[a], preps_y[b], kw, plan.metric.compare, dirs,
                                         plan.chunk_size)
            else:
                out = jax.device_get(grid_call(preps_x[a], preps_y[b], kw.traced_comp, compare=plan.metric.compare,
                                               static_kw=kw.static_comp, directions=dirs, chunk_size=plan.chunk_size))
            blocks[(a, b)] = {d: score_of(v) for d, v in out.items()}
            _collect(extra, out, (a, b))
            bar.update()
    return _assembled(plan, blocks, extra, aux)


def _collect(block: dict, out: dict, key) -> None:
    """Keep the auxiliary outputs (:data:`AUX_NAMES`) of one block's compare results ``{direction: out}`` in
    ``block[name][key][direction]``."""
    for d, v in out.items():
        if isinstance(v, dict):
            for name in AUX_NAMES:
                if name in v:
                    block.setdefault(name, {}).setdefault(key, {})[d] = v[name]


def _assembled(plan: Plan, blocks: dict, extra: dict, aux: dict | None) -> dict[str, np.ndarray]:
    """``assemble`` of the scores, and of each auxiliary output into ``aux`` (when given)."""
    if aux is not None:
        for name, per_block in extra.items():
            aux[name] = assemble(plan, per_block)
    return assemble(plan, blocks)


def _observed_streamed(plan: Plan, aux: dict | None = None, progress: bool | None = False) -> dict[str, np.ndarray]:
    """An asymmetric metric with a cheap ``prepare_target`` (linear predictivity), one source layer at a time.

    Per direction, every target layer is prepared once with ``prepare_target`` (for ridge: its data and fold means)
    and each source layer in turn with the full ``prepare`` (its fold SVDs), scored against every target, and
    dropped. Peak memory is the targets plus ONE source preparation, instead of every layer's (ridge: five
    ``[n_train, r]`` bases per layer, several times the activations), for the same work.
    """
    kw = plan.kw
    m = plan.metric
    dirs = (X_TO_Y,) if plan.within else plan.directions  # within one model y_to_x is x_to_y transposed
    names = ("score",) + AUX_NAMES
    blocks: dict = {}
    n_sources = sum(len(plan.xs.arrays) if d == X_TO_Y else len(plan.ys.arrays) for d in dirs)
    with jax.default_matmul_precision("highest"), progress_bar(n_sources, f"{m.name} (source layers)", "layer",
                                                               progress) as bar:
        for d in dirs:
            sources, targets = (plan.parts_x, plan.parts_y) if d == X_TO_Y else (plan.parts_y, plan.parts_x)
            prepped = prepare_parts(plan, targets, m.prepare_target)
            if plan.mesh is not None:
                for k, per_block in streamed_blocks_sharded(plan, d, prepped, bar).items():
                    for key, per_d in per_block.items():
                        blocks.setdefault(k, {}).setdefault(key, {}).update(per_d)
                continue
            for s_i, part in enumerate(sources):
                rows = [{k: [] for k in names} for _ in targets]
                for X in part.layers():
                    one = jax.tree_util.tree_map(lambda a: a[None], prepare_one(
                        jnp.asarray(X), kw.traced_prep, prepare=m.prepare, static_kw=kw.static_prep))
                    for t_i, tp in enumerate(prepped):
                        px, py = (one, tp) if d == X_TO_Y else (tp, one)
                        out = jax.device_get(grid_call(px, py, kw.traced_comp, compare=m.compare,
                                                       static_kw=kw.static_comp, directions=(d,),
                                                       chunk_size=plan.chunk_size))[d]
                        values = out if isinstance(out, dict) else {"score": out}
                        for k, v in values.items():
                            if k in names:
                                v = np.asarray(v)
                                rows[t_i][k].append(v[0] if d == X_TO_Y else v[:, 0])
                    bar.update()
                add_source_rows(blocks, rows, s_i, d)
    scores = blocks.pop("score")
    return _assembled(plan, scores, blocks, aux)


def _observed_loop(plan: Plan, aux: dict | None = None, progress: bool | None = False) -> dict[str, np.ndarray]:
    """Fallback: one compiled compare per pair, called from a Python loop (for compares that cannot be vmapped)."""
    kw = plan.kw
    m = plan.metric
    total = len(plan.directions) * len(plan.xs.arrays) * len(plan.ys.arrays)
    with jax.default_matmul_precision("highest"), progress_bar(total, f"{m.name} (pairs)", "pair", progress) as bar:
        px = [prepare_one(jnp.asarray(a), kw.traced_prep, prepare=m.prepare, static_kw=kw.static_prep)
              for a in plan.xs.arrays]
        py = px if plan.within else [prepare_one(jnp.asarray(a), kw.traced_prep, prepare=m.prepare,
                                                 static_kw=kw.static_prep) for a in plan.ys.arrays]
        out = {}
        for d in plan.directions:
            grid = np.full((len(px), len(py)), np.nan)
            for i, p in enumerate(px):
                for j, q in enumerate(py):
                    a, b = (q, p) if d == Y_TO_X else (p, q)
                    value = jax.device_get(pair_call(a, b, kw.traced_comp, compare=m.compare,
                                                     static_kw=kw.static_comp))
                    grid[i, j] = float(score_of(value))
                    if aux is not None and isinstance(value, dict):
                        for name in AUX_NAMES:
                            if name in value:
                                aux.setdefault(name, {}).setdefault(d, np.full(grid.shape, np.nan))[i, j] = value[name]
                    bar.update()
            out[d] = grid
    return out


def grid_result(plan: Plan, scores: dict[str, np.ndarray], stats=None, **extra) -> LayerGrid:
    """The :class:`LayerGrid` of a plan's scores ``{direction: [Lx, Ly]}`` and statistics."""
    m = plan.metric
    return LayerGrid(
        metric=m.name, kwargs=dict(plan.kw.given), layers_x=tuple(plan.xs.names), layers_y=tuple(plan.ys.names),
        scores=dict(scores), n=plan.n, symmetric=m.symmetric, higher_is_more_aligned=m.higher_is_more_aligned,
        stats=stats or {}, preprocess=plan.preprocess, **extra)
