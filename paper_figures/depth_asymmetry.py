"""The depth asymmetry (finding 8): how deep in each model of a (vision, language) pair alignment peaks, with a
bootstrap interval over stimuli, and whether the language model peaks shallower, deeper or at the same relative
depth as the vision model.

Per model pair, metric and direction the peak layer pair of the whole layer grid (the most aligned one,
``align.results.peak_rows``: the minimum of a distance) gives two relative depths (layer / last layer): vision
and language. Each bootstrap resample draws n stimuli with replacement (the same rows on both sides), recomputes
the grid with ``align.pairwise`` on the activation stores of the layerwise run and takes its peak; the percentile
interval (``align.stats.percentile_interval``) of the resampled depths, and of their difference language − vision,
is reported. Language models peak deeper when that difference's interval lies above 0, shallower when below, and
at the same depth when it covers 0.

The resampled peaks are written to ``<results>/layerwise/peak_depth_bootstrap.parquet`` (one row per model pair,
metric, direction and resample; ``draw = -1`` is the full sample) and reused when present, so a report can be
written where only results tables exist. By default the grid is linear CKA: a linear-predictivity grid (ridge per
layer pair, both directions) takes about 100 s per resample and model pair on two CPU cores (measured, 13 x 31
layers, n = 300), so 200 resamples of six pairs would take days there; pass ``metrics`` to bootstrap it elsewhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: Where the resampled peaks are kept, under the layerwise run's output folder.
BOOT_FILE = "peak_depth_bootstrap.parquet"
#: Metrics (registry names) whose grids are bootstrapped by default (cheap enough for 200 resamples on a CPU).
DEPTH_METRICS = ("linear_cka",)
PAIR_KEYS = ["model_x", "pooling_x", "model_y", "pooling_y", "metric", "direction"]


def _base(metric: str) -> str:
    return str(metric).split("(")[0]


def locate_stores(results: Path, table: pd.DataFrame, caption: str | int = "first"
                  ) -> dict[tuple[str, str, str], Path]:
    """The activation stores a layerwise table was scored on, found under ``<results>/activations``.

    Args:
      results: the folder holding ``activations/`` (the parent of the layerwise output, e.g. ``results/paper``).
      table: the layerwise results rows (``dataset``, ``model_x``/``pooling_x``, ``model_y``/``pooling_y``, ``n``).
      caption: the run's ``score.caption``: a language store of caption k (``"first"`` = 0) belongs to the set
        ``<data set>~caption<k>``, one of ``"mean"`` to the data set itself.

    Returns:
      ``{("vision" | "language", model, pooling): store path}`` for the stores whose metadata name that model,
      pooling and the table's data set, in the ``original`` condition, with the table's n rows (not checked for a
      ``"mean"`` caption store; the newest file when several match). Models without a store are absent.
    """
    from align.store import open_store

    found: dict[tuple[str, str, str], tuple[float, Path]] = {}
    root = Path(results) / "activations"
    datasets = set(table["dataset"].dropna().astype(str)) if "dataset" in table else set()
    n_rows = set(pd.to_numeric(table["n"], errors="coerce").dropna().astype(int)) if "n" in table else set()
    wanted = {("vision", m, p) for m, p in zip(table.model_x, table.pooling_x)}
    wanted |= {("language", m, p) for m, p in zip(table.model_y, table.pooling_y)}
    suffix = 0 if caption == "first" else caption
    for path in sorted(root.glob("*/original/*/*.parquet")) if root.is_dir() else []:
        try:
            meta = open_store(path).meta
        except Exception:  # an unfinished or foreign file: not one of the run's stores
            continue
        side = meta.get("modality")
        key = (side, meta.get("model"), meta.get("pooling"))
        if key not in wanted or meta.get("condition") != "original":
            continue
        sets = {d if side == "vision" or caption == "mean" else f"{d}~caption{suffix}" for d in datasets}
        if datasets and str(meta.get("stimulus_set")) not in sets:
            continue
        if (side == "vision" or caption != "mean") and n_rows and int(meta.get("n_stimuli", -1)) not in n_rows:
            continue
        mtime = path.stat().st_mtime
        if key not in found or mtime > found[key][0]:
            found[key] = (mtime, path)
    return {k: p for k, (_, p) in found.items()}


def _fold_kwargs(metric: str, rows: np.ndarray) -> dict | None:
    """Folds keeping the copies of one stimulus (a resample draws some twice) in one fold, for a metric with
    cross-validation folds; None for a metric without folds."""
    from align.engine import resolve_metric
    from align.stats import kfold_ids

    spec, spec_kwargs = resolve_metric(metric)
    merged = {**spec.defaults, **spec_kwargs}
    folds = merged.get("folds")
    if not isinstance(folds, int) or isinstance(folds, bool):
        return None
    return {"folds": kfold_ids(len(rows), folds, merged.get("seed", 0), groups=[str(r) for r in rows])}


def bootstrap_peak_depths(vision, language, metric: str, *, n_boot: int = 200, seed: int = 0,
                          caption: str | int = "first", preprocess: str = "none") -> pd.DataFrame:
    """Peak layer pair of the whole grid on the full sample and on ``n_boot`` resamples of the stimuli.

    Args:
      vision, language: an image store and its caption store (``align.store.open_store``), paired by image id
        with ``align.experiments.paired_layers``.
      metric: metric spec string, as in the results table.
      n_boot: resamples (n stimuli drawn with replacement, the same rows for every layer of both sides; resample
        b uses ``np.random.default_rng(seed)``'s b-th draw of ``integers(0, n, n)``).
      seed: seed of the resamples.
      caption: which captions of each image (``score.caption`` of the run).
      preprocess: per-layer preprocessing before the metric (the table's ``preprocess``).

    Returns:
      One row per (direction, draw): labels of the pair, ``metric``, ``direction``, ``draw`` (the resample, -1 = the
      full sample), ``layer_x``, ``layer_y``, ``rel_depth_x``, ``rel_depth_y`` of the most aligned layer pair
      (the maximum, or the minimum for a lower-is-better metric), ``score`` there, ``n``, ``n_boot``, ``seed`` and
      the stores' ``order_hash_x``/``order_hash_y``.
    """
    import align
    from align.experiments import paired_layers
    from align.results import peak_rows

    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer number of resamples, got {n_boot!r}")
    kept, xs, ys = paired_layers(vision, language, caption)
    n = len(kept)
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(-1, n_boot):
        idx = np.arange(n) if b < 0 else rng.integers(0, n, n)
        grid = align.pairwise(metric, [x[idx] for x in xs], [y[idx] for y in ys], constant_layers="skip",
                              metric_kwargs=_fold_kwargs(metric, idx) if b >= 0 else None, preprocess=preprocess)
        for r in peak_rows(grid.to_frame(), ["direction"]).itertuples():
            rows.append({"direction": r.direction, "draw": b, "layer_x": int(r.layer_x),
                         "layer_y": int(r.layer_y), "rel_depth_x": float(r.rel_depth_x),
                         "rel_depth_y": float(r.rel_depth_y), "score": float(r.score)})
    frame = pd.DataFrame(rows)
    frame.insert(0, "model_x", vision.meta.get("model"))
    frame.insert(1, "pooling_x", vision.meta.get("pooling"))
    frame.insert(2, "model_y", language.meta.get("model"))
    frame.insert(3, "pooling_y", language.meta.get("pooling"))
    frame.insert(4, "metric", metric)
    frame["preprocess"], frame["n"], frame["n_boot"], frame["seed"] = preprocess, n, n_boot, seed
    frame["order_hash_x"], frame["order_hash_y"] = vision.order_hash, language.order_hash
    return frame


def layerwise_bootstrap(results: Path, table: pd.DataFrame, *, metrics=DEPTH_METRICS, n_boot: int = 200,
                        seed: int = 0) -> tuple[pd.DataFrame | None, str]:
    """The resampled peaks of every model pair of a layerwise table: read from ``<results>/layerwise/`` +
    :data:`BOOT_FILE` where it holds them (same ``n_boot``, ``seed`` and stores), else computed from the run's
    stores (:func:`locate_stores`, :func:`bootstrap_peak_depths`) and written there.

    Args:
      results: the folder holding ``layerwise/`` and ``activations/``.
      table: the layerwise results rows.
      metrics: registry names of the metrics whose grids are resampled (their spec strings come from the table).
      n_boot, seed: resamples and their seed.

    Returns:
      ``(rows, "")``, or ``(None, why)`` when neither the rows nor the stores are there.
    """
    from align.store import open_store

    path = Path(results) / "layerwise" / BOOT_FILE
    cached = pd.read_parquet(path) if path.exists() else None
    if cached is not None:
        cached = cached[(cached.n_boot == n_boot) & (cached.seed == seed)]
    specs = [m for m in pd.unique(table.metric) if _base(m) in metrics]
    if not specs:
        return None, f"the layerwise table has no {' / '.join(metrics)} rows to resample"
    given = table["caption"].dropna() if "caption" in table else ()
    caption = str(given.iloc[0]) if len(given) else "first"
    caption = int(caption) if caption.isdigit() else caption
    stores = locate_stores(results, table, caption)
    parts, missing = [], []
    for (mx, px, my, py), g in table.groupby(["model_x", "pooling_x", "model_y", "pooling_y"], sort=False):
        vs, ls = stores.get(("vision", mx, px)), stores.get(("language", my, py))
        vs, ls = (open_store(vs) if vs else None), (open_store(ls) if ls else None)
        for metric in specs:
            old = None if cached is None else cached[(cached.model_x == mx) & (cached.pooling_x == px) &
                                                     (cached.model_y == my) & (cached.pooling_y == py) &
                                                     (cached.metric == metric)]
            fresh = old is not None and len(old) and (vs is None or (old.order_hash_x.iloc[0] == vs.order_hash and
                                                                      old.order_hash_y.iloc[0] == ls.order_hash))
            if fresh:
                parts.append(old)
            elif vs is not None and ls is not None:
                print(f"depth asymmetry: {n_boot} bootstrap resamples of {mx} x {my} ({metric}), kept in {path}",
                      flush=True)
                prep = g.loc[g.metric == metric, "preprocess"].dropna()
                parts.append(bootstrap_peak_depths(vs, ls, metric, n_boot=n_boot, seed=seed, caption=caption,
                                                   preprocess=str(prep.iloc[0]) if len(prep) else "none"))
            else:
                missing.append(f"{mx} x {my} ({_base(metric)})")
    if not parts:
        return None, (f"no bootstrap rows ({path}) and no activation stores of the layerwise run under {Path(results) / 'activations'} for "
                      f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
    rows = pd.concat(parts, ignore_index=True)
    if cached is None or len(rows) != len(cached) or not rows.equals(cached.reset_index(drop=True)):
        _write(rows, path)
    return rows, (f"no stores or bootstrap rows for {', '.join(missing)}" if missing else "")


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def asymmetry_rows(boot: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """Per model pair, metric and direction: the full-sample peak depths (vision, language), their percentile
    intervals over the resamples, and the difference language − vision with its interval and verdict.

    Args:
      boot: rows of :func:`bootstrap_peak_depths` (``draw = -1`` the full sample).
      ci: coverage of the intervals.

    Returns:
      Columns model pair, metric, direction, vision depth (+ CI low/high), language depth (+ CI), language −
      vision (+ CI), resamples, ``language peak`` ("deeper" when the difference's interval lies above 0,
      "shallower" below, "the same" when it covers 0) and ``holds`` (the interval excludes 0).
    """
    from align.stats import percentile_interval

    out = []
    for (mx, _, my, _, metric, d), g in boot.groupby(PAIR_KEYS, sort=False):
        full, draws = g[g["draw"] < 0], g[g["draw"] >= 0]
        if not len(full) or not len(draws):
            continue
        dist = np.column_stack([draws.rel_depth_x, draws.rel_depth_y, draws.rel_depth_y - draws.rel_depth_x])
        lo, hi = percentile_interval(dist, ci)
        vx, vy = float(full.rel_depth_x.iloc[0]), float(full.rel_depth_y.iloc[0])
        verdict = "deeper" if lo[2] > 0 else "shallower" if hi[2] < 0 else "the same"
        out.append({"model pair": f"{mx} x {my}", "metric": _base(metric), "direction": d,
                    "vision depth": vx, "vision CI low": lo[0], "vision CI high": hi[0],
                    "language depth": vy, "language CI low": lo[1], "language CI high": hi[1],
                    "language − vision": vy - vx, "difference CI low": lo[2], "difference CI high": hi[2],
                    "resamples": len(draws), "language peak": verdict, "holds": verdict != "the same"})
    return pd.DataFrame(out)
