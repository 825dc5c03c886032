"""The preference experiment: does per-item alignment mirror which image–caption pairing is right or preferred?

A ridge mapping between one vision layer and one language layer is fitted on aligned training stimuli (both
directions: vision → language, ``x_to_y``, and language → vision, ``y_to_x``) and applied to held-out items
(cross-fitting: ``experiment.folds`` folds over items, split as linear predictivity splits stimuli --
``align.stats.kfold_ids`` --, every item scored by the model of the fold that held it out). The per-item alignment score is the Pearson r, over features, between the predicted and the actual
embedding, both z-scored with the training fold's target means and standard deviations. Each contrast gives every
held-out item a "positive" and a "negative" score:

- ``matched`` (any image–caption set, e.g. COCO): the item's own image and caption vs a mismatched one — the
  partner of a random derangement within the held-out fold. ``x_to_y``: r(f(image), own caption) vs r(f(image),
  partner's caption); ``y_to_x``: r(g(caption), own image) vs r(g(caption), partner's image). Training: each item's
  image with its caption.
- ``wrong_caption`` (synthetic scenes, ``extra["wrong_caption"]``: the first caption with one attribute wrong): the
  correct caption (caption 0) vs the wrong one. ``x_to_y``: r(f(image), correct) vs r(f(image), wrong); ``y_to_x``:
  r(g(correct), image) vs r(g(wrong), image). Training: images with their correct caption.
- ``preferred`` (Pick-a-Pic pairs, ``stimuli.kind = "pick_a_pic"``): the preferred vs the rejected image of a
  caption. ``x_to_y``: r(f(preferred image), caption) vs r(f(rejected image), caption); ``y_to_x``: r(g(caption),
  preferred) vs r(g(caption), rejected). Training: both images of the training pairs, each with the caption.
- ``scored`` (captions with a per-caption score, e.g. a CLIP score: ``stimuli.kind`` "folder" or "coco" with
  ``stimuli.caption_score`` naming a field the captions file has): an image's highest-scored caption vs its
  lowest-scored one (``scored_caption_pairs``; ties for the highest or lowest score go to the earlier caption).
  ``x_to_y``: r(f(image), high caption) vs r(f(image), low caption); ``y_to_x``: r(g(high caption), image) vs
  r(g(low caption), image). Images with fewer than 2 captions, or whose captions all have the same score, have no
  contrast: they are left out of this contrast (training included), logged, counted in ``n_excluded`` of its rows
  and listed in ``<output>/exclusions.json``. Training: each image with the MEAN embedding of all its captions,
  whatever ``score.caption`` says. The mean is symmetric in the captions, so the mapping never sees which caption
  is the high or the low one of any image; a single caption (``score.caption = "first"``) can coincide with the
  high one of every image (files written sorted by score), and a mapping trained on high-scored captions would
  favour the positive by construction. The language stores hold every caption for this contrast (the stores
  ``score.caption = "mean"`` extracts, rows ``<image_id>#<k>``), next to the caption-0 stores of the others.

Layers: ``experiment.layers = "peak"`` takes, per direction, the peak layer pair of ``score.metrics[0]`` on the
aligned stimuli (from ``peaks_from`` or a grid computed here); ``[rx, ry]`` takes the layers at those relative depths.
Ridge: centered (training means), penalty per target column chosen from ``linear_predictivity``'s default alphas
by exact leave-one-out error on the training fold (``align.stats.ridge_fit``, the core ``linear_predictivity``
uses).
``score.preprocess`` (one option) applies to the layer grid that picks the peak layers; the contrast's ridge runs on
the raw features (its positive and negative targets come from different stores, which a per-store step would scale
differently), so its rows say ``preprocess = "none"``.

Summary rows (``quantity``): ``accuracy`` (forced choice: fraction of items whose positive score is higher, ties
count half; exact binomial p-value against 0.5, Clopper–Pearson interval), ``mean_difference`` (mean of positive −
negative; sign-flip permutation p-value with ``n_perm`` draws, bootstrap interval with ``n_boot``),
``mean_positive`` and ``mean_negative``. The per-item scores go to ``<output>/items.parquet`` (for ``scored`` with
the ids of the high and the low caption).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from align.config import RunConfig
from align.experiments._contrasts import ContrastItems
from align.experiments._contrasts import contrast_items
from align.experiments._contrasts import direction_arrays
from align.experiments._contrasts import scored_caption_pairs
from align.experiments._contrasts import wrong_caption_set
from align.experiments._driver import Plan
from align.experiments._driver import job_key
from align.experiments._driver import print_log
from align.experiments._driver import run_plans
from align.experiments._driver import scoring_executor
from align.experiments._driver import store_identity
from align.experiments._driver import write_exclusions
from align.experiments._driver import write_frame
from align.experiments._peaks import direction_peaks
from align.experiments._peaks import required_peaks
from align.experiments._rows import label_grid
from align.experiments._rows import label_rows

ITEM_METRIC = "ridge_item_r"


def contrast_scores(train_src, train_tgt, owner, src_pos, tgt_pos, src_neg, tgt_neg, folds: np.ndarray,
                    alphas) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted positive and negative per-item scores: the Pearson r over features between the predicted and
    the actual target, both z-scored with the training fold's target means and standard deviations.

    Args:
      train_src, train_tgt: ``[m, p]``, ``[m, q]`` aligned training pairs (source predicts target).
      owner: ``[m]`` the item each training pair belongs to (held out together with the item).
      src_pos, tgt_pos: ``[n, p]``, ``[n, q]`` the positive (source, target) of each item.
      src_neg, tgt_neg: ``[n, p]``, ``[n, q]`` the negative (source, target) of each item.
      folds: ``[n]`` fold id per item.
      alphas: ridge penalties.

    Returns:
      (positive ``[n]``, negative ``[n]``) scores, each from the model fitted without the item's fold.
    """
    from align.stats import column_pearson
    from align.stats import ridge_fit
    from align.stats import ridge_predict

    n = len(folds)
    pos, neg = np.full(n, np.nan), np.full(n, np.nan)
    for f in np.unique(folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero(folds[owner] != f)
        fit = ridge_fit(train_src[train], train_tgt[train], alphas)
        sd = jnp.std(jnp.asarray(train_tgt[train]), axis=0)
        sd = jnp.where(sd > 0, sd, 1.0)

        def item_r(src, tgt):
            z_pred = (ridge_predict(fit, src[test]) - fit.mu_y) / sd
            return np.asarray(column_pearson(z_pred, (jnp.asarray(tgt[test]) - fit.mu_y) / sd, axis=1))

        pos[test], neg[test] = item_r(src_pos, tgt_pos), item_r(src_neg, tgt_neg)
    return pos, neg


def direction_scores(contrast: str, direction: str, items: ContrastItems, folds: np.ndarray, X, Y, Y_neg=None,
                     alphas=None) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted (positive ``[n]``, negative ``[n]``) scores of one contrast in one direction.

    ``X``: the vision layer ``[n_images, d_x]``; ``Y``: the caption layer ``[n_captions, d_y]`` the items' rows
    index (every caption for ``scored``); ``Y_neg``: the wrong-caption layer (``wrong_caption`` only).
    """
    from align.metrics import DEFAULT_ALPHAS

    arrays = direction_arrays(contrast, direction, items, X, Y, Y_neg)
    return contrast_scores(*arrays[:2], items.owner, *arrays[2:], folds, DEFAULT_ALPHAS if alphas is None else alphas)


def layers_at(cfg: RunConfig, cell, done, peaks: list | None) -> dict:
    """direction -> (vision layer, language layer) the ridge mapping of a store pair uses: the layers at
    ``experiment.layers`` (relative depths), or the peak of ``score.metrics[0]`` (``peaks_from``, else the grid
    step's rows); a symmetric metric's peak serves both directions."""
    vision, language = cell.pair.vision, cell.pair.language
    if cfg.experiment.layers != "peak":
        rx, ry = cfg.experiment.layers
        pair = (int(round(rx * (vision.n_layers - 1))), int(round(ry * (language.n_layers - 1))))
        return {"x_to_y": pair, "y_to_x": pair}
    if peaks is not None:
        found = required_peaks(peaks, vision, language, cell.metric)
    else:
        found = direction_peaks(done[cell.of("grid")])
    if "symmetric" in found:
        return {"x_to_y": found["symmetric"].layers, "y_to_x": found["symmetric"].layers}
    return {d: p.layers for d, p in found.items()}


def run_preference(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print_log) -> Path:
    """Run a preference config; returns the path of the combined summary table (items in items.parquet, what
    the ``scored`` contrast left out in exclusions.json)."""
    from align.engine import pairwise
    from align.experiments._layerwise import activation_root
    from align.experiments._layerwise import run_extract
    from align.experiments._pairing import paired_layers
    from align.experiments._peaks import read_peaks
    from align.experiments._stimuli_from_config import stimuli_from_config
    from align.experiments._stores import open_stores
    from align.experiments._stores import split_by_modality
    from align.experiments._stores import store_pairs
    from align.metrics import DEFAULT_ALPHAS
    from align.results import write_results
    from align.stats import paired_summary

    ex = cfg.experiment
    executor = scoring_executor(cfg.execution, log=log)  # backend "ray": checked here, before any work
    stimuli = stimuli_from_config(cfg.stimuli, activation_root(cfg))
    log(f"stimuli: {stimuli.name} ({len(stimuli)} images)")
    scored, exclusions = None, {}
    if "scored" in ex.contrasts:  # before any extraction: a set without scores, or too few contrasts, fails here
        scored = scored_caption_pairs(stimuli)
        exclusions["scored"] = scored.report.to_dict()
        if not scored.report.is_empty:
            log(f"  {scored.report.summary()}")
        if len(scored.ids) < max(ex.folds, 4):
            raise ValueError(f"contrast 'scored': only {len(scored.ids)} images of {stimuli.name!r} have captions with "
                             f"different scores ({scored.report.summary()}); experiment.folds = {ex.folds} needs at "
                             f"least {max(ex.folds, 4)}")
    first = dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, caption="first"))
    vision, language = open_stores(run_extract(first, stimuli, progress=progress, log=log))
    wrong, every = {}, {}
    if "wrong_caption" in ex.contrasts:
        _, language_cfg = split_by_modality(first)
        _, wrong = open_stores(run_extract(language_cfg, wrong_caption_set(stimuli), condition="wrong_caption",
                                           progress=progress, log=log))
    if scored is not None:  # every caption: the stores score.caption = "mean" extracts
        _, language_cfg = split_by_modality(cfg)
        all_captions = dataclasses.replace(language_cfg, score=dataclasses.replace(cfg.score, caption="mean"))
        _, every = open_stores(run_extract(all_captions, stimuli, progress=progress, log=log))
    by_language = {ls.path: lk for lk, ls in language.items()}  # by path: a Ray task gets copies of the stores
    peaks = (read_peaks(ex.peaks_from, stimuli.name, log=log, preprocess=cfg.score.preprocess_options[0])
             if ex.peaks_from and ex.layers == "peak" else None)
    out = cfg.output_dir / "preference"
    fingerprint = cfg.fingerprint("stimuli", "models", "extract", "score", "experiment")

    def stores(cell):
        """(vision store, the caption store the contrast's rows index, the wrong-caption store or None)."""
        lk = by_language[cell.pair.language.path]
        return (cell.pair.vision, every[lk] if cell.condition == "scored" else cell.pair.language, wrong.get(lk))

    def grid(cell, done):
        vs, ls = cell.pair.vision, cell.pair.language
        _, xs, ys = paired_layers(vs, ls, "first")
        return label_grid(pairwise(cell.metric, xs, ys, constant_layers="skip", preprocess=cell.preprocess).to_frame(),
                          vs, ls, cell.metric, experiment="preference", extra={"quantity": "layer_grid"})

    def grid_key(cell, done):
        return dict(kind="grid", x=store_identity(cell.pair.vision), y=store_identity(cell.pair.language),
                    metric=cell.metric, preprocess=cell.preprocess)

    def key(cell, done):
        vs, ys, ws = stores(cell)
        scored_key = {} if cell.condition != "scored" else {
            "e": store_identity(ys), "pick": job_key(ids=scored.ids, high=scored.high.tolist(), low=scored.low.tolist())}
        return dict(kind="preference", contrast=cell.condition, x=store_identity(vs),
                    y=store_identity(cell.pair.language), w=None if ws is None else store_identity(ws),
                    at=sorted(layers_at(cfg, cell, done, peaks).items()), folds=ex.folds, item_folds="kfold",
                    seed=ex.seed, n_perm=ex.n_perm, n_boot=ex.n_boot, ci=ex.ci, **scored_key)

    def items_path(cell, done) -> Path:
        return out / f"{job_key(**key(cell, done))}.items.parquet"

    def compute(cell, done):  # (summary rows, per-item scores); write_items writes the latter where the run drives
        contrast, (vs, ys, ws) = cell.condition, stores(cell)
        items, folds = contrast_items(contrast, stimuli, vs, ys, ws, ex.seed, ex.folds, scored)
        rows, per_item = [], []
        for d, (i, j) in sorted(layers_at(cfg, cell, done, peaks).items()):
            pos, neg = direction_scores(contrast, d, items, folds, vs.layer(i), ys.layer(j),
                                        ws.layer(j) if ws is not None else None, DEFAULT_ALPHAS)
            rows += [{"direction": d, "layer_x": i, "layer_y": j, **r}
                     for r in paired_summary(pos, neg, n_perm=ex.n_perm, n_boot=ex.n_boot, ci=ex.ci, seed=ex.seed)]
            per_item.append(pd.DataFrame({"item_id": items.ids, "fold": folds, "direction": d, "layer_x": i,
                                          "layer_y": j, "positive": pos, "negative": neg, **items.labels}))
        # accuracy and item scores (ridge r): higher = the matched/preferred side is more aligned
        extra = {"contrast": contrast, "config_fingerprint": fingerprint, "higher_is_more_aligned": True,
                 "preprocess": "none"}  # the contrast's ridge runs on raw features (see module doc)
        if contrast == "scored":
            extra["n_excluded"] = scored.report.n_excluded
        frame = label_rows(rows, vs, ys, ITEM_METRIC, experiment="preference", extra=extra,
                           caption="mean" if contrast == "scored" else "first")  # the training caption
        items_frame = pd.concat(per_item, ignore_index=True)
        for col in ("model_x", "pooling_x", "model_y", "pooling_y", "dataset"):
            items_frame[col] = frame[col].iloc[0]
        items_frame["contrast"] = contrast
        return frame, items_frame

    def write_items(cell, done, items_frame):  # before the job's rows: their file says both exist
        write_frame(items_frame, items_path(cell, done))

    plans = [Plan("grid", "preference", grid_key, grid,
                  conditions=lambda metric: (None,) if ex.layers == "peak" and peaks is None else (),
                  label=lambda cell: f"layer grid: {cell.pair.label} {cell.metric}"),
             Plan("contrast", "preference", key, compute, conditions=lambda metric: ex.contrasts,
                  label=lambda cell: f"{cell.condition}: {cell.pair.label}", write_extra=write_items)]
    done = run_plans(plans, store_pairs(vision, language), cfg.score.metrics[:1], cfg.score.preprocess_options,
                     out=cfg.output_dir, log=log, executor=executor)
    summaries = {cell: rows for cell, rows in done.items() if cell.step == "contrast"}
    write_exclusions(cfg.output_dir, exclusions)
    write_frame(pd.concat([pd.read_parquet(items_path(cell, done)) for cell in summaries], ignore_index=True),
                cfg.output_dir / "items.parquet")
    return write_results(pd.concat(summaries.values(), ignore_index=True), cfg.output_dir / "results.parquet")
