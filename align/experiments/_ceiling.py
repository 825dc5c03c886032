"""Caption noise ceiling: how well one human caption of an image aligns with another caption of the same image.

COCO-style sets have several human captions per image. Scoring caption a against caption b of the same images, in
the same language model and layer, measures how much of a layer's representation is shared by two equally valid
descriptions; a vision-language score cannot be expected to exceed it. :func:`ceiling_normalised` divides a layerwise
results table by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from align.engine import pairwise
from align.experiments._rows import relative_depth
from align.store import ActivationStore

#: Columns of :func:`caption_ceiling`'s table, in order.
CEILING_COLUMNS = ("model", "pooling", "layer", "layer_name", "rel_depth", "metric", "direction", "ceiling",
                   "ci_low", "ci_high", "n", "n_boot", "caption_a", "caption_b", "preprocess",
                   "higher_is_more_aligned")


def _caption_index(stimulus_id: str) -> int | None:
    """k of a caption id ``<image>#<k>`` (None when the id has no integer suffix)."""
    head, sep, tail = stimulus_id.rpartition("#")
    return int(tail) if sep and head and tail.isdigit() else None


def _caption_pairs(store: ActivationStore, caption_a: int, caption_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of caption a and caption b of every image that has both (in store order)."""
    if store.groups is None:
        raise ValueError(f"{store.path} has no group_id column; a caption ceiling needs a caption store (rows "
                         "'<image>#<k>' grouped by image)")
    if caption_a == caption_b:
        raise ValueError(f"caption_a and caption_b are both {caption_a}; a ceiling compares two different captions")
    by_image: dict[str, dict[int, int]] = {}
    for row, (image, sid) in enumerate(zip(store.groups, store.stimulus_ids)):
        by_image.setdefault(image, {})[_caption_index(sid)] = row
    both = [c for c in by_image.values() if caption_a in c and caption_b in c]
    if len(both) < 4:
        most = max(len(c) for c in by_image.values()) if by_image else 0
        raise ValueError(
            f"{store.path}: only {len(both)} of {len(by_image)} images have both caption {caption_a} and caption "
            f"{caption_b} (at most {most} caption(s) per image); a caption ceiling needs at least 2 captions per image "
            "on at least 4 images (extract the caption store with all captions, e.g. caption = \"mean\")")
    return np.array([c[caption_a] for c in both]), np.array([c[caption_b] for c in both])


def caption_ceiling(caption_store: ActivationStore, metric: str = "linear_predictivity", *, caption_a: int = 0,
                    caption_b: int = 1, n_boot: int = 100, ci: float = 0.95, seed: int = 0,
                    metric_kwargs: Mapping[str, Any] | None = None, preprocess: str = "none") -> pd.DataFrame:
    """Per language layer, the metric between caption a and caption b of the same images (a noise ceiling).

    For every layer l of the caption store, the rows of caption ``caption_a`` (ids ``<image>#<caption_a>``) and of
    caption ``caption_b`` of the images that have both are scored with :func:`align.pairwise` (layer l against layer
    l only, the diagonal of a within-model grid; rows paired by image), with a bootstrap percentile interval over
    images. For an asymmetric metric both directions are returned: ``x_to_y`` (caption a predicts caption b) and
    ``y_to_x`` (caption b predicts caption a).

    Args:
      caption_store: a language store holding several captions per image (``group_id`` = image id, stimulus ids
        ``<image>#<k>``), e.g. one extracted with ``caption = "mean"``.
      metric: metric spec, as in :func:`align.pairwise` (written to the ``metric`` column as given).
      caption_a, caption_b: the two caption indices k compared (different).
      n_boot: bootstrap resamples of the images behind ``ci_low``/``ci_high`` (0: no interval, NaN columns).
      ci: coverage of the interval.
      seed: seed of the resamples.
      metric_kwargs: metric keyword arguments.
      preprocess: per-layer preprocessing before the metric (as in :func:`align.pairwise`); use the one of the
        scores you normalise.

    Returns:
      A tidy DataFrame, one row per (layer, direction): model, pooling, layer, layer_name, rel_depth, metric,
      direction, ceiling, ci_low, ci_high, n (images), n_boot, caption_a, caption_b, preprocess,
      higher_is_more_aligned.

    Raises:
      ValueError: the store is not a caption store, ``caption_a == caption_b``, or fewer than 4 images have both
        captions (e.g. a store with one caption per image); errors of :func:`align.pairwise` (unknown metric, ...).
    """
    rows_a, rows_b = _caption_pairs(caption_store, int(caption_a), int(caption_b))
    records = []
    for layer in range(caption_store.n_layers):
        values = caption_store.layer(layer)
        grid = pairwise(metric, [values[rows_a]], [values[rows_b]], metric_kwargs=metric_kwargs, n_boot=n_boot,
                        ci=ci, seed=seed, preprocess=preprocess)
        for direction in grid.directions:
            stats = grid.stats.get(direction, {})
            records.append({
                "model": caption_store.meta.get("model"), "pooling": caption_store.meta.get("pooling"),
                "layer": layer, "layer_name": caption_store.layer_names[layer],
                "rel_depth": relative_depth(layer, caption_store.n_layers), "metric": metric,
                "direction": direction, "ceiling": float(grid.score(direction)[0, 0]),
                "ci_low": float(stats["ci_low"][0, 0]) if "ci_low" in stats else np.nan,
                "ci_high": float(stats["ci_high"][0, 0]) if "ci_high" in stats else np.nan,
                "n": grid.n, "n_boot": n_boot, "caption_a": int(caption_a), "caption_b": int(caption_b),
                "preprocess": grid.preprocess, "higher_is_more_aligned": grid.higher_is_more_aligned})
    return pd.DataFrame.from_records(records, columns=list(CEILING_COLUMNS))


def ceiling_normalised(table: pd.DataFrame, ceiling: pd.DataFrame) -> pd.DataFrame:
    """A layerwise results table with ``score_ceiling_normalised`` = score / ceiling of its language layer.

    Each row (vision layer ``layer_x``, language layer ``layer_y``) is divided by the caption ceiling of language
    layer ``layer_y`` with the same metric and direction: a symmetric score by the symmetric ceiling; for an
    asymmetric metric, vision→language (``x_to_y``) by the ``x_to_y`` ceiling of the language layer (caption a
    predicting caption b: how predictable that layer's representation of an image is at best) and language→vision
    (``y_to_x``) by the ``y_to_x`` ceiling (caption b predicting caption a: how good that layer's representation is
    as a predictor). When the ceiling table names a model (and pooling), only rows of that language model are
    normalised; when both tables have a ``preprocess`` column it must match too. Rows without a ceiling get NaN.

    Args:
      table: long-form layerwise results (columns metric, direction, layer_y, score; model_y, pooling_y,
        preprocess when present).
      ceiling: a table of :func:`caption_ceiling`.

    Returns:
      A copy of ``table`` with ``ceiling`` and ``score_ceiling_normalised`` columns (row order kept).

    Raises:
      ValueError: missing columns, a distance metric in the ceiling (a ratio of distances is no fraction of a
        ceiling), or no row of ``table`` matching the ceiling.
    """
    missing = [c for c in ("metric", "direction", "layer_y", "score") if c not in table.columns]
    if missing:
        raise ValueError(f"the results table lacks the columns {missing} needed for ceiling normalisation")
    if not ceiling["higher_is_more_aligned"].all():
        raise ValueError(f"the ceiling's metric {sorted(set(ceiling.metric))} is a distance; normalising by a "
                         "ceiling needs a similarity metric (0 = unrelated)")
    keys = ["metric", "direction", "layer"]
    for column, own in (("model", "model_y"), ("pooling", "pooling_y"), ("preprocess", "preprocess")):
        if column in ceiling.columns and own in table.columns and ceiling[column].notna().all():
            keys.append(column)
    right = ceiling[keys + ["ceiling"]].drop_duplicates(keys)
    left = table.drop(columns=["ceiling", "score_ceiling_normalised"], errors="ignore").copy()
    left["layer"] = left["layer_y"].astype(np.int64)
    for column, own in (("model", "model_y"), ("pooling", "pooling_y")):
        if column in keys:
            left[column] = left[own]
    merged = left.reset_index(drop=True).merge(right.astype({"layer": np.int64}), on=keys, how="left",
                                               validate="many_to_one")
    if merged["ceiling"].isna().all():
        raise ValueError(f"no row of the results table matches the ceiling (metric {sorted(set(ceiling.metric))}, "
                         f"directions {sorted(set(ceiling.direction))}, language model "
                         f"{sorted(set(ceiling.get('model', pd.Series(dtype=object)).dropna()))})")
    out = table.copy()
    out["ceiling"] = merged["ceiling"].to_numpy()
    out["score_ceiling_normalised"] = out["score"].to_numpy() / out["ceiling"].to_numpy()
    return out
