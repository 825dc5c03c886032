"""A metric's keyword arguments split for jit: static (hashable, they shape the compiled program) and traced
(float arrays, swept without recompiling), separately for ``prepare`` and ``compare``.

jit discipline: the metric's ``static`` keyword arguments (and any non-numeric or integer argument: kinds, counts,
fold layouts) are static; float arguments (alphas, quantiles, bandwidths) are traced, so sweeping them does not
recompile.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from align.metrics import Metric
from align.stats import resampled_fold_ids
from align.stats import stacked_fold_rows

#: The ``prepare`` keyword through which the engine's bootstrap hands a metric with folds each resample's own fold
#: layout (``align.stats.stacked_fold_rows`` plus ``groups``, the original stimulus of every row).
FOLD_ROWS_KWARG = "fold_rows"


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


def resample_fold_rows(metric: Metric, kw: Kwargs, rows: np.ndarray) -> dict | None:
    """Each bootstrap resample's cross-validation folds, grouped by original stimulus, for a metric that declares
    ``folds`` among its ``prepare`` keyword arguments; None for any other metric.

    A resample draws some stimuli several times. Folds laid over its rows as if they were distinct stimuli put
    copies of one stimulus in a training and a held-out fold, so the held-out score rewards memorisation and the
    bootstrap distribution sits above the observed score. Here every copy of a stimulus is in one fold
    (``align.stats.resampled_fold_ids`` with the metric's ``folds`` and ``seed``); the metric's ``prepare`` takes the
    layout as ``fold_rows=`` (traced: the fold sizes differ between resamples, one compiled program serves all).

    Args:
      metric: the metric.
      kw: its keyword arguments (``kw.merged`` holds ``folds`` and ``seed``).
      rows: ``[B, n]`` original stimulus index of every row of each resample.

    Returns:
      ``{"train", "train_valid", "test", "test_valid": [B, F, width], "groups": [B, n]}`` NumPy arrays, or None.

    Raises:
      ValueError: the metric declares ``folds`` but its ``prepare`` (or ``prepare_target``) takes no ``fold_rows``.
    """
    if "folds" not in metric.prepare_kwargs:
        return None
    for fn in (metric.prepare, metric.prepare_target):
        if fn is not None and FOLD_ROWS_KWARG not in inspect.signature(fn).parameters:
            raise ValueError(
                f"metric {metric.name!r} declares cross-validation folds but its {fn.__name__} takes no "
                f"{FOLD_ROWS_KWARG}= argument: its bootstrap would put copies of a resampled stimulus in training "
                "and held-out folds (an upward bias); accept the per-resample layout (align.stats.fold_layout)")
    rows = np.asarray(rows)
    ids = resampled_fold_ids(rows, kw.merged["folds"], kw.merged.get("seed", 0))
    return {**stacked_fold_rows(ids, int(ids.max()) + 1), "groups": rows.astype(np.int32)}
