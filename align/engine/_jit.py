"""The engine's compiled bodies: per-layer preparation and the grid of compares, jitted at module level.

Static arguments are the metric's functions and its static keyword arguments (``static_kw``, hashable tuples; see
:mod:`align.engine._kwargs`), the directions and the chunk size; traced are the data and the float keyword
arguments (``traced_kw``), so sweeping those does not recompile. Callers run them under
``jax.default_matmul_precision("highest")`` (no TF32 on GPUs).

Asymmetric metrics are computed per direction from the same prepared layers -- ``x_to_y[i, j] =
compare(prep(X_i), prep(Y_j))`` and ``y_to_x[i, j] = compare(prep(Y_j), prep(X_i))`` -- never filled in by
symmetry.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from align.engine._layergrid import Y_TO_X


def identity(X, **_):
    """The prepared form of a metric without ``prepare``: the layer itself."""
    return X


def prepare_groups(groups, traced_kw, prepare, static_kw):
    """Prepared forms of every layer in ``groups`` (``[L_g, n, d_g]`` stacks), concatenated along a leading layer
    axis (traceable; used inside the statistics' compiled calls)."""
    kw = {**dict(static_kw), **traced_kw}
    prepare = prepare or identity
    preps = [lax.map(lambda X: prepare(X, **kw), g) for g in groups]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *preps)


def grid_body(prep_x, prep_y, traced_kw, compare, static_kw, directions, chunk_size):
    """``{direction: [Lx, Ly, ...]}``: compare on every pair (traceable).

    Default: ``lax.map`` over x layers of a ``vmap`` over all y layers (no copies of the prepared y layers).
    With ``chunk_size``: the pairs flattened and mapped ``chunk_size`` at a time (each chunk vmapped).
    """
    kw = {**dict(static_kw), **traced_kw}

    def pair(px, py):
        return {d: compare(py, px, **kw) if d == Y_TO_X else compare(px, py, **kw) for d in directions}

    if chunk_size is None:
        return lax.map(lambda px: jax.vmap(lambda py: pair(px, py))(prep_y), prep_x)
    lx = jax.tree_util.tree_leaves(prep_x)[0].shape[0]
    ly = jax.tree_util.tree_leaves(prep_y)[0].shape[0]
    ii, jj = np.meshgrid(np.arange(lx), np.arange(ly), indexing="ij")
    ij = jnp.asarray(np.stack([ii.ravel(), jj.ravel()], axis=1))
    out = pairs_body(ij, prep_x, prep_y, traced_kw, compare, static_kw, directions, min(chunk_size, lx * ly))
    return jax.tree_util.tree_map(lambda a: a.reshape((lx, ly) + a.shape[1:]), out)


def pairs_body(ij, prep_x, prep_y, traced_kw, compare, static_kw, directions, batch_size):
    """``{direction: [P, ...]}``: compare on the listed pairs ``ij`` (``[P, 2]`` x and y layer indices), mapped
    ``batch_size`` pairs at a time (each batch vmapped; traceable)."""
    kw = {**dict(static_kw), **traced_kw}

    def flat_pair(pair_ij):
        px = jax.tree_util.tree_map(lambda a: a[pair_ij[0]], prep_x)
        py = jax.tree_util.tree_map(lambda a: a[pair_ij[1]], prep_y)
        return {d: compare(py, px, **kw) if d == Y_TO_X else compare(px, py, **kw) for d in directions}

    return lax.map(flat_pair, ij, batch_size=max(1, min(batch_size, ij.shape[0])))


@functools.partial(jax.jit, static_argnames=("compare", "static_kw", "directions", "batch_size"))
def pairs_call(ij, prep_x, prep_y, traced_kw, *, compare, static_kw, directions, batch_size):
    """:func:`pairs_body` compiled (the pairs axis is what a device mesh shards)."""
    return pairs_body(ij, prep_x, prep_y, traced_kw, compare, static_kw, directions, batch_size)


@functools.partial(jax.jit, static_argnames=("compare", "static_kw", "direction", "chunk_size"))
def source_rows_call(prep_src, prep_tgt, traced_kw, *, compare, static_kw, direction, chunk_size):
    """``{direction: [Ls, Lt, ...]}``: source layers (leading axis, what a device mesh shards) against every target
    layer in one direction of an asymmetric metric, compiled."""
    if direction == Y_TO_X:
        out = grid_body(prep_tgt, prep_src, traced_kw, compare, static_kw, (direction,), chunk_size)
        return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), out)
    return grid_body(prep_src, prep_tgt, traced_kw, compare, static_kw, (direction,), chunk_size)


@functools.partial(jax.jit, static_argnames=("prepare", "static_kw"))
def prepare_stack(stack, traced_kw, *, prepare, static_kw):
    """Prepared forms of a ``[L, n, d]`` stack of layers, one layer at a time (``lax.map``), compiled."""
    kw = {**dict(static_kw), **traced_kw}
    return lax.map(lambda X: (prepare or identity)(X, **kw), stack)


@functools.partial(jax.jit, static_argnames=("prepare", "static_kw"), donate_argnums=(0,))
def prepare_into(stack, i, X, traced_kw, *, prepare, static_kw):
    """``stack`` with layer ``i`` set to the prepared ``X`` (``stack`` is donated: updated in place)."""
    prep = (prepare or identity)(X, **{**dict(static_kw), **traced_kw})
    return jax.tree_util.tree_map(lambda s, p: s.at[i].set(p), stack, prep)


@functools.partial(jax.jit, static_argnames=("compare", "static_kw", "directions", "chunk_size"))
def grid_call(prep_x, prep_y, traced_kw, *, compare, static_kw, directions, chunk_size):
    """:func:`grid_body` compiled: one block of the grid."""
    return grid_body(prep_x, prep_y, traced_kw, compare, static_kw, directions, chunk_size)


@functools.partial(jax.jit, static_argnames=("compare", "static_kw"))
def pair_call(px, py, traced_kw, *, compare, static_kw):
    """One pair's compare, compiled (the ``batched=False`` fallback)."""
    return compare(px, py, **{**dict(static_kw), **traced_kw})


@functools.partial(jax.jit, static_argnames=("prepare", "static_kw"))
def prepare_one(X, traced_kw, *, prepare, static_kw):
    """One layer's prepared form, compiled."""
    return (prepare or identity)(X, **{**dict(static_kw), **traced_kw})


def compiled_programs() -> dict[str, int]:
    """Programs compiled so far by each of the engine's scoring calls (jit cache sizes), to check that a second
    grid of the same shapes compiles nothing new."""
    fns = {"prepare_into": prepare_into, "grid_call": grid_call, "pair_call": pair_call, "prepare_one": prepare_one,
           "pairs_call": pairs_call, "prepare_stack": prepare_stack}
    return {name: fn._cache_size() for name, fn in fns.items()}
