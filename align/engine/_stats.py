"""Statistics on any metric over a whole layer grid: permutation nulls, bootstrap intervals, paired differences.

Every metric's prepared form depends on the order of the rows, so a resampled data set is re-prepared: one
permutation of the stimulus pairing = the rows of every Y layer permuted (for an asymmetric metric, the rows of each
direction's target), then prepared, then compared with the (unchanged) prepared other side. Draws (permutation index
arrays, bootstrap index arrays, condition-swap masks) are generated on the host with NumPy from ``seed`` and passed
to one jitted call per block of the grid, which maps over them ``batch_size`` at a time (each batch ``vmap``-ed,
batches in a ``lax.map``): no Python loop per draw.

- Permutation p-value (one-sided, towards "more aligned"): ``p = (1 + #{null >= observed}) / (1 + n_perm)``
  (``<=`` for distances), so p is never 0 (Phipson & Smyth 2010).
- Bootstrap: stimuli resampled with replacement (the same rows for X and Y); percentile interval. Metrics that
  exclude self-matches (kNN) or split stimuli into folds (linear predictivity) see duplicated stimuli as
  distinct ones, which biases their bootstrap distribution upwards; prefer the permutation null for those.
- Paired difference of condition A and B on the same stimuli (same models and layers): the score difference
  A − B per layer pair; its null swaps the A and B activations of each stimulus with probability 1/2 (all layers
  of both sides together), two-sided ``p = (1 + #{|null| >= |observed|}) / (1 + n_perm)``; optionally a bootstrap
  interval of the difference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from align.engine import _progress
from align.engine._pairwise import LayerGrid
from align.engine._pairwise import _assemble
from align.engine._pairwise import _grid_body
from align.engine._pairwise import _grid_result
from align.engine._pairwise import _observed
from align.engine._pairwise import _Plan
from align.engine._pairwise import _plan
from align.engine._pairwise import _prepare_groups
from align.engine._pairwise import _prepare_parts
from align.engine._pairwise import _score_of
from align.engine._pairwise import X_TO_Y
from align.engine._pairwise import Y_TO_X

#: Draws (permutations, resamples) per compiled step unless ``batch_size`` is given.
DEFAULT_BATCH = 8

_STATIC = ("prepare", "static_prep", "compare", "static_comp", "directions", "chunk_size", "batch_size")


def _scores(out):
    return {d: _score_of(v) for d, v in out.items()}


@functools.partial(jax.jit, static_argnames=_STATIC + ("permute_x",))
def _null_call(prep_fixed, groups, perms, traced_prep, traced_comp, *, prepare, static_prep, compare, static_comp,
               directions, chunk_size, batch_size, permute_x=False):
    """The grid under each permutation of the rows of one side (``groups``; Y unless ``permute_x``), the other
    side's prepared layers (``prep_fixed``) unchanged."""
    def one(perm):
        prep_p = _prepare_groups(tuple(g[:, perm] for g in groups), traced_prep, prepare, static_prep)
        px, py = (prep_p, prep_fixed) if permute_x else (prep_fixed, prep_p)
        return _scores(_grid_body(px, py, traced_comp, compare, static_comp, directions, chunk_size))

    return lax.map(one, perms, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=_STATIC + ("same",))
def _boot_call(x_groups, y_groups, rows, traced_prep, traced_comp, *, prepare, static_prep, compare, static_comp,
               directions, chunk_size, batch_size, same):
    def one(ix):
        prep_x = _prepare_groups(tuple(g[:, ix] for g in x_groups), traced_prep, prepare, static_prep)
        prep_y = prep_x if same else _prepare_groups(tuple(g[:, ix] for g in y_groups), traced_prep, prepare,
                                                     static_prep)
        return _scores(_grid_body(prep_x, prep_y, traced_comp, compare, static_comp, directions, chunk_size))

    return lax.map(one, rows, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=_STATIC + ("resample",))
