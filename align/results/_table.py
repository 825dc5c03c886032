"""Long-form results tables: one row per (experiment, dataset, condition, model pair, layer pair, metric, direction).

Each scoring job writes its rows to its own Parquet file (atomically), named by the job's fingerprint, so a rerun
skips finished jobs and an interrupted run never leaves a half-written table. ``read_results`` concatenates them.
Heatmaps are pivots of this table; best layers and condition effects are queries on it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Columns every results table has, in order (extra columns, e.g. CI bounds, follow them).
RESULT_COLUMNS = (
    "experiment", "dataset", "condition",
    "model_x", "pooling_x", "layer_x", "layer_name_x", "rel_depth_x",
    "model_y", "pooling_y", "layer_y", "layer_name_y", "rel_depth_y",
    "metric", "direction", "score", "n",
    "p_value", "null_mean", "ci_low", "ci_high",
    "config_fingerprint", "version",
)


def write_results(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write one job's rows to ``path`` atomically (temp file, fsync, rename). Missing optional columns are NaN."""
    missing = [c for c in ("experiment", "model_x", "layer_x", "model_y", "layer_y", "metric", "direction", "score")
               if c not in frame.columns]
    if missing:
        raise ValueError(f"results frame lacks required column(s) {missing}")
    frame = frame.copy()
    for col in RESULT_COLUMNS:
        if col not in frame.columns:
            frame[col] = float("nan") if col in ("p_value", "null_mean", "ci_low", "ci_high") else None
    frame = frame[list(RESULT_COLUMNS) + [c for c in frame.columns if c not in RESULT_COLUMNS]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_results(path: str | Path) -> pd.DataFrame:
    """All rows under ``path`` (a results file or a folder of job files), as one DataFrame."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no results tables under {path}; run `align score` or `align run` first")
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def score_matrix(frame: pd.DataFrame, value: str = "score") -> pd.DataFrame:
    """Pivot the rows of ONE (model pair, metric, direction, condition) into a layer_x x layer_y matrix."""
    keys = ["model_x", "pooling_x", "model_y", "pooling_y", "metric", "direction", "condition", "dataset"]
    present = [k for k in keys if k in frame.columns]
    groups = frame[present].drop_duplicates()
    if len(groups) != 1:
        raise ValueError(f"score_matrix needs rows of one model pair/metric/direction/condition; got {len(groups)} groups")
    return frame.pivot_table(index="layer_x", columns="layer_y", values=value, aggfunc="first").sort_index().sort_index(axis=1)


def best_layer_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """The highest-scoring layer pair per (dataset, condition, model pair, poolings, metric, direction)."""
    keys = [k for k in ("experiment", "dataset", "condition", "model_x", "pooling_x", "model_y", "pooling_y",
                        "metric", "direction") if k in frame.columns]
    idx = frame.groupby(keys, dropna=False)["score"].idxmax()
    return frame.loc[idx.values].reset_index(drop=True)
