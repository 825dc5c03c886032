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
from align.experiments._jobs import cached_job
from align.experiments._jobs import direction_peaks
from align.experiments._jobs import job_key
from align.experiments._jobs import open_stores
from align.experiments._jobs import pair_key
from align.experiments._jobs import read_peaks
from align.experiments._jobs import relative_depth
from align.experiments._jobs import rows_by_id
from align.experiments._jobs import store_identity
from align.experiments._jobs import write_exclusions


def _log_default(msg: str) -> None:
    print(msg, flush=True)


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


def _single(i, j, d, stat, k, control) -> dict:
    return {"direction": d, "layer_x": i, "layer_y": j, "k": k, "control": control, **stat}


def _aggregate_pair(cfg: RunConfig, *, vision, language, side: str, x_of, y_of, n_units: int, unit_key: str,
                    dataset: str, peaks: dict | None, out: Path, log) -> list[pd.DataFrame]:
    """All jobs of one (vision store, caption store) pair: ``x_of(layer, k, units)`` / ``y_of(...)`` give the
    ``[n_units, d]`` rows of a layer at k (``units`` None = matched, else the shuffled group of each unit)."""
    from align.engine import pairwise
    from align.experiments._layerwise import label_grid
    from align.experiments._perturbation import peak_statistic

    ex = cfg.experiment
    (preprocess,) = cfg.score.preprocess_options  # one option (validated)
    grid_metrics = cfg.score.metrics if ex.grid_metrics is None else ex.grid_metrics
    shuffled = derangement(n_units, ex.seed)
    fingerprint = cfg.fingerprint("stimuli", "models", "extract", "score", "experiment")
    cache: dict = {}

    def layers(k, control):
        if (k, control) not in cache:
            units = None if control == "matched" else shuffled
            cache[(k, control)] = ([x_of(l, k, units) for l in range(vision.n_layers)],
                                   [y_of(l, k, units) for l in range(language.n_layers)])
        return cache[(k, control)]

    frames = []
    for metric in cfg.score.metrics:
        pkey = pair_key(vision, language, metric)
        common = dict(x=store_identity(vision), y=store_identity(language), units=unit_key, side=side,
                      metric=metric, seed=ex.seed, preprocess=preprocess)
        base = {"quantity": "score", "aggregated": side, "config_fingerprint": fingerprint}
        grid_rows = {}
        if metric in grid_metrics or peaks is None:
            for k in range(1, ex.k_max + 1):
                for control in ("matched", "shuffled"):
                    if metric not in grid_metrics and (k, control) != (1, "matched"):
                        continue

                    def grid(k=k, control=control):
                        xs, ys = layers(k, control)
                        return label_grid(pairwise(metric, xs, ys, constant_layers="skip", preprocess=preprocess).to_frame(), vision, language, metric,
                                          caption="mean", experiment="aggregation",
                                          extra={**base, "k": k, "control": control, "dataset": dataset})

                    label = f"{side} k={k} {control}: {pkey[0]}({pkey[1]}) x {pkey[2]}({pkey[3]}) {metric}"
                    grid_rows[(k, control)] = cached_job(out / f"{job_key(kind='grid', k=k, control=control, **common)}.parquet",
                                                         grid, label=label, log=log)
            frames += list(grid_rows.values())
        if peaks is None:
            first = grid_rows[(1, "matched")]
            at = direction_peaks(first)
        else:
            at = {k[5]: v for k, v in peaks.items() if k[:5] == pkey}
            if not at:
                raise ValueError(f"experiment.peaks_from has no peak for {pkey}; run the layerwise config with the "
                                 f"same models and metrics")

        def stats():
            rows = []
            for d, (i, j) in sorted(at.items()):
                for control in ("matched", "shuffled"):
                    xs1, ys1 = layers(1, control)
                    for k in range(1, ex.k_max + 1):
                        xs, ys = layers(k, control)
                        # intervals at every k > 1; the swap test (the finding's p-value) at k = k_max only
                        stat = peak_statistic(metric, xs, ys, xs1, ys1, i, j, d, dataclasses.replace(
                            ex, n_perm=ex.n_perm if k == ex.k_max else 0, n_boot=ex.n_boot if k > 1 else 0),
                            preprocess=preprocess)
                        rows.append(_single(i, j, d, stat, k, control))
            frame = pd.DataFrame(rows)
            frame["rel_depth_x"] = [relative_depth(i, vision.n_layers) for i in frame["layer_x"]]
            frame["rel_depth_y"] = [relative_depth(j, language.n_layers) for j in frame["layer_y"]]
            return label_grid(frame, vision, language, metric, caption="mean", experiment="aggregation",
                              extra={**base, "quantity": "peak_difference", "dataset": dataset})

        key = job_key(kind="peak", at=sorted(at.items()), k_max=ex.k_max, n_perm=ex.n_perm, n_boot=ex.n_boot,
                      ci=ex.ci, **common)
        frames.append(cached_job(out / f"{key}.parquet", stats, log=log,
                                 label=f"{side} peak statistics: {pkey[0]}({pkey[1]}) x {pkey[2]}({pkey[3]}) {metric}"))
    return frames


