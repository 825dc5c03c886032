"""Reading configs: TOML -> validated :class:`RunConfig`, every bad key or value a :class:`ConfigError` naming it,
and ``--set`` overrides."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from align.config._types import AGGREGATE_SIDES
from align.config._types import ConfigError
from align.config._types import DTYPES
from align.config._types import EXECUTION_BACKENDS
from align.config._types import EXPERIMENTS
from align.config._types import EXPERIMENT_KINDS
from align.config._types import ExecutionConfig
from align.config._types import ExperimentConfig
from align.config._types import ExtractConfig
from align.config._types import LANGUAGE_POOLINGS
from align.config._types import LIST_KEYS
from align.config._types import ModelConfig
from align.config._types import PLOT_FORMATS
from align.config._types import PREFERENCE_CONTRASTS
from align.config._types import PairedStatisticsExperiment
from align.config._types import PlotConfig
from align.config._types import RunConfig
from align.config._types import SCORED_STIMULUS_KINDS
from align.config._types import STIMULUS_KINDS
from align.config._types import SYNTHETIC_DEFAULT_N
from align.config._types import ScoreConfig
from align.config._types import StimuliConfig
from align.config._types import VISION_POOLINGS


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
    if ex.kind == "layerwise":
        _require(isinstance(ex.ceiling, bool), f"experiment.ceiling = {ex.ceiling!r}; must be true or false")
        _require(_is_int(ex.ceiling_boot) and ex.ceiling_boot >= 0,
                 f"experiment.ceiling_boot = {ex.ceiling_boot!r}; must be an integer >= 0")
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
