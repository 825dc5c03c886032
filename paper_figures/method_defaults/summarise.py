"""Summarise the evidence behind two method defaults (README "Method defaults") from the tables of

    align experiment paper_figures/method_defaults/cv_score.toml
    align experiment paper_figures/method_defaults/preprocessing.toml

into ``results/paper/method_defaults/EVIDENCE.md``. It only reads tables (peaks and the shuffled-pairing nulls at
them, per model pair and direction) and the activation stores' diagnostics sidecars.

Usage: python paper_figures/method_defaults/summarise.py [RESULTS_ROOT]   (default: results/paper)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from align.preprocess import store_diagnostics
from align.results import read_results
from align.store import open_store

KEYS = ["model_x", "model_y", "direction"]


def _short(metric: str) -> str:
    if metric.startswith("linear_predictivity"):
        return "linear predictivity (pooled r)" if "pooled" in metric else "linear predictivity"
    return metric


def _peaks(root: Path, run: str) -> pd.DataFrame:
    null = read_results(root / run / "peak_null.parquet")
    null["metric"] = null["metric"].map(_short)
    return null


def cv_score_section(root: Path) -> list[str]:
    t = _peaks(root, "method_defaults_cv_score")
    lines = ["## Linear predictivity: r per held-out fold vs r over the concatenated folds", "",
             "Shuffled-pairing null (30 permutations of the image-caption pairing) at each model pair's peak layer "
             "pair, both directions, 300 COCO images, GCV ridge, no preprocessing.", "",
             "| score | cases | observed peak (mean) | null mean (mean) | null mean (range) | mean abs null mean |",
             "|---|---|---|---|---|---|"]
    for metric, g in t.groupby("metric"):
        lines.append(f"| {metric} | {len(g)} | {g.score.mean():.3f} | {g.null_mean.mean():+.4f} | "
                     f"{g.null_mean.min():+.4f} … {g.null_mean.max():+.4f} | {g.null_mean.abs().mean():.4f} |")
    lines += ["", "Per case:", "", "| vision | language | direction | score | peak (x, y) | observed | null mean | p |",
              "|---|---|---|---|---|---|---|---|"]
    for _, r in t.sort_values(KEYS + ["metric"]).iterrows():
        lines.append(f"| {r.model_x} | {r.model_y} | {r.direction} | {r.metric} | {r.layer_x}, {r.layer_y} | "
                     f"{r.score:.3f} | {r.null_mean:+.4f} | {r.p_value:.3f} |")
    return lines + [""]


def preprocessing_section(root: Path) -> list[str]:
    t = _peaks(root, "method_defaults_preprocessing")
    lines = ["## Preprocessing options", "",
             "Layerwise peaks of the make-figures layerwise experiment under each option (6 model pairs; linear "
             "predictivity in both directions = 12 cases, linear CKA = 6), with the shuffled-pairing null at each "
             "peak. `moved` counts the cases whose peak layer pair differs from the `none` peak.", "",
             "| metric | preprocess | peak score (median) | peak depth vision (median) | peak depth language (median) "
             "| null mean (mean) | p <= 0.05 | moved vs none |", "|---|---|---|---|---|---|---|---|"]
    base = t[t.preprocess == "none"].set_index(KEYS + ["metric"])
    for (metric, option), g in t.groupby(["metric", "preprocess"], sort=False):
        g = g.set_index(KEYS + ["metric"])
        common = g.index.intersection(base.index)
        moved = int(((g.loc[common, "layer_x"] != base.loc[common, "layer_x"])
                     | (g.loc[common, "layer_y"] != base.loc[common, "layer_y"])).sum())
        lines.append(f"| {metric} | {option} | {g.score.median():.3f} | {g.rel_depth_x.median():.2f} | "
                     f"{g.rel_depth_y.median():.2f} | {g.null_mean.mean():+.4f} | {int((g.p_value <= 0.05).sum())}/"
                     f"{len(g)} | {moved}/{len(common)} |")
    lines += ["", "Per case (peak layer pair `x, y` and score):", ""]
    wide = t.assign(cell=[f"{r.layer_x}, {r.layer_y}: {r.score:.3f}" for r in t.itertuples()])
    wide = wide.pivot_table(index=["metric"] + KEYS, columns="preprocess", values="cell", aggfunc="first")
    wide = wide[[c for c in ["none", "center", "zscore", "clip(q=0.95)", "l2"] if c in wide.columns]]
    lines.append("| metric | vision | language | direction | " + " | ".join(wide.columns) + " |")
    lines.append("|---" * (4 + len(wide.columns)) + "|")
    for idx, row in wide.iterrows():
        lines.append("| " + " | ".join(map(str, idx)) + " | " + " | ".join(str(v) for v in row.values) + " |")
    return lines + [""]


def diagnostics_section(root: Path) -> list[str]:
    lines = ["## Massive dimensions (diagnostic, per store)", "",
             "Share of a layer's total variance in its top-3 feature dimensions; layers above 0.5 are flagged.", "",
             "| model | pooling | layers flagged | top-3 share (max) | max abs / median abs (max) |",
             "|---|---|---|---|---|"]
    for path in sorted((root / "activations").rglob("*.parquet")):
        store = open_store(path)
        if store.meta.get("condition") != "original":
            continue
        d = store_diagnostics(store)
        flagged = d[d.dominated]
        lines.append(f"| {store.meta.get('model')} | {store.meta.get('pooling')} | {len(flagged)}/{len(d)} | "
                     f"{d.top3_share.max():.3f} | {d.max_over_median.max():.0f} |")
    return lines + [""]


def main(root: str = "results/paper") -> Path:
    root = Path(root)
    out = root / "method_defaults" / "EVIDENCE.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = ["# Evidence for the method defaults", ""]
    text += cv_score_section(root) + preprocessing_section(root) + diagnostics_section(root)
    out.write_text("\n".join(text))
    print(out)
    return out


if __name__ == "__main__":
    main(*sys.argv[1:])
