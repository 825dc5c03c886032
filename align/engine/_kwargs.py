"""A metric's keyword arguments split for jit: static (hashable, they shape the compiled program) and traced
(float arrays, swept without recompiling), separately for ``prepare`` and ``compare``.

jit discipline: the metric's ``static`` keyword arguments (and any non-numeric or integer argument: kinds, counts,
fold layouts) are static; float arguments (alphas, quantiles, bandwidths) are traced, so sweeping them does not
recompile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from align.metrics import Metric


def hashable(v):
    """``v`` with arrays, lists and dicts turned into (nested, sorted) tuples, so it can key a cache or a jit."""
    if isinstance(v, np.ndarray):
        return tuple(v.tolist())
    if isinstance(v, (list, tuple)):
        return tuple(hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, hashable(x)) for k, x in v.items()))
    return v


def traceable(v) -> bool:
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
class Kwargs:
    """A metric's keyword arguments split for jit: static (hashable tuples) and traced (arrays), per stage.

    Attributes:
      static_prep, traced_prep: the ``prepare`` keyword arguments.
      static_comp, traced_comp: the ``compare`` keyword arguments.
      given: the keyword arguments as given (spec string and ``metric_kwargs``; defaults not repeated).
      merged: every keyword argument, defaults included.
    """

    static_prep: tuple
    traced_prep: dict
    static_comp: tuple
    traced_comp: dict
    given: dict
    merged: dict


def split_kwargs(metric: Metric, kwargs: Mapping[str, Any]) -> Kwargs:
    """:class:`Kwargs` of ``kwargs`` over the metric's defaults (a ValueError for a name the metric does not take)."""
    prep, comp = metric.split_kwargs(kwargs)

    def split(d):
        static, traced = {}, {}
        for k, v in d.items():
            if k in metric.static or not traceable(v):
                static[k] = hashable(v)
            elif isinstance(v, (float, np.floating)):
                traced[k] = jnp.asarray(v, jnp.float32)
            else:
                traced[k] = jnp.asarray(np.asarray(v), jnp.float32)
        return tuple(sorted(static.items())), traced

    sp, tp = split(prep)
    sc, tc = split(comp)
    return Kwargs(sp, tp, sc, tc, dict(kwargs), {**prep, **comp})
