"""Every layer pair of two models under one metric, in one compiled call (or a few).

The engine does the per-layer work once (``metric.prepare`` on each layer, one layer at a time into a stack updated
in place, so the raw activations are never copied as a whole) and then evaluates ``metric.compare`` on every (x
layer, y layer) pair inside one jitted call: ``lax.map`` over chunks of pairs, each chunk ``vmap``-ed
(``chunk_size`` pairs at a time bounds memory). Layers of different widths are stacked as they are when the prepared
shapes do not depend on width (centered Grams, RDMs); otherwise they are zero-padded to the widest layer of their
width bucket (widths within a factor ``PAD_RATIO`` of each other) when the metric says ``pad_invariant`` (its value
does not change under zero feature columns), and only otherwise split into groups of equal shape; one compiled call
per pair of buckets or groups. ``batched=False`` is the documented fallback: a Python loop over pairs (one small
compiled call per pair), for a custom probe whose compare cannot be ``vmap``-ed. An asymmetric metric with a
``prepare_target`` (linear predictivity) streams its sources instead: per direction the targets are prepared cheaply
once, and each source layer is fully prepared, scored against every target and dropped, so memory holds one source's
preparation.

jit discipline (STYLE 4): the jitted functions live at module level; the metric's ``static`` keyword arguments (and
any non-numeric or integer argument: kinds, counts, fold layouts) are static, float arguments (alphas, quantiles,
bandwidths) are traced, so sweeping them does not recompile. Every call runs under
``jax.default_matmul_precision("highest")`` (no TF32 on GPUs).

Asymmetric metrics (``metric.symmetric`` False, e.g. linear predictivity) are computed in both directions from the
same prepared layers -- ``x_to_y[i, j] = compare(prep(X_i), prep(Y_j))`` and ``y_to_x[i, j] =
compare(prep(Y_j), prep(X_i))`` -- never filled in by symmetry.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import align.metrics  # noqa: F401  (registers the built-in metrics)
from align.engine import _progress
from align.metrics._registry import Metric
from align.metrics._registry import get_metric
from align.metrics._registry import parse_metric_spec
from align.metrics._validate import MetricInputError
from align.metrics._validate import check_array
from align.preprocess._steps import DEFAULT_PREPROCESS
from align.preprocess._steps import parse_preprocess

#: Direction labels of results: one grid for a symmetric metric, two for an asymmetric one.
SYMMETRIC = "symmetric"
X_TO_Y = "x_to_y"
Y_TO_X = "y_to_x"

#: Statistics a grid may carry, per direction, as ``[Lx, Ly]`` arrays (columns of ``to_frame``).
STAT_NAMES = ("p_value", "null_mean", "null_std", "ci_low", "ci_high", "score_a", "score_b")

#: Per-pair outputs a metric's compare may return beside ``"score"`` (e.g. linear predictivity's chosen ridge
#: penalties); the engine keeps them in ``LayerGrid.stats`` and ``to_frame`` writes them as columns.
AUX_NAMES = ("alpha_median", "alpha_low_share", "alpha_high_share")


# ----------------------------------------------------------------------------------------------------------------
# the result


@dataclasses.dataclass(frozen=True)
class LayerGrid:
    """Scores of every (x layer, y layer) pair, labelled.

    Attributes:
      metric: registry name of the metric.
      kwargs: the metric keyword arguments given (from the spec string and the call; defaults not repeated).
      layers_x: names of the x layers (rows), in depth order.
      layers_y: names of the y layers (columns).
      scores: ``[Lx, Ly]`` array for a symmetric metric; for an asymmetric one a dict with ``"x_to_y"`` (row layer
        predicts column layer: ``compare(X_i, Y_j)``) and/or ``"y_to_x"`` (``compare(Y_j, X_i)``), both indexed
        ``[x layer, y layer]``.
      n: number of stimuli (rows) compared.
      symmetric: whether the metric is symmetric.
      higher_is_more_aligned: False for distances.
      stats: per direction, optional ``[Lx, Ly]`` statistics: ``p_value``, ``null_mean``, ``null_std`` (permutation
        null), ``ci_low``, ``ci_high`` (bootstrap), ``score_a``, ``score_b`` (paired differences).
      quantity: ``"score"``, or ``"difference"`` for :func:`align.engine.paired_difference` (scores are A − B).
      n_perm: permutations behind ``p_value`` (0 if none).
      n_boot: bootstrap resamples behind the CI (0 if none).
      ci_level: coverage of ``ci_low``/``ci_high``.
      constant_x, constant_y: names of layers that were constant across stimuli (scored NaN; only with
        ``constant_layers="skip"``).
      preprocess: canonical spec of the per-layer preprocessing applied before the metric (``"none"``,
        ``"zscore"``, ``"clip(q=0.95)"``, ``"pca(k=50)"``, ...; see :mod:`align.preprocess`).
    """

    metric: str
    kwargs: Mapping[str, Any]
    layers_x: tuple[str, ...]
    layers_y: tuple[str, ...]
    scores: np.ndarray | dict[str, np.ndarray]
    n: int
    symmetric: bool
    higher_is_more_aligned: bool = True
    stats: Mapping[str, Mapping[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    quantity: str = "score"
    n_perm: int = 0
    n_boot: int = 0
    ci_level: float = 0.95
    constant_x: tuple[str, ...] = ()
    constant_y: tuple[str, ...] = ()
    preprocess: str = DEFAULT_PREPROCESS

    @property
    def directions(self) -> tuple[str, ...]:
        """``("symmetric",)`` or the asymmetric directions computed (``"x_to_y"``, ``"y_to_x"``)."""
        return (SYMMETRIC,) if isinstance(self.scores, np.ndarray) else tuple(self.scores)

    def score(self, direction: str | None = None) -> np.ndarray:
        """The ``[Lx, Ly]`` score array of one direction (the only one when ``direction`` is None)."""
        return self._get(None, direction)

    def stat(self, name: str, direction: str | None = None) -> np.ndarray:
        """The ``[Lx, Ly]`` array of one statistic (e.g. ``"p_value"``) for one direction."""
        return self._get(name, direction)

    def _get(self, name, direction):
        dirs = self.directions
        if direction is None:
            if len(dirs) != 1:
                raise ValueError(f"{self.metric} is asymmetric; name a direction, one of {dirs}")
            direction = dirs[0]
        if direction not in dirs:
            raise ValueError(f"direction {direction!r} was not computed; available: {dirs}")
        if name is None:
            return self.scores if direction == SYMMETRIC else self.scores[direction]
        try:
            return self.stats[direction][name]
        except KeyError:
            have = sorted(self.stats.get(direction, {}))
            raise ValueError(f"statistic {name!r} was not computed (have {have}); pass null=/ci= to pairwise") from None

    def to_frame(self):
        """Long form, one row per (direction, x layer, y layer).

        Columns: ``layer_x``, ``layer_y`` (layer indices), ``layer_name_x``, ``layer_name_y``, ``rel_depth_x``,
        ``rel_depth_y`` (index / last index; 1.0 for a single layer), ``metric``, ``preprocess`` (the canonical
        preprocessing spec), ``direction`` (``"symmetric"``,
        ``"x_to_y"`` or ``"y_to_x"``), ``higher_is_more_aligned``, ``score``, ``n``, then any statistics computed
        (``p_value``, ``null_mean``, ``null_std``, ``ci_low``, ``ci_high``, ``score_a``, ``score_b``).
        """
        import pandas as pd

        lx, ly = len(self.layers_x), len(self.layers_y)
        ix, iy = np.meshgrid(np.arange(lx), np.arange(ly), indexing="ij")
        frames = []
        for d in self.directions:
            cols = {
                "layer_x": ix.ravel(), "layer_y": iy.ravel(),
                "layer_name_x": np.asarray(self.layers_x, dtype=object)[ix.ravel()],
                "layer_name_y": np.asarray(self.layers_y, dtype=object)[iy.ravel()],
                "rel_depth_x": _rel_depth(lx)[ix.ravel()], "rel_depth_y": _rel_depth(ly)[iy.ravel()],
                "metric": self.metric, "preprocess": self.preprocess, "direction": d,
                "higher_is_more_aligned": bool(self.higher_is_more_aligned),
                "score": np.asarray(self.score(d), dtype=np.float64).ravel(), "n": self.n,
            }
            for name in STAT_NAMES + AUX_NAMES:
                if name in self.stats.get(d, {}):
                    cols[name] = np.asarray(self.stats[d][name], dtype=np.float64).ravel()
            frames.append(pd.DataFrame(cols))
        return pd.concat(frames, ignore_index=True)


def _rel_depth(n_layers: int) -> np.ndarray:
    return np.arange(n_layers) / (n_layers - 1) if n_layers > 1 else np.ones(1)


# ----------------------------------------------------------------------------------------------------------------
# inputs: metric, layers, keyword arguments


def resolve_metric(metric: str | Metric, kwargs: Mapping[str, Any] | None = None) -> tuple[Metric, dict]:
    """(Metric, keyword arguments) from a registered name, a spec string ``"rbf_cka(sigma_frac=0.5)"`` or a Metric.

    Keyword arguments given explicitly override those of the spec string.
    """
    kwargs = dict(kwargs or {})
    if isinstance(metric, Metric):
        return metric, kwargs
    if isinstance(metric, str):
        if "(" in metric:
            m, spec_kwargs = parse_metric_spec(metric)
            return m, {**spec_kwargs, **kwargs}
        return get_metric(metric.strip()), kwargs
    raise TypeError(f"metric must be a registered name, a spec string or a Metric, got {type(metric).__name__}")


@dataclasses.dataclass
class _Side:
    """One model's layers: names, ``[n, d_l]`` float32 arrays, optional stimulus ids."""

    names: list[str]
    arrays: list[np.ndarray]
    stimulus_ids: list[str] | None
    source: Any


