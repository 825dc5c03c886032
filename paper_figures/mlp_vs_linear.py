"""MLP probe vs linear map on COCO: does a nonlinear probe move the layerwise peak or the perturbation effects?

Reads the activation stores of the paper run (``make figures``: ``results/paper/activations``) for
dinov2-small-imgfocus (CLS token) and a language model (default smollm2-135m, mean over tokens; ``--language
minilm-l6`` adds another) on the first 300 COCO images, each paired with its first caption, and computes, for
``linear_predictivity(alpha_selection="gcv")`` (ridge, penalty per target column by generalised cross-validation)
and ``mlp_predictivity`` (ridge plus a one-hidden-layer MLP on the residual, width and weight decay chosen on an
inner validation split), both directions (x_to_y: vision predicts language; y_to_x: language predicts vision),
5 outer folds, held-out Pearson r per target column averaged:

1. the layer grid: linear on every layer pair, the MLP on every ``--stride-x``-th vision layer and
   ``--stride-y``-th language layer (the last layer always kept; stride 1 = whole grid); the peak layer pair of each
   (and the linear peak restricted to the MLP's cells), its relative depths (layer / last layer) and score, and the
   Spearman correlation of the two metrics over the cells both scored;
2. at each metric's own peak pair, the effect (perturbed - original) of ``grayscale`` (vision re-extracted on
   grayscale images) and ``scramble(seed=0)`` (language re-extracted on word-scrambled captions) on the same
   stimuli, with a two-sided condition-swap p-value and a 95% interval (:func:`peak_effect`): for linear
   predictivity as the perturbation experiment's ``peak_difference`` (``align.experiments.peak_statistic``: one fit
   per condition, swaps and bootstrap resamples of the held-out predictions, percentile interval); for the MLP a
   refit per swap through ``align.engine.paired_difference`` and the interval effect -/+ 1.96 sd of the swap null
   (the engine's refit bootstrap puts duplicated stimuli in training and held-out folds at once, which biases a
   cross-validated score; ``--mlp-boot`` still reports it);
3. the seconds each took.

Writes ``results/paper/mlp_vs_linear/{grid,peaks,agreement,effects}.parquet`` and ``summary.md`` (printed).

Cost, measured on two shared CPU cores (n = 300, widths 384 and 576): the linear grid, 13 x 31 layers both
directions, about 2 minutes; the MLP about 5-6 s per fitted layer pair and direction, so its whole grid (806 fits)
would take over an hour there: by default it scores every 3rd layer of each model (5 x 11 layers, 110 fits, about
10 minutes), and each MLP peak effect costs 2 (swaps + 1) fits (15 swaps: about 3 minutes). On a GPU use
``--stride-x 1 --stride-y 1``.

    .venv/bin/python paper_figures/mlp_vs_linear.py [--stride-x 3] [--stride-y 3] [--mlp-perm 15] [--wait 0]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

LINEAR = 'linear_predictivity(alpha_selection="gcv")'
MLP = "mlp_predictivity"
METRICS = {"linear": LINEAR, "mlp": MLP}
STIMULI = "coco_captions_subset-first300"
VISION = ("dinov2-small-imgfocus", "cls")
CONDITIONS = {"grayscale": "vision", "scramble(seed=0)": "language"}


def strided_layers(n_layers: int, stride: int) -> list[int]:
    """Every ``stride``-th layer index from 0, plus the last layer."""
    if n_layers < 1 or stride < 1:
        raise ValueError(f"strided_layers: need n_layers >= 1 and stride >= 1, got {n_layers}, {stride}")
    keep = list(range(0, n_layers, stride))
    return keep if keep[-1] == n_layers - 1 else keep + [n_layers - 1]


def score_grid(metric: str, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], layers_x: Sequence[int],
               layers_y: Sequence[int]) -> tuple[pd.DataFrame, float]:
    """One metric on the layer pairs ``layers_x x layers_y``, both directions, as long-form rows.

    Returns:
      (rows with direction, layer_x, layer_y, rel_depth_x, rel_depth_y (layer / last layer of all ``xs``/``ys``),
      score; seconds taken).
    """
    import align

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the alpha-grid edge warning on unpredictable pairs
        grid = align.pairwise(metric, [xs[i] for i in layers_x], [ys[j] for j in layers_y], constant_layers="skip",
                              progress=False)
    seconds = time.perf_counter() - t0
    rows = []
    for direction, scores in grid.scores.items():
        for a, i in enumerate(layers_x):
            for b, j in enumerate(layers_y):
                rows.append({"direction": direction, "layer_x": int(i), "layer_y": int(j),
                             "rel_depth_x": i / max(len(xs) - 1, 1), "rel_depth_y": j / max(len(ys) - 1, 1),
                             "score": float(np.asarray(scores)[a, b])})
    return pd.DataFrame(rows), seconds


def grid_peaks(grid: pd.DataFrame) -> pd.DataFrame:
    """Highest score per (metric, direction, cells) of ``grid`` (all three higher-is-better); NaN cells skipped."""
    from align.results import peak_rows

    return peak_rows(grid.assign(higher_is_more_aligned=True), ["metric", "direction", "cells"])


def grid_agreement(grid: pd.DataFrame, a: str = "linear", b: str = "mlp") -> pd.DataFrame:
    """Spearman correlation of metric ``a``'s and ``b``'s scores over the layer pairs both scored, per direction."""
    from scipy.stats import spearmanr

    keys = ["direction", "layer_x", "layer_y"]
    left = grid[(grid["metric"] == a)].drop_duplicates(keys)[keys + ["score"]]
    right = grid[(grid["metric"] == b)].drop_duplicates(keys)[keys + ["score"]]
    both = left.merge(right, on=keys, suffixes=(f"_{a}", f"_{b}")).dropna()
    rows = []
    for d, g in both.groupby("direction"):
        rho = spearmanr(g[f"score_{a}"], g[f"score_{b}"]).statistic if len(g) > 2 else np.nan
        rows.append({"direction": d, "spearman": float(rho), "n_cells": len(g),
                     "mean_gain": float((g[f"score_{b}"] - g[f"score_{a}"]).mean())})
    return pd.DataFrame(rows)


def compare_grids(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], metrics: Mapping[str, str] = METRICS, *,
                  stride_x: int = 1, stride_y: int = 1, full: Sequence[str] = ("linear",),
                  log=print) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Score every metric on the layer grid and compare their peaks and rankings.

    Args:
      xs, ys: the two models' layers, each ``[n, d]``, rows paired by stimulus (x = vision, y = language).
      metrics: label -> metric spec (labels ``"linear"`` and ``"mlp"`` are compared by :func:`grid_agreement`).
      stride_x, stride_y: metrics not in ``full`` score only every stride-th layer (:func:`strided_layers`).
      full: labels scored on every layer pair (their peak is also reported on the strided cells alone).
      log: called with one progress line per metric.

    Returns:
      (grid rows with metric, cells ("all" or "strided"), direction, layers, depths, score; peaks per metric,
      direction and cells; Spearman agreement per direction; seconds per metric label).
    """
    sx, sy = strided_layers(len(xs), stride_x), strided_layers(len(ys), stride_y)
    frames, seconds = [], {}
    for label, spec in metrics.items():
        whole = label in full
        lx, ly = (range(len(xs)), range(len(ys))) if whole else (sx, sy)
        frame, seconds[label] = score_grid(spec, xs, ys, lx, ly)
        log(f"  {label}: {len(lx)} x {len(ly)} layers, both directions, {seconds[label]:.1f} s")
        frame = frame.assign(metric=label, metric_spec=spec, cells="all" if whole else "strided")
        frames.append(frame)
        if whole:  # the same metric on the strided cells only, for a like-for-like peak
            on = frame["layer_x"].isin(sx) & frame["layer_y"].isin(sy)
            frames.append(frame[on].assign(cells="strided"))
    grid = pd.concat(frames, ignore_index=True)
    both = grid[grid["cells"] == "strided"]
    labels = list(metrics)
    agreement = grid_agreement(both, *labels[:2]) if len(labels) >= 2 else pd.DataFrame()
    return grid, grid_peaks(grid), agreement, seconds


