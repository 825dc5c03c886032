"""Findings 1-8 decided per specification (pooling x preprocessing x metric x caption) from the robustness runs.

Every finding uses its definition in ``finding_defs.py`` on the rows of one specification (the table filtered to
its poolings, preprocessing option and metric), so "holds" means what it means in the figures report; the
specification's metric decides instead of linear predictivity. One case is one model pair and direction. Per case
the effect is:

1. the smaller of the two rises to the peak (vision side, language side) as a fraction of |peak| (no interval);
2. the mean of the shuffled-pairing null at the peak pair (no interval; its p-value decides);
3, 4, 5. (perturbed - original) / |original| at the peak pair, with the paired bootstrap interval scaled the same;
6. the gain of k = K captions over k = 1 at the peak pair, with its bootstrap interval;
7. forced-choice accuracy (matched over mismatched), Clopper-Pearson interval (the specification's metric picks
   the peak layers; the per-item scores are ridge correlations whatever the metric);
8. language - vision relative peak depth with a bootstrap interval over stimuli for the metrics in
   ``depth_metrics`` (each resample recomputes the whole grid); for the others the full-sample difference is shown
   and the case is "not computed" (a predictivity or RSA grid per resample is beyond the budget).

A specification's verdict is ``finding_defs.verdict`` of its cases (holds for >= 75%); finding 5 is split into its
two parts (scramble, nouns_only).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

import finding_defs as fd
from robustness import AXES
from robustness import REPO
from robustness import caption_folder
from robustness import metric_tag
from robustness import prep_tag
from robustness import skipped_poolings

#: Findings of the robustness table, in order: (id, label, claim).
FINDINGS = [(str(f.id), str(f.id), f.claim) for f in fd.FINDINGS if f.id != 5]
FINDINGS[4:4] = [("5a", "5 (scramble)", "Scrambling lowers alignment"),
                 ("5b", "5 (nouns_only)", "Nouns-only captions lower alignment")]
CASE_COLUMNS = ["finding", *AXES, "model pair", "direction", "effect", "ci_low", "ci_high", "holds", "note"]


def _read(path: Path) -> pd.DataFrame | None:
    from align.results import read_results

    return read_results(path) if path.exists() else None


def _select(table: pd.DataFrame, vp: str, lp: str, prep: str, metric: str | None) -> pd.DataFrame:
    keep = (table.pooling_x == vp) & (table.pooling_y == lp)
    if "preprocess" in table:
        keep &= table.preprocess.fillna("none") == prep
    if metric is not None:
        keep &= table.metric.map(metric_tag) == metric_tag(metric)
    return table[keep]


def _frame(rows: pd.DataFrame, finding: str, effect, lo=np.nan, hi=np.nan, holds=None, note="") -> pd.DataFrame:
    if rows is None or not len(rows):
        return pd.DataFrame(columns=CASE_COLUMNS)
    out = pd.DataFrame({"model pair": rows["model pair"].values, "direction": rows["direction"].values})
    out["finding"] = finding
    for name, v in (("effect", effect), ("ci_low", lo), ("ci_high", hi)):
        out[name] = np.asarray(v, float) if np.ndim(v) else float(v)
    out["holds"] = (rows["holds"].astype(object).values if holds is None else holds)
    out["note"] = note
    return out


def _rise(t: pd.DataFrame) -> pd.DataFrame:
    rows = fd.rise_rows(t, None)
    if not len(rows):
        return _frame(rows, "1", np.nan)
    sign = 1.0 if bool(t.higher_is_more_aligned.iloc[0]) else -1.0
    peak = rows["peak"]
    rise = np.minimum(sign * (peak - rows["best there"]), sign * (peak - rows["best at language depth 0"]))
    return _frame(rows, "1", rise / peak.abs())


def _perturbation(t: pd.DataFrame) -> list[pd.DataFrame]:
    out = []
    for finding, kind, test in (("3", "grayscale", lambda r: r.relative.abs() <= 0.10),
                                ("4", "stuff_only", fd.lowers), ("5a", "scramble", fd.lowers),
                                ("5b", "nouns_only", fd.lowers)):
        try:
            rows = fd.perturbation_rows((kind,), test)(t, None)
        except fd.NotComputed:
            continue
        scale = rows.original.abs()
        out.append(_frame(rows, finding, rows.relative, rows["CI low"] / scale, rows["CI high"] / scale))
    return out


def _depth(t: pd.DataFrame, spec: dict, folder: Path, caption: str, metric: str, prep: str) -> pd.DataFrame:
    """Finding 8 for one specification: resampled peak depths (cached per store pair) or the point estimate."""
    from depth_asymmetry import asymmetry_rows
    from depth_asymmetry import bootstrap_peak_depths
    from depth_asymmetry import locate_stores
    from align.results import peak_rows
    from align.store import open_store

    ex = spec["experiment"]
    if metric_tag(metric) not in ex["depth_metrics"]:
        peaks = peak_rows(t, ["model_x", "model_y", "direction"])
        rows = pd.DataFrame({"model pair": fd.pair(peaks).values, "direction": peaks.direction.values,
                             "holds": None})
        return _frame(rows, "8", (peaks.rel_depth_y - peaks.rel_depth_x).values, holds=[None] * len(rows),
                      note=f"point estimate: {metric_tag(metric)} is not resampled (depth_metrics)")
    stores = locate_stores(folder, t, caption)
    parts = []
    for (mx, px, my, py), _ in t.groupby(["model_x", "pooling_x", "model_y", "pooling_y"], sort=False):
        vs, ls = stores.get(("vision", mx, px)), stores.get(("language", my, py))
        if vs is None or ls is None:
            continue
        vs, ls = open_store(vs), open_store(ls)
        key = hashlib.sha1(json.dumps([vs.order_hash, ls.order_hash, str(vs.path), str(ls.path), metric, prep,
                                       ex["depth_boot"], ex["seed"], caption]).encode()).hexdigest()[:16]
        path = folder / "depth" / f"{key}.parquet"
        if not path.exists():
            boot = bootstrap_peak_depths(vs, ls, metric, n_boot=ex["depth_boot"], seed=ex["seed"], caption=caption,
                                         preprocess=prep)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            boot.to_parquet(tmp, index=False)
            tmp.replace(path)
        parts.append(pd.read_parquet(path))
    if not parts:
        return _frame(None, "8", np.nan)
    rows = asymmetry_rows(pd.concat(parts, ignore_index=True))
    return _frame(rows, "8", rows["language − vision"], rows["difference CI low"], rows["difference CI high"])


def spec_cases(spec: dict, caption: str, vp: str, lp: str, prep: str, metric: str) -> pd.DataFrame:
    """Every finding's cases under one specification (empty parts when a table is missing)."""
    folder = caption_folder(spec, caption)
    p = prep_tag(prep)
    parts = []
    layer = _read(folder / "layerwise" / "results.parquet")
    if layer is not None:
        t = _select(layer, vp, lp, prep, metric)
        if len(t):
            parts.append(_rise(t))
            parts.append(_depth(t, spec, folder, caption, metric, prep))
    null = _read(folder / "layerwise" / "peak_null.parquet")
    if null is not None:
        n = _select(null, vp, lp, prep, metric)
        if len(n):
            rows = fd.null_rows(n, None)
            parts.append(_frame(rows, "2", rows["null mean"]))
    pert = _read(folder / f"perturbation-{p}" / "results.parquet")
    if pert is not None:
        parts += _perturbation(_select(pert, vp, lp, prep, metric))
    agg = _read(folder / f"aggregation-{p}" / "results.parquet")
    if agg is not None:
        try:
            rows = fd.aggregation_rows(_select(agg, vp, lp, prep, metric), None)
            k = max(int(c.split("=")[1]) for c in rows.columns if c.startswith("matched k="))
            parts.append(_frame(rows, "6", rows["matched gain"], rows["matched CI low"], rows["matched CI high"],
                                note=f"k = {k} vs 1"))
        except fd.NotComputed:
            pass
    pref = _read(folder / f"preference-{p}-{metric_tag(metric)}" / "results.parquet")
    if pref is not None:
        rows = fd.preference_rows(_select(pref, vp, lp, "none", None), "matched")
        parts.append(_frame(rows, "7", rows.accuracy, rows["accuracy CI low"], rows["accuracy CI high"],
                            note="ridge item scores at this metric's peak layers"))
    parts = [x for x in parts if len(x)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CASE_COLUMNS)
    out["vision_pooling"], out["language_pooling"], out["preprocess"] = vp, lp, prep
    out["metric"], out["caption"] = metric_tag(metric), caption
    return out[CASE_COLUMNS]