def _diff_call(groups_a, groups_b, draws, traced_prep, traced_comp, *, prepare, static_prep, compare, static_comp,
               directions, chunk_size, batch_size, resample):
    """Difference A − B of the grid under condition swaps (``resample="swap"``) or bootstrap rows ("boot")."""

    def grid(xg, yg):
        px = _prepare_groups(xg, traced_prep, prepare, static_prep)
        py = _prepare_groups(yg, traced_prep, prepare, static_prep)
        return _scores(_grid_body(px, py, traced_comp, compare, static_comp, directions, chunk_size))

    def one(draw):
        (xa, ya), (xb, yb) = groups_a, groups_b
        if resample == "swap":
            def swap(p, q):
                return tuple(jnp.where(draw[None, :, None], b, a) for a, b in zip(p, q))
            xa, xb, ya, yb = swap(xa, xb), swap(xb, xa), swap(ya, yb), swap(yb, ya)
        else:
            def take(p):
                return tuple(g[:, draw] for g in p)
            xa, xb, ya, yb = take(xa), take(xb), take(ya), take(yb)
        ga, gb = grid(xa, ya), grid(xb, yb)
        return {d: ga[d] - gb[d] for d in ga}

    return lax.map(one, draws, batch_size=batch_size)


def _static(plan: _Plan, batch_size, n_draws):
    kw = plan.kw
    return dict(prepare=plan.metric.prepare, static_prep=kw.static_prep, compare=plan.metric.compare,
                static_comp=kw.static_comp, directions=plan.directions, chunk_size=plan.chunk_size,
                batch_size=max(1, min(int(batch_size or DEFAULT_BATCH), n_draws)))


def _groups(part):
    return tuple(jnp.asarray(g) for g in part.stacks())


#: Host-side steps a distribution is split into (for progress); each is one compiled call over its draws.
PROGRESS_STEPS = 10


def _in_steps(call, draws: np.ndarray, batch_size: int, bar) -> dict:
    """``call(draws)`` -> ``{key: [len(draws), ...]}`` computed in about :data:`PROGRESS_STEPS` host steps of equal
    size (a multiple of ``batch_size``; the last step padded with repeats of its last draw and trimmed), so a bar
    can advance between them. Every step has the same shape: one compilation."""
    n = len(draws)
    size = batch_size * max(1, -(-n // (PROGRESS_STEPS * batch_size)))
    outs = []
    for start in range(0, n, size):
        chunk = draws[start:start + size]
        real = len(chunk)
        if real < size and start > 0:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - real, axis=0)])
        out = jax.device_get(call(jnp.asarray(chunk)))
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


def null_distribution(plan: _Plan, perms: np.ndarray, batch_size=None, progress=False) -> dict[str, np.ndarray]:
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
    with jax.default_matmul_precision("highest"), _progress.bar(calls * len(perms), f"{m.name} null",
                                                                "perm", progress) as bar:
        preps_x = _prepare_parts(plan, plan.parts_x)
        if m.symmetric:
            for a, px in enumerate(preps_x):
                for b, part_y in enumerate(plan.parts_y):
                    gy = _groups(part_y)
                    blocks[(a, b)] = _in_steps(lambda p: _null_call(px, gy, p, kw.traced_prep, kw.traced_comp,
                                                                    **static), perms, static["batch_size"], bar)
            return _assemble(plan, blocks, lead_shape=(len(perms),), transpose_within=False)
        target = dict(static, prepare=m.prepare_target or m.prepare)
        if Y_TO_X in plan.directions:
            preps_y = preps_x if plan.within else _prepare_parts(plan, plan.parts_y)
        for d in plan.directions:
            for a, part_x in enumerate(plan.parts_x):
                for b, part_y in enumerate(plan.parts_y):
                    if d == X_TO_Y:
                        fixed, groups, permute_x = preps_x[a], _groups(part_y), False
                    else:
                        fixed, groups, permute_x = preps_y[b], _groups(part_x), True
                    out = _in_steps(lambda p: _null_call(fixed, groups, p, kw.traced_prep, kw.traced_comp,
                                                         **dict(target, directions=(d,)), permute_x=permute_x),
                                    perms, static["batch_size"], bar)
                    blocks.setdefault((a, b), {}).update(out)
    return _assemble(plan, blocks, lead_shape=(len(perms),), transpose_within=False)


