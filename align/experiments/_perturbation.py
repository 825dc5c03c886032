"""The perturbation experiment: which visual and linguistic cues carry the alignment.

Each condition changes one modality while the other stays intact, and is compared with the original on the same
stimuli:

- image conditions (``align.data.image_condition``): the vision models are re-extracted on perturbed images; the
  caption stores are the original ones. Mask conditions (``thing_only``, ``stuff_only``) run on the images that
  have a usable mask (``ImageCondition.select``; from the whole data set, at most ``experiment.mask_n``), and their
  original is the same masked images;
- caption conditions (``align.data.caption_condition``): the language models are re-extracted on perturbed
  captions; images whose captions all end up empty are left out of both conditions (reported).

Per (vision model, language model, metric) the experiment writes, as long-form results rows (``quantity`` column):

- ``baseline``: the original grid on the condition's stimuli (one job per stimulus set, shared by conditions);
- ``score`` and ``difference``: the condition's grid and condition − original per layer pair (for
  ``experiment.grid_metrics``, default every metric);
- ``peak_difference``: at the original's peak layer pair (per direction), condition − original with a paired
  statistic over stimuli: ``align.engine.paired_difference`` (condition swaps per stimulus for the p-value,
  bootstrap interval) for every metric except linear predictivity, which uses the held-out version
  (``align.experiments._heldout``); ``score_a`` = condition, ``score_b`` = original;
- ``grid_summary``: the mean difference over the whole grid and the fraction of layer pairs that decrease.

Outputs: ``<output>/perturbation/<job>.parquet`` per job, ``<output>/results.parquet`` (all rows) and
``<output>/exclusions.json`` (what each condition left out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from align.config import RunConfig
from align.experiments._jobs import cached_job
from align.experiments._jobs import direction_peaks
from align.experiments._jobs import job_key
from align.experiments._jobs import open_stores
from align.experiments._jobs import pair_key
from align.experiments._jobs import read_peaks
from align.experiments._jobs import relative_depth
from align.experiments._jobs import split_by_modality
from align.experiments._jobs import store_identity
from align.experiments._jobs import write_exclusions


def _log_default(msg: str) -> None:
    print(msg, flush=True)


def masked_stimuli(cfg: RunConfig, stimuli, condition, *, log: Callable[[str], None] = _log_default):
    """The stimuli a mask condition runs on, and the exclusion report.

    When every image of ``stimuli`` has a usable mask, ``stimuli`` itself; otherwise the images with a usable mask
    from the whole data set (``stimuli.n`` ignored), the first ``experiment.mask_n`` of them.
    """
    from align.experiments._layerwise import activation_root
    from align.experiments._stimuli_from_config import stimuli_from_config

    subset, report = condition.select(stimuli)
    if report.is_empty:
        return stimuli, report
    full = stimuli_from_config(dataclasses.replace(cfg.stimuli, n=None), activation_root(cfg))
    subset, report = condition.select(full)
    mask_n = cfg.experiment.mask_n
    if mask_n is not None and mask_n < len(subset):
        name = f"{subset.name}-first{mask_n}"
        subset = subset.subset(n=mask_n)
        subset.name = name
    log(f"mask conditions: {len(subset)} images of {full.name} ({report.summary()})")
    return subset, report


def _aligned_layers(vision, language, ids, caption) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Layers of a (vision store, caption store) pair, rows = ``ids`` in that order."""
    from align.experiments._pairing import paired_layers

    kept, xs, ys = paired_layers(vision, language, caption, align_by_id=True)
    if kept != list(ids):
        index = {i: r for r, i in enumerate(kept)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise ValueError(f"{vision.path} / {language.path} lack {len(missing)} stimuli, e.g. {missing[:3]}")
        rows = np.asarray([index[i] for i in ids])
        xs, ys = [x[rows] for x in xs], [y[rows] for y in ys]
    return xs, ys


def _stamp_rows(rows: list[dict], vision, language, metric: str, caption, extra: dict) -> pd.DataFrame:
    """Single-pair rows (layer indices given) -> labelled results rows."""
    from align.experiments._layerwise import label_grid

    frame = pd.DataFrame(rows)
    frame["rel_depth_x"] = [relative_depth(i, vision.n_layers) for i in frame["layer_x"]]
    frame["rel_depth_y"] = [relative_depth(j, language.n_layers) for j in frame["layer_y"]]
    return label_grid(frame, vision, language, metric, caption=caption, experiment="perturbation", extra=extra)


def peak_statistic(metric: str, xs_a, ys_a, xs_b, ys_b, i: int, j: int, direction: str, ex,
                   preprocess: str | None = None) -> dict:
    """Condition A − condition B at layer pair (i, j) in one direction, with p-value and interval.

    ``preprocess`` (``align.preprocess``) is applied to each of the four layers on its own first; for linear
    predictivity's held-out statistic, ``pca(k)`` goes to the ridge's own per-fold PCA (``Metric.fold_pca_kwarg``)
    and is refused when the metric has none (PCA fitted on held-out rows would leak)."""
    from align.engine import paired_difference
    from align.engine import resolve_metric
    from align.preprocess import parse_preprocess

    m, kwargs = resolve_metric(metric)
    step = parse_preprocess(preprocess)
    if m.name == "linear_predictivity":
        from align.experiments._heldout import heldout_paired_difference

        if step.name == "pca":
            if not m.fold_pca_kwarg:
                raise ValueError(f"preprocess {step.spec!r} with {metric}: the held-out peak statistic cannot fit "
                                 "PCA on training folds only for this metric; use another preprocess option")
            kwargs = {**kwargs, m.fold_pca_kwarg: step.k}
        xa, ya, xb, yb = xs_a[i], ys_a[j], xs_b[i], ys_b[j]
        if step.name != "pca":  # each layer of each condition on its own, as the engine does
            xa, xb = (step.apply(a, layer=f"x layer {i}") for a in (xa, xb))
            ya, yb = (step.apply(a, layer=f"y layer {j}") for a in (ya, yb))
        a, b = ((xa, ya), (xb, yb)) if direction == "x_to_y" else ((ya, xa), (yb, xb))
        return heldout_paired_difference(*a, *b, n_perm=ex.n_perm, n_boot=ex.n_boot, ci=ex.ci, seed=ex.seed,
                                         **kwargs)
    grid = paired_difference(metric, [xs_a[i]], [ys_a[j]], [xs_b[i]], [ys_b[j]], n_perm=ex.n_perm,
                             n_boot=ex.n_boot, ci=ex.ci, seed=ex.seed,
                             direction=None if direction == "symmetric" else direction, preprocess=step.spec)
    row = grid.to_frame().iloc[0]
    return {k: float(row[k]) if k in row else np.nan
            for k in ("score", "score_a", "score_b", "p_value", "null_mean", "ci_low", "ci_high")} | {"n": grid.n}


def grid_summary(diff: pd.DataFrame) -> list[dict]:
    """Per direction: mean difference over the grid and the fraction of layer pairs that decrease."""
    out = []
    for d, g in diff.groupby("direction"):
        out.append({"direction": d, "layer_x": -1, "layer_y": -1, "score": float(g["score"].mean()),
                    "fraction_lower": float((g["score"] < 0).mean()), "n": int(g["n"].iloc[0]),
                    "score_a": float(g["score_a"].mean()), "score_b": float(g["score_b"].mean())})
    return out


@dataclasses.dataclass
class _Side:
    """One condition of one stimulus set: (vision stores, language stores), keyed (model name, pooling)."""

    vision: dict
    language: dict


def _compare(cfg: RunConfig, *, cond_name: str, perturbed: str, base: _Side, cond: _Side, ids: list[str],
             dataset: str, peaks: dict | None, out: Path, log) -> list[pd.DataFrame]:
    """Every job of one condition: every (vision, language) store pair and metric."""
    from align.engine import pairwise
    from align.experiments._layerwise import label_grid

    ex, caption = cfg.experiment, cfg.score.caption
    (preprocess,) = cfg.score.preprocess_options  # one option (validated)
    grid_metrics = cfg.score.metrics if ex.grid_metrics is None else ex.grid_metrics
    ids_key = job_key(ids=list(ids))
    fingerprint = cfg.fingerprint("stimuli", "models", "extract", "score", "experiment")
    frames = []
    for vk, vo in base.vision.items():
        for lk, lo in base.language.items():
            vc = cond.vision.get(vk, vo)
            lc = cond.language.get(lk, lo)
            loaded = {}

            def layers():
                if not loaded:
                    loaded["o"] = _aligned_layers(vo, lo, ids, caption)
                    loaded["c"] = _aligned_layers(vc, lc, ids, caption)
                return loaded["o"], loaded["c"]

            for metric in cfg.score.metrics:
                label = f"{cond_name}: {vk[0]}({vk[1]}) x {lk[0]}({lk[1]}) {metric}"
                pkey = pair_key(vo, lo, metric)
                base_key = job_key(kind="baseline", x=store_identity(vo), y=store_identity(lo), ids=ids_key,
                                   metric=metric, caption=caption, preprocess=preprocess)
                need_base = metric in grid_metrics or peaks is None

                def baseline():
                    (xs_o, ys_o), _ = layers()
                    frame = label_grid(pairwise(metric, xs_o, ys_o, constant_layers="skip", preprocess=preprocess).to_frame(), vo, lo, metric, caption=caption,
                                       experiment="perturbation",
                                       extra={"quantity": "baseline", "config_fingerprint": fingerprint})
                    frame["dataset"] = dataset
                    return frame

                base_rows = (cached_job(out / f"{base_key}.parquet", baseline, label=f"baseline {label}", log=log)
                             if need_base else None)
                if base_rows is not None:
                    frames.append(base_rows)
                key = job_key(kind="condition", x=store_identity(vc), y=store_identity(lc), xo=store_identity(vo),
                              yo=store_identity(lo), ids=ids_key, metric=metric, caption=caption,
                              grid=metric in grid_metrics, n_perm=ex.n_perm, n_boot=ex.n_boot, ci=ex.ci,
                              seed=ex.seed, preprocess=preprocess, peaks=None if peaks is None else sorted(
                                  str(tuple(v)) for k, v in peaks.items() if k[:5] == pkey))

                def compute():
                    (xs_o, ys_o), (xs_c, ys_c) = layers()
                    extra = {"quantity": "score", "perturbation": cond_name, "perturbed": perturbed,
                             "config_fingerprint": fingerprint}
                    parts = []
                    if metric in grid_metrics:
                        score = label_grid(pairwise(metric, xs_c, ys_c, constant_layers="skip", preprocess=preprocess).to_frame(), vc, lc, metric,
                                           caption=caption, experiment="perturbation", extra=extra)
                        merged = score.merge(base_rows[["direction", "layer_x", "layer_y", "score"]],
                                             on=["direction", "layer_x", "layer_y"], suffixes=("", "_base"))
                        diff = merged.copy()
                        diff["score_a"], diff["score_b"] = merged["score"], merged["score_base"]
                        diff["score"] = merged["score"] - merged["score_base"]
                        diff["quantity"] = "difference"
                        diff = diff.drop(columns=["score_base"])
                        summary = _stamp_rows(grid_summary(diff), vc, lc, metric, caption,
                                              {**extra, "quantity": "grid_summary"})
                        parts += [score, diff, summary]
                    directions = (sorted(base_rows["direction"].unique()) if base_rows is not None else
                                  sorted({k[5] for k in peaks if k[:5] == pkey}))
                    rows = []
                    base_peaks = direction_peaks(base_rows) if peaks is None else None
                    for d in directions:
                        if peaks is not None:
                            i, j = peaks.get((*pkey, d), (None, None))
                            if i is None:
                                raise ValueError(f"experiment.peaks_from has no peak for {vk} x {lk} {metric} {d}; "
                                                 "run the layerwise config with the same models and metrics")
                        else:
                            i, j = base_peaks[d]
                        stat = peak_statistic(metric, xs_c, ys_c, xs_o, ys_o, i, j, d, ex, preprocess=preprocess)
                        rows.append({"direction": d, "layer_x": i, "layer_y": j, **stat})
                    parts.append(_stamp_rows(rows, vc, lc, metric, caption, {**extra, "quantity": "peak_difference"}))
                    frame = pd.concat(parts, ignore_index=True)
                    frame["dataset"] = dataset
                    return frame

                frames.append(cached_job(out / f"{key}.parquet", compute, label=label, log=log))
    return frames


def run_perturbation(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = _log_default) -> Path:
    """Run a perturbation config; returns the path of the combined results table."""
    from align.data import caption_condition
    from align.data import image_condition
    from align.experiments._layerwise import activation_root
    from align.experiments._layerwise import run_extract
    from align.experiments._stimuli_from_config import stimuli_from_config
    from align.results import write_results

    ex = cfg.experiment
    stimuli = stimuli_from_config(cfg.stimuli, activation_root(cfg))
    log(f"stimuli: {stimuli.name} ({len(stimuli)} images)")
    vision_cfg, language_cfg = split_by_modality(cfg)
    image_conds = [image_condition(s) for s in ex.image_conditions]
    caption_conds = [caption_condition(s) for s in ex.caption_conditions]
    out = cfg.output_dir / "perturbation"
    exclusions = {}
    sets = {"all": stimuli}
    mask_conds = [c for c in image_conds if c.needs_mask]
    if mask_conds:
        sets["masked"], report = masked_stimuli(cfg, stimuli, mask_conds[0], log=log)
        for c in mask_conds:
            exclusions[c.name] = report.to_dict()
    base = {}
    for which, s in sets.items():
        if s.name not in base:
            log(f"extract originals ({s.name}, {len(s)} images):")
            base[s.name] = _Side(*open_stores(run_extract(cfg, s, progress=progress, log=log)))
    peaks = (read_peaks(ex.peaks_from, stimuli.name, log=log, preprocess=cfg.score.preprocess_options[0])
             if ex.peaks_from else None)
    frames = []
    for c in image_conds:
        s = sets["masked"] if c.needs_mask else stimuli
        log(f"image condition {c.name} ({s.name}, {len(s)} images):")
        vision, _ = open_stores(run_extract(vision_cfg, s, condition=c.name, image_transform=c.apply,
                                            progress=progress, log=log))
        # a peak chosen on the full set is used for the masked subset too (same models and layers)
        frames += _compare(cfg, cond_name=c.name, perturbed="image", base=base[s.name], cond=_Side(vision, {}),
                           ids=s.image_ids, dataset=s.name, peaks=peaks, out=out, log=log)
    for c in caption_conds:
        s, report = c.apply(stimuli)
        exclusions[c.name] = report.to_dict()
        if not report.is_empty:
            log(f"  {report.summary()}")
        log(f"caption condition {c.name} ({s.name}, {len(s)} images):")
        _, language = open_stores(run_extract(language_cfg, s, condition=c.name, progress=progress, log=log))
        frames += _compare(cfg, cond_name=c.name, perturbed="caption", base=base[stimuli.name],
                           cond=_Side({}, language), ids=s.image_ids, dataset=stimuli.name, peaks=peaks, out=out,
                           log=log)
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates(subset=[c for c in ("quantity", "dataset", "condition", "model_x", "pooling_x",
                                                      "model_y", "pooling_y", "layer_x", "layer_y", "metric",
                                                      "direction") if c in table.columns])
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    write_exclusions(cfg, exclusions)
    return write_results(table, cfg.output_dir / "results.parquet")

