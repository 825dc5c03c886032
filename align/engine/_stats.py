"""Distributions of a whole layer grid under resampling: permutation nulls, bootstrap resamples, and the
condition swaps and resamples of a paired difference; and the per-direction summaries the grid functions report.

Every metric's prepared form depends on the order of the rows, so a resampled data set is re-prepared: one
permutation of the stimulus pairing = the rows of every Y layer permuted (for an asymmetric metric, the rows of each
direction's target), then prepared, then compared with the (unchanged) prepared other side. Draws (permutation index
arrays, bootstrap index arrays, condition-swap masks) are generated on the host with NumPy from ``seed`` and passed
to one jitted call per block of the grid, which maps over them ``batch_size`` at a time (each batch ``vmap``-ed,
batches in a ``lax.map``): no Python loop per draw.

- Permutation p-value (one-sided, towards "more aligned"): ``p = (1 + #{null >= observed}) / (1 + n_perm)``
  (``<=`` for distances), so p is never 0 (Phipson & Smyth 2010); with it, over each direction's cells, the
  Benjamini-Hochberg adjusted p (``p_bh``) and the family-wise max-statistic p (``p_maxstat``) of the same
  permutations (:mod:`align.stats`).
- Bootstrap: stimuli resampled with replacement (the same rows for X and Y); percentile interval. A metric with
  cross-validation folds (``folds`` among its ``prepare`` keyword arguments: linear and MLP predictivity) gets each
  resample's own folds grouped by original stimulus, so the copies of a stimulus never straddle a training and a
  held-out fold (:func:`align.engine._kwargs.resample_fold_rows`; the observed score keeps its folds). Metrics that
  exclude self-matches (kNN) still see duplicated stimuli as distinct ones, which biases their bootstrap
  distribution upwards; prefer the permutation null for those.
- Paired difference of condition A and B on the same stimuli: its null swaps the A and B activations of each
  stimulus with probability 1/2 (all layers of both sides together); see :func:`align.engine.paired_difference`.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from align.engine._devices import batch_from_memory
from align.engine._devices import device_memory_stats
from align.engine._jit import grid_body
from align.engine._jit import prepare_groups
from align.engine._kwargs import FOLD_ROWS_KWARG
from align.engine._kwargs import resample_fold_rows
from align.engine._layergrid import X_TO_Y
from align.engine._layergrid import Y_TO_X
from align.engine._plan import Plan
from align.engine._plan import assemble
from align.engine._plan import part_stacks
from align.engine._plan import prepare_parts
from align.engine._plan import score_of
from align.engine._progress import bar as progress_bar
from align.engine._sharded import draws_caller
from align.stats import bh_adjust
from align.stats import maxstat_p
from align.stats import percentile_interval
from align.stats import permutation_p

#: Draws (permutations, resamples) per compiled step unless ``batch_size`` is given.
DEFAULT_BATCH = 8

#: Host-side steps a distribution is split into (for progress); each is one compiled call over its draws.
PROGRESS_STEPS = 10

_STATIC = ("prepare", "static_prep", "compare", "static_comp", "directions", "chunk_size", "batch_size")


def _scores(out):
    return {d: score_of(v) for d, v in out.items()}


@functools.partial(jax.jit, static_argnames=_STATIC + ("permute_x",))
def _null_call(prep_fixed, groups, perms, traced_prep, traced_comp, *, prepare, static_prep, compare, static_comp,
               directions, chunk_size, batch_size, permute_x=False):
    """The grid under each permutation of the rows of one side (``groups``; Y unless ``permute_x``), the other
    side's prepared layers (``prep_fixed``) unchanged."""
    def one(perm):
        prep_p = prepare_groups(tuple(g[:, perm] for g in groups), traced_prep, prepare, static_prep)
        px, py = (prep_p, prep_fixed) if permute_x else (prep_fixed, prep_p)
        return _scores(grid_body(px, py, traced_comp, compare, static_comp, directions, chunk_size))

    return lax.map(one, perms, batch_size=batch_size)


def _resampled(draw, traced_prep):
    """(rows, prepare keyword arguments) of one bootstrap draw ``{"rows": [n], "folds": layout}`` (a metric with
    folds gets this resample's grouped fold layout as ``fold_rows``)."""
    if "folds" in draw:
        return draw["rows"], {**traced_prep, FOLD_ROWS_KWARG: draw["folds"]}
    return draw["rows"], traced_prep


