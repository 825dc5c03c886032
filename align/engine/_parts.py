"""Stacking one side's layers into parts of equal prepared shape, so a part is one compiled call.

Layers of different widths are stacked as they are when the prepared shapes do not depend on width (centered Grams,
RDMs); otherwise they are zero-padded to the widest layer of their width bucket (widths within a factor
:data:`PAD_RATIO` of each other) when the metric says ``pad_invariant`` (its value does not change under zero
feature columns), and only otherwise split into groups of equal shape.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from align.engine._kwargs import Kwargs
from align.metrics import Metric

#: Layers whose widths differ by at most this factor are zero-padded to one width and stacked; wider spreads are
#: split (one compiled call per pair of buckets), so that e.g. a CNN's 16-wide first layers are not padded to its
#: 1280-wide last one (which made linear predictivity ~4x slower on MobileNetV2).
PAD_RATIO = 2


@dataclasses.dataclass(frozen=True)
class Part:
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
                yield a if self.pad_to is None else pad(a, self.pad_to)

    def stacks(self) -> tuple[np.ndarray, ...]:
        """Raw ``[L_g, n, d_g]`` stacks, one per group (one stack when padded), for statistics that re-prepare."""
        if self.pad_to is not None:
            return (np.stack(list(self.layers())),)
        return tuple(np.stack(g) for g in self.groups)


def pad(a: np.ndarray, width: int) -> np.ndarray:
    """``a`` ``[n, d]`` with zero feature columns appended up to ``width``."""
    return a if a.shape[1] == width else np.pad(a, ((0, 0), (0, width - a.shape[1])))


def prep_signature(metric: Metric, n: int, d: int, kw: Kwargs):
    """The tree structure and leaf shapes of the prepared form of an ``[n, d]`` layer (no computation)."""
    if metric.prepare is None:
        return ((n, d),)
    fn = functools.partial(metric.prepare, **dict(kw.static_prep))
    with jax.default_matmul_precision("highest"):
        out = jax.eval_shape(lambda X, t: fn(X, **t), jax.ShapeDtypeStruct((n, d), jnp.float32), kw.traced_prep)
    leaves, treedef = jax.tree_util.tree_flatten(out)
    return treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves)


def width_buckets(widths: list[int]) -> list[list[int]]:
    """Sorted widths grouped greedily from the narrowest: each bucket spans at most ``PAD_RATIO``."""
    buckets: list[list[int]] = []
    for d in sorted(widths):
        if buckets and d <= PAD_RATIO * buckets[-1][0]:
            buckets[-1].append(d)
        else:
            buckets.append([d])
    return buckets


def parts_of(metric: Metric, arrays: list[np.ndarray], kw: Kwargs) -> list[Part]:
    """The layers ``arrays`` of one side as parts of equal prepared shape (one part when the shape does not depend
    on the width; pad buckets for a pad-invariant metric; else one part per prepared shape)."""
    n = arrays[0].shape[0]
    widths = sorted({a.shape[1] for a in arrays})
    by_width = {d: [i for i, a in enumerate(arrays) if a.shape[1] == d] for d in widths}
    signature = {d: prep_signature(metric, n, d, kw) for d in widths}

    def part(ds, pad_to=None):
        index = [i for d in ds for i in by_width[d]]
        return Part(np.asarray(index), tuple(tuple(arrays[i] for i in by_width[d]) for d in ds), pad_to)

    if len(set(signature.values())) == 1:
        return [part(widths)]
    if metric.pad_invariant:
        return [part(bucket, pad_to=bucket[-1]) for bucket in width_buckets(widths)]
    shapes = list(dict.fromkeys(signature.values()))
    return [part([d for d in widths if signature[d] == s]) for s in shapes]
