"""The heatmaps of an HTML report as Plotly figures: one per (model pair, metric, direction, setting) of a results
table. Like every figure of align they only read the table (no score is computed here).

Each heatmap is a ``go.Heatmap`` of the layer grid (rows: layers of model_x, index 0 = embedding output; columns:
layers of model_y) whose hover label gives both layers' names and relative depths, the score, and the bootstrap
confidence interval and permutation p-value where the table has them. Signed scores (some below zero, e.g. debiased
CKA, RSA, predictivity) get a diverging colour scale centred on zero; others a sequential one that is bright where
more aligned (reversed for distances, where lower is more aligned).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from align.results import best_layer_pairs
from align.results import higher_is_more_aligned

#: Selector of the report -> the results columns its value is made of (those present in the table).
SELECTORS = {
    "metric": ("metric",),
    "direction": ("direction",),
    "pair": ("model_x", "pooling_x", "model_y", "pooling_y"),
    "setting": ("experiment", "dataset", "condition", "caption", "preprocess"),
}

#: Columns that identify one heatmap.
HEATMAP_COLUMNS = tuple(c for columns in SELECTORS.values() for c in columns)

#: How a number is written in hover labels and tables.
NUMBER = "{:.4f}"


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The setting columns (experiment, dataset, condition, caption, preprocess) whose value varies in ``frame``:
    those that tell its heatmaps apart (the constant ones are the same for every heatmap)."""
    return [c for c in SELECTORS["setting"] if c in frame.columns and frame[c].nunique(dropna=False) > 1]


def selector_values(row: pd.Series | dict, columns) -> dict[str, str]:
    """``{selector: its value for this row}``, e.g. ``{"pair": "dinov2 (cls) vs minilm (mean)", ...}``; the
    setting is made of ``columns`` (:func:`setting_columns`), "(one setting)" when there are none."""
    get = (lambda c: row.get(c)) if isinstance(row, dict) else (lambda c: row[c] if c in row.index else None)
    pair = f"{_text(get('model_x'))} ({_text(get('pooling_x'))}) vs {_text(get('model_y'))} ({_text(get('pooling_y'))})"
    setting = ", ".join(f"{c} {_text(get(c))}" for c in SELECTORS["setting"] if c in columns and _text(get(c)))
    return {"metric": _text(get("metric")), "direction": _text(get("direction")), "pair": pair,
            "setting": setting or "(one setting)"}


def _direction_text(row: dict) -> str:
    if row.get("direction") == "x_to_y":
        return f"{row['model_x']} predicts {row['model_y']}"
    if row.get("direction") == "y_to_x":
        return f"{row['model_y']} predicts {row['model_x']}"
    return "symmetric"


def _cell_labels(group: pd.DataFrame, nx: int, ny: int) -> np.ndarray:
    """``[ny_rows, nx_cols, 5]`` hover strings per cell: layer x, layer y, score, CI, p (empty where absent)."""
    labels = np.full((ny, nx, 5), "", dtype=object)
    for r in group.itertuples(index=False):
        i, j = int(r.layer_x), int(r.layer_y)
        labels[i, j, 0] = f"{r.layer_name_x} (layer {i}, depth {float(r.rel_depth_x):.2f})"
        labels[i, j, 1] = f"{r.layer_name_y} (layer {j}, depth {float(r.rel_depth_y):.2f})"
        if pd.notna(r.score):
            labels[i, j, 2] = NUMBER.format(float(r.score))
        else:
            reason = getattr(r, "undefined", "")
            labels[i, j, 2] = "undefined" + (f" ({reason})" if isinstance(reason, str) and reason else "")
        low, high = getattr(r, "ci_low", np.nan), getattr(r, "ci_high", np.nan)
        if pd.notna(low) and pd.notna(high):
            labels[i, j, 3] = f"<br>CI [{NUMBER.format(float(low))}, {NUMBER.format(float(high))}]"
        p = getattr(r, "p_value", np.nan)
        if pd.notna(p):
            labels[i, j, 4] = f"<br>p = {float(p):.4g}" + (
                f" (BH {float(r.p_bh):.4g})" if pd.notna(getattr(r, "p_bh", np.nan)) else "")
    return labels


