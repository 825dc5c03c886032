"""Run configs: TOML files validated into dataclasses, with a fingerprint that keys every output.

A config is data. Unknown keys and bad values are errors that name them (``ConfigError``): booleans are booleans,
counts are non-negative integers (never a bool or a float), names and paths are non-empty strings. A key that takes a
list of strings (``LIST_KEYS``) also takes one string, read as a one-item list (``pooling = "cls"`` is ``["cls"]``).
Checks that need files, models or the metric registry run in ``align.experiments.preflight``. The fingerprint is a
hash of the validated config's content (not of the file's text), so reformatting a file does not invalidate results.
See README "Config reference" for every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from align.preprocess import DEFAULT_PREPROCESS


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the key and what is allowed."""


VISION_POOLINGS = ("cls", "mean")
LANGUAGE_POOLINGS = ("mean", "last", "first")
STIMULUS_KINDS = ("synthetic", "folder", "coco", "flickr", "pick_a_pic")
DTYPES = ("float32", "bfloat16", "float16")
#: Scenes rendered when a synthetic config omits ``stimuli.n``: a generator has no fixed size, so "all" has no meaning.
SYNTHETIC_DEFAULT_N = 500


@dataclasses.dataclass(frozen=True)
class StimuliConfig:
    """Which stimulus set to use.

    kind: "synthetic" (the embedded default, generated here), "folder" (images dir + captions JSONL/CSV),
      "coco" (compact or official COCO layout under ``root``), "flickr" (a Flickr token file + images dir),
      "pick_a_pic" (a Pick-a-Pic style Parquet file ``root``: both images of every preference pair).
    n: use the first n stimuli (pick_a_pic: pairs); omitted (None) or "all" = every stimulus of the source (the
      validated config holds None). An integer >= 4; above the source's size it is an error when the set is
      loaded. synthetic: how many scenes to render; omitted = ``SYNTHETIC_DEFAULT_N`` (500), and "all" is an
      error (a generator has no fixed size).
    renderings: synthetic only: images per scene description (grouped by scene, for image aggregation).
    caption_score: folder and coco only: the captions file's per-caption score field (JSONL) or column (CSV),
      e.g. "clip_score"; read when the file has it (every caption then needs a finite number), ignored when it
      has not. The preference contrast "scored" needs it.
    base_dir: the folder relative ``images``, ``captions`` and ``root`` paths resolve against (:meth:`path`):
      ``load_config`` sets it to the config file's folder unless the file gives it; None (a config built with
      ``parse_config``): the working directory. Not part of the fingerprint.
    """

    kind: str = "synthetic"
    n: int | str | None = None
    seed: int = 0
    images: str | None = None
    captions: str | None = None
    root: str | None = None
    name: str | None = None
    renderings: int = 1
    caption_score: str = "score"
    duplicates: str = "error"  # copies of one stimulus: "error" refuses them, "group" keeps them in one CV fold
    base_dir: str | None = None

    def path(self, key: str) -> Path | None:
        """The ``images`` / ``captions`` / ``root`` entry as an absolute path (``~`` expanded; a relative path joined
        to ``base_dir``, else to the working directory), or None when not given."""
        value = getattr(self, key)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = Path(self.base_dir).expanduser() / path
        return Path(os.path.normpath(path.absolute()))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One model: a short name (``align models``), a Hugging Face id or a local path, and its poolings.

    ``layers``: fnmatch pattern(s) over the layer names the extractor records (``layers = "layer_*"``; see
    ``align show-model NAME``); only matching layers are stored and scored. Empty (default): every layer. A pattern
    that matches no layer is an error listing the available layers.
    """

    name: str
    pooling: tuple[str, ...] = ()
    modality: str | None = None
    layers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """``[extract]``: batch size, compute dtype and device of the forward passes; for big transformers models
    ``device_map = "auto"`` (accelerate spreads the layers over every visible GPU) and ``low_cpu_mem_usage``."""

    batch_size: int = 16
    dtype: str = "float32"
    device: str = "auto"
    device_map: str | None = None
    low_cpu_mem_usage: bool = False

    @property
    def load_options(self) -> dict:
        """The big-model options that are set (empty by default), for ``align.extract.extract(load_options=)``."""
        opts = {"device_map": self.device_map, "low_cpu_mem_usage": self.low_cpu_mem_usage}
        return {k: v for k, v in opts.items() if v}


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Which metrics to compute over every (vision model, language model) layer grid.

    metrics: metric specs, e.g. "linear_cka" or "rbf_cka(sigma_frac=0.5)".
    caption: which caption represents an image: "first" (caption 0), "mean" (mean of all caption embeddings) or
      an integer k (caption k).
    null: permutations for a shuffled-pairing null per layer pair (0 = none).
    preprocess: per-layer feature preprocessing before every metric (``align.preprocess``): one spec ("none",
      "center", "zscore", "clip(q=0.95)", "l2", "pca(k=50)") or a list of them, one set of result rows per option
      (layerwise runs; the other experiment kinds take one). Stored in canonical form (e.g. "clip(0.95)" ->
      "clip(q=0.95)"; a one-element list -> its string), so equal choices give equal fingerprints.
    """

    metrics: tuple[str, ...] = ("linear_predictivity", "linear_cka")
    caption: str | int = "first"
    null: int = 0
    probes: tuple[str, ...] = ()
    preprocess: str | tuple[str, ...] = DEFAULT_PREPROCESS

    @property
    def preprocess_options(self) -> tuple[str, ...]:
        """The canonical preprocessing specs, in the order given (one or more)."""
        return (self.preprocess,) if isinstance(self.preprocess, str) else tuple(self.preprocess)