def all_cases(spec: dict, log=print) -> pd.DataFrame:
    """The cases of every specification, plus one row per skipped (model, pooling) x specification."""
    ch = spec["choices"]
    parts = []
    for caption, vp, lp, prep, metric in itertools.product(ch["caption"], ch["vision_pooling"],
                                                           ch["language_pooling"], ch["preprocess"], ch["metrics"]):
        parts.append(spec_cases(spec, caption, vp, lp, prep, metric))
    cases = pd.concat(parts, ignore_index=True)
    cases["holds"] = cases["holds"].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                        else bool(v))
    return cases


def skip_table(spec: dict) -> pd.DataFrame:
    """Per skipped (model, pooling): the reason and how many specifications lose that model's cases."""
    ch = spec["choices"]
    rows = []
    for s in skipped_poolings(spec):
        n_specs = int(np.prod([len(ch[k]) for k in ("preprocess", "metrics", "caption")]))
        n_specs *= len(ch["language_pooling" if s["side"] == "vision" else "vision_pooling"])
        others = len(spec["models"]["language" if s["side"] == "vision" else "vision"])
        rows.append({**s, "specifications": n_specs, "skipped cases (model pairs)": n_specs * others})
    return pd.DataFrame(rows)


def spec_table(cases: pd.DataFrame) -> pd.DataFrame:
    """Per finding and specification: median effect over the cases, its range, the cases computed and holding,
    and the verdict (``finding_defs.verdict`` of the computed cases)."""
    rows = []
    for key, g in cases.groupby(["finding", *AXES], sort=False):
        decided = g[g.holds.notna()]
        rows.append({**dict(zip(["finding", *AXES], key)), "effect": g.effect.median(), "effect min": g.effect.min(),
                     "effect max": g.effect.max(), "cases": len(g), "decided": len(decided),
                     "holding": int(decided.holds.astype(bool).sum()),
                     "verdict": fd.verdict(decided.holds.astype(bool)) if len(decided) else "not computed"})
    return pd.DataFrame(rows)