def heatmap_figure(group: pd.DataFrame, scores: np.ndarray | None = None):
    """A ``plotly.graph_objects.Figure`` of the rows of one heatmap (one model pair, metric, direction, setting).

    Args:
      group: results rows of one heatmap, with layer_x, layer_y, layer_name_x/y, rel_depth_x/y and score; CI
        (ci_low, ci_high) and p (p_value, p_bh) columns are shown on hover when present.
      scores: the scores the colour range spans (default the group's own), e.g. every score of one metric and
        direction, so that heatmaps of one metric share one colour range; symmetric about zero when signed.

    Returns:
      The figure: trace 0 the heatmap (z ``[layers of x, layers of y]``, NaN = undefined, drawn as a gap), trace 1
      a star on the most aligned cell (highest score, lowest for a distance).
    """
    import plotly.graph_objects as go

    ny, nx = int(group["layer_x"].max()) + 1, int(group["layer_y"].max()) + 1
    z = np.full((ny, nx), np.nan)
    z[group["layer_x"].to_numpy(int), group["layer_y"].to_numpy(int)] = group["score"].to_numpy(float)
    finite = np.asarray(z if scores is None else scores, dtype=float)
    finite = finite[np.isfinite(finite)]
    higher = higher_is_more_aligned(group)
    row = group.iloc[0].to_dict()
    label = str(row["metric"]) + ("" if higher else " (lower = more aligned)")
    if finite.size and finite.min() < 0:  # signed scores: diverging, zero in the middle
        top = float(np.abs(finite).max())
        colours = {"colorscale": "RdBu", "reversescale": higher, "zmid": 0.0, "zmin": -top, "zmax": top}
    else:
        colours = {"colorscale": "Viridis", "reversescale": not higher}
        if finite.size:
            colours.update(zmin=float(finite.min()), zmax=float(finite.max()))
    heatmap = go.Heatmap(
        z=[[None if np.isnan(v) else float(v) for v in line] for line in z], x=list(range(nx)), y=list(range(ny)),
        customdata=_cell_labels(group, nx, ny).tolist(), colorbar={"title": {"text": label, "side": "right"}},
        hovertemplate=(f"{row['model_x']}: %{{customdata[0]}}<br>{row['model_y']}: %{{customdata[1]}}<br>"
                       "score %{customdata[2]}%{customdata[3]}%{customdata[4]}<extra></extra>"),
        hoverongaps=True, **colours)  # undefined cells say why
    figure = go.Figure(heatmap)
    best = best_layer_pairs(group)
    if len(best):
        figure.add_trace(go.Scatter(x=[int(best["layer_y"].iloc[0])], y=[int(best["layer_x"].iloc[0])],
                                    mode="markers", marker={"symbol": "star", "size": 14, "color": "white",
                                                            "line": {"color": "black", "width": 1}},
                                    hoverinfo="skip", showlegend=False, name="most aligned"))
    n = _text(row.get("n"))
    figure.update_layout(
        title={"text": f"{row['model_x']} vs {row['model_y']}: {row['metric']} ({_direction_text(row)}), n = {n}",
               "font": {"size": 14}},
        xaxis={"title": {"text": f"{row['model_y']} layer ({row.get('pooling_y')} pooling)"}, "dtick": max(1, nx // 12),
               "zeroline": False, "showgrid": False},
        yaxis={"title": {"text": f"{row['model_x']} layer ({row.get('pooling_x')} pooling)"}, "dtick": max(1, ny // 12),
               "zeroline": False, "showgrid": False},
        margin={"l": 70, "r": 20, "t": 60, "b": 60}, height=560, template="none",
        plot_bgcolor="#d9d9d9")  # undefined cells (gaps) show grey
    return figure


def heatmaps(frame: pd.DataFrame) -> list[dict]:
    """Every heatmap of a results table, for the report's page.

    Returns:
      One dict per heatmap (the heatmaps of one metric and direction share one colour range), sorted by its
      selector values: ``key`` (``{selector: value}``, see ``SELECTORS``) and
      ``figure`` (the figure's JSON: ``data`` and ``layout``).
    """
    import plotly.io as pio

    columns = [c for c in HEATMAP_COLUMNS if c in frame.columns]
    varying = setting_columns(frame)
    shared = frame.groupby(["metric", "direction"], dropna=False)["score"]  # one colour range per metric, direction
    out = []
    for values, group in frame.groupby(columns, dropna=False, sort=True):
        meta = dict(zip(columns, values))
        scores = shared.get_group((meta["metric"], meta["direction"])).to_numpy(float)
        figure = json.loads(pio.to_json(heatmap_figure(group, scores), validate=True))
        out.append({"key": selector_values(meta, varying), "figure": figure})
    return sorted(out, key=lambda h: tuple(h["key"][s] for s in SELECTORS))