def _as_side(layers, label: str) -> _Side:
    ids = getattr(layers, "stimulus_ids", None)
    if isinstance(layers, Mapping):
        names = [str(k) for k in layers]
        arrays = [layers[k] for k in layers]
    elif getattr(layers, "ndim", None) == 2:
        names, arrays = ["0"], [layers]
    elif not isinstance(layers, (str, bytes)) and hasattr(layers, "__iter__"):
        arrays = list(layers)
        names = [str(i) for i in range(len(arrays))]
    else:
        raise TypeError(f"{label}: expected a sequence or mapping of [n, d] arrays or an ActivationStore, "
                        f"got {type(layers).__name__}")
    if not arrays:
        raise MetricInputError(f"{label} has no layers")
    return _Side(names, arrays, list(ids) if ids is not None else None, layers)


def _pair_rows(xs: _Side, ys: _Side, align_by_id: bool) -> None:
    """Pair rows by stimulus id when both sides know their ids (in place); refuse differing orders.

    ``align.store.match_rows`` decides: same order -> as they are; ``align_by_id`` -> the common ids, or, for an
    image store and a caption store (ids ``<image_id>#<k>``, one caption per image), each image row with its
    caption row; a caption store with several captions per image, or sides with no common id, raise a
    StoreMismatchError naming both sides and example ids.
    """
    if xs.stimulus_ids is None or ys.stimulus_ids is None:
        if align_by_id:
            raise MetricInputError("align_by_id=True needs stimulus ids on both sides (pass ActivationStore objects)")
        return
    from align.store import match_rows

    rows = match_rows(xs.stimulus_ids, ys.stimulus_ids, align_by_id=align_by_id, source_a=xs.source,
                      source_b=ys.source)
    if rows is not None:
        rx, ry = rows
        xs.arrays = [np.asarray(a)[rx] for a in xs.arrays]
        ys.arrays = [np.asarray(a)[ry] for a in ys.arrays]
        xs.stimulus_ids = [xs.stimulus_ids[i] for i in rx]
        ys.stimulus_ids = [ys.stimulus_ids[i] for i in ry]