def _boot_draws(plan: Plan, rows: np.ndarray) -> dict:
    """Bootstrap draws as the compiled calls take them: ``{"rows": [B, n]}``, plus ``"folds"`` (per-resample fold
    layouts grouped by original stimulus) for a metric with cross-validation folds."""
    folds = resample_fold_rows(plan.metric, plan.kw, rows)
    return {"rows": np.asarray(rows)} if folds is None else {"rows": np.asarray(rows), "folds": folds}


@functools.partial(jax.jit, static_argnames=_STATIC + ("same",))
def _boot_call(x_groups, y_groups, draws, traced_prep, traced_comp, *, prepare, static_prep, compare, static_comp,
               directions, chunk_size, batch_size, same):
    def one(draw):
        ix, kw_prep = _resampled(draw, traced_prep)
        prep_x = prepare_groups(tuple(g[:, ix] for g in x_groups), kw_prep, prepare, static_prep)
        prep_y = prep_x if same else prepare_groups(tuple(g[:, ix] for g in y_groups), kw_prep, prepare,
                                                    static_prep)
        return _scores(grid_body(prep_x, prep_y, traced_comp, compare, static_comp, directions, chunk_size))

    return lax.map(one, draws, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=_STATIC + ("resample",))
def _diff_call(groups_a, groups_b, draws, traced_prep, traced_comp, *, prepare, static_prep, compare, static_comp,
               directions, chunk_size, batch_size, resample):
    """Difference A − B of the grid under condition swaps (``resample="swap"``, draws ``{"rows": [n] bool}``) or
    bootstrap resamples ("boot", draws as :func:`_boot_draws`)."""

    def grid(xg, yg, kw_prep):
        px = prepare_groups(xg, kw_prep, prepare, static_prep)
        py = prepare_groups(yg, kw_prep, prepare, static_prep)
        return _scores(grid_body(px, py, traced_comp, compare, static_comp, directions, chunk_size))

    def one(draw):
        (xa, ya), (xb, yb) = groups_a, groups_b
        if resample == "swap":
            mask, kw_prep = draw["rows"], traced_prep

            def swap(p, q):
                return tuple(jnp.where(mask[None, :, None], b, a) for a, b in zip(p, q))
            xa, xb, ya, yb = swap(xa, xb), swap(xb, xa), swap(ya, yb), swap(yb, ya)
        else:
            ix, kw_prep = _resampled(draw, traced_prep)

            def take(p):
                return tuple(g[:, ix] for g in p)
            xa, xb, ya, yb = take(xa), take(xb), take(ya), take(yb)
        ga, gb = grid(xa, ya, kw_prep), grid(xb, yb, kw_prep)
        return {d: ga[d] - gb[d] for d in ga}

    return lax.map(one, draws, batch_size=batch_size)


def _static(plan: Plan, batch_size, n_draws):
    kw = plan.kw
    if batch_size is None:  # from the device's free memory where JAX reports it (GPUs); the CPU keeps the default
        raw = sum(a.nbytes for a in plan.xs.arrays) + (0 if plan.within else sum(a.nbytes for a in plan.ys.arrays))
        batch_size = batch_from_memory(device_memory_stats(plan.mesh), 3 * raw, DEFAULT_BATCH)
    return dict(prepare=plan.metric.prepare, static_prep=kw.static_prep, compare=plan.metric.compare,
                static_comp=kw.static_comp, directions=plan.directions, chunk_size=plan.chunk_size,
                batch_size=max(1, min(int(batch_size), n_draws)))


