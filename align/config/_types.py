"""The config types: one frozen dataclass per TOML table, the allowed values, and the run's fingerprint."""


from __future__ import annotations

import dataclasses
import hashlib
import json
import os
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
    ``seed``. ``ceiling = true``: also the caption noise ceiling of every language layer (caption 0 vs caption 1 of
    each image, ``ceiling_boot`` bootstrap resamples of the images behind its interval; needs 2+ captions per
    image) and the ceiling-normalised scores (``align.experiments.run_ceiling``)."""

    kind: str = "layerwise"
    seed: int = 0
    n_perm: int = 1000
    ceiling: bool = False
    ceiling_boot: int = 100


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
