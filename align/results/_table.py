"""Long-form results tables: one row per (experiment, dataset, condition, model pair, layer pair, metric, direction).

Each scoring job writes its rows to its own Parquet file (atomically), named by the job's fingerprint, so a rerun
skips finished jobs and an interrupted run never leaves a half-written table. ``read_results`` concatenates them.
Heatmaps are pivots of this table; best layers and condition effects are queries on it.

Every row says which way its score points (``higher_is_more_aligned``: False for distances such as
``procrustes_angular``), and every peak is taken by :func:`peak_rows`, which honours it: the maximum where higher is
more aligned, the minimum where lower is.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from align._locks import output_lock
from align._locks import remove_leftovers

#: Columns every results table has, in order (extra columns, e.g. CI bounds, follow them).
RESULT_COLUMNS = (
    "experiment", "dataset", "condition",
    "model_x", "pooling_x", "layer_x", "layer_name_x", "rel_depth_x",
    "model_y", "pooling_y", "layer_y", "layer_name_y", "rel_depth_y",
    "metric", "preprocess", "direction", "higher_is_more_aligned", "score", "n",
    "p_value", "null_mean", "ci_low", "ci_high",
    "config_fingerprint", "version",
)


#: Keys of one peak in :func:`best_layer_pairs` (those present in the table are used).
PEAK_KEYS = ("experiment", "dataset", "condition", "model_x", "pooling_x", "model_y", "pooling_y", "metric",
             "preprocess", "direction")


class LayerPair(NamedTuple):
    """One (x layer, y layer) pair of a layer grid, e.g. a peak; unpacks as ``i, j = pair``."""

    layer_x: int
    layer_y: int


def metric_direction(metric: str) -> bool:
    """Whether a higher score means more aligned for a results-table ``metric`` entry (a registered metric's name or
    spec string such as ``"rbf_cka(sigma_frac=0.5)"``), from the metric registry.

    Raises:
      ValueError: ``metric`` names no registered metric (a custom probe: register or load it first).
    """
    from align.metrics import get_metric

    match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", str(metric))
    try:
        return bool(get_metric(match.group(1) if match else str(metric)).higher_is_more_aligned)
    except ValueError:
        raise ValueError(
            f"results rows of metric {metric!r} do not say whether higher or lower is more aligned (no "
            f"higher_is_more_aligned column: a table written before align recorded it) and {metric!r} is not a "
            f"registered metric; register or load that probe (align.register_metric, align.load_probe) before "
            f"reading the table, or add the column") from None


def _filled_direction(frame: pd.DataFrame, *, strict: bool) -> pd.DataFrame:
    """``frame`` with ``higher_is_more_aligned`` set on every row: kept where present, else inferred from the
    registered metric. A metric that cannot be inferred raises when ``strict``, else its rows keep None."""
    given = (frame["higher_is_more_aligned"] if "higher_is_more_aligned" in frame.columns
             else pd.Series(None, index=frame.index, dtype=object))
    missing = given.isna().to_numpy()
    if not missing.any():
        if given.dtype != bool:
            frame = frame.assign(higher_is_more_aligned=given.astype(bool))
        return frame
    values = given.astype(object).to_numpy().copy()
    for metric in pd.unique(frame.loc[missing, "metric"]):
        rows = missing & (frame["metric"] == metric).to_numpy()
        try:
            values[rows] = metric_direction(metric)
        except ValueError:
            if strict:
                raise
    column = pd.Series(values, index=frame.index, dtype=object)
    frame = frame.assign(higher_is_more_aligned=column.astype(bool) if not column.isna().any() else column)
    return frame


def higher_is_more_aligned(frame: pd.DataFrame) -> bool:
    """Whether a higher score means more aligned for every row of ``frame`` (e.g. the rows of one heatmap or depth
    curve): its ``higher_is_more_aligned`` column, else inferred from the registered metric.

    Raises:
      ValueError: the rows point different ways (mixed metrics), or the direction is unknown (an old table of an
        unregistered probe).
    """
    if not len(frame):
        raise ValueError("higher_is_more_aligned: the results frame has no rows")
    values = pd.unique(_filled_direction(frame, strict=True)["higher_is_more_aligned"])
    if len(values) != 1:
        raise ValueError(f"the results rows mix higher- and lower-is-better metrics ({sorted(set(frame['metric']))}); "
                         f"select one metric first")
    return bool(values[0])


def write_results(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write one job's rows to ``path`` atomically (temp file, fsync, rename), with a CRC-32 checksum per page
    (verified by :func:`read_results`). Missing optional columns are NaN.

    Rows without ``higher_is_more_aligned`` get it from the registered metric (a ValueError when the metric is
    not registered).
    """
    missing = [c for c in ("experiment", "model_x", "layer_x", "model_y", "layer_y", "metric", "direction", "score")
               if c not in frame.columns]
    if missing:
        raise ValueError(f"results frame lacks required column(s) {missing}")
    frame = _filled_direction(frame.copy(), strict=True)
    for col in RESULT_COLUMNS:
        if col not in frame.columns:
            frame[col] = float("nan") if col in ("p_value", "null_mean", "ci_low", "ci_high") else None
    frame = frame[list(RESULT_COLUMNS) + [c for c in frame.columns if c not in RESULT_COLUMNS]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one writer at a time (lock <path>.lock, re-entrant); temporaries of killed writers of this table go first
    with output_lock(path):
        remove_leftovers(path.parent, targets=lambda target: target == path.name, held=True,
                         pattern=f".{glob.escape(path.name)}.*.tmp")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, write_page_checksum=True)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def read_results(path: str | Path) -> pd.DataFrame:
    """All rows under ``path`` (a results file or a folder of job files), as one DataFrame.

    Tables written before align recorded ``higher_is_more_aligned`` get it from the registered metric; rows of an
    unregistered metric keep None there, and :func:`peak_rows` refuses them with an error naming the metric.

    Raises:
      FileNotFoundError: no results file under ``path``.
      ValueError: a file is damaged (a page checksum mismatch or unreadable Parquet); names the file.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no results tables under {path}; run `align score` or `align run` first")
    frame = pd.concat([_read_table(f) for f in files], ignore_index=True)
    return _filled_direction(frame, strict=False) if "metric" in frame.columns else frame


def _read_table(path: Path) -> pd.DataFrame:
    """One results file as a DataFrame; pages are checksum-verified (files written without checksums are read
    unchecked). A damaged file raises a ValueError naming it and saying to delete it and rerun the scoring."""
    try:
        return pq.read_table(path, page_checksum_verification=True).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"results table {path} cannot be read ({e}); the file is damaged: delete it and rerun "
                         f"the scoring (`align run` or `align score` recomputes the missing job)") from None


def score_matrix(frame: pd.DataFrame, value: str = "score") -> pd.DataFrame:
    """Pivot the rows of ONE (model pair, metric, direction, condition) into a layer_x x layer_y matrix."""
    keys = ["model_x", "pooling_x", "model_y", "pooling_y", "metric", "direction", "condition", "dataset"]
    present = [k for k in keys if k in frame.columns]
    groups = frame[present].drop_duplicates()
    if len(groups) != 1:
        raise ValueError(f"score_matrix needs rows of one model pair/metric/direction/condition; got {len(groups)} groups")
    return frame.pivot_table(index="layer_x", columns="layer_y", values=value, aggfunc="first").sort_index().sort_index(axis=1)


def peak_rows(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The most aligned row of each group of ``frame`` by ``keys``: the highest score where
    ``higher_is_more_aligned``, the lowest where not (distances such as ``procrustes_angular``).

    This is the one peak finder of align: best layer pairs, peak layers of experiments and depth curves all use it.

    Args:
      frame: results rows with ``score``, and ``higher_is_more_aligned`` or a registered ``metric`` to infer it.
      keys: columns that identify one group (e.g. ``["direction"]``, or ``["rel_depth_x"]`` for a depth curve).
        A group must not mix directions (e.g. two metrics that point different ways): group by ``metric`` too.

    Returns:
      One row per group that has a score, sorted by ``keys``; a group whose scores are all NaN (undefined layers)
      gives no row. Ties go to the first row. The index is reset.

    Raises:
      ValueError: a key column is missing, a group mixes higher- and lower-is-better rows, or a row's direction
        is unknown (an old table of an unregistered probe).
    """
    keys = list(keys)
    absent = [k for k in keys + ["score"] if k not in frame.columns]
    if absent:
        raise ValueError(f"peak_rows: the results frame lacks column(s) {absent}; it has {list(frame.columns)}")
    if not len(frame):
        return frame.reset_index(drop=True)
    frame = _filled_direction(frame, strict=True).reset_index(drop=True)
    higher = frame["higher_is_more_aligned"].to_numpy(dtype=bool)
    if keys:
        mixed = frame.groupby(keys, dropna=False, sort=False)["higher_is_more_aligned"].nunique() > 1
        if mixed.any():
            raise ValueError(f"peak_rows: group(s) {list(mixed[mixed].index)[:3]} mix higher- and lower-is-better "
                             f"rows; add 'metric' to the keys ({keys}) so each group has one direction")
    elif len(np.unique(higher)) > 1:
        raise ValueError("peak_rows: the frame mixes higher- and lower-is-better rows; group it by metric (keys)")
    score = frame["score"].to_numpy(dtype=np.float64)
    aligned = pd.Series(np.where(higher, score, -score), index=frame.index)  # higher = more aligned, every row
    valid = aligned.notna().to_numpy()
    if not valid.any():
        return frame.iloc[:0]
    if not keys:
        return frame.loc[[aligned[valid].idxmax()]].reset_index(drop=True)
    idx = aligned[valid].groupby([frame.loc[valid, k] for k in keys], dropna=False, sort=True).idxmax()
    return frame.loc[idx.to_numpy()].reset_index(drop=True)


def best_layer_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """The most aligned layer pair per (experiment, dataset, condition, model pair, poolings, metric, preprocess,
    direction), those of ``PEAK_KEYS`` that ``frame`` has: the highest score, or the lowest for a lower-is-better
    metric (see :func:`peak_rows`; all-NaN groups give no row)."""
    return peak_rows(frame, [k for k in PEAK_KEYS if k in frame.columns])


def peak_layer_pairs(frame: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, LayerPair]:
    """``{group key values (a tuple): LayerPair of its peak}`` by :func:`peak_rows` (direction-aware)."""
    keys = list(keys)
    return {tuple(r[k] for k in keys): LayerPair(int(r["layer_x"]), int(r["layer_y"]))
            for _, r in peak_rows(frame, keys).iterrows()}
