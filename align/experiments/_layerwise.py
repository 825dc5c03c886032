"""The layerwise experiment, which is what `align run CONFIG` does: extract -> score -> plot, skipping what exists.

Every vision model (rows, "x") is compared with every language model (columns, "y"), for every pooling of each and
every metric in the config. Each (store pair, metric) is one scoring job whose rows are written to
``<output>/scores/<job fingerprint>.parquet`` under the job's lock (``<job>.parquet.lock``: two runs of one config
share the jobs); the combined table is ``<output>/results.parquet``, and ``<output>/heatmaps/`` holds exactly its
heatmaps.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from align.config import RunConfig
from align.experiments._driver import Plan
from align.experiments._driver import job_key
from align.experiments._driver import print_log
from align.experiments._driver import run_plans
from align.experiments._driver import scoring_executor
from align.experiments._rows import label_grid

DEFAULT_POOLINGS = {"vision": ("cls", "mean"), "language": ("mean",)}


@dataclasses.dataclass
class RunOutputs:
    """Where a run's outputs went."""

    stores: dict[tuple[str, str], Path]
    results: Path | None = None
    heatmaps: list[Path] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    report: Path | None = None  # <output>/report.html (align.report.write_html_report), when plotting
    ceiling: Path | None = None  # <output>/ceiling.parquet (normalised.parquet beside it), with experiment.ceiling


def activation_root(cfg: RunConfig) -> Path:
    """The folder holding ``activations/`` and ``stimuli/``: the parent of the run's output, so that runs share
    activations (stores are keyed by stimulus set, condition, model and pooling)."""
    return cfg.output_dir.parent


def caption_selection(caption: str | int) -> str | int:
    """Which captions language models must embed for ``score.caption``: "all" for "mean", else one index."""
    if caption == "mean":
        return "all"
    return 0 if caption == "first" else int(caption)


def _store_fingerprint(model: str, dtype: str, stimuli_fp: str, condition: str) -> str:
    return job_key(model=model, dtype=dtype, stimuli=stimuli_fp, condition=condition)


def run_extract(cfg: RunConfig, stimuli, *, condition: str = "original", image_transform=None,
                progress: bool = True, log: Callable[[str], None] = print_log) -> dict[tuple[str, str], Path]:
    """Extract every model of ``cfg`` on ``stimuli``; returns (model name, pooling) -> finished store path."""
    from align.extract import extract, resolve_model
    from align.preprocess import store_diagnostics
    from align.store import open_store

    extractor = extract
    if cfg.execution.backend == "ray":  # forward passes on Ray Data workers; the same stores, written here
        from align.cluster import extract_on_ray

        extractor = functools.partial(extract_on_ray, execution=cfg.execution, log=log)
    root = activation_root(cfg)
    # language models embed only the captions the scores use: caption k alone is a (cheaper) set of its own
    captions = caption_selection(cfg.score.caption)
    caption_set = stimuli if captions == "all" else dataclasses.replace(stimuli, name=f"{stimuli.name}~caption{captions}")
    stores: dict[tuple[str, str], Path] = {}
    for m in cfg.models:
        spec = resolve_model(m.name, modality=m.modality) if m.modality else resolve_model(m.name)
        poolings = m.pooling or DEFAULT_POOLINGS[spec.modality]
        these = stimuli if spec.modality == "vision" else caption_set
        fingerprint = _store_fingerprint(m.name, cfg.extract.dtype, these.fingerprint(), condition)
        t0 = time.perf_counter()
        paths = extractor(spec, these, root, poolings=poolings, batch_size=cfg.extract.batch_size,
                          dtype=cfg.extract.dtype, device=cfg.extract.device, condition=condition,
                          image_transform=image_transform, captions=captions, config_fingerprint=fingerprint,
                          progress=progress, layers=m.layers or None,
                          **({"load_options": cfg.extract.load_options} if cfg.extract.load_options else {}))
        for pooling, path in paths.items():
            stored = open_store(path).meta.get("config_fingerprint")
            if stored != fingerprint:
                raise RuntimeError(
                    f"{path} was extracted with different settings (fingerprint {stored}, now {fingerprint}: model, "
                    f"dtype or stimuli changed); delete it or use another output folder")
            stores[(m.name, pooling)] = path
            store_diagnostics(path)  # the massive-activation diagnostic, stored beside the store (once)
        log(f"  {spec.modality:8s} {m.name}: {', '.join(poolings)} ready ({time.perf_counter() - t0:.1f} s)")
    return stores