def run_aggregation(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = _log_default) -> Path:
    """Run an aggregation config; returns the path of the combined results table."""
    from align.experiments._layerwise import activation_root
    from align.experiments._layerwise import run_extract
    from align.experiments._pairing import caption_rows
    from align.experiments._pairing import reduce_rows
    from align.experiments._stimuli_from_config import stimuli_from_config
    from align.results import write_results

    ex = cfg.experiment
    stimuli = stimuli_from_config(cfg.stimuli, activation_root(cfg))
    log(f"stimuli: {stimuli.name} ({len(stimuli)} images)")
    peaks = (read_peaks(ex.peaks_from, stimuli.name, log=log, preprocess=cfg.score.preprocess_options[0])
             if ex.peaks_from else None)
    out = cfg.output_dir / "aggregation"
    frames, exclusions = [], {}
    if "captions" in ex.aggregate:
        every_caption = dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, caption="mean"))
        vision, language = open_stores(run_extract(every_caption, stimuli, progress=progress, log=log))
        for vs in vision.values():
            for ls in language.values():
                kept, members, short = caption_members(ls, list(vs.stimulus_ids), ex.k_max)
                exclusions["captions"] = {"n_in": len(vs.stimulus_ids), "n_out": len(kept),
                                          "excluded": {f"fewer_than_{ex.k_max}_captions": short}}
                if short:
                    log(f"  captions: {len(short)} images have fewer than {ex.k_max} captions and are left out")
                image_rows = rows_by_id(vs, kept)
                frames += _aggregate_pair(
                    cfg, vision=vs, language=ls, side="captions", n_units=len(kept), unit_key=job_key(ids=kept),
                    x_of=lambda l, k, units, vs=vs, rows=image_rows: vs.layer(l)[rows],
                    y_of=lambda l, k, units, ls=ls, m=members: mean_of_first(ls.layer(l), m, k, units),
                    dataset=stimuli.name, peaks=peaks, out=out, log=log)
    if "images" in ex.aggregate:
        groups, member_ids, short = image_members(stimuli, ex.k_max)
        exclusions["images"] = {"n_in": len(groups) + len(short), "n_out": len(groups),
                                "excluded": {f"fewer_than_{ex.k_max}_images": short}}
        if short:
            log(f"  images: {len(short)} groups have fewer than {ex.k_max} images and are left out")
        vision, language = open_stores(run_extract(cfg, stimuli, progress=progress, log=log))
        for vs in vision.values():
            members = np.stack([rows_by_id(vs, ids) for ids in member_ids])
            for ls in language.values():
                firsts = [ids[0] for ids in member_ids]
                kept, cap_rows = caption_rows(ls, firsts, cfg.score.caption, align_by_id=True)
                if kept != firsts:
                    raise ValueError(f"{ls.path} lacks the captions of {len(firsts) - len(kept)} groups' first images")
                frames += _aggregate_pair(
                    cfg, vision=vs, language=ls, side="images", n_units=len(groups), unit_key=job_key(ids=groups),
                    x_of=lambda l, k, units, vs=vs, m=members: mean_of_first(vs.layer(l), m, k, units),
                    y_of=lambda l, k, units, ls=ls, rows=cap_rows: reduce_rows(ls.layer(l), rows),
                    dataset=stimuli.name, peaks=peaks, out=out, log=log)
    if not frames:
        raise ValueError("experiment.aggregate lists nothing to do")
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    write_exclusions(cfg, exclusions)
    return write_results(pd.concat(frames, ignore_index=True), cfg.output_dir / "results.parquet")