def peak_effect(metric: str, original: tuple[list, list], condition: tuple[list, list], i: int, j: int,
                direction: str, *, n_perm: int, n_boot: int, seed: int = 0, ci: float = 0.95) -> dict:
    """Condition - original of ``metric`` at layer pair (i, j) in ``direction``; rows of both are the same stimuli.

    Linear predictivity goes through ``align.experiments.peak_statistic`` (one fit per condition; swaps and
    bootstrap resamples act on the held-out predictions): ``ci_low``/``ci_high`` are its percentile bootstrap
    interval. Any other metric goes through ``align.engine.paired_difference`` (a refit per draw): its bootstrap
    refits on resampled rows, where a duplicated stimulus can sit in a training and a held-out fold at once, which
    biases a cross-validated score (the engine says so), so the interval reported is the condition-swap one:
    ``effect -/+ z * sd`` of the swap null (normal approximation, z for coverage ``ci``); the engine's bootstrap
    interval is kept in ``boot_low``/``boot_high`` when ``n_boot`` > 0.

    Returns:
      dict with direction, layer_x, layer_y, effect, score_condition, score_original, p_value (two-sided, condition
      swaps), ci_low, ci_high, ci_method, boot_low, boot_high, n, n_perm, n_boot, seconds.
    """
    from scipy.stats import norm

    import align

    t0 = time.perf_counter()
    m, _ = align.engine.resolve_metric(metric)
    out = {"direction": direction, "layer_x": i, "layer_y": j, "n_perm": n_perm, "n_boot": n_boot,
           "boot_low": np.nan, "boot_high": np.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if m.paired_statistic == "heldout_ridge":
            from align.experiments import peak_statistic

            st = peak_statistic(metric, *condition, *original, i, j, direction, n_perm=n_perm, n_boot=n_boot, ci=ci,
                                seed=seed)
            out.update(effect=st["score"], score_condition=st["score_a"], score_original=st["score_b"],
                       p_value=st["p_value"], ci_low=st["ci_low"], ci_high=st["ci_high"],
                       ci_method="held-out bootstrap", n=int(st["n"]))
        else:
            grid = align.engine.paired_difference(
                metric, [condition[0][i]], [condition[1][j]], [original[0][i]], [original[1][j]], n_perm=n_perm,
                n_boot=n_boot, ci=ci, seed=seed, direction=None if direction == "symmetric" else direction,
                progress=False)
            st = {k: float(np.asarray(v).ravel()[0]) for k, v in grid.stats[direction].items()}
            effect = float(np.asarray(grid.scores[direction]).ravel()[0])
            half = float(norm.ppf(0.5 + ci / 2)) * st.get("null_std", np.nan)
            out.update(effect=effect, score_condition=st["score_a"], score_original=st["score_b"],
                       p_value=st.get("p_value", np.nan), ci_low=effect - half, ci_high=effect + half,
                       ci_method="swap-null normal", n=int(grid.n), boot_low=st.get("ci_low", np.nan),
                       boot_high=st.get("ci_high", np.nan))
    out["seconds"] = time.perf_counter() - t0
    return out


def find_store(root: Path, model: str, pooling: str, condition: str):
    """The finished store of ``model``/``pooling`` under ``condition`` on the first-300 COCO stimuli, or None."""
    from align.store import open_store

    for path in sorted(root.glob(f"{STIMULI}*/{condition}/{model}/{pooling}-*.parquet")):
        if path.is_file():
            return open_store(path)
    return None


def paired(vision, language) -> tuple[list[str], list, list]:
    """(image ids, vision layers, language layers) with rows paired by image (first caption)."""
    from align.experiments import paired_layers

    return paired_layers(vision, language, "first", align_by_id=True)


def on_ids(ids: list[str], layers: list, keep: list[str]) -> list:
    """``layers`` restricted to the rows of ``keep`` (a subset of ``ids``), in that order."""
    index = {s: r for r, s in enumerate(ids)}
    rows = np.asarray([index[s] for s in keep])
    return [np.asarray(a)[rows] for a in layers]


def wait_for(root: Path, wanted: list[tuple[str, str, str]], seconds: float) -> dict:
    """Poll until every (model, pooling, condition) store exists or ``seconds`` pass; returns those found."""
    deadline = time.time() + seconds
    while True:
        found = {w: find_store(root, *w) for w in wanted}
        missing = [w for w, s in found.items() if s is None]
        if not missing or time.time() >= deadline:
            return {w: s for w, s in found.items() if s is not None}
        print(f"waiting for {missing} ...", flush=True)
        time.sleep(60)


def condition_effects(peaks: pd.DataFrame, metrics: Mapping[str, str], stores: dict, *,
                      draws: Mapping[str, tuple[int, int]], seed: int = 0, log=print) -> pd.DataFrame:
    """Per condition, metric and direction: the effect at the metric's own peak (cells "all" when scored there).

    Args:
      peaks: :func:`grid_peaks` rows.
      metrics: label -> spec.
      stores: ``{"vision": {condition: store}, "language": {condition: store}}`` with ``"original"`` on both sides.
      draws: label -> (condition swaps, bootstrap resamples) of :func:`peak_effect`.
      seed: seed of the resamples.
    """
    vo, lo = stores["vision"]["original"], stores["language"]["original"]
    ids, xs, ys = paired(vo, lo)
    rows = []
    for cond, side in CONDITIONS.items():
        changed = stores[side].get(cond)
        if changed is None:
            log(f"  {cond}: no {side} store, skipped")
            continue
        cids, cx, cy = paired(changed, lo) if side == "vision" else paired(vo, changed)
        keep = [s for s in ids if s in set(cids)]
        orig, pert = (on_ids(ids, xs, keep), on_ids(ids, ys, keep)), (on_ids(cids, cx, keep), on_ids(cids, cy, keep))
        for label, spec in metrics.items():
            mine = peaks[peaks["metric"] == label]
            cells = "all" if (mine["cells"] == "all").any() else "strided"
            for p in mine[mine["cells"] == cells].itertuples():
                row = peak_effect(spec, orig, pert, int(p.layer_x), int(p.layer_y), p.direction, n_perm=draws[label][0],
                                  n_boot=draws[label][1], seed=seed)
                log(f"  {cond} {label} {p.direction} at ({p.layer_x}, {p.layer_y}): {row['effect']:+.4f} "
                    f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] p={row['p_value']:.3f} "
                    f"({row['seconds']:.0f} s)")
                rows.append({"condition": cond, "metric": label, "metric_spec": spec, "peak_cells": cells,
                             "rel_depth_x": p.rel_depth_x, "rel_depth_y": p.rel_depth_y, **row})
    return pd.DataFrame(rows)