def bootstrap_distribution(plan: _Plan, rows: np.ndarray, batch_size=None, progress=False) -> dict[str, np.ndarray]:
    """``{direction: [n_boot, Lx, Ly]}``: the grid on each bootstrap resample ``rows`` of the stimuli."""
    kw = plan.kw
    static = _static(plan, batch_size, len(rows))
    blocks = {}
    calls = len(plan.parts_x) * len(plan.parts_y)
    with jax.default_matmul_precision("highest"), _progress.bar(calls * len(rows), f"{plan.metric.name} bootstrap",
                                                                "resample", progress) as bar:
        for a, part_x in enumerate(plan.parts_x):
            for b, part_y in enumerate(plan.parts_y):
                same = plan.within and a == b
                gx, gy = _groups(part_x), _groups(part_y)
                blocks[(a, b)] = _in_steps(lambda r: _boot_call(gx, gy, r, kw.traced_prep, kw.traced_comp, same=same,
                                                                **static), rows, static["batch_size"], bar)
    return _assemble(plan, blocks, lead_shape=(len(rows),), transpose_within=False)


def _p_value(null: np.ndarray, observed: np.ndarray, higher_is_better: bool, two_sided=False) -> np.ndarray:
    if two_sided:
        extreme = np.abs(null) >= np.abs(observed) - 1e-12 * np.abs(observed)
    elif higher_is_better:
        extreme = null >= observed
    else:
        extreme = null <= observed
    p = (1.0 + np.sum(extreme, axis=0)) / (1.0 + null.shape[0])
    return np.where(np.isnan(observed), np.nan, p)


def null_summary(plan, scores, n_perm, seed=0, batch_size=None, progress=False) -> dict[str, dict[str, np.ndarray]]:
    """Per direction: ``p_value``, ``null_mean``, ``null_std`` of ``n_perm`` permutations of the pairing."""
    null = null_distribution(plan, permutations(plan.n, n_perm, seed), batch_size, progress)
    higher = plan.metric.higher_is_more_aligned
    return {d: {"p_value": _p_value(null[d], scores[d], higher), "null_mean": np.nanmean(null[d], axis=0),
                "null_std": np.nanstd(null[d], axis=0)} for d in scores}


def _interval(dist: np.ndarray, level: float) -> dict[str, np.ndarray]:
    lo, hi = np.nanquantile(dist, [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0], axis=0)
    return {"ci_low": lo, "ci_high": hi}