def _validate_side(side: _Side, label: str, metric: Metric) -> None:
    side.arrays = [check_array(a, f"layer {name!r} of {label}", min_n=metric.min_n)
                   for name, a in zip(side.names, side.arrays)]


def _check_n(*sides: tuple[_Side, str]) -> int:
    n = sides[0][0].arrays[0].shape[0]
    for side, label in sides:
        for name, a in zip(side.names, side.arrays):
            if a.shape[0] != n:
                raise MetricInputError(
                    f"layer {name!r} of {label} has {a.shape[0]} rows but the first layer of {sides[0][1]} has {n}; "
                    "rows are stimuli and must be paired one to one (align the stores by stimulus id first)")
    return n


def _hashable(v):
    if isinstance(v, np.ndarray):
        return tuple(v.tolist())
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def _traceable(v) -> bool:
    """Floats and float arrays are traced (swept values); everything else is static."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (float, np.floating)):
        return True
    if isinstance(v, (np.ndarray, jax.Array)):
        return np.issubdtype(v.dtype, np.floating)
    if isinstance(v, (list, tuple)) and v:
        return all(isinstance(x, (float, np.floating)) for x in v)
    return False


@dataclasses.dataclass(frozen=True)
class _Kwargs:
    """A metric's keyword arguments split for jit: static (hashable tuples) and traced (arrays), per stage."""

    static_prep: tuple
    traced_prep: dict
    static_comp: tuple
    traced_comp: dict
    given: dict
    merged: dict


