"""The aggregation experiment: does averaging exemplars of a concept raise its alignment?

- ``captions``: each image is represented by the mean of its first k caption embeddings, k = 1 … ``k_max``
  (images with fewer than ``k_max`` captions are left out and counted);
- ``images``: each group of the stimulus set (e.g. a synthetic scene description with several renderings, the
  concept → images groups a set declares) is represented by the mean of the vision embeddings of its first k
  images, paired with the caption of its first image (groups with fewer than ``k_max`` images are left out and
  counted).

Control: the same averaging over shuffled (wrong) groups: unit u gets the k exemplars of group π(u), π a random
derangement (seeded), so nothing but the averaging differs from the matched curve; at k = 1 it is the shuffled
pairing.

Rows (``quantity`` column; ``aggregated`` = "captions" | "images", ``k`` and ``control`` = "matched" |
"shuffled" columns):

- ``score``: the whole layer grid per k and control (for ``experiment.grid_metrics``);
- ``peak_difference``: at the peak layer pair of the matched k = 1 grid (or ``peaks_from``), per direction, the
  score at k (``score_a``) minus the score at k = 1 (``score_b``) of the same control, with the paired statistic of
  ``align.experiments.peak_statistic``: a bootstrap interval at every k > 1, the swap-test p-value at k = k_max
  (k = 1 itself appears as the row with k = 1, difference 0).

Outputs: ``<output>/aggregation/<job>.parquet`` per job, ``<output>/results.parquet``, ``<output>/exclusions.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
from align.experiments._peaks import required_peaks
from align.experiments._rows import label_grid
from align.experiments._rows import label_rows

CONTROLS = ("matched", "shuffled")


def derangement(n: int, seed: int) -> np.ndarray:
    """A random permutation of ``range(n)`` with no fixed point (one cycle through a random order), ``[n]``."""
    if n < 2:
        raise ValueError(f"a shuffled control needs at least 2 units, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


def mean_of_first(layer: np.ndarray, members: np.ndarray, k: int, units: np.ndarray | None = None) -> np.ndarray:
    """``[n_units, d]``: per unit, the mean of the rows of its first ``k`` members.

    Args:
      layer: ``[n_rows, d]`` activations.
      members: ``[n_units, K]`` row indices of each unit's members, in order.
      k: how many members to average (1 … K).
      units: take the members of unit ``units[u]`` for unit u (a shuffled control); None = each unit's own.
    """
    rows = members if units is None else members[units]
    return layer[rows[:, :k]].astype(np.float64).mean(axis=1).astype(np.float32)


def caption_members(language, image_ids: list[str], k_max: int) -> tuple[list[str], np.ndarray, list[str]]:
    """(images with at least ``k_max`` captions, ``[n, k_max]`` caption row indices ordered by caption index,
    images left out)."""
    by_image: dict[str, list[tuple[int, int]]] = {}
    for row, (sid, group) in enumerate(zip(language.stimulus_ids, language.groups)):
        by_image.setdefault(group, []).append((int(sid.rsplit("#", 1)[1]), row))
    kept, rows, short = [], [], []
    for image_id in image_ids:
        items = sorted(by_image.get(image_id, []))
        if len(items) < k_max:
            short.append(image_id)
            continue
        kept.append(image_id)
        rows.append([r for _, r in items[:k_max]])
    return kept, np.asarray(rows, dtype=np.int64).reshape(len(kept), k_max), short


def image_members(stimuli, k_max: int) -> tuple[list[str], list[list[str]], list[str]]:
    """(groups with at least ``k_max`` images, their first ``k_max`` image ids, groups left out)."""
    groups: dict[str, list[str]] = {}
    for s in stimuli.stimuli:
        if s.group is not None:
            groups.setdefault(s.group, []).append(s.image_id)
    if not groups:
        raise ValueError(f"stimulus set {stimuli.name!r} declares no groups; image aggregation needs them "
                         f"(e.g. synthetic scenes with stimuli.renderings = {k_max})")
    kept = [g for g, ids in groups.items() if len(ids) >= k_max]
    short = [g for g, ids in groups.items() if len(ids) < k_max]
    return kept, [groups[g][:k_max] for g in kept], short


@dataclasses.dataclass(eq=False)
class AggregatedPair(Pair):
    """A store pair whose units are aggregated: ``x_of(layer, k, units)`` / ``y_of(...)`` give the ``[n_units, d]``
    rows of a layer at k (``units`` None = matched, else the shuffled group of each unit)."""

    x_of: Callable = None
    y_of: Callable = None
    n_units: int = 0
    unit_key: str = ""

    def layers(self, k: int, control: str, shuffled: np.ndarray):
        units = None if control == "matched" else shuffled
        return self.load((k, control), lambda: (
            [self.x_of(l, k, units) for l in range(self.vision.n_layers)],
            [self.y_of(l, k, units) for l in range(self.language.n_layers)]))


def aggregate(cfg: RunConfig, pairs: list[AggregatedPair], *, side: str, dataset: str, peaks: list | None,
              log: Callable[[str], None], executor: Executor | None = None) -> list[pd.DataFrame]:
    """Every job of one side (``"captions"`` or ``"images"``): per pair and metric, the grids per k and control
    (``experiment.grid_metrics``; the matched k = 1 grid also for the others when it gives the peaks) and the
    peak statistics. ``executor`` (``scoring_executor``): where the jobs compute, None = here."""
    ex = cfg.experiment
    grid_metrics = cfg.score.metrics if ex.grid_metrics is None else ex.grid_metrics
    fingerprint = cfg.fingerprint("stimuli", "models", "extract", "score", "experiment")
    base = {"quantity": "score", "aggregated": side, "config_fingerprint": fingerprint}

    def common(cell):
        pair = cell.pair
        return dict(x=store_identity(pair.vision), y=store_identity(pair.language), units=pair.unit_key, side=side,
                    metric=cell.metric, seed=ex.seed, preprocess=cell.preprocess)

    def grids(metric):
        if metric in grid_metrics:
            return [(k, c) for k in range(1, ex.k_max + 1) for c in CONTROLS]
        return [(1, "matched")] if peaks is None else []

    def grid(cell, done):
        from align.engine import pairwise

        (k, control), pair = cell.condition, cell.pair
        scores = pairwise(cell.metric, *pair.layers(k, control, derangement(pair.n_units, ex.seed)),
                          constant_layers="skip", preprocess=cell.preprocess)
        return label_grid(scores.to_frame(), pair.vision, pair.language, cell.metric, caption="mean",
                          experiment="aggregation", extra={**base, "k": k, "control": control, "dataset": dataset})

    def at(cell, done) -> dict:
        if peaks is None:
            return {d: p.layers for d, p in direction_peaks(done[cell.of("grid", (1, "matched"))]).items()}
        return {d: p.layers for d, p in required_peaks(peaks, cell.pair.vision, cell.pair.language,
                                                        cell.metric).items()}

    def stats(cell, done):
        pair, shuffled, rows = cell.pair, derangement(cell.pair.n_units, ex.seed), []
        for d, (i, j) in sorted(at(cell, done).items()):
            for control in CONTROLS:
                xs1, ys1 = pair.layers(1, control, shuffled)
                for k in range(1, ex.k_max + 1):
                    xs, ys = pair.layers(k, control, shuffled)
                    # intervals at every k > 1; the swap test (the finding's p-value) at k = k_max only
                    stat = peak_statistic(cell.metric, xs, ys, xs1, ys1, i, j, d,
                                          n_perm=ex.n_perm if k == ex.k_max else 0,
                                          n_boot=ex.n_boot if k > 1 else 0, ci=ex.ci, seed=ex.seed,
                                          preprocess=cell.preprocess)
                    rows.append({"direction": d, "layer_x": i, "layer_y": j, "k": k, "control": control, **stat})
        return label_rows(rows, pair.vision, pair.language, cell.metric, caption="mean", experiment="aggregation",
                          extra={**base, "quantity": "peak_difference", "dataset": dataset})

    def peak_key(cell, done):  # the peak layers key the job: the matched k = 1 grid before it gives them
        return dict(kind="peak", at=sorted(at(cell, done).items()), k_max=ex.k_max, n_perm=ex.n_perm,
                    n_boot=ex.n_boot, ci=ex.ci, **common(cell))

    def grid_key(cell, done):
        return dict(kind="grid", k=cell.condition[0], control=cell.condition[1], **common(cell))

    def label(cell):
        what = "k={} {}".format(*cell.condition) if cell.step == "grid" else "peak statistics"
        return f"{side} {what}: {cell.pair.label} {cell.metric}"

    plans = [Plan("grid", "aggregation", grid_key, grid, conditions=grids, label=label),
             Plan("peak", "aggregation", peak_key, stats, label=label)]
    return list(run_plans(plans, pairs, cfg.score.metrics, cfg.score.preprocess_options, out=cfg.output_dir,
                          log=log, executor=executor).values())


def run_aggregation(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print_log) -> Path:
    """Run an aggregation config; returns the path of the combined results table."""
    from align.experiments._layerwise import activation_root
    from align.experiments._layerwise import run_extract
    from align.experiments._pairing import caption_rows
    from align.experiments._pairing import reduce_rows
    from align.experiments._peaks import read_peaks
    from align.experiments._stimuli_from_config import stimuli_from_config
    from align.experiments._stores import open_stores
    from align.experiments._stores import rows_by_id
    from align.results import write_results

    ex = cfg.experiment
    executor = scoring_executor(cfg.execution, log=log)  # backend "ray": checked here, before any work
    stimuli = stimuli_from_config(cfg.stimuli, activation_root(cfg))
    log(f"stimuli: {stimuli.name} ({len(stimuli)} images)")
    peaks = (read_peaks(ex.peaks_from, stimuli.name, log=log, preprocess=cfg.score.preprocess_options[0])
             if ex.peaks_from else None)
    frames, exclusions = [], {}
    if "captions" in ex.aggregate:
        every_caption = dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, caption="mean"))
        vision, language = open_stores(run_extract(every_caption, stimuli, progress=progress, log=log))
        pairs = []
        for vs in vision.values():
            for ls in language.values():
                kept, members, short = caption_members(ls, list(vs.stimulus_ids), ex.k_max)
                exclusions["captions"] = {"n_in": len(vs.stimulus_ids), "n_out": len(kept),
                                          "excluded": {f"fewer_than_{ex.k_max}_captions": short}}
                if short:
                    log(f"  captions: {len(short)} images have fewer than {ex.k_max} captions and are left out")
                image_rows = rows_by_id(vs, kept)
                pairs.append(AggregatedPair(
                    vs, ls, n_units=len(kept), unit_key=job_key(ids=kept),
                    x_of=lambda l, k, units, vs=vs, rows=image_rows: vs.layer(l)[rows],
                    y_of=lambda l, k, units, ls=ls, m=members: mean_of_first(ls.layer(l), m, k, units)))
        frames += aggregate(cfg, pairs, side="captions", dataset=stimuli.name, peaks=peaks, log=log,
                            executor=executor)
    if "images" in ex.aggregate:
        groups, member_ids, short = image_members(stimuli, ex.k_max)
        exclusions["images"] = {"n_in": len(groups) + len(short), "n_out": len(groups),
                                "excluded": {f"fewer_than_{ex.k_max}_images": short}}
        if short:
            log(f"  images: {len(short)} groups have fewer than {ex.k_max} images and are left out")
        vision, language = open_stores(run_extract(cfg, stimuli, progress=progress, log=log))
        firsts = [ids[0] for ids in member_ids]
        pairs = []
        for vs in vision.values():
            members = np.stack([rows_by_id(vs, ids) for ids in member_ids])
            for ls in language.values():
                kept, cap_rows = caption_rows(ls, firsts, cfg.score.caption, align_by_id=True)
                if kept != firsts:
                    raise ValueError(f"{ls.path} lacks the captions of {len(firsts) - len(kept)} groups' first images")
                pairs.append(AggregatedPair(
                    vs, ls, n_units=len(groups), unit_key=job_key(ids=groups),
                    x_of=lambda l, k, units, vs=vs, m=members: mean_of_first(vs.layer(l), m, k, units),
                    y_of=lambda l, k, units, ls=ls, rows=cap_rows: reduce_rows(ls.layer(l), rows)))
        frames += aggregate(cfg, pairs, side="images", dataset=stimuli.name, peaks=peaks, log=log,
                            executor=executor)
    if not frames:
        raise ValueError("experiment.aggregate lists nothing to do")
    write_exclusions(cfg.output_dir, exclusions)
    return write_results(pd.concat(frames, ignore_index=True), cfg.output_dir / "results.parquet")