def bootstrap_summary(plan, n_boot, level=0.95, seed=0, batch_size=None,
                      progress=False) -> dict[str, dict[str, np.ndarray]]:
    """Per direction: percentile ``ci_low``/``ci_high`` of ``n_boot`` bootstrap resamples of the stimuli."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"ci level must be in (0, 1), got {level}")
    dist = bootstrap_distribution(plan, bootstrap_rows(plan.n, n_boot, seed), batch_size, progress)
    return {d: _interval(dist[d], level) for d in dist}


# ----------------------------------------------------------------------------------------------------------------
# paired differences


def paired_difference(metric, Xs_a, Ys_a, Xs_b, Ys_b, n_perm: int = 1000, n_boot: int = 0, ci: float = 0.95,
                      seed: int = 0, *, direction: str | None = None, chunk_size: int | None = None,
                      batch_size: int | None = None, progress: bool | None = None, **kwargs) -> LayerGrid:
    """Difference of scores between condition A and condition B on the same stimuli, per layer pair.

    Typical use: the same two models on original vs perturbed images. Rows of A and B must be the same stimuli in
    the same order, and the layers of A and B the same (count and widths), because the null swaps the A and B
    activations of each stimulus.

    Args:
      metric: as :func:`align.engine.pairwise`.
      Xs_a, Ys_a: layers of the two models under condition A.
      Xs_b, Ys_b: the same layers under condition B.
      n_perm: condition swaps for a two-sided p-value (0: none).
      n_boot: bootstrap resamples for an interval of the difference (0: none).
      ci: coverage of that interval.
      seed: NumPy seed of the swaps and resamples.
      direction, chunk_size, batch_size, progress, **kwargs: as :func:`align.engine.pairwise`.

    Returns:
      A :class:`LayerGrid` with ``quantity="difference"``: scores are A − B; ``.stats`` holds ``score_a``,
      ``score_b`` and, when requested, ``p_value`` (two-sided) and ``ci_low``/``ci_high`` per direction.

    Raises:
      ValueError: A and B differ in stimuli count, layer count or widths.
    """
    plan_a = _plan(metric, Xs_a, Ys_a, kwargs=kwargs, direction=direction, chunk_size=chunk_size)
    plan_b = _plan(metric, Xs_b, Ys_b, kwargs=kwargs, direction=direction, chunk_size=chunk_size)
    for side in ("xs", "ys"):
        wa = [a.shape for a in getattr(plan_a, side).arrays]
        wb = [a.shape for a in getattr(plan_b, side).arrays]
        if wa != wb:
            raise ValueError(
                f"paired_difference: the {side[0].upper()} layers of conditions A and B differ in shape ({wa} vs {wb}); "
                "A and B must be the same models on the same stimuli under two conditions")
    score_a, score_b = _observed(plan_a), _observed(plan_b)
    diff = {d: score_a[d] - score_b[d] for d in score_a}
    stats = {d: {"score_a": score_a[d], "score_b": score_b[d]} for d in diff}
    if n_perm:
        swaps = np.random.default_rng(seed).random((int(n_perm), plan_a.n)) < 0.5
        null = _difference_distribution(plan_a, plan_b, swaps, "swap", batch_size, progress)
        for d in diff:
            stats[d]["p_value"] = _p_value(null[d], diff[d], True, two_sided=True)
            stats[d]["null_mean"] = np.nanmean(null[d], axis=0)
            stats[d]["null_std"] = np.nanstd(null[d], axis=0)
    if n_boot:
        rows = bootstrap_rows(plan_a.n, int(n_boot), seed + 1)
        dist = _difference_distribution(plan_a, plan_b, rows, "boot", batch_size, progress)
        for d in diff:
            stats[d].update(_interval(dist[d], ci))
    return _grid_result(plan_a, diff, stats, quantity="difference", n_perm=int(n_perm), n_boot=int(n_boot),
                        ci_level=ci)


def _difference_distribution(plan_a: _Plan, plan_b: _Plan, draws: np.ndarray, resample: str, batch_size,
                             progress=None):
    kw = plan_a.kw
    static = _static(plan_a, batch_size, len(draws))
    blocks = {}
    calls = len(plan_a.parts_x) * len(plan_a.parts_y)
    label = "swaps" if resample == "swap" else "bootstrap"
    with jax.default_matmul_precision("highest"), _progress.bar(calls * len(draws), f"{plan_a.metric.name} {label}",
                                                                "draw", progress) as bar:
        for a, (pxa, pxb) in enumerate(zip(plan_a.parts_x, plan_b.parts_x)):
            for b, (pya, pyb) in enumerate(zip(plan_a.parts_y, plan_b.parts_y)):
                ga, gb = (_groups(pxa), _groups(pya)), (_groups(pxb), _groups(pyb))
                blocks[(a, b)] = _in_steps(lambda r: _diff_call(ga, gb, r, kw.traced_prep, kw.traced_comp,
                                                                resample=resample, **static),
                                           draws, static["batch_size"], bar)
    return _assemble(plan_a, blocks, lead_shape=(len(draws),), transpose_within=False)