def _split_kwargs(metric: Metric, kwargs: Mapping[str, Any]) -> _Kwargs:
    prep, comp = metric.split_kwargs(kwargs)

    def split(d):
        static, traced = {}, {}
        for k, v in d.items():
            if k in metric.static or not _traceable(v):
                static[k] = _hashable(v)
            elif isinstance(v, (float, np.floating)):
                traced[k] = jnp.asarray(v, jnp.float32)
            else:
                traced[k] = jnp.asarray(np.asarray(v), jnp.float32)
        return tuple(sorted(static.items())), traced

    sp, tp = split(prep)
    sc, tc = split(comp)
    return _Kwargs(sp, tp, sc, tc, dict(kwargs), {**prep, **comp})


# ----------------------------------------------------------------------------------------------------------------
# stacking layers into parts of equal prepared shape


@dataclasses.dataclass(frozen=True)
class _Part:
    """Layers of one side whose prepared forms share one shape: ``index`` (positions on the side, in stacking
    order) and ``groups`` (per raw width, its ``[n, d_g]`` layers; all zero-padded to ``pad_to`` when set). The
    layers are the caller's arrays, not copies: they are stacked only where a statistic re-prepares them."""

    index: np.ndarray
    groups: tuple[tuple[np.ndarray, ...], ...]
    pad_to: int | None = None

    def layers(self):
        """Every layer in ``index`` order, padded to ``pad_to`` (one padded copy at a time)."""
        for group in self.groups:
            for a in group:
                yield a if self.pad_to is None else _pad(a, self.pad_to)

    def stacks(self) -> tuple[np.ndarray, ...]:
        """Raw ``[L_g, n, d_g]`` stacks, one per group (one stack when padded), for statistics that re-prepare."""
        if self.pad_to is not None:
            return (np.stack(list(self.layers())),)
        return tuple(np.stack(g) for g in self.groups)


def _prep_signature(metric: Metric, n: int, d: int, kw: _Kwargs):
    if metric.prepare is None:
        return ((n, d),)
    fn = functools.partial(metric.prepare, **dict(kw.static_prep))
    with jax.default_matmul_precision("highest"):
        out = jax.eval_shape(lambda X, t: fn(X, **t), jax.ShapeDtypeStruct((n, d), jnp.float32), kw.traced_prep)
    leaves, treedef = jax.tree_util.tree_flatten(out)
    return treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves)


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    return a if a.shape[1] == width else np.pad(a, ((0, 0), (0, width - a.shape[1])))