AGGREGATE_SIDES = ("captions", "images")
PREFERENCE_CONTRASTS = ("matched", "wrong_caption", "preferred", "scored")
#: Stimulus kinds whose captions file can carry a per-caption score (``stimuli.caption_score``).
SCORED_STIMULUS_KINDS = ("folder", "coco")


@dataclasses.dataclass(frozen=True)
class LayerwiseExperiment:
    """``[experiment] kind = "layerwise"``: what ``align run`` does (every layer grid, heatmaps), plus a
    shuffled-pairing permutation null at each peak layer pair with ``n_perm`` permutations (0 = none), drawn with
    ``seed``."""

    kind: str = "layerwise"
    seed: int = 0
    n_perm: int = 1000


@dataclasses.dataclass(frozen=True)
class PairedStatisticsExperiment:
    """What the perturbation, aggregation and preference experiments share: ``seed`` (of permutations, resamples,
    shuffled groups), ``n_perm`` (permutations / condition swaps behind p-values), ``n_boot`` (bootstrap resamples
    behind intervals), ``ci`` (interval coverage), ``peaks_from`` (a layerwise output folder or results table whose
    peak layer pairs the statistics use; None = compute the baseline grids here)."""

    kind: str = ""
    seed: int = 0
    n_perm: int = 1000
    n_boot: int = 1000
    ci: float = 0.95
    peaks_from: str | None = None


@dataclasses.dataclass(frozen=True)
class PerturbationExperiment(PairedStatisticsExperiment):
    """``kind = "perturbation"``: ``image_conditions`` and ``caption_conditions`` (specs, e.g. "rotate(angle=90)",
    "nouns_only"); ``mask_n``: mask conditions use at most this many images with masks, taken from the whole data
    set (not only the first ``stimuli.n``), None = all of them; ``grid_metrics``: the metrics of ``score.metrics``
    scored over the whole layer grid under every condition (the others only at the peak pair; None = all)."""

    kind: str = "perturbation"
    grid_metrics: tuple[str, ...] | None = None
    image_conditions: tuple[str, ...] = ()
    caption_conditions: tuple[str, ...] = ()
    mask_n: int | None = None


@dataclasses.dataclass(frozen=True)
class AggregationExperiment(PairedStatisticsExperiment):
    """``kind = "aggregation"``: ``aggregate`` ("captions": mean of k captions per image; "images": mean of k images
    per group), ``k_max`` (k = 1 .. k_max), ``grid_metrics`` (as for perturbation, per k)."""

    kind: str = "aggregation"
    grid_metrics: tuple[str, ...] | None = None
    aggregate: tuple[str, ...] = ("captions",)
    k_max: int = 5


@dataclasses.dataclass(frozen=True)
class PreferenceExperiment(PairedStatisticsExperiment):
    """``kind = "preference"``: ``contrasts`` ("matched": matched vs mismatched pairs; "wrong_caption": correct vs
    one-attribute-wrong caption of synthetic scenes; "preferred": preferred vs rejected image of Pick-a-Pic pairs;
    "scored": highest- vs lowest-scored caption of an image, for data with ``stimuli.caption_score``), ``folds``
    (cross-fitting folds over items), ``layers`` ("peak": the peak layer pair of ``score.metrics[0]`` per
    direction, or [relative depth x, relative depth y])."""

    kind: str = "preference"
    contrasts: tuple[str, ...] = ("matched",)
    folds: int = 5
    layers: str | tuple[float, ...] = "peak"