def score_pair(vision, language, metric_spec: str, *, caption="first", null: int = 0,
               experiment: str = "layerwise", extra: dict | None = None,
               preprocess: str | None = None, groups: Mapping[str, str] | None = None,
               log: Callable[[str], None] = print_log, devices: int | str | None = None) -> pd.DataFrame:
    """Score one (vision store, caption store) pair with one metric over the whole layer grid; long-form rows.

    ``null`` > 0: that many shuffled-pairing permutations per layer pair (p-values). ``preprocess`` (default
    ``align.preprocess.DEFAULT_PREPROCESS``) is applied to every layer of both stores before the metric and recorded
    in the ``preprocess`` column. ``groups`` maps image ids to group labels (``StimulusSet.fold_groups``: copies of
    one stimulus share a label); a metric with cross-validation folds (linear predictivity) then keeps each group in
    one fold (``align.stats.kfold_ids`` with ``groups``, the metric's fold count and seed), so copies never sit in
    both a training and a held-out fold. ``devices`` (``[execution] devices``: None/1, N or "all") spreads the
    in-memory grid over local JAX devices (``align.pairwise(devices=...)``; same numbers).

    When the in-memory grid would not fit the memory available (``align.streaming.choose_path``; ``log`` says so
    and why), linear CKA and linear predictivity are streamed from row chunks of the stores with the same numbers."""
    from align.engine import pairwise
    from align.experiments._pairing import caption_rows
    from align.experiments._pairing import paired_layers
    from align.experiments._scoring_path import streamed_grid

    kept, rows_y = caption_rows(language, vision.stimulus_ids, caption)
    folds = grouped_folds(metric_spec, [groups.get(i, i) for i in kept]) if groups else None
    grid = streamed_grid(vision, language, rows_y, metric_spec, folds=folds, null=null, preprocess=preprocess,
                         log=log)
    if grid is None:
        kept, xs, ys = paired_layers(vision, language, caption)
        options = {} if preprocess is None else {"preprocess": preprocess}
        # a layer that is the same for every stimulus (a ViT's CLS token at the embedding layer) has no alignment:
        # it is scored NaN and said so in the `undefined` column, rather than failing the whole grid
        grid = pairwise(metric_spec, xs, ys, n_perm=null, metric_kwargs=None if folds is None else {"folds": folds},
                        constant_layers="skip", devices=devices, **options)
    frame = grid.to_frame()
    frame["undefined"] = undefined_reasons(frame, grid)
    return label_grid(frame, vision, language, metric_spec, caption=caption, experiment=experiment, extra=extra)


def grouped_folds(metric_spec: str, labels: list[str]):
    """Fold ids ``[n]`` keeping each group of ``labels`` in one fold, for a metric that takes ``folds`` (fold count
    and seed from the spec, else the metric's defaults); None when every label is unique or the metric has no
    folds (its own folds are then used as they are)."""
    from align.engine import resolve_metric
    from align.stats import kfold_ids

    if len(set(labels)) == len(labels):
        return None
    metric, spec_kwargs = resolve_metric(metric_spec)
    merged = {**metric.defaults, **spec_kwargs}
    folds = merged.get("folds")
    if not isinstance(folds, int) or isinstance(folds, bool):
        return None
    return kfold_ids(len(labels), folds, merged.get("seed", 0), groups=labels)


def undefined_reasons(frame: pd.DataFrame, grid) -> list[str]:
    """Per row of ``grid.to_frame()``: why its score is NaN ("" when it is defined)."""
    cx, cy = set(grid.constant_x), set(grid.constant_y)
    return [("constant x layer" if str(a) in cx else "constant y layer" if str(b) in cy else "")
            for a, b in zip(frame["layer_name_x"], frame["layer_name_y"])]


def run_score(cfg: RunConfig, stores: dict[tuple[str, str], Path], *,
              log: Callable[[str], None] = print_log, groups: Mapping[str, str] | None = None) -> Path:
    """Score every (vision, language) store pair with every metric and preprocessing option; writes one job file
    per (pair, metric, option) under ``<output>/scores/`` and the combined table ``<output>/results.parquet``.

    ``groups``: image id -> group label of copies of one stimulus (``StimulusSet.fold_groups``); linear
    predictivity keeps each group in one fold (see ``score_pair``), and the groups key the job files."""
    from align.experiments._stores import open_stores
    from align.experiments._stores import store_pairs
    from align.results import write_results

    vision, language = open_stores(stores)
    if not vision or not language:
        raise ValueError("a run needs at least one vision model and one language model "
                         f"(got vision: {sorted({k[0] for k in vision})}, language: {sorted({k[0] for k in language})})")
    for probe in cfg.score.probes:
        from align.engine import load_probe
        load_probe(probe)
    options = cfg.score.preprocess_options
    log_dominant_dimensions({**vision, **language}, options, log=log)
    fingerprint = cfg.fingerprint("stimuli", "models", "extract", "score")

    def key(cell, done):
        vs, ls = cell.pair.vision, cell.pair.language
        return {"x": [vs.meta.get("config_fingerprint"), vs.order_hash, vs.meta.get("pooling")],
                "y": [ls.meta.get("config_fingerprint"), ls.order_hash, ls.meta.get("pooling")],
                "metric": cell.metric, "caption": cfg.score.caption, "null": cfg.score.null,
                "preprocess": cell.preprocess, **_groups_key(groups)}

    def compute(cell, done):
        return score_pair(cell.pair.vision, cell.pair.language, cell.metric, caption=cfg.score.caption,
                          null=cfg.score.null, preprocess=cell.preprocess, groups=groups,
                          extra={"config_fingerprint": fingerprint}, devices=cfg.execution.devices,
                          log=print_log if cfg.execution.backend == "ray" else log)  # a Ray task pickles the job

    def label(cell):
        suffix = f" preprocess={cell.preprocess}" if len(options) > 1 or cell.preprocess != "none" else ""
        return f"{cell.pair.label} {cell.metric}{suffix}"

    plan = Plan("score", "scores", key, compute, label=label,
                detail=lambda cell: f"{cell.pair.vision.n_layers} x {cell.pair.language.n_layers} layers")
    executor = scoring_executor(cfg.execution, log=log)  # backend "ray": one Ray task per job, files written here
    done = run_plans([plan], store_pairs(vision, language), cfg.score.metrics, options, out=cfg.output_dir, log=log,
                     executor=executor)
    return write_results(pd.concat(done.values(), ignore_index=True), cfg.output_dir / "results.parquet")


