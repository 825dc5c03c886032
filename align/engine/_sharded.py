"""The grid's computations over a device mesh (``devices=`` > 1; :mod:`align.engine._devices`).

Each function is the sharded counterpart of one step of the single-device engine and returns the same values:
per-layer preparation sharded along the layer axis (:func:`prepare_part_sharded`), a block of pair comparisons
sharded along the flattened pairs axis (:func:`grid_block_sharded`), linear predictivity's streamed sources sharded
one source layer per device (:func:`streamed_blocks_sharded`), and any distribution's draws sharded along the draws
axis (:func:`draws_caller`). Lengths are padded to a multiple of the device count with repeats of the last item,
whose results are dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from align.engine._devices import pad_rows
from align.engine._devices import padded_length
from align.engine._devices import replicated
from align.engine._devices import sharded_call
from align.engine._jit import pairs_call
from align.engine._jit import prepare_stack
from align.engine._jit import source_rows_call
from align.engine._layergrid import AUX_NAMES
from align.engine._layergrid import X_TO_Y
from align.engine._blocks import add_source_rows


def _items(d: dict) -> tuple:
    return tuple(sorted(d.items()))


def _prepare_sharded(mesh, stack: np.ndarray, kw, prepare):
    """Prepared forms of a ``[L, n, d]`` stack, layers split over ``mesh`` (padded), sharded along the layer axis;
    returns ``(prepared [L_padded, ...] sharded, L)``."""
    n_layers = len(stack)
    stack = pad_rows(stack, padded_length(n_layers, mesh.size))
    out = sharded_call((kw.traced_prep,), jnp.asarray(stack), body=prepare_stack, mesh=mesh, pos=0,
                       static=_items({"prepare": prepare, "static_kw": kw.static_prep}))
    return out, n_layers


def prepare_part_sharded(mesh, part, kw, prepare):
    """A part's prepared layers (``part.index`` order), each device preparing its share of every raw-width group;
    the stack is then replicated on every device of ``mesh`` (the pairs of a block read any two layers)."""
    preps = []
    for stack in part.stacks():
        out, n_layers = _prepare_sharded(mesh, stack, kw, prepare)
        preps.append(jax.tree_util.tree_map(lambda a: a[:n_layers], out))
    prep = preps[0] if len(preps) == 1 else jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *preps)
    return replicated(prep, mesh)


def grid_block_sharded(mesh, prep_x, prep_y, kw, compare, directions, chunk_size) -> dict:
    """``{direction: [La, Lb, ...]}`` of one block: its ``La * Lb`` pairs flattened, padded to a multiple of the
    device count and sharded; each device maps over its pairs ``chunk_size`` at a time (default: ``Lb``, one row)."""
    lx = jax.tree_util.tree_leaves(prep_x)[0].shape[0]
    ly = jax.tree_util.tree_leaves(prep_y)[0].shape[0]
    ii, jj = np.meshgrid(np.arange(lx), np.arange(ly), indexing="ij")
    ij = np.stack([ii.ravel(), jj.ravel()], axis=1).astype(np.int32)
    ij = pad_rows(ij, padded_length(lx * ly, mesh.size))
    static = {"compare": compare, "static_kw": kw.static_comp, "directions": directions,
              "batch_size": int(chunk_size or ly)}
    out = jax.device_get(sharded_call((prep_x, prep_y, kw.traced_comp), jnp.asarray(ij), body=pairs_call,
                                      mesh=mesh, pos=0, static=_items(static)))
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[:lx * ly].reshape((lx, ly) + a.shape[1:]), out)


def streamed_blocks_sharded(plan, direction: str, prepped_targets: list, bar) -> dict:
    """One direction of linear predictivity's streamed sources over ``plan.mesh``: each device fully prepares one
    source layer at a time and scores it against every (replicated) target layer, so a device holds the targets
    plus one source preparation, as on one device.

    Returns ``{name: {(part x, part y): {direction: [La, Lb]}}}`` for the score and the auxiliary outputs.
    """
    mesh, kw, m = plan.mesh, plan.kw, plan.metric
    sources = plan.parts_x if direction == X_TO_Y else plan.parts_y
    names = ("score",) + AUX_NAMES
    blocks: dict = {}
    for s_i, part in enumerate(sources):
        rows = [{k: [] for k in names} for _ in prepped_targets]
        for stack in part.stacks():
            for start in range(0, len(stack), mesh.size):
                prep_src, real = _prepare_sharded(mesh, stack[start:start + mesh.size], kw, m.prepare)
                for t_i, tp in enumerate(prepped_targets):
                    static = {"compare": m.compare, "static_kw": kw.static_comp, "direction": direction,
                              "chunk_size": plan.chunk_size}
                    out = jax.device_get(sharded_call((tp, kw.traced_comp), prep_src, body=source_rows_call,
                                                      mesh=mesh, pos=0, static=_items(static)))[direction]
                    values = out if isinstance(out, dict) else {"score": out}
                    for k, v in values.items():
                        if k in names:
                            rows[t_i][k].extend(np.asarray(v)[:real])
                bar.update(real)
        add_source_rows(blocks, rows, s_i, direction)
    return blocks


def draws_caller(mesh, body, args: tuple, pos: int, static: dict):
    """``call(draws)`` running ``body(*args[:pos], draws, *args[pos:], **static)``: directly without a mesh, else
    with ``draws`` sharded along their leading axis over ``mesh`` (``args`` replicated once, here), their length a
    multiple of ``mesh.size``."""
    if mesh is None:
        return lambda draws: body(*args[:pos], draws, *args[pos:], **static)
    args = replicated(args, mesh)
    items = _items(static)
    return lambda draws: sharded_call(args, draws, body=body, mesh=mesh, pos=pos, static=items)