def _in_steps(call, draws, batch_size: int, bar, mesh=None) -> dict:
    """``call(draws)`` -> ``{key: [len(draws), ...]}`` computed in about :data:`PROGRESS_STEPS` host steps of equal
    size (a multiple of ``batch_size`` times the device count of ``mesh``; the last step padded with repeats of its
    last draw and trimmed), so a bar can advance between them. Every step has the same shape: one compilation.
    ``draws`` is an array or a pytree of arrays with one leading draws axis."""
    tree = jax.tree_util.tree_map
    n = len(jax.tree_util.tree_leaves(draws)[0])
    unit = batch_size * (1 if mesh is None else mesh.size)
    size = unit * max(1, -(-n // (PROGRESS_STEPS * unit)))
    outs = []
    for start in range(0, n, size):
        chunk = tree(lambda a: a[start:start + size], draws)
        real = min(size, n - start)
        if real < size and (start > 0 or mesh is not None):
            chunk = tree(lambda a: np.concatenate([a, np.repeat(a[-1:], size - real, axis=0)]), chunk)
        out = jax.device_get(call(tree(jnp.asarray, chunk)))
        outs.append(jax.tree_util.tree_map(lambda a: a[:real], out))
        bar.update(real)
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outs)


def permutations(n: int, n_perm: int, seed: int = 0) -> np.ndarray:
    """``[n_perm, n]`` int32 permutations of the rows (the null's re-pairings of stimuli)."""
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n, dtype=np.int32), (n_perm, 1)), axis=1)