def summary_markdown(model_y: str, peaks: pd.DataFrame, agreement: pd.DataFrame, effects: pd.DataFrame,
                     seconds: Mapping[str, float], strides: tuple[int, int], n: int) -> str:
    """The markdown report of one model pair."""
    lines = [f"## dinov2-small-imgfocus (cls) x {model_y} (mean), COCO first {n} images, first caption", "",
             f"MLP: vision layers 0, {strides[0]}, {2 * strides[0]}, ... x language layers 0, {strides[1]}, ... "
             "(last layer kept; cells = strided); linear: every layer pair (cells = all) and those cells (strided). "
             "x_to_y = "
             "vision predicts language; relative depth = layer / last layer (0 = embedding output).", "",
             "| metric | direction | cells | peak (x, y) | rel. depth (x, y) | score |", "|---|---|---|---|---|---|"]
    for p in peaks.itertuples():
        lines.append(f"| {p.metric} | {p.direction} | {p.cells} | ({p.layer_x}, {p.layer_y}) | "
                     f"({p.rel_depth_x:.2f}, {p.rel_depth_y:.2f}) | {p.score:.4f} |")
    lines += ["", "| direction | Spearman(linear, mlp) over shared cells | cells | mean mlp - linear |",
              "|---|---|---|---|"]
    for a in agreement.itertuples():
        lines.append(f"| {a.direction} | {a.spearman:.3f} | {a.n_cells} | {a.mean_gain:+.4f} |")
    if len(effects):
        lines += ["", "| condition | metric | direction | peak (x, y) | original | perturbed - original | 95% CI | "
                  "CI from | p (swaps) | swaps | s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in effects.itertuples():
            lines.append(f"| {e.condition} | {e.metric} | {e.direction} | ({e.layer_x}, {e.layer_y}) | "
                         f"{e.score_original:.4f} | {e.effect:+.4f} | [{e.ci_low:+.4f}, {e.ci_high:+.4f}] | "
                         f"{e.ci_method} | {e.p_value:.3f} | {e.n_perm} | {e.seconds:.0f} |")
        lines += ["", "Effects at each metric's own peak (linear: the whole grid's). Held-out bootstrap: percentile "
                  "interval of resampled held-out predictions (one fit per condition). Swap-null normal: effect -/+ "
                  "1.96 sd of the condition-swap null, the MLP refitted per swap. p: two-sided, condition swaps."]
    lines += ["", "Seconds (grid, both directions): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    from align import configure_threads

    configure_threads()  # before any jax work: on a busy machine unsized thread pools spin-wait (README "Threads")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("results/paper/activations"))
    ap.add_argument("--out", type=Path, default=Path("results/paper/mlp_vs_linear"))
    ap.add_argument("--language", nargs="+", default=["smollm2-135m"])
    ap.add_argument("--stride-x", type=int, default=3)
    ap.add_argument("--stride-y", type=int, default=3)
    ap.add_argument("--linear-draws", type=int, default=1000, help="swaps and resamples of the linear effects")
    ap.add_argument("--mlp-perm", type=int, default=15, help="condition swaps of the MLP effects (refit each)")
    ap.add_argument("--mlp-boot", type=int, default=0, help="refit bootstrap resamples of the MLP (biased)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wait", type=float, default=0.0, help="seconds to poll for missing stores (make figures)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tables = {k: [] for k in ("grid", "peaks", "agreement", "effects")}
    report = ["# MLP probe vs linear predictivity on COCO", ""]
    for lang in args.language:
        originals = [(*VISION, "original"), (lang, "mean", "original")]
        found = wait_for(args.root, originals, args.wait)
        if len(found) < 2:
            raise SystemExit(f"the original stores of {VISION[0]} / {lang} are not under {args.root}; run make figures")
        ids, xs, ys = paired(*found.values())
        print(f"{VISION[0]} x {lang}: n = {len(ids)}, {len(xs)} x {len(ys)} layers", flush=True)
        grid, peaks, agreement, seconds = compare_grids(xs, ys, stride_x=args.stride_x, stride_y=args.stride_y)
        pair = {"model_x": VISION[0], "pooling_x": VISION[1], "model_y": lang, "pooling_y": "mean", "n": len(ids)}
        for name, frame in (("grid", grid), ("peaks", peaks), ("agreement", agreement)):
            tables[name].append(frame.assign(**pair))
            pd.concat(tables[name], ignore_index=True).to_parquet(args.out / f"{name}.parquet", index=False)
        found |= wait_for(args.root, [(*VISION, "grayscale"), (lang, "mean", "scramble(seed=0)")], args.wait)
        stores = {"vision": {c: found.get((*VISION, c)) for c in ("original", "grayscale")},
                  "language": {c: found.get((lang, "mean", c)) for c in ("original", "scramble(seed=0)")}}
        draws = {"linear": (args.linear_draws, args.linear_draws), "mlp": (args.mlp_perm, args.mlp_boot)}
        effects = condition_effects(peaks, METRICS, stores, draws=draws, seed=args.seed)
        tables["effects"].append(effects.assign(**pair))
        pd.concat(tables["effects"], ignore_index=True).to_parquet(args.out / "effects.parquet", index=False)
        report.append(summary_markdown(lang, peaks, agreement, effects, seconds, (args.stride_x, args.stride_y),
                                       len(ids)))
        (args.out / "summary.md").write_text("\n".join(report))
    print("\n".join(report))
    print(f"wrote {args.out}/{{grid,peaks,agreement,effects}}.parquet and summary.md")


if __name__ == "__main__":
    main()
