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
- ``peak_difference``: at the original's peak layer pair (per direction), condition − original with the metric's
  paired statistic over stimuli (``align.experiments.peak_statistic``: condition swaps per stimulus for the
  p-value, bootstrap interval); ``score_a`` = condition, ``score_b`` = original;
- ``grid_summary``: the mean difference over the whole grid and the fraction of layer pairs that decrease.

Outputs: ``<output>/perturbation/<job>.parquet`` per job, ``<output>/results.parquet`` (all rows) and
``<output>/exclusions.json`` (what each condition left out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from align.config import RunConfig
from align.experiments._driver import Executor
from align.experiments._driver import Pair
from align.experiments._driver import Plan
from align.experiments._driver import job_key
from align.experiments._driver import print_log
from align.experiments._driver import run_plans
from align.experiments._driver import scoring_executor
from align.experiments._driver import store_identity
from align.experiments._driver import write_exclusions
from align.experiments._paired import peak_statistic
from align.experiments._peaks import direction_peaks
from align.experiments._peaks import peaks_of
from align.experiments._rows import label_grid
from align.experiments._rows import label_rows


def masked_stimuli(cfg: RunConfig, stimuli, condition, *, log: Callable[[str], None] = print_log):
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


def grid_summary(diff: pd.DataFrame) -> list[dict]:
    """Per direction: mean difference over the grid and the fraction of layer pairs that decrease."""
    out = []
    for d, g in diff.groupby("direction"):
        out.append({"direction": d, "layer_x": -1, "layer_y": -1, "score": float(g["score"].mean()),
                    "fraction_lower": float((g["score"] < 0).mean()), "n": int(g["n"].iloc[0]),
                    "score_a": float(g["score_a"].mean()), "score_b": float(g["score_b"].mean())})
    return out


def _difference(score: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Condition − original per layer pair (``score_a``, ``score_b``: the two scores)."""
    merged = score.merge(base[["direction", "layer_x", "layer_y", "score"]], on=["direction", "layer_x", "layer_y"],
                         suffixes=("", "_base"))
    diff = merged.copy()
    diff["score_a"], diff["score_b"] = merged["score"], merged["score_base"]
    diff["score"] = merged["score"] - merged["score_base"]
    diff["quantity"] = "difference"
    return diff.drop(columns=["score_base"])


@dataclasses.dataclass
class Condition:
    """One perturbation compared with the originals: its name, the side it perturbs ("image" or "caption"), the
    stimuli both are compared on and, per store pair of the originals, the pair's stores under the condition."""

    name: str
    perturbed: str
    ids: list[str]
    dataset: str
    stores: dict  # Pair of originals -> (vision store, caption store) under the condition


def condition_pairs(name: str, perturbed: str, ids, dataset: str, base: tuple[dict, dict],
                    changed: tuple[dict, dict]) -> tuple[list[Pair], Condition]:
    """The store pairs of the originals ``base`` = (vision, language) stores and the :class:`Condition` whose
    ``changed`` stores (keyed as ``base``; absent = unchanged) replace them."""
    pairs, stores = [], {}
    for vk, vo in base[0].items():
        for lk, lo in base[1].items():
            pair = Pair(vo, lo)
            pairs.append(pair)
            stores[pair] = (changed[0].get(vk, vo), changed[1].get(lk, lo))
    return pairs, Condition(name, perturbed, list(ids), dataset, stores)


def compare(cfg: RunConfig, pairs: list[Pair], cond: Condition, peaks: list | None, *,
            log: Callable[[str], None], executor: Executor | None = None) -> list[pd.DataFrame]:
    """Every job of one condition: per store pair and metric, the original's grid (``baseline``) and the
    condition's rows; ``peaks`` (from ``experiment.peaks_from``) or None (the baseline's peaks). ``executor``
    (``scoring_executor``): where the jobs compute, None = here."""
    from align.engine import pairwise
    from align.experiments._pairing import aligned_layers

    ex, caption = cfg.experiment, cfg.score.caption
    grid_metrics = cfg.score.metrics if ex.grid_metrics is None else ex.grid_metrics
    ids_key = job_key(ids=cond.ids)
    fingerprint = cfg.fingerprint("stimuli", "models", "extract", "score", "experiment")
    extra = {"perturbation": cond.name, "perturbed": cond.perturbed, "config_fingerprint": fingerprint}

    def layers(pair: Pair, which: str):
        stores = (pair.vision, pair.language) if which == "original" else cond.stores[pair]
        return pair.load(which, lambda: aligned_layers(*stores, cond.ids, caption))

    def grid(cell, which: str, quantity: str) -> pd.DataFrame:
        vs, ls = (cell.pair.vision, cell.pair.language) if which == "original" else cond.stores[cell.pair]
        scores = pairwise(cell.metric, *layers(cell.pair, which), constant_layers="skip", preprocess=cell.preprocess)
        frame = label_grid(scores.to_frame(), vs, ls, cell.metric, caption=caption, experiment="perturbation",
                           extra={**(extra if which != "original" else {"config_fingerprint": fingerprint}),
                                  "quantity": quantity})
        frame["dataset"] = cond.dataset
        return frame

    def base_key(cell, done):
        return dict(kind="baseline", x=store_identity(cell.pair.vision), y=store_identity(cell.pair.language),
                    ids=ids_key, metric=cell.metric, caption=caption, preprocess=cell.preprocess)

    def key(cell, done):
        vc, lc = cond.stores[cell.pair]
        found = None if peaks is None else peaks_of(peaks, cell.pair.vision, cell.pair.language, cell.metric)
        return dict(kind="condition", x=store_identity(vc), y=store_identity(lc),
                    xo=store_identity(cell.pair.vision), yo=store_identity(cell.pair.language), ids=ids_key,
                    metric=cell.metric, caption=caption, grid=cell.metric in grid_metrics, n_perm=ex.n_perm,
                    n_boot=ex.n_boot, ci=ex.ci, seed=ex.seed, preprocess=cell.preprocess,
                    peaks=None if found is None else sorted(str(tuple(p.layers)) for p in found.values()))

    def compute(cell, done):
        vc, lc = cond.stores[cell.pair]
        base_rows = done.get(cell.of("baseline"))
        parts = []
        if cell.metric in grid_metrics:
            score = grid(cell, "condition", "score")
            diff = _difference(score, base_rows)
            summary = label_rows(grid_summary(diff), vc, lc, cell.metric, caption=caption, experiment="perturbation",
                                 extra={**extra, "quantity": "grid_summary"})
            parts += [score, diff, summary]
        if peaks is None:
            at = {d: p.layers for d, p in direction_peaks(base_rows).items()}
        else:
            at = {d: p.layers for d, p in peaks_of(peaks, cell.pair.vision, cell.pair.language, cell.metric).items()}
        directions = sorted(base_rows["direction"].unique()) if base_rows is not None else sorted(at)
        (xs_o, ys_o), (xs_c, ys_c) = layers(cell.pair, "original"), layers(cell.pair, "condition")
        rows = []
        for d in directions:
            if d not in at:
                raise ValueError(f"experiment.peaks_from has no peak for {cell.pair.label} {cell.metric} {d}; run "
                                 "the layerwise config with the same models and metrics")
            i, j = at[d]
            stat = peak_statistic(cell.metric, xs_c, ys_c, xs_o, ys_o, i, j, d, n_perm=ex.n_perm, n_boot=ex.n_boot,
                                  ci=ex.ci, seed=ex.seed, preprocess=cell.preprocess)
            rows.append({"direction": d, "layer_x": i, "layer_y": j, **stat})
        parts.append(label_rows(rows, vc, lc, cell.metric, caption=caption, experiment="perturbation",
                                extra={**extra, "quantity": "peak_difference"}))
        frame = pd.concat(parts, ignore_index=True)
        frame["dataset"] = cond.dataset
        return frame

    need_base = lambda metric: (None,) if metric in grid_metrics or peaks is None else ()  # noqa: E731
    plans = [Plan("baseline", "perturbation", base_key, lambda cell, done: grid(cell, "original", "baseline"),
                  conditions=need_base, label=lambda cell: f"baseline {cond.name}: {cell.pair.label} {cell.metric}"),
             Plan("condition", "perturbation", key, compute,
                  label=lambda cell: f"{cond.name}: {cell.pair.label} {cell.metric}")]
    done = run_plans(plans, pairs, cfg.score.metrics, cfg.score.preprocess_options, out=cfg.output_dir, log=log,
                     executor=executor)
    return list(done.values())


def run_perturbation(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print_log) -> Path:
    """Run a perturbation config; returns the path of the combined results table."""
    from align.data import caption_condition
    from align.data import image_condition
    from align.experiments._layerwise import activation_root
    from align.experiments._layerwise import run_extract
    from align.experiments._peaks import read_peaks
    from align.experiments._stimuli_from_config import stimuli_from_config
    from align.experiments._stores import open_stores
    from align.experiments._stores import split_by_modality
    from align.results import write_results

    ex = cfg.experiment
    executor = scoring_executor(cfg.execution, log=log)  # backend "ray": checked here, before any work
    stimuli = stimuli_from_config(cfg.stimuli, activation_root(cfg))
    log(f"stimuli: {stimuli.name} ({len(stimuli)} images)")
    vision_cfg, language_cfg = split_by_modality(cfg)
    image_conds = [image_condition(s) for s in ex.image_conditions]
    caption_conds = [caption_condition(s) for s in ex.caption_conditions]
    exclusions = {}
    sets = {"all": stimuli}
    mask_conds = [c for c in image_conds if c.needs_mask]
    if mask_conds:
        sets["masked"], report = masked_stimuli(cfg, stimuli, mask_conds[0], log=log)
        for c in mask_conds:
            exclusions[c.name] = report.to_dict()
    base = {}
    for s in sets.values():
        if s.name not in base:
            log(f"extract originals ({s.name}, {len(s)} images):")
            base[s.name] = open_stores(run_extract(cfg, s, progress=progress, log=log))
    peaks = (read_peaks(ex.peaks_from, stimuli.name, log=log, preprocess=cfg.score.preprocess_options[0])
             if ex.peaks_from else None)
    frames = []
    for c in image_conds:
        s = sets["masked"] if c.needs_mask else stimuli
        log(f"image condition {c.name} ({s.name}, {len(s)} images):")
        vision, _ = open_stores(run_extract(vision_cfg, s, condition=c.name, image_transform=c.apply,
                                            progress=progress, log=log))
        # a peak chosen on the full set is used for the masked subset too (same models and layers)
        pairs, cond = condition_pairs(c.name, "image", s.image_ids, s.name, base[s.name], (vision, {}))
        frames += compare(cfg, pairs, cond, peaks, log=log, executor=executor)
    for c in caption_conds:
        s, report = c.apply(stimuli)
        exclusions[c.name] = report.to_dict()
        if not report.is_empty:
            log(f"  {report.summary()}")
        log(f"caption condition {c.name} ({s.name}, {len(s)} images):")
        _, language = open_stores(run_extract(language_cfg, s, condition=c.name, progress=progress, log=log))
        pairs, cond = condition_pairs(c.name, "caption", s.image_ids, stimuli.name, base[stimuli.name], ({}, language))
        frames += compare(cfg, pairs, cond, peaks, log=log, executor=executor)
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates(subset=[c for c in ("quantity", "dataset", "condition", "model_x", "pooling_x",
                                                      "model_y", "pooling_y", "layer_x", "layer_y", "metric",
                                                      "direction") if c in table.columns])
    write_exclusions(cfg.output_dir, exclusions)
    return write_results(table, cfg.output_dir / "results.parquet")