def _groups_key(groups: Mapping[str, str] | None) -> dict:
    """The job-key entry of copy groups: none when every stimulus is its own group (keys stay as before)."""
    if not groups or all(label == image_id for image_id, label in groups.items()):
        return {}
    return {"fold_groups": hashlib.sha256(json.dumps(sorted(groups.items())).encode()).hexdigest()[:16]}


#: Preprocessing options under which a few dominant feature dimensions decide the scores (the scoring step says so).
RAW_SCALE_OPTIONS = ("none", "center")


def log_dominant_dimensions(stores: dict, options, *, log: Callable[[str], None] = print_log) -> list[str]:
    """Say once per store which of its layers a few feature dimensions dominate, when an option in ``options``
    scores raw feature scales (``none``, ``center``); reads each store's diagnostics sidecar (computing it when
    absent). Returns the messages logged."""
    from align.preprocess import dominance_message, store_diagnostics

    if not any(o in RAW_SCALE_OPTIONS for o in options):
        return []
    messages = []
    for key, store in stores.items():
        label = f"{store.meta.get('model', key[0])} ({store.meta.get('pooling', key[1])})"
        msg = dominance_message(store_diagnostics(store), label)
        if msg is not None:
            messages.append(msg)
            log(f"  warning: {msg}")
    return messages


def run(cfg: RunConfig, *, stages=("extract", "score", "plot"), progress: bool = True,
        log: Callable[[str], None] = print_log) -> RunOutputs:
    """Run a config end to end (library entry point of `align run`)."""
    from align.experiments._stimuli_from_config import stimuli_from_config

    outputs = RunOutputs(stores={})
    t0 = time.perf_counter()
    stimuli = stimuli_from_config(cfg.stimuli, cfg.output_dir.parent)
    log(f"stimuli: {stimuli.name} ({len(stimuli)} images)")
    outputs.timings["stimuli"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log("extract:")
    outputs.stores = run_extract(cfg, stimuli, progress=progress, log=log)
    outputs.timings["extract"] = time.perf_counter() - t0
    if "score" in stages:
        t0 = time.perf_counter()
        log("score:")
        groups = dict(zip(stimuli.image_ids, stimuli.fold_groups()))  # copies of one stimulus: one CV fold
        outputs.results = run_score(cfg, outputs.stores, log=log, groups=groups)
        outputs.timings["score"] = time.perf_counter() - t0
        if getattr(cfg.experiment, "ceiling", False):  # the caption noise ceiling (align.experiments.run_ceiling)
            from align.experiments._ceiling import ceiling_extract_config
            from align.experiments._ceiling import run_ceiling

            t0 = time.perf_counter()
            log("ceiling:")
            every_caption = run_extract(ceiling_extract_config(cfg), stimuli, progress=progress, log=log)
            outputs.ceiling = run_ceiling(cfg, every_caption, outputs.results, log=log)
            outputs.timings["ceiling"] = time.perf_counter() - t0
    if "plot" in stages and outputs.results is not None and cfg.plot.enabled:
        from align.plots import save_heatmaps
        from align.results import read_results

        t0 = time.perf_counter()
        # heatmaps/ mirrors results.parquet: figures of other settings (another caption, preprocess, metric) go
        outputs.heatmaps = save_heatmaps(read_results(outputs.results), cfg.output_dir / "heatmaps", dpi=cfg.plot.dpi,
                                         formats=cfg.plot.formats, vmin=cfg.plot.vmin, vmax=cfg.plot.vmax,
                                         cmap=cfg.plot.cmap, all_pairs=True, remove_stale=True)
        outputs.timings["plot"] = time.perf_counter() - t0
        # one self-contained interactive page of every heatmap; the effective config and the stage timings are
        # saved beside the table, where the page (and a later `align report`) reads them
        from align.report import write_html_report

        (cfg.output_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        (cfg.output_dir / "timings.json").write_text(json.dumps(outputs.timings, indent=2))
        outputs.report = write_html_report(cfg.output_dir)
    return outputs