#: Layers whose widths differ by at most this factor are zero-padded to one width and stacked; wider spreads are
#: split (one compiled call per pair of buckets), so that e.g. a CNN's 16-wide first layers are not padded to its
#: 1280-wide last one (which made linear predictivity ~4x slower on MobileNetV2).
PAD_RATIO = 2


def _width_buckets(widths: list[int]) -> list[list[int]]:
    """Sorted widths grouped greedily from the narrowest: each bucket spans at most ``PAD_RATIO``."""
    buckets: list[list[int]] = []
    for d in sorted(widths):
        if buckets and d <= PAD_RATIO * buckets[-1][0]:
            buckets[-1].append(d)
        else:
            buckets.append([d])
    return buckets


def _parts(metric: Metric, arrays: list[np.ndarray], kw: _Kwargs) -> list[_Part]:
    n = arrays[0].shape[0]
    widths = sorted({a.shape[1] for a in arrays})
    by_width = {d: [i for i, a in enumerate(arrays) if a.shape[1] == d] for d in widths}
    signature = {d: _prep_signature(metric, n, d, kw) for d in widths}

    def part(ds, pad_to=None):
        index = [i for d in ds for i in by_width[d]]
        return _Part(np.asarray(index), tuple(tuple(arrays[i] for i in by_width[d]) for d in ds), pad_to)

    if len(set(signature.values())) == 1:
        return [part(widths)]
    if metric.pad_invariant:
        return [part(bucket, pad_to=bucket[-1]) for bucket in _width_buckets(widths)]
    shapes = list(dict.fromkeys(signature.values()))
    return [part([d for d in widths if signature[d] == s]) for s in shapes]


# ----------------------------------------------------------------------------------------------------------------
# jitted bodies (module level; static: functions and program-shaping kwargs)


def _identity(X, **_):
    return X


def _prepare_groups(groups, traced_kw, prepare, static_kw):
    """Prepared forms of every layer in ``groups``, concatenated along a leading layer axis."""
    kw = {**dict(static_kw), **traced_kw}
    prepare = prepare or _identity
    preps = [lax.map(lambda X: prepare(X, **kw), g) for g in groups]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *preps)