#: The config type of each ``[experiment] kind`` (``align experiment CONFIG``; README "Experiments").
EXPERIMENTS = {"layerwise": LayerwiseExperiment, "perturbation": PerturbationExperiment,
               "aggregation": AggregationExperiment, "preference": PreferenceExperiment}
EXPERIMENT_KINDS = tuple(EXPERIMENTS)
#: Any experiment config.
ExperimentConfig = LayerwiseExperiment | PerturbationExperiment | AggregationExperiment | PreferenceExperiment


#: Keys whose value is a list of strings; one string is read as a one-item list (``metrics = "linear_cka"``).
LIST_KEYS = {
    ModelConfig: ("pooling", "layers"),
    ScoreConfig: ("metrics", "probes"),
    PerturbationExperiment: ("grid_metrics", "image_conditions", "caption_conditions"),
    AggregationExperiment: ("grid_metrics", "aggregate"),
    PreferenceExperiment: ("contrasts",),
}


@dataclasses.dataclass(frozen=True)
class PlotConfig:
    """Heatmaps: ``formats`` (any of "png", "pdf", "svg"), one shared colour range per figure unless ``vmin`` /
    ``vmax`` are given, ``cmap`` (None: a diverging map centred on zero for signed scores, sequential otherwise)."""

    enabled: bool = True
    dpi: int = 120
    formats: tuple[str, ...] = ("png",)
    vmin: float | None = None
    vmax: float | None = None
    cmap: str | None = None


LIST_KEYS[PlotConfig] = ("formats",)

EXECUTION_BACKENDS = ("local", "ray")
PLOT_FORMATS = ("png", "pdf", "svg")


@dataclasses.dataclass(frozen=True)
class ExecutionConfig:
    """Where a run computes (README "Running at scale"); not part of the fingerprint: results do not depend on it.

    devices: JAX devices a layer grid is sharded over: 1 (default), an integer N (the first N local devices) or
      "all" (every local device).
    backend: "local" (this process) or "ray" (extraction on Ray Data, one Ray task per scoring job).
    address: the Ray cluster to join (None: start a local one); backend "ray" only.
    num_cpus, num_gpus: resources each Ray worker asks for; backend "ray" only.
    """

    devices: int | str = 1
    backend: str = "local"
    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole run: stimuli -> extract every model -> score every vision x language pair -> plot."""

    name: str
    output: str
    stimuli: StimuliConfig
    models: tuple[ModelConfig, ...]
    extract: ExtractConfig = ExtractConfig()
    score: ScoreConfig = ScoreConfig()
    plot: PlotConfig = PlotConfig()
    experiment: ExperimentConfig = LayerwiseExperiment()
    execution: ExecutionConfig = ExecutionConfig()
    source: str | None = None

    def fingerprint(self, *sections: str) -> str:
        """Hash (16 hex chars) of the named sections (all content sections when none are named)."""
        content = _as_jsonable(self)
        content.pop("source", None)
        content.pop("output", None)
        content.pop("execution", None)  # where it runs does not change the numbers
        if isinstance(content.get("stimuli"), dict):
            content["stimuli"].pop("base_dir", None)  # where the config file lies does not either
        for model in content.get("models", []):
            if not model.get("layers"):
                model.pop("layers", None)  # every layer, as before the key existed: fingerprints unchanged
        if sections:
            content = {k: content[k] for k in sections}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def output_dir(self) -> Path:
        return Path(self.output)


def _as_jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _as_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_as_jsonable(v) for v in obj]
    return obj


def _build(cls, data: Mapping[str, Any], where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        if key in LIST_KEYS.get(cls, ()):
            value = _string_list(value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _string_list(value, key: str) -> tuple[str, ...]:
    """A list-of-strings key: a list as a tuple; one string as a one-item list (``pooling = "cls"`` means
    ``["cls"]``, never the characters of "cls"); anything else is a ConfigError naming the key."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{key} = {value!r}; must be a string or a list of strings")


def _require(cond: bool, message: str):
    if not cond:
        raise ConfigError(message)


