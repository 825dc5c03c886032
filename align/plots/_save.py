"""Saving heatmaps: one file per format (PNG, vector PDF/SVG) plus the matrix as CSV per heatmap of a results table,
and optionally every model pair on one page (``all_pairs.<format>``).

Saved heatmaps are keyed by what made them: each file carries, in its metadata, a hash of its table rows (every
identifying column, the layer pairs, scores, n and p-values) and of the drawing settings (dpi, colour scale,
correction); a heatmap is redrawn unless every file is complete and carries the same key and its CSV holds the same
matrix. Files are written atomically (a temporary file in the same folder, then a rename), so a kill never leaves a
truncated figure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from align._locks import output_lock
from align._locks import remove_leftovers
from align.plots._heatmap import lower_is_more_aligned
from align.plots._heatmap import plot_layer_heatmap
from align.plots._panels import ROW_KEYS
from align.plots._panels import plot_all_pairs
from align.plots._style import colour_scale
from align.results import score_matrix

#: Columns that identify one heatmap (``caption``: which captions were embedded; ``preprocess``: the per-layer
#: preprocessing before the metric; both change the scores, so both name the figure).
HEATMAP_KEYS = ("experiment", "dataset", "condition", "model_x", "pooling_x", "model_y", "pooling_y", "metric",
                "direction", "caption", "preprocess")

#: Columns of a heatmap's rows that its key covers (besides ``HEATMAP_KEYS``): everything drawn.
_DRAWN_COLUMNS = ("layer_x", "layer_y", "score", "n", "higher_is_more_aligned", "p_bh", "p_maxstat")

#: Bump when the drawing changes, so that saved heatmaps are redrawn.
_DRAWING_VERSION = 3

#: Formats heatmaps are saved in.
FORMATS = ("png", "pdf", "svg")

#: Stem of the page of every model pair.
ALL_PAIRS = "all_pairs"

_KEY_FIELD = "align heatmap key"  # PNG text chunk
_KEY_PREFIX = "align-heatmap-key:"  # PDF Keywords / SVG description
_KEY_PATTERN = re.compile(re.escape(_KEY_PREFIX) + r"([0-9a-f]{16})")

#: Vector text stays text (editable in Illustrator/Inkscape): TrueType in PDF, <text> in SVG.
_VECTOR_RC = {"pdf.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "align"}


def heatmap_key(frame: pd.DataFrame, *, dpi: int, settings: dict | None = None) -> str:
    """16 hex chars that change whenever the figure of ``frame`` (its rows) would change: a hash of its identifying
    columns, layer pairs, scores, n and p-values (row order does not matter), the dpi, the drawing ``settings``
    (colour limits, map, correction) and the drawing version."""
    columns = [c for c in (*HEATMAP_KEYS, *_DRAWN_COLUMNS) if c in frame.columns]
    rows = frame[columns].sort_values([*(c for c in HEATMAP_KEYS if c in columns), "layer_x", "layer_y"],
                                      kind="stable").to_csv(index=False)
    blob = json.dumps({"drawing": _DRAWING_VERSION, "dpi": int(dpi), "rows": rows, "settings": settings or {}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def saved_heatmap_key(path: str | Path) -> str | None:
    """The key stored in a saved figure (``.png``, ``.pdf`` or ``.svg``), or None when ``path`` is missing,
    incomplete (a truncated file) or not a figure saved by ``save_heatmaps``."""
    path = Path(path)
    try:
        if path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                image.load()  # decodes every pixel: a truncated file raises here
                return image.text.get(_KEY_FIELD)
        data = path.read_bytes()
        if path.suffix == ".pdf":
            if not data.startswith(b"%PDF") or b"%%EOF" not in data[-64:]:
                return None
        elif path.suffix == ".svg":
            ET.fromstring(data)  # a truncated SVG is not well-formed XML
        else:
            return None
    except (OSError, SyntaxError, ValueError):
        return None
    match = _KEY_PATTERN.search(data.decode("latin-1"))
    return match.group(1) if match else None


def _metadata(fmt: str, key: str) -> dict:
    if fmt == "png":
        return {_KEY_FIELD: key}
    return {"Keywords": f"{_KEY_PREFIX}{key}"} if fmt == "pdf" else {"Description": f"{_KEY_PREFIX}{key}"}


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path`` (``.<name>.<random>.tmp``), fsync, rename onto ``path``."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_figure(fig, stem: Path, formats: Sequence[str], *, dpi: int, key: str) -> list[Path]:
    import matplotlib

    paths = []
    with matplotlib.rc_context(_VECTOR_RC):
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            _write_atomically(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi,
                                                                     metadata=_metadata(fmt, key)))
            paths.append(path)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", str(text)).strip("-")


#: Longest file-name stem written (file systems allow 255 bytes; the suffix and a temporary's tag need the rest).
MAX_STEM = 180


def _short(text: str, limit: int = 48) -> str:
    """``text`` slugged; a long one (e.g. a model given as a path) cut to its start and end plus a hash of it."""
    slug = _slug(text)
    if len(slug) <= limit:
        return slug
    return f"{slug[:16]}-{slug[-20:]}-{hashlib.sha1(slug.encode()).hexdigest()[:8]}"


def _stem(meta: dict, with_experiment: bool) -> str:
    """The file name (without suffix) of one heatmap: its identifying values, readable; long values shortened
    (:func:`_short`) and, past :data:`MAX_STEM` characters, the leading values replaced by their hash."""
    parts = [_short(meta["experiment"])] if with_experiment and "experiment" in meta else []
    parts += [_short(meta[k]) for k in ("dataset", "condition", "model_x", "pooling_x", "model_y", "pooling_y",
                                        "metric", "direction") if k in meta]
    tail = [f"{k}={_short(meta[k])}" for k in ("caption", "preprocess") if k in meta and pd.notna(meta[k])]
    stem = "__".join(parts + tail)
    if len(stem) > MAX_STEM:
        head = "__".join(parts)
        stem = "__".join([hashlib.sha1(head.encode()).hexdigest()[:16]] + parts[-2:] + tail)[:MAX_STEM]
    return stem


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"heatmap formats {list(formats)}: allowed are any of {list(FORMATS)} (at least one)")
    return formats


def save_heatmaps(frame: pd.DataFrame, out_dir: str | Path, *, dpi: int = 120, formats: Sequence[str] = ("png",),
                  vmin: float | None = None, vmax: float | None = None, cmap: str | None = None,
                  correction: str | None = "bh", alpha: float = 0.05, all_pairs: bool = False,
                  skip_existing: bool = True, remove_stale: bool = False) -> list[Path]:
    """One figure per format (plus the matrix as CSV) per (model pair, metric, direction, condition, caption,
    preprocess) in ``frame``; with ``all_pairs``, also every model pair on one page.

    Args:
      frame: results rows (a results table, or part of one).
      out_dir: the folder of the figures (created). Files are named after the heatmap's identifying values, e.g.
        ``<dataset>__<condition>__<model_x>__<pooling_x>__<model_y>__<pooling_y>__<metric>__<direction>__caption=first__preprocess=none.png``.
      dpi: resolution of the PNGs (and of raster parts of PDF/SVG).
      formats: any of "png", "pdf", "svg" (vector text stays editable).
      vmin, vmax, cmap: colour limits and map (``align.plots.colour_scale``). By default heatmaps of one metric,
        direction and setting share one range (their pairs' scores), diverging about zero when signed.
      correction, alpha: hatch cells not significant after "bh" (``p_bh``) or "maxstat" (``p_maxstat``) correction
        at ``alpha``, where the table has those p-values; None: no overlay.
      all_pairs: also write ``all_pairs.<format>`` (``align.plots.plot_all_pairs``).
      skip_existing: keep a heatmap whose files are complete and carry the key of its current rows and settings
        (``heatmap_key``) and whose CSV holds the current matrix; anything else is redrawn. False: redraw all.
      remove_stale: also delete every other PNG, PDF, SVG and CSV file in ``out_dir`` (heatmaps not drawn from
        ``frame``): for a folder that holds the heatmaps of one table only, e.g. a run's ``heatmaps/``.

    Returns:
      The figure paths (every format, in ``formats`` order, per heatmap; the page of all pairs last), all current.

    Raises:
      ValueError: an unknown format, correction or colour map, or vmin >= vmax.

    The folder is written under its lock (``<out_dir>.lock``); temporaries of a killed save are removed first.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    formats = _check_formats(formats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [k for k in HEATMAP_KEYS if k in frame.columns]
    row_keys = [k for k in ROW_KEYS if k in frame.columns]
    with_experiment = "experiment" in frame.columns and frame["experiment"].nunique(dropna=False) > 1
    settings = {"vmin": vmin, "vmax": vmax, "cmap": cmap, "correction": correction, "alpha": alpha}
    written = []
    with output_lock(out_dir):
        remove_leftovers(out_dir, held=True, pattern=".*.tmp")
        for _, part in frame.groupby(row_keys, dropna=False, sort=True):
            lower = lower_is_more_aligned(part)  # one scale per metric/direction/setting, shared by its pairs
            scale = colour_scale(part["score"], higher_is_more_aligned=lower is not True, vmin=vmin, vmax=vmax,
                                 cmap=cmap)
            drawn = {**settings, "limits": scale.limits, "scale_cmap": scale.cmap}
            for values, group in part.groupby(keys, dropna=False, sort=True):
                stem = out_dir / _stem(dict(zip(keys, values)), with_experiment)
                paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
                csv = stem.with_name(f"{stem.name}.csv")
                key = heatmap_key(group, dpi=dpi, settings=drawn)
                matrix_csv = score_matrix(group).to_csv()
                if (skip_existing and all(saved_heatmap_key(p) == key for p in paths) and csv.is_file()
                        and csv.read_text() == matrix_csv):
                    written += paths
                    continue
                fig, _ = plot_layer_heatmap(group, scale=scale, correction=correction, alpha=alpha)
                try:
                    written += _save_figure(fig, stem, formats, dpi=dpi, key=key)
                finally:
                    plt.close(fig)
                _write_atomically(csv, lambda tmp: tmp.write_text(matrix_csv))
        if all_pairs and len(frame):
            written += _save_all_pairs(frame, out_dir / ALL_PAIRS, formats, dpi=dpi, settings=settings,
                                       skip_existing=skip_existing)
        if remove_stale:
            current = {p.stem for p in written}
            for old in sorted(p for fmt in (*FORMATS, "csv") for p in out_dir.glob(f"*.{fmt}")):
                if old.stem not in current or (old.suffix[1:] not in formats and old.suffix != ".csv"):
                    old.unlink(missing_ok=True)
    return written


def _save_all_pairs(frame: pd.DataFrame, stem: Path, formats: Sequence[str], *, dpi: int, settings: dict,
                    skip_existing: bool) -> list[Path]:
    import matplotlib.pyplot as plt

    key = heatmap_key(frame, dpi=dpi, settings={**settings, "page": ALL_PAIRS})
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
    if skip_existing and all(saved_heatmap_key(p) == key for p in paths):
        return paths
    fig, _ = plot_all_pairs(frame, vmin=settings["vmin"], vmax=settings["vmax"], cmap=settings["cmap"],
                            correction=settings["correction"], alpha=settings["alpha"])
    try:
        return _save_figure(fig, stem, formats, dpi=dpi, key=key)
    finally:
        plt.close(fig)
