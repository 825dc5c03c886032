"""Run configs: TOML files validated into dataclasses, with a fingerprint that keys every output.

A config is data. Unknown keys and bad values are errors that name them (``ConfigError``). The fingerprint is a hash
of the validated config's content (not of the file's text), so reformatting a file does not invalidate results.
See README "Config reference" for every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the key and what is allowed."""


VISION_POOLINGS = ("cls", "mean")
LANGUAGE_POOLINGS = ("mean", "last", "first")
STIMULUS_KINDS = ("synthetic", "folder", "coco", "flickr")
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class StimuliConfig:
    """Which stimulus set to use.

    kind: "synthetic" (the embedded default, generated here), "folder" (images dir + captions JSONL/CSV),
      "coco" (compact or official COCO layout under ``root``), "flickr" (a Flickr token file + images dir).
    n: use the first n stimuli (synthetic: how many scenes to render). None = all.
    """

    kind: str = "synthetic"
    n: int | None = 500
    seed: int = 0
    images: str | None = None
    captions: str | None = None
    root: str | None = None
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One model: a short name (``align models``), a Hugging Face id or a local path, and its poolings."""

    name: str
    pooling: tuple[str, ...] = ()
    modality: str | None = None


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    batch_size: int = 16
    dtype: str = "float32"
    device: str = "auto"


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Which metrics to compute over every (vision model, language model) layer grid.

    metrics: metric specs, e.g. "linear_cka" or "rbf_cka(sigma_frac=0.5)".
    caption: which caption represents an image: "first" (caption 0), "mean" (mean of all caption embeddings) or
      an integer k (caption k).
    null: permutations for a shuffled-pairing null per layer pair (0 = none).
    """

    metrics: tuple[str, ...] = ("linear_predictivity", "linear_cka")
    caption: str | int = "first"
    null: int = 0
    probes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PlotConfig:
    enabled: bool = True
    dpi: int = 120


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
    source: str | None = None

    def fingerprint(self, *sections: str) -> str:
        """Hash (16 hex chars) of the named sections (all content sections when none are named)."""
        content = _as_jsonable(self)
        content.pop("source", None)
        content.pop("output", None)
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
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _require(cond: bool, message: str):
    if not cond:
        raise ConfigError(message)


def _validate(cfg: RunConfig) -> None:
    s = cfg.stimuli
    _require(s.kind in STIMULUS_KINDS, f"stimuli.kind = {s.kind!r}; allowed: {list(STIMULUS_KINDS)}")
    _require(s.n is None or (isinstance(s.n, int) and s.n >= 4), f"stimuli.n = {s.n!r}; must be an integer >= 4")
    _require(isinstance(s.seed, int), f"stimuli.seed = {s.seed!r}; must be an integer")
    if s.kind == "folder":
        _require(bool(s.images and s.captions), "stimuli.kind = 'folder' needs stimuli.images and stimuli.captions")
    if s.kind == "coco":
        _require(bool(s.root), "stimuli.kind = 'coco' needs stimuli.root (the folder holding images/ and captions)")
    if s.kind == "flickr":
        _require(bool(s.images and s.captions), "stimuli.kind = 'flickr' needs stimuli.images and stimuli.captions (token file)")
    _require(len(cfg.models) >= 1, "models: at least one [[models]] entry is needed")
    names = [m.name for m in cfg.models]
    _require(len(set(names)) == len(names), f"models: duplicate model names {names}")
    for i, m in enumerate(cfg.models):
        _require(isinstance(m.name, str) and m.name.strip() != "", f"models[{i}].name must be a non-empty string")
        _require(m.modality in (None, "vision", "language"), f"models[{i}].modality = {m.modality!r}; allowed: 'vision', 'language'")
        for p in m.pooling:
            _require(p in VISION_POOLINGS + LANGUAGE_POOLINGS,
                     f"models[{i}] ({m.name}): pooling {p!r} unknown; vision: {list(VISION_POOLINGS)}, language: {list(LANGUAGE_POOLINGS)}")
    e = cfg.extract
    _require(isinstance(e.batch_size, int) and e.batch_size >= 1, f"extract.batch_size = {e.batch_size!r}; must be an integer >= 1")
    _require(e.dtype in DTYPES, f"extract.dtype = {e.dtype!r}; allowed: {list(DTYPES)}")
    _require(e.device in ("auto", "cpu", "cuda", "mps") or e.device.startswith("cuda:"),
             f"extract.device = {e.device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    sc = cfg.score
    _require(len(sc.metrics) >= 1, "score.metrics: list at least one metric")
    _require(sc.caption in ("first", "mean") or (isinstance(sc.caption, int) and sc.caption >= 0),
             f"score.caption = {sc.caption!r}; allowed: 'first', 'mean' or a caption index >= 0")
    _require(isinstance(sc.null, int) and sc.null >= 0, f"score.null = {sc.null!r}; must be an integer >= 0")


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
    models = data["models"]
    if not isinstance(models, list):
        raise ConfigError("models must be an array of tables ([[models]] entries)")
    cfg = RunConfig(
        name=str(data["name"]),
        output=str(data["output"]),
        stimuli=_build(StimuliConfig, data.get("stimuli", {}), "stimuli"),
        models=tuple(_build(ModelConfig, m, f"models[{i}]") for i, m in enumerate(models)),
        extract=_build(ExtractConfig, data.get("extract", {}), "extract"),
        score=_build(ScoreConfig, data.get("score", {}), "score"),
        plot=_build(PlotConfig, data.get("plot", {}), "plot"),
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
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return parse_config(data, source=str(path))