def _validate(cfg: RunConfig) -> None:
    s = cfg.stimuli
    _require(isinstance(s.kind, str) and s.kind in STIMULUS_KINDS,
             f"stimuli.kind = {s.kind!r}; allowed: {list(STIMULUS_KINDS)}")
    _require(_is_int(s.seed) and s.seed >= 0, f"stimuli.seed = {s.seed!r}; must be an integer >= 0")
    for key in ("images", "captions", "root", "name", "base_dir"):
        value = getattr(s, key)
        _require(value is None or (isinstance(value, str) and value.strip() != ""),
                 f"stimuli.{key} = {value!r}; must be a non-empty string (a path{' or name' if key == 'name' else ''})")
    if s.kind == "folder":
        _require(bool(s.images and s.captions), "stimuli.kind = 'folder' needs stimuli.images and stimuli.captions")
    if s.kind == "coco":
        _require(bool(s.root), "stimuli.kind = 'coco' needs stimuli.root (the folder holding images/ and captions)")
    if s.kind == "flickr":
        _require(bool(s.images and s.captions), "stimuli.kind = 'flickr' needs stimuli.images and stimuli.captions (token file)")
    _require(len(cfg.models) >= 1, "models: at least one [[models]] entry is needed")
    for i, m in enumerate(cfg.models):
        _require(isinstance(m.name, str) and m.name.strip() != "",
                 f"models[{i}].name = {m.name!r}; must be a non-empty string")
        _require(m.modality is None or (isinstance(m.modality, str) and m.modality in ("vision", "language")),
                 f"models[{i}].modality = {m.modality!r}; allowed: 'vision', 'language'")
        for p in m.pooling:
            _require(p in VISION_POOLINGS + LANGUAGE_POOLINGS,
                     f"models[{i}] ({m.name}): pooling {p!r} unknown; vision: {list(VISION_POOLINGS)}, language: {list(LANGUAGE_POOLINGS)}")
        _require(len(set(m.pooling)) == len(m.pooling), f"models[{i}] ({m.name}): pooling {list(m.pooling)} repeats a name")
    names = [m.name for m in cfg.models]
    _require(len(set(names)) == len(names), f"models: duplicate model names {names}")
    e = cfg.extract
    _require(_is_int(e.batch_size) and e.batch_size >= 1, f"extract.batch_size = {e.batch_size!r}; must be an integer >= 1")
    _require(isinstance(e.dtype, str) and e.dtype in DTYPES, f"extract.dtype = {e.dtype!r}; allowed: {list(DTYPES)}")
    _require(isinstance(e.device, str) and (e.device in ("auto", "cpu", "cuda", "mps")
                                            or re.fullmatch(r"cuda:\d+", e.device) is not None),
             f"extract.device = {e.device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    _require(e.device_map in (None, "auto"), f"extract.device_map = {e.device_map!r}; allowed: 'auto' (omit it "
             "for the whole model on extract.device)")
    _require(e.device_map is None or e.device in ("auto", "cuda"), f"extract.device_map = 'auto' places the model "
             f"itself; extract.device must be 'auto' or 'cuda', got {e.device!r}")
    _require(isinstance(e.low_cpu_mem_usage, bool), f"extract.low_cpu_mem_usage = {e.low_cpu_mem_usage!r}; must be "
             "true or false")
    sc = cfg.score
    _require(len(sc.metrics) >= 1, "score.metrics: list at least one metric")
    _require(all(m.strip() for m in sc.metrics), f"score.metrics = {list(sc.metrics)}; an empty metric name")
    _require(all(p.strip() for p in sc.probes), f"score.probes = {list(sc.probes)}; an empty probe path")
    _require(sc.caption in ("first", "mean") or (_is_int(sc.caption) and sc.caption >= 0),
             f"score.caption = {sc.caption!r}; allowed: 'first', 'mean' or a caption index >= 0")
    _require(_is_int(sc.null) and sc.null >= 0, f"score.null = {sc.null!r}; must be an integer >= 0")
    plot = cfg.plot
    _require(isinstance(plot.enabled, bool), f"plot.enabled = {plot.enabled!r}; must be a boolean (true or false)")
    _require(_is_int(plot.dpi) and plot.dpi >= 1, f"plot.dpi = {plot.dpi!r}; must be an integer >= 1")
    _require(all(f in PLOT_FORMATS for f in plot.formats) and len(plot.formats) >= 1,
             f"plot.formats = {list(plot.formats)}; allowed: any of {list(PLOT_FORMATS)}")
    for key in ("vmin", "vmax"):
        v = getattr(plot, key)
        _require(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
                 f"plot.{key} = {v!r}; must be a number")
    _require(plot.vmin is None or plot.vmax is None or plot.vmin < plot.vmax,
             f"plot.vmin = {plot.vmin!r} must be below plot.vmax = {plot.vmax!r}")
    _require(plot.cmap is None or (isinstance(plot.cmap, str) and plot.cmap.strip() != ""),
             f"plot.cmap = {plot.cmap!r}; must be a matplotlib colour map name")
    x = cfg.execution
    _require(x.devices == "all" or (_is_int(x.devices) and x.devices >= 1),
             f"execution.devices = {x.devices!r}; allowed: an integer >= 1 or 'all'")
    _require(x.backend in EXECUTION_BACKENDS, f"execution.backend = {x.backend!r}; allowed: {list(EXECUTION_BACKENDS)}")
    _require(x.address is None or (isinstance(x.address, str) and x.address.strip() != ""),
             f"execution.address = {x.address!r}; must be a Ray address such as 'ray://host:10001' or 'auto'")
    _require(x.address is None or x.backend == "ray", "execution.address applies to backend = 'ray' only")
    for key in ("num_cpus", "num_gpus"):
        v = getattr(x, key)
        _require(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                 f"execution.{key} = {v!r}; must be a number >= 0")
    _require(len(sc.preprocess_options) == 1 or cfg.experiment.kind == "layerwise",
             f"score.preprocess lists {len(sc.preprocess_options)} options {list(sc.preprocess_options)}; experiment "
             f"kind {cfg.experiment.kind!r} takes one (run the config once per option, e.g. --set "
             f"'score.preprocess=\"zscore\"')")
    _require(_is_int(s.renderings) and s.renderings >= 1, f"stimuli.renderings = {s.renderings!r}; must be an integer >= 1")
    _require(s.renderings == 1 or s.kind == "synthetic", "stimuli.renderings applies to kind = 'synthetic' only")
    _require(s.duplicates in ("error", "group"), f"stimuli.duplicates = {s.duplicates!r}; allowed: 'error' (refuse "
             f"copies of one stimulus), 'group' (keep them, each group of copies in one cross-validation fold)")
    if s.kind == "pick_a_pic":
        _require(bool(s.root), "stimuli.kind = 'pick_a_pic' needs stimuli.root (the Parquet file)")
    _require(isinstance(s.caption_score, str) and s.caption_score.strip() != "",
             f"stimuli.caption_score = {s.caption_score!r}; must be the non-empty name of a score field or column")
    _require(s.caption_score == StimuliConfig.caption_score or s.kind in SCORED_STIMULUS_KINDS,
             f"stimuli.caption_score applies to kind {' or '.join(map(repr, SCORED_STIMULUS_KINDS))} only (a "
             f"captions file with a score field); stimuli.kind = {s.kind!r} carries no caption scores")
    _validate_experiment(cfg.experiment)
    ex = cfg.experiment
    if ex.kind == "preference" and "scored" in ex.contrasts:
        _require(s.kind in SCORED_STIMULUS_KINDS,
                 f"experiment.contrasts: 'scored' compares an image's highest- and lowest-scored captions, but "
                 f"stimuli.kind = {s.kind!r} carries no caption scores; use kind 'folder' or 'coco' with a captions "
                 f"file that has a per-caption score field (stimuli.caption_score = {s.caption_score!r}), or drop "
                 f"'scored'")
    grid = getattr(cfg.experiment, "grid_metrics", None)
    if grid is not None:
        stray = [m for m in grid if m not in sc.metrics]
        _require(not stray, f"experiment.grid_metrics: {stray} are not in score.metrics {list(sc.metrics)}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate_experiment(ex: ExperimentConfig) -> None:
    _require(_is_int(ex.seed) and ex.seed >= 0, f"experiment.seed = {ex.seed!r}; must be an integer >= 0")
    _require(_is_int(ex.n_perm) and ex.n_perm >= 0, f"experiment.n_perm = {ex.n_perm!r}; must be an integer >= 0")
    if isinstance(ex, PairedStatisticsExperiment):
        _require(_is_int(ex.n_boot) and ex.n_boot >= 0, f"experiment.n_boot = {ex.n_boot!r}; must be an integer >= 0")
        _require(isinstance(ex.ci, float) and 0.0 < ex.ci < 1.0, f"experiment.ci = {ex.ci!r}; must be a number in (0, 1)")
        _require(ex.peaks_from is None or isinstance(ex.peaks_from, str),
                 f"experiment.peaks_from = {ex.peaks_from!r}; must be a path (string)")
    if ex.kind == "perturbation":
        from align.data import caption_condition, image_condition

        _require(bool(ex.image_conditions or ex.caption_conditions),
                 "experiment.kind = 'perturbation' needs image_conditions and/or caption_conditions")
        for key, make in (("image_conditions", image_condition), ("caption_conditions", caption_condition)):
            for spec in getattr(ex, key):
                try:
                    cond = make(spec) if isinstance(spec, str) else None
                except ValueError as e:
                    raise ConfigError(f"experiment.{key}: {e}") from None
                _require(cond is not None, f"experiment.{key}: {spec!r} must be a string such as 'grayscale'")
                _require(cond.kind != "original", f"experiment.{key}: 'original' is the baseline; list perturbations only")
        _require(ex.mask_n is None or (_is_int(ex.mask_n) and ex.mask_n >= 8),
                 f"experiment.mask_n = {ex.mask_n!r}; must be an integer >= 8")
    if ex.kind == "aggregation":
        _require(len(ex.aggregate) >= 1 and all(a in AGGREGATE_SIDES for a in ex.aggregate),
                 f"experiment.aggregate = {list(ex.aggregate)}; allowed: {list(AGGREGATE_SIDES)}")
        _require(_is_int(ex.k_max) and ex.k_max >= 2, f"experiment.k_max = {ex.k_max!r}; must be an integer >= 2")
    if ex.kind == "preference":
        _require(len(ex.contrasts) >= 1 and all(c in PREFERENCE_CONTRASTS for c in ex.contrasts),
                 f"experiment.contrasts = {list(ex.contrasts)}; allowed: {list(PREFERENCE_CONTRASTS)}")
        _require(_is_int(ex.folds) and ex.folds >= 2, f"experiment.folds = {ex.folds!r}; must be an integer >= 2")
        ok = ex.layers == "peak" or (isinstance(ex.layers, tuple) and len(ex.layers) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in ex.layers))
        _require(ok, f"experiment.layers = {ex.layers!r}; use 'peak' or [relative depth x, relative depth y] in [0, 1]")


def _build_stimuli(data: Mapping[str, Any]) -> StimuliConfig:
    """The [stimuli] table, with ``n`` checked and normalised: "all" -> None (every stimulus); a synthetic set
    without ``n`` -> ``SYNTHETIC_DEFAULT_N``, so equal content gives an equal fingerprint however it is written."""
    s = _build(StimuliConfig, data, "stimuli")
    n = s.n
    if n == "all":
        _require(s.kind != "synthetic",
                 f"stimuli.n = 'all' has no meaning for kind 'synthetic' (a generator has no fixed size); give the "
                 f"number of scenes to render, or omit n for the default {SYNTHETIC_DEFAULT_N}")
        n = None
    else:
        _require(n is None or (_is_int(n) and n >= 4),
                 f"stimuli.n = {n!r}; must be a positive integer >= 4 (the metrics need at least 4 stimuli) or "
                 f"'all'; omit it to use every stimulus")
    if n is None and s.kind == "synthetic":
        n = SYNTHETIC_DEFAULT_N
    return dataclasses.replace(s, n=n)


def _build_score(data: Mapping[str, Any]) -> ScoreConfig:
    """The [score] table, with ``preprocess`` parsed and put in canonical form (unknown options are errors)."""
    from align.preprocess import parse_preprocess

    sc = _build(ScoreConfig, data, "score")
    raw = sc.preprocess
    specs = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, tuple) else None
    _require(specs is not None and len(specs) >= 1,
             f"score.preprocess = {raw!r}; give an option (e.g. \"zscore\") or a non-empty list of options")
    canonical = []
    for spec in specs:
        try:
            canonical.append(parse_preprocess(spec).spec)
        except ValueError as e:
            raise ConfigError(f"score.preprocess: {e}") from None
    dup = sorted({c for c in canonical if canonical.count(c) > 1})
    _require(not dup, f"score.preprocess lists {dup} more than once")
    return dataclasses.replace(sc, preprocess=canonical[0] if len(canonical) == 1 else tuple(canonical))


