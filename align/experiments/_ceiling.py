"""Caption noise ceiling: how well one human caption of an image aligns with another caption of the same image.

COCO-style sets have several human captions per image. Scoring caption a against caption b of the same images, in
the same language model and layer, measures how much of a layer's representation is shared by two equally valid
descriptions; a vision-language score cannot be expected to exceed it. :func:`ceiling_normalised` divides a layerwise
results table by it. :func:`run_ceiling` is the layerwise experiment's step (``[experiment] ceiling = true``): it
writes ``<output>/ceiling.parquet`` and ``<output>/normalised.parquet`` beside ``results.parquet``, which it leaves
as it is (every reader of that table sees the same rows).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from align.engine import pairwise
from align.engine import resolve_metric
from align.experiments._rows import relative_depth
from align.store import ActivationStore

#: Columns of :func:`caption_ceiling`'s table, in order.
CEILING_COLUMNS = ("model", "pooling", "layer", "layer_name", "rel_depth", "metric", "direction", "ceiling",
                   "ci_low", "ci_high", "boot_low", "boot_high", "n", "n_boot", "caption_a", "caption_b",
                   "preprocess", "higher_is_more_aligned")
#: Columns :func:`ceiling_normalised` adds to a results table, in order.
NORMALISED_COLUMNS = ("ceiling", "ceiling_ci_low", "ceiling_ci_high", "score_ceiling_normalised",
                      "normalised_ci_low", "normalised_ci_high")


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

    The interval: for linear predictivity, the percentile interval of its held-out predictions resampled over images
    (fitted once; see :func:`align.pairwise`). For a metric recomputed on each resample (CKA, RSA, kNN, ...), the
    copies of an image that a resample holds inflate the score (on COCO, n = 300, every linear-CKA draw of the top
    Gemma3 layer lay 0.03-0.09 above the estimate: percentile interval [0.475, 0.539] around 0.448), so
    ``ci_low``/``ci_high`` are the percentile interval's width centred on the estimate (ceiling ± (q_high -
    q_low) / 2), and the plain percentile interval is kept in ``boot_low``/``boot_high``.

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
      direction, ceiling, ci_low, ci_high, boot_low, boot_high (the percentile interval of the resampled
      scores), n (images), n_boot, caption_a, caption_b, preprocess, higher_is_more_aligned.

    Raises:
      ValueError: the store is not a caption store, ``caption_a == caption_b``, or fewer than 4 images have both
        captions (e.g. a store with one caption per image); errors of :func:`align.pairwise` (unknown metric, ...).
    """
    rows_a, rows_b = _caption_pairs(caption_store, int(caption_a), int(caption_b))
    heldout = resolve_metric(metric)[0].paired_statistic == "heldout_ridge"  # its interval needs no centring
    records = []
    for layer in range(caption_store.n_layers):
        values = caption_store.layer(layer)
        grid = pairwise(metric, [values[rows_a]], [values[rows_b]], metric_kwargs=metric_kwargs, n_boot=n_boot,
                        ci=ci, seed=seed, preprocess=preprocess)
        for direction in grid.directions:
            stats = grid.stats.get(direction, {})
            score = float(grid.score(direction)[0, 0])
            boot = [float(stats[c][0, 0]) if c in stats else np.nan for c in ("ci_low", "ci_high")]
            low, high = boot if heldout else (score - (boot[1] - boot[0]) / 2, score + (boot[1] - boot[0]) / 2)
            records.append({
                "model": caption_store.meta.get("model"), "pooling": caption_store.meta.get("pooling"),
                "layer": layer, "layer_name": caption_store.layer_names[layer],
                "rel_depth": relative_depth(layer, caption_store.n_layers), "metric": metric,
                "direction": direction, "ceiling": score, "ci_low": low, "ci_high": high,
                "boot_low": boot[0], "boot_high": boot[1],
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

    The interval of a normalised score is the ceiling's bootstrap percentile interval carried through the
    division: [score / ceiling_ci_high, score / ceiling_ci_low] (ordered), i.e. the uncertainty of the ceiling over
    resamples of the images with the score held fixed; NaN when the ceiling has no interval or its interval reaches
    0 or below (the ratio is then unbounded).

    Args:
      table: long-form layerwise results (columns metric, direction, layer_y, score; model_y, pooling_y,
        preprocess when present).
      ceiling: a table of :func:`caption_ceiling`.

    Returns:
      A copy of ``table`` (row order kept) with the columns ``ceiling``, ``ceiling_ci_low``, ``ceiling_ci_high``
      (the language layer's ceiling and its interval), ``score_ceiling_normalised`` (score / ceiling),
      ``normalised_ci_low`` and ``normalised_ci_high``.

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
    ceiling = ceiling.assign(ceiling_ci_low=ceiling.get("ci_low", np.nan),
                             ceiling_ci_high=ceiling.get("ci_high", np.nan))
    right = ceiling[keys + ["ceiling", "ceiling_ci_low", "ceiling_ci_high"]].drop_duplicates(keys)
    # only the keys of the table's rows: its own columns (its score's ci_low, say) stay out of the merge
    left = pd.DataFrame({"metric": table["metric"].to_numpy(), "direction": table["direction"].to_numpy(),
                         "layer": table["layer_y"].to_numpy().astype(np.int64)})
    for column, own in (("model", "model_y"), ("pooling", "pooling_y"), ("preprocess", "preprocess")):
        if column in keys:
            left[column] = table[own].to_numpy()
    merged = left.merge(right.astype({"layer": np.int64}), on=keys, how="left",
                                               validate="many_to_one")
    if merged["ceiling"].isna().all():
        raise ValueError(f"no row of the results table matches the ceiling (metric {sorted(set(ceiling.metric))}, "
                         f"directions {sorted(set(ceiling.direction))}, language model "
                         f"{sorted(set(ceiling.get('model', pd.Series(dtype=object)).dropna()))})")
    out = table.drop(columns=list(NORMALISED_COLUMNS), errors="ignore").copy()
    score = out["score"].to_numpy(dtype=np.float64)
    low, high = (merged[c].to_numpy(dtype=np.float64) for c in ("ceiling_ci_low", "ceiling_ci_high"))
    out["ceiling"] = merged["ceiling"].to_numpy(dtype=np.float64)
    out["ceiling_ci_low"], out["ceiling_ci_high"] = low, high
    out["score_ceiling_normalised"] = score / out["ceiling"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        bounded = low > 0  # NaN (no interval) compares False too
        a, b = np.where(bounded, score / high, np.nan), np.where(bounded, score / low, np.nan)
    out["normalised_ci_low"], out["normalised_ci_high"] = np.fmin(a, b), np.fmax(a, b)
    return out


def ceiling_extract_config(cfg):
    """The config whose extraction gives the stores :func:`run_ceiling` scores: ``cfg``'s language models on every
    caption of each image (``score.caption = "mean"``: rows ``<image>#<k>``, the stores the caption aggregation
    experiment shares)."""
    from align.experiments._stores import split_by_modality

    return dataclasses.replace(split_by_modality(cfg)[1], score=dataclasses.replace(cfg.score, caption="mean"))


def run_ceiling(cfg, stores: Mapping[Any, Path], results: Path, *, log: Callable[[str], None] = print) -> Path:
    """The caption ceiling step of a layerwise run (``[experiment] ceiling = true``).

    Takes the stores of every language model of ``cfg`` on every caption of each image (the extraction of
    :func:`ceiling_extract_config`, rows ``<image>#<k>``), scores caption 0 against
    caption 1 of each image with :func:`caption_ceiling` for every (language store, metric, preprocessing option)
    with ``experiment.ceiling_boot`` resamples and ``experiment.seed`` (one cached job each under
    ``<output>/ceiling_jobs/``), and writes:

    - ``<output>/ceiling.parquet``: the ceiling table (:data:`CEILING_COLUMNS`; one row per language model,
      pooling, layer, metric, preprocessing and direction, with its interval and n images);
    - ``<output>/normalised.parquet``: the rows of ``results`` whose metric is a similarity, with the columns of
      :func:`ceiling_normalised` (score / ceiling of the row's language layer ``layer_y``; x_to_y by the x_to_y
      ceiling, y_to_x by the y_to_x one, symmetric by the symmetric one). Distance metrics get a ceiling but no
      normalised rows.

    ``results.parquet`` itself is not changed.

    Args:
      cfg: the validated layerwise config.
      stores: the every-caption language stores (values: store paths), on a set with at least 2 captions on at
        least 4 images.
      results: the layerwise results table (``<output>/results.parquet``).
      log: where progress lines go.

    Returns:
      The path of ``ceiling.parquet`` (``normalised.parquet`` lies beside it).

    Raises:
      ValueError: too few images with two captions (see :func:`caption_ceiling`).
    """
    from align._locks import output_lock
    from align.experiments._driver import job_key
    from align.experiments._driver import store_identity
    from align.experiments._driver import write_frame
    from align.results import read_results
    from align.store import open_store

    ex, out = cfg.experiment, cfg.output_dir
    frames = []
    for path in stores.values():
        store = open_store(path)
        for metric in cfg.score.metrics:
            for option in cfg.score.preprocess_options:
                key = job_key(kind="ceiling", store=store_identity(store), metric=metric, preprocess=option,
                              n_boot=ex.ceiling_boot, seed=ex.seed, captions=[0, 1],
                              columns=list(CEILING_COLUMNS))  # a table of other columns is recomputed
                job = out / "ceiling_jobs" / f"{key}.parquet"
                label = f"ceiling {store.meta.get('model')}({store.meta.get('pooling')}) {metric} ({option})"
                with output_lock(job, log=log):
                    if job.exists():
                        log(f"  {label}: exists, skipped")
                    else:
                        t0 = time.perf_counter()
                        write_frame(caption_ceiling(store, metric, n_boot=ex.ceiling_boot, seed=ex.seed,
                                                    preprocess=option), job)
                        log(f"  {label}: {store.n_layers} layers in {time.perf_counter() - t0:.1f} s")
                frames.append(pd.read_parquet(job))
    ceiling = pd.concat(frames, ignore_index=True)
    path = write_frame(ceiling, out / "ceiling.parquet")
    table = read_results(results)
    similar = ceiling[ceiling["higher_is_more_aligned"].astype(bool)]
    rows = table[table["metric"].isin(set(similar["metric"]))]
    normalised = ceiling_normalised(rows, similar) if len(rows) else rows.assign(
        **{c: pd.Series(dtype=np.float64) for c in NORMALISED_COLUMNS})
    write_frame(normalised.reset_index(drop=True), out / "normalised.parquet")
    return path