def _grid_body(prep_x, prep_y, traced_kw, compare, static_kw, directions, chunk_size):
    """``{direction: [Lx, Ly, ...]}``: compare on every pair.

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

    def flat_pair(ij):
        i, j = ij
        return pair(jax.tree_util.tree_map(lambda a: a[i], prep_x), jax.tree_util.tree_map(lambda a: a[j], prep_y))

    out = lax.map(flat_pair, (jnp.asarray(ii.ravel()), jnp.asarray(jj.ravel())), batch_size=min(chunk_size, lx * ly))
    return jax.tree_util.tree_map(lambda a: a.reshape((lx, ly) + a.shape[1:]), out)


_STATIC_PREP = ("prepare", "static_kw")
_STATIC_GRID = ("compare", "static_kw", "directions", "chunk_size")


@functools.partial(jax.jit, static_argnames=_STATIC_PREP, donate_argnums=(0,))
def _prepare_into(stack, i, X, traced_kw, *, prepare, static_kw):
    """``stack`` with layer ``i`` set to the prepared ``X`` (``stack`` is donated: updated in place)."""
    prep = (prepare or _identity)(X, **{**dict(static_kw), **traced_kw})
    return jax.tree_util.tree_map(lambda s, p: s.at[i].set(p), stack, prep)


@functools.partial(jax.jit, static_argnames=_STATIC_GRID)
def _grid_call(prep_x, prep_y, traced_kw, *, compare, static_kw, directions, chunk_size):
    return _grid_body(prep_x, prep_y, traced_kw, compare, static_kw, directions, chunk_size)


@functools.partial(jax.jit, static_argnames=("compare", "static_kw"))
def _pair_call(px, py, traced_kw, *, compare, static_kw):
    return compare(px, py, **{**dict(static_kw), **traced_kw})


@functools.partial(jax.jit, static_argnames=("prepare", "static_kw"))
def _prepare_one(X, traced_kw, *, prepare, static_kw):
    return (prepare or _identity)(X, **{**dict(static_kw), **traced_kw})


# ----------------------------------------------------------------------------------------------------------------
# the driver


@dataclasses.dataclass
class _Plan:
    """Everything needed to compute (and re-compute under resampling) one grid."""

    metric: Metric
    kw: _Kwargs
    xs: _Side
    ys: _Side
    parts_x: list[_Part]
    parts_y: list[_Part]
    directions: tuple[str, ...]
    within: bool
    chunk_size: int | None
    n: int
    preprocess: str = DEFAULT_PREPROCESS


def _directions(metric: Metric, direction: str | None) -> tuple[str, ...]:
    if metric.symmetric:
        return (SYMMETRIC,)
    if direction is None:
        return (X_TO_Y, Y_TO_X)
    if direction not in (X_TO_Y, Y_TO_X):
        raise ValueError(f"direction must be None, {X_TO_Y!r} or {Y_TO_X!r}, got {direction!r}")
    return (direction,)


def _plan(metric, Xs, Ys, *, kwargs, align_by_id=False, direction=None, chunk_size=None, within=False,
          preprocess=None) -> _Plan:
    metric, kwargs = resolve_metric(metric, kwargs)
    if preprocess is None:  # callers that forward **kwargs (paired_difference) pass it among the metric's kwargs
        preprocess = kwargs.pop("preprocess", DEFAULT_PREPROCESS)
    step = parse_preprocess(preprocess)
    xs = _as_side(Xs, "Xs")
    ys = xs if within else _as_side(Ys, "Ys")
    if not within:
        _pair_rows(xs, ys, align_by_id)
    _validate_side(xs, "Xs", metric)
    if not within:
        _validate_side(ys, "Ys", metric)
    n = _check_n((xs, "Xs"), (ys, "Ys"))
    kwargs = _preprocess_sides(step, metric, kwargs, (xs, "Xs"), *(() if within else ((ys, "Ys"),)))
    kw = _split_kwargs(metric, kwargs)
    if metric.validate is not None:
        widths = [a.shape[1] for a in xs.arrays] + ([] if within else [a.shape[1] for a in ys.arrays])
        metric.validate(n, widths, **kw.merged)
    parts_x = _parts(metric, xs.arrays, kw)
    parts_y = parts_x if within else _parts(metric, ys.arrays, kw)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive number of layer pairs, got {chunk_size}")
    return _Plan(metric, kw, xs, ys, parts_x, parts_y, _directions(metric, direction), within,
                 metric.grid_chunk if chunk_size is None else int(chunk_size), n, step.spec)


def _preprocess_sides(step, metric: Metric, kwargs: dict, *sides: tuple[_Side, str]) -> dict:
    """Apply the preprocessing step to every layer of each side (in place); returns the metric's kwargs.

    ``pca(k)`` for a metric that declares ``fold_pca_kwarg`` (it fits PCA on its own training folds) is passed as
    that keyword instead, after checking that k fits every layer; the data are left as they are.
    """
    if step.name == "pca" and metric.fold_pca_kwarg:
        for side, label in sides:
            for name, a in zip(side.names, side.arrays):
                step.check(*a.shape, layer=f"layer {name!r} of {label}")
        given = kwargs.get(metric.fold_pca_kwarg)
        if given is not None and given != step.k:
            raise ValueError(f"preprocess {step.spec!r} and {metric.fold_pca_kwarg}={given!r} disagree; give one")
        return {**kwargs, metric.fold_pca_kwarg: step.k}
    if step.name != "none":
        for side, label in sides:
            side.arrays = [step.apply(a, layer=f"layer {name!r} of {label}") for name, a in zip(side.names, side.arrays)]
    return kwargs


def _prepare_part(plan: _Plan, part: _Part, prepare=None):
    """The prepared layers of one part (by ``prepare``, default the metric's), stacked along a leading layer axis.

    Layer by layer into a preallocated stack that each step updates in place (donated), so the peak memory is the
    prepared stack plus one layer: no stacked copy of the raw activations is ever made.
    """
    kw = plan.kw
    prepare = prepare or plan.metric.prepare
    fn = functools.partial(prepare or _identity, **dict(kw.static_prep))
    stack = None
    for i, X in enumerate(part.layers()):
        X = jnp.asarray(X)
        if stack is None:
            shapes = jax.eval_shape(lambda a, t: fn(a, **t), X, kw.traced_prep)
            stack = jax.tree_util.tree_map(lambda s: jnp.zeros((len(part.index),) + s.shape, s.dtype), shapes)
        stack = _prepare_into(stack, jnp.int32(i), X, kw.traced_prep, prepare=prepare, static_kw=kw.static_prep)
    return stack


def _prepare_parts(plan: _Plan, parts: list[_Part], prepare=None):
    return [_prepare_part(plan, p, prepare) for p in parts]


def _score_of(out):
    """A compare result is a scalar or a small dict with a ``"score"`` entry."""
    return out["score"] if isinstance(out, dict) else out


def _collect(block: dict, out: dict, key) -> None:
    """Keep the auxiliary outputs (:data:`AUX_NAMES`) of one block's compare results ``{direction: out}`` in
    ``block[name][key][direction]``."""
    for d, v in out.items():
        if isinstance(v, dict):
            for name in AUX_NAMES:
                if name in v:
                    block.setdefault(name, {}).setdefault(key, {})[d] = v[name]


def _block_pairs(plan: _Plan):
    """(part x index, part y index, directions to compute); within one side, y_to_x is x_to_y transposed."""
    dirs = plan.directions
    if plan.within and not plan.metric.symmetric:
        dirs = (X_TO_Y,)
    return [(a, b, dirs) for a in range(len(plan.parts_x)) for b in range(len(plan.parts_y))]


def _assemble(plan: _Plan, blocks: dict, lead_shape=(), transpose_within=True) -> dict[str, np.ndarray]:
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


def _observed(plan: _Plan, batched: bool = True, aux: dict | None = None,
              progress: bool | None = False) -> dict[str, np.ndarray]:
    """``{direction: [Lx, Ly]}`` observed scores; auxiliary per-pair outputs go to ``aux[name][direction]``."""
    if not batched:
        return _observed_loop(plan, aux, progress)
    if plan.metric.prepare_target is not None and not plan.metric.symmetric:
        return _observed_streamed(plan, aux, progress)
    kw = plan.kw
    blocks, extra = {}, {}
    pairs = _block_pairs(plan)
    with jax.default_matmul_precision("highest"), _progress.bar(len(pairs), f"{plan.metric.name} grid", "block",
                                                                progress) as bar:
        preps_x = _prepare_parts(plan, plan.parts_x)
        preps_y = preps_x if plan.within else _prepare_parts(plan, plan.parts_y)
        for a, b, dirs in pairs:
            out = jax.device_get(_grid_call(preps_x[a], preps_y[b], kw.traced_comp, compare=plan.metric.compare,
                                            static_kw=kw.static_comp, directions=dirs, chunk_size=plan.chunk_size))
            blocks[(a, b)] = {d: _score_of(v) for d, v in out.items()}
            _collect(extra, out, (a, b))
            bar.update()
    return _assembled(plan, blocks, extra, aux)


def _assembled(plan: _Plan, blocks: dict, extra: dict, aux: dict | None) -> dict[str, np.ndarray]:
    """:func:`_assemble` of the scores, and of each auxiliary output into ``aux`` (when given)."""
    if aux is not None:
        for name, per_block in extra.items():
            aux[name] = _assemble(plan, per_block)
    return _assemble(plan, blocks)


def _observed_streamed(plan: _Plan, aux: dict | None = None, progress: bool | None = False) -> dict[str, np.ndarray]:
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
    with jax.default_matmul_precision("highest"), _progress.bar(n_sources, f"{m.name} (source layers)", "layer",
                                                                progress) as bar:
        for d in dirs:
            sources, targets = (plan.parts_x, plan.parts_y) if d == X_TO_Y else (plan.parts_y, plan.parts_x)
            prepped = _prepare_parts(plan, targets, m.prepare_target)
            for s_i, part in enumerate(sources):
                rows = [{k: [] for k in names} for _ in targets]
                for X in part.layers():
                    one = jax.tree_util.tree_map(lambda a: a[None], _prepare_one(
                        jnp.asarray(X), kw.traced_prep, prepare=m.prepare, static_kw=kw.static_prep))
                    for t_i, tp in enumerate(prepped):
                        px, py = (one, tp) if d == X_TO_Y else (tp, one)
                        out = jax.device_get(_grid_call(px, py, kw.traced_comp, compare=m.compare,
                                                        static_kw=kw.static_comp, directions=(d,),
                                                        chunk_size=plan.chunk_size))[d]
                        values = out if isinstance(out, dict) else {"score": out}
                        for k, v in values.items():
                            if k in names:
                                v = np.asarray(v)
                                rows[t_i][k].append(v[0] if d == X_TO_Y else v[:, 0])
                    bar.update()
                for t_i, r in enumerate(rows):
                    key = (s_i, t_i) if d == X_TO_Y else (t_i, s_i)
                    for k, v in r.items():
                        if v:
                            blocks.setdefault(k, {}).setdefault(key, {})[d] = (
                                np.stack(v) if d == X_TO_Y else np.stack(v, axis=1))
    scores = blocks.pop("score")
    return _assembled(plan, scores, blocks, aux)


def _observed_loop(plan: _Plan, aux: dict | None = None, progress: bool | None = False) -> dict[str, np.ndarray]:
    """Fallback: one compiled compare per pair, called from a Python loop (for compares that cannot be vmapped)."""
    kw = plan.kw
    m = plan.metric
    total = len(plan.directions) * len(plan.xs.arrays) * len(plan.ys.arrays)
    with jax.default_matmul_precision("highest"), _progress.bar(total, f"{m.name} (pairs)", "pair", progress) as bar:
        px = [_prepare_one(jnp.asarray(a), kw.traced_prep, prepare=m.prepare, static_kw=kw.static_prep)
              for a in plan.xs.arrays]
        py = px if plan.within else [_prepare_one(jnp.asarray(a), kw.traced_prep, prepare=m.prepare,
                                                  static_kw=kw.static_prep) for a in plan.ys.arrays]
        out = {}
        for d in plan.directions:
            grid = np.full((len(px), len(py)), np.nan)
            for i, p in enumerate(px):
                for j, q in enumerate(py):
                    a, b = (q, p) if d == Y_TO_X else (p, q)
                    value = jax.device_get(_pair_call(a, b, kw.traced_comp, compare=m.compare,
                                                      static_kw=kw.static_comp))
                    grid[i, j] = float(_score_of(value))
                    if aux is not None and isinstance(value, dict):
                        for name in AUX_NAMES:
                            if name in value:
                                aux.setdefault(name, {}).setdefault(d, np.full(grid.shape, np.nan))[i, j] = value[name]
                    bar.update()
            out[d] = grid
    return out


def _grid_result(plan: _Plan, scores: dict[str, np.ndarray], stats=None, **extra) -> LayerGrid:
    m = plan.metric
    return LayerGrid(
        metric=m.name, kwargs=dict(plan.kw.given), layers_x=tuple(plan.xs.names), layers_y=tuple(plan.ys.names),
        scores=scores[SYMMETRIC] if m.symmetric else dict(scores), n=plan.n, symmetric=m.symmetric,
        higher_is_more_aligned=m.higher_is_more_aligned, stats=stats or {}, preprocess=plan.preprocess, **extra)