def _build_experiment(data: Mapping[str, Any]) -> ExperimentConfig:
    """The [experiment] table as the config type of its ``kind``: unknown keys, and keys of another kind (named
    with the kinds they belong to), are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"experiment: expected a table, got {type(data).__name__}")
    kind = data.get("kind", "layerwise")
    _require(isinstance(kind, str) and kind in EXPERIMENTS,
             f"experiment.kind = {kind!r}; allowed: {list(EXPERIMENT_KINDS)}")
    cls = EXPERIMENTS[kind]
    own = {f.name for f in dataclasses.fields(cls)}
    owners = {k: [o for o, c in EXPERIMENTS.items() if k in {f.name for f in dataclasses.fields(c)}]
              for k in data if k not in own}
    foreign = {k: o for k, o in owners.items() if o}
    if foreign:
        belongs = "; ".join(f"{k}: kind {' or '.join(o)}" for k, o in sorted(foreign.items()))
        raise ConfigError(f"experiment: key(s) {sorted(foreign)} do not apply to kind {kind!r} ({belongs})")
    data = dict(data)
    if isinstance(data.get("ci"), int) and not isinstance(data.get("ci"), bool):
        data["ci"] = float(data["ci"])
    return _build(cls, data, "experiment")


def parse_config(data: Mapping[str, Any], source: str | None = None) -> RunConfig:
    """Validate a config given as a mapping (e.g. parsed TOML). Raises ConfigError naming the bad key."""
    data = dict(data)
    top = {f.name for f in dataclasses.fields(RunConfig)} - {"source"}
    unknown = sorted(set(data) - top)
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}; allowed: {sorted(top)}")
    for key in ("name", "output", "models"):
        if key not in data:
            raise ConfigError(f"missing required key {key!r}")
    for key in ("name", "output"):
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key} = {value!r}; must be a non-empty string"
                              + (" (the folder results go to)" if key == "output" else " (the run's name)"))
    models = data["models"]
    if not isinstance(models, list):
        raise ConfigError("models must be an array of tables ([[models]] entries)")
    cfg = RunConfig(
        name=data["name"],
        output=data["output"],
        stimuli=_build_stimuli(data.get("stimuli", {})),
        models=tuple(_build(ModelConfig, m, f"models[{i}]") for i, m in enumerate(models)),
        extract=_build(ExtractConfig, data.get("extract", {}), "extract"),
        score=_build_score(data.get("score", {})),
        plot=_build(PlotConfig, data.get("plot", {}), "plot"),
        experiment=_build_experiment(data.get("experiment", {})),
        execution=_build(ExecutionConfig, data.get("execution", {}), "execution"),
        source=source,
    )
    _validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read and validate a TOML config file; ``overrides`` maps dotted keys (``"stimuli.n"``) to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        _apply_override(data, dotted, value)
    cfg = parse_config(data, source=str(path))
    if cfg.stimuli.base_dir is None:  # relative data paths are relative to the config file, not the shell's folder
        cfg = dataclasses.replace(cfg, stimuli=dataclasses.replace(cfg.stimuli,
                                                                   base_dir=str(path.resolve().parent)))
    return cfg


#: What ``--set`` (``load_config(overrides=)``) can address, for its error messages.
OVERRIDE_HELP = ("--set can address top-level keys (name, output) and keys of the tables [stimuli], [extract], "
                 "[score], [plot], [experiment] and [execution], e.g. --set stimuli.n=50; [[models]] entries are edited in the "
                 "config file")


def _apply_override(data: dict, dotted: str, value) -> None:
    """Set ``data[a][b]... = value`` for ``dotted = "a.b..."``, creating missing tables; a path through a value
    that is not a table (``name.x``, ``models.name``: ``models`` is an array of tables) is a ConfigError."""
    parts = dotted.split(".")
    if any(not p.strip() for p in parts):
        raise ConfigError(f"--set {dotted}=...: empty key part; {OVERRIDE_HELP}")
    node, walked = data, []
    for part in parts[:-1]:
        walked.append(part)
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            kind = "an array" if isinstance(child, list) else f"the value {child!r}"
            raise ConfigError(f"--set {dotted}=...: {'.'.join(walked)!r} is {kind}, not a table; {OVERRIDE_HELP}")
        node = child
    node[parts[-1]] = value