def bootstrap_rows(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` int32 row indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n), dtype=np.int32)


def condition_swaps(n: int, n_perm: int, seed: int = 0) -> np.ndarray:
    """``[n_perm, n]`` bool: which stimuli swap their condition A and B activations in each draw (probability 1/2)."""
    return np.random.default_rng(seed).random((int(n_perm), n)) < 0.5


def null_distribution(plan: Plan, perms: np.ndarray, batch_size=None, progress=False) -> dict[str, np.ndarray]:
    """``{direction: [n_perm, Lx, Ly]}``: the grid with the stimulus pairing permuted by each of ``perms``.

    A symmetric metric permutes the rows of every Y layer. An asymmetric one permutes the rows of the target of
    each direction -- Y for ``x_to_y``, X for ``y_to_x`` -- as a permutation test of a regression permutes the
    response: the source's prepared layers (and, for linear predictivity, its folds) stay as observed, and only
    the target is re-prepared, with the metric's ``prepare_target`` when it has one.
    """
    kw = plan.kw
    m = plan.metric
    static = _static(plan, batch_size, len(perms))
    blocks: dict = {}
    calls = len(plan.parts_x) * len(plan.parts_y) * (1 if m.symmetric else len(plan.directions))
    with jax.default_matmul_precision("highest"), progress_bar(calls * len(perms), f"{m.name} null",
                                                               "perm", progress) as bar:
        preps_x = prepare_parts(plan, plan.parts_x)
        if m.symmetric:
            for a, px in enumerate(preps_x):
                for b, part_y in enumerate(plan.parts_y):
                    call = draws_caller(plan.mesh, _null_call, (px, part_stacks(part_y), kw.traced_prep,
                                                                kw.traced_comp), 2, static)
                    blocks[(a, b)] = _in_steps(call, perms, static["batch_size"], bar, plan.mesh)
            return assemble(plan, blocks, lead_shape=(len(perms),), transpose_within=False)
        target = dict(static, prepare=m.prepare_target or m.prepare)
        if Y_TO_X in plan.directions:
            preps_y = preps_x if plan.within else prepare_parts(plan, plan.parts_y)
        for d in plan.directions:
            for a, part_x in enumerate(plan.parts_x):
                for b, part_y in enumerate(plan.parts_y):
                    if d == X_TO_Y:
                        fixed, groups, permute_x = preps_x[a], part_stacks(part_y), False
                    else:
                        fixed, groups, permute_x = preps_y[b], part_stacks(part_x), True
                    call = draws_caller(plan.mesh, _null_call, (fixed, groups, kw.traced_prep, kw.traced_comp), 2,
                                        dict(target, directions=(d,), permute_x=permute_x))
                    out = _in_steps(call, perms, static["batch_size"], bar, plan.mesh)
                    blocks.setdefault((a, b), {}).update(out)
    return assemble(plan, blocks, lead_shape=(len(perms),), transpose_within=False)


def bootstrap_distribution(plan: Plan, rows: np.ndarray, batch_size=None, progress=False) -> dict[str, np.ndarray]:
    """``{direction: [n_boot, Lx, Ly]}``: the grid on each bootstrap resample ``rows`` of the stimuli."""
    kw = plan.kw
    static = _static(plan, batch_size, len(rows))
    draws = _boot_draws(plan, rows)
    blocks = {}
    calls = len(plan.parts_x) * len(plan.parts_y)
    with jax.default_matmul_precision("highest"), progress_bar(calls * len(rows), f"{plan.metric.name} bootstrap",
                                                               "resample", progress) as bar:
        for a, part_x in enumerate(plan.parts_x):
            for b, part_y in enumerate(plan.parts_y):
                same = plan.within and a == b
                call = draws_caller(plan.mesh, _boot_call, (part_stacks(part_x), part_stacks(part_y), kw.traced_prep,
                                                            kw.traced_comp), 2, dict(static, same=same))
                blocks[(a, b)] = _in_steps(call, draws, static["batch_size"], bar, plan.mesh)
    return assemble(plan, blocks, lead_shape=(len(rows),), transpose_within=False)


def difference_distribution(plan_a: Plan, plan_b: Plan, draws: np.ndarray, resample: str, batch_size=None,
                            progress=None) -> dict[str, np.ndarray]:
    """``{direction: [n_draws, Lx, Ly]}``: the difference A − B of two plans of the same shapes under each draw:
    condition swaps (``resample="swap"``, ``draws`` from :func:`condition_swaps`) or bootstrap rows
    (``resample="boot"``, ``draws`` from :func:`bootstrap_rows`; a metric with cross-validation folds gets each
    resample's folds grouped by original stimulus, as in :func:`bootstrap_distribution`)."""
    kw = plan_a.kw
    static = _static(plan_a, batch_size, len(draws))
    n_draws = len(draws)
    draws = _boot_draws(plan_a, draws) if resample == "boot" else {"rows": np.asarray(draws)}
    blocks = {}
    calls = len(plan_a.parts_x) * len(plan_a.parts_y)
    label = "swaps" if resample == "swap" else "bootstrap"
    with jax.default_matmul_precision("highest"), progress_bar(calls * n_draws, f"{plan_a.metric.name} {label}",
                                                               "draw", progress) as bar:
        for a, (pxa, pxb) in enumerate(zip(plan_a.parts_x, plan_b.parts_x)):
            for b, (pya, pyb) in enumerate(zip(plan_a.parts_y, plan_b.parts_y)):
                ga, gb = (part_stacks(pxa), part_stacks(pya)), (part_stacks(pxb), part_stacks(pyb))
                call = draws_caller(plan_a.mesh, _diff_call, (ga, gb, kw.traced_prep, kw.traced_comp), 2,
                                    dict(static, resample=resample))
                blocks[(a, b)] = _in_steps(call, draws, static["batch_size"], bar, plan_a.mesh)
    return assemble(plan_a, blocks, lead_shape=(n_draws,), transpose_within=False)


def null_summary(null: dict[str, np.ndarray], scores: dict[str, np.ndarray], higher_is_better: bool,
                 two_sided: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Per direction, from a null ``{direction: [n_perm, Lx, Ly]}`` and the observed ``{direction: [Lx, Ly]}``
    (NaN cells are undefined and take no part): ``p_value`` (per cell), ``p_bh`` (Benjamini-Hochberg over the
    direction's cells), ``p_maxstat`` (family-wise, max statistic over the direction's cells), ``null_mean``,
    ``null_std``."""
    out = {}
    for d, obs in scores.items():
        p = permutation_p(null[d], obs, higher_is_better, two_sided=two_sided)
        with warnings.catch_warnings():  # a cell whose every draw is NaN (a constant layer) has a NaN mean
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(null[d], axis=0), np.nanstd(null[d], axis=0)
        out[d] = {"p_value": p, "p_bh": bh_adjust(p),
                  "p_maxstat": maxstat_p(null[d], obs, higher_is_better, two_sided=two_sided),
                  "null_mean": mean, "null_std": std}
    return out


def interval_summary(dist: dict[str, np.ndarray], level: float) -> dict[str, dict[str, np.ndarray]]:
    """Per direction: the percentile ``ci_low``/``ci_high`` at coverage ``level`` of a resampled distribution."""
    out = {}
    for d, v in dist.items():
        lo, hi = percentile_interval(v, level)
        out[d] = {"ci_low": lo, "ci_high": hi}
    return out
