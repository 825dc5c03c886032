"""The engine's inputs: the metric and its keyword arguments, each model's layers ("sides"), rows paired by stimulus
id, validation at the boundary, the per-layer preprocessing step and the directions to compute."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

import align.metrics  # noqa: F401  (registers the built-in metrics)
from align.engine._layergrid import SYMMETRIC
from align.engine._layergrid import X_TO_Y
from align.engine._layergrid import Y_TO_X
from align.metrics import Metric
from align.metrics import get_metric
from align.metrics import parse_metric_spec
from align.metrics import MetricInputError
from align.metrics import check_array


def resolve_metric(metric: str | Metric, metric_kwargs: Mapping[str, Any] | None = None) -> tuple[Metric, dict]:
    """(Metric, keyword arguments) from a registered name, a spec string ``"rbf_cka(sigma_frac=0.5)"`` or a Metric.

    Keyword arguments in ``metric_kwargs`` override those of the spec string. Names the metric does not accept are
    checked later, by ``Metric.split_kwargs`` (a ValueError listing the accepted ones).
    """
    if metric_kwargs is not None and not isinstance(metric_kwargs, Mapping):
        raise TypeError(f"metric_kwargs must be a mapping of the metric's keyword arguments (or None), got "
                        f"{type(metric_kwargs).__name__}")
    kwargs = dict(metric_kwargs or {})
    if isinstance(metric, Metric):
        return metric, kwargs
    if isinstance(metric, str):
        if "(" in metric:
            m, spec_kwargs = parse_metric_spec(metric)
            return m, {**spec_kwargs, **kwargs}
        return get_metric(metric.strip()), kwargs
    raise TypeError(f"metric must be a registered name, a spec string or a Metric, got {type(metric).__name__}")


def directions_of(metric: Metric, direction: str | None) -> tuple[str, ...]:
    """The directions to compute: ``("symmetric",)``, both asymmetric ones, or the one asked for."""
    if metric.symmetric:
        return (SYMMETRIC,)
    if direction is None:
        return (X_TO_Y, Y_TO_X)
    if direction not in (X_TO_Y, Y_TO_X):
        raise ValueError(f"direction must be None, {X_TO_Y!r} or {Y_TO_X!r}, got {direction!r}")
    return (direction,)


@dataclasses.dataclass
class Side:
    """One model's layers: names, ``[n, d_l]`` float32 arrays, optional stimulus ids, and where they came from."""

    names: list[str]
    arrays: list[np.ndarray]
    stimulus_ids: list[str] | None
    source: Any


def as_side(layers, label: str) -> Side:
    """A :class:`Side` from a sequence or mapping of ``[n, d]`` arrays, one ``[n, d]`` array or an ActivationStore."""
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
    return Side(names, arrays, list(ids) if ids is not None else None, layers)


def pair_rows(xs: Side, ys: Side, align_by_id: bool) -> None:
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


def validate_side(side: Side, label: str, metric: Metric) -> None:
    """Every layer finite float32 with at least ``metric.min_n`` rows (in place; MetricInputError naming it)."""
    side.arrays = [check_array(a, f"layer {name!r} of {label}", min_n=metric.min_n)
                   for name, a in zip(side.names, side.arrays)]


def check_n(*sides: tuple[Side, str]) -> int:
    """The common number of rows (stimuli) of every layer of every side; MetricInputError when they differ."""
    n = sides[0][0].arrays[0].shape[0]
    for side, label in sides:
        for name, a in zip(side.names, side.arrays):
            if a.shape[0] != n:
                raise MetricInputError(
                    f"layer {name!r} of {label} has {a.shape[0]} rows but the first layer of {sides[0][1]} has {n}; "
                    "rows are stimuli and must be paired one to one (align the stores by stimulus id first)")
    return n


def preprocess_sides(step, metric: Metric, kwargs: dict, *sides: tuple[Side, str]) -> dict:
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
