"""Validate before work: every check a run can make before it extracts or scores anything.

``align run``, ``extract``, ``score``, ``experiment`` and ``figures`` call :func:`preflight` on the validated config
first, so that a mistake anywhere in it (a metric name, a spec's keyword, a probe file, a model name, a pooling the
model cannot give, a caption index beyond the captions, an unusable device, an output path under a file, a
stimulus count above the data's) is one clear error before any model is loaded, rather than a failure after
minutes of extraction. Types and values of single keys are checked by ``align.config`` (``parse_config``); this
module checks what needs the world: files, the model catalog, torch's devices, the stimulus set, the metric
registry. Loading a folder / COCO / Flickr stimulus set only reads its captions file and lists its images, so it is
done here too; synthetic scenes are not rendered (their caption count is known).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from align.config import ConfigError
from align.config import RunConfig

#: transformers ``model_type`` values of vision models without a class token (CNNs; SigLIP / Swin token sequences).
NO_CLASS_TOKEN_TYPES = frozenset({
    "bit", "convnext", "convnextv2", "dinov3_convnext", "efficientnet", "mobilenet_v1", "mobilenet_v2", "regnet",
    "resnet", "van", "poolformer", "siglip", "siglip2", "siglip_vision_model", "siglip2_vision_model", "swin",
    "swinv2", "donut-swin",
})
#: Stimulus count used to check metric hyper-parameters when the set's size is not known before loading it.
UNKNOWN_N = 10_000
ALL_STAGES = ("extract", "score", "plot")


@dataclasses.dataclass(frozen=True)
class PreflightReport:
    """What the checks resolved.

    Attributes:
      models: config model name -> its ModelSpec (not materialised: nothing converted or loaded).
      poolings: config model name -> the poolings that will be extracted.
      n_stimuli: images in the stimulus set (synthetic: scenes x renderings), or None when unknown before loading.
      min_captions: the fewest captions any image has (None when unknown).
      metrics: the metric specs checked (empty when scoring is not a stage).
    """

    models: dict
    poolings: dict
    n_stimuli: int | None
    min_captions: int | None
    metrics: tuple[str, ...]


def preflight(cfg: RunConfig, stages=ALL_STAGES, *, load_stimuli: bool = True, pending=()) -> PreflightReport:
    """Check everything about ``cfg`` that can fail, before any extraction or scoring.

    Args:
      cfg: a validated config (``align.config.load_config``).
      stages: the stages that will run ("extract", "score", "plot"); metrics and probes are checked only when
        "score" is one of them. An experiment (``align experiment``) runs all of them.
      load_stimuli: load a folder / COCO / Flickr stimulus set to check its size and caption counts (reads the
        captions file and lists the images; writes nothing).
      pending: outputs (folders or tables) that runs before this one will write, e.g. the layerwise output an
        experiment's ``peaks_from`` names when both run in one batch (``make figures``).

    Returns:
      A :class:`PreflightReport`.

    Raises:
      ConfigError: the first problem found, naming the config key and what to do.
    """
    check_output(cfg.output)
    check_device(cfg.extract.device)
    if cfg.extract.device_map is not None:  # a GPU placement on a CPU-only build fails here, before any model loads
        from align.extract import check_device_map

        try:
            check_device_map(cfg.extract.device_map, cfg.extract.device)
        except ValueError as e:
            raise ConfigError(f"extract.{e}") from None
    specs, poolings = {}, {}
    for i, m in enumerate(cfg.models):
        specs[m.name], poolings[m.name] = check_model(i, m)
    scoring = "score" in stages
    modalities = {spec.modality for spec in specs.values()}
    if scoring and modalities != {"vision", "language"}:
        only = next(iter(modalities))
        raise ConfigError(f"models: all {len(specs)} model(s) are {only} models ({', '.join(specs)}); scoring compares "
                          f"vision models with language models, so list at least one of each")
    n, min_captions, max_captions = check_stimuli(cfg, load=load_stimuli)
    check_caption_index(cfg.score.caption, min_captions)
    check_experiment(cfg, max_captions, pending)
    metrics = ()
    if scoring:
        check_probes(cfg.score.probes)
        metrics = tuple(check_metric(spec, n) for spec in cfg.score.metrics)
    return PreflightReport(models=specs, poolings=poolings, n_stimuli=n, min_captions=min_captions, metrics=metrics)


# -------------------------------------------------------------------------------------------------- output


def check_output(output: str | Path) -> None:
    """The output folder (and the ``activations/`` and ``stimuli/`` folders beside it) can be created: no part of
    the path is an existing file, and the deepest existing folder is writable."""
    path = Path(output).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output = {str(output)!r} is an existing file, not a folder; give a folder path (it is "
                          f"created), or move the file")
    for sub in (path.parent / "activations", path.parent / "stimuli", path / "scores", path / "heatmaps"):
        if sub.exists() and not sub.is_dir():
            raise ConfigError(f"output = {str(output)!r}: {sub} is a file, but the run writes a folder there; move the "
                              f"file or choose another output")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output = {str(output)!r} lies under {existing}, which is a file, not a folder; choose "
                          f"an output folder that is not inside a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output = {str(output)!r}: cannot create folders in {existing} (no write permission); "
                          f"choose another output")


# -------------------------------------------------------------------------------------------------- device


def check_device(device: str) -> None:
    """``extract.device`` names a device this torch build has (:func:`align.extract.check_device`)."""
    from align.extract import check_device as check

    try:
        check(device)
    except ValueError as e:
        raise ConfigError(f"extract.{e}") from None


# -------------------------------------------------------------------------------------------------- models


def check_model(i: int, model) -> tuple:
    """Resolve ``models[i]`` offline, check it can be loaded here, and check its poolings against its modality.

    Returns:
      (ModelSpec, the poolings that will be extracted).
    """
    from align.experiments._layerwise import DEFAULT_POOLINGS
    from align.extract import resolve_model
    from align.extract import LANGUAGE_POOLINGS
    from align.extract import VISION_POOLINGS

    where = f"models[{i}] ({model.name})"
    try:
        spec = resolve_model(model.name, modality=model.modality)
        _check_available(spec)
    except (ValueError, RuntimeError) as e:  # UnknownModelError, ModelUnavailableError, a modality mismatch
        raise ConfigError(f"models[{i}]: {e}") from None
    allowed = VISION_POOLINGS if spec.modality == "vision" else LANGUAGE_POOLINGS
    bad = [p for p in model.pooling if p not in allowed]
    if bad:
        raise ConfigError(f"{where} is a {spec.modality} model: pooling {bad} does not apply to it; {spec.modality} "
                          f"models take {list(allowed)}")
    poolings = tuple(model.pooling) or DEFAULT_POOLINGS[spec.modality]
    if "cls" in poolings and not _has_class_token(spec):
        given = "" if model.pooling else f"the default poolings {list(poolings)} include 'cls'; "
        raise ConfigError(f"{where}: {given}pooling 'cls' needs a class token, which {spec.architecture or 'this model'}"
                          f" does not have (a CNN, or a ViT without one); use pooling = ['mean']")
    return spec, poolings


def _check_available(spec) -> None:
    """Raise ModelUnavailableError when the model's files are not on this machine (nothing is converted)."""
    from align.extract import check_available

    check_available(spec)


def _has_class_token(spec) -> bool:
    if spec.modality != "vision":
        return True  # not asked: language poolings are checked against LANGUAGE_POOLINGS
    if spec.backend == "torch_module":
        return False  # hooked CNN blocks (mobilenetv2-imagenet)
    config = Path(spec.location) / "config.json"
    if config.is_file():
        import json

        try:
            model_type = json.loads(config.read_text()).get("model_type", "")
        except (OSError, ValueError):
            return True  # the loader reports an unreadable config
        return model_type not in NO_CLASS_TOKEN_TYPES
    return True


# ------------------------------------------------------------------------------------------------ stimuli


def check_stimuli(cfg: RunConfig, *, load: bool = True) -> tuple[int | None, int | None, int | None]:
    """(images, fewest captions per image, most captions per image) of the config's stimulus set; loading a
    folder / COCO / Flickr set checks its files and ``stimuli.n`` against its size (a StimulusError, named)."""
    from align.data import N_CAPTIONS

    s = cfg.stimuli
    if s.kind == "synthetic":
        return s.n * s.renderings, N_CAPTIONS, N_CAPTIONS
    if s.kind == "pick_a_pic":
        if not s.path("root").is_file():
            raise ConfigError(f"stimuli.root = {s.root!r}: no such file {s.path('root')} (a Pick-a-Pic style Parquet "
                              f"file; relative paths resolve against the config file's folder)")
        return None, 1, 1
    if not load:
        return None, None, None
    from align.experiments._stimuli_from_config import stimuli_from_config

    stimuli = stimuli_from_config(s, cfg.output_dir.parent)
    counts = [len(x.captions) for x in stimuli.stimuli]
    return len(stimuli), min(counts, default=0), max(counts, default=0)


def check_caption_index(caption, min_captions: int | None) -> None:
    """``score.caption = k`` needs every image to have a caption k (captions are numbered from 0)."""
    if isinstance(caption, int) and min_captions is not None and caption >= min_captions:
        raise ConfigError(f"score.caption = {caption}, but some images have only {min_captions} caption(s) (numbered "
                          f"from 0); use an index below {min_captions}, 'first' or 'mean'")


def check_experiment(cfg: RunConfig, max_captions: int | None, pending=()) -> None:
    """What an experiment kind needs of the data, and ``experiment.peaks_from`` (an existing path, or one of the
    ``pending`` outputs an earlier run of the same batch writes)."""
    ex, kind = cfg.experiment, cfg.stimuli.kind
    coming = {Path(p).expanduser().absolute() for p in pending}
    peaks_from = getattr(ex, "peaks_from", None)  # a layerwise experiment computes its own peaks
    if peaks_from is not None and not Path(peaks_from).expanduser().exists() and not (
            Path(peaks_from).expanduser().absolute() in coming
            or Path(peaks_from).expanduser().absolute().parent in coming):
        raise ConfigError(f"experiment.peaks_from = {peaks_from!r} does not exist; run that layerwise config first "
                          f"(`align experiment CONFIG`) or leave peaks_from out to compute the grids here")
    if getattr(ex, "ceiling", False) and max_captions is not None and max_captions < 2:
        raise ConfigError(f"experiment.ceiling = true compares two captions of each image (caption 0 with caption 1), "
                          f"but no image of stimuli (kind {kind!r}) has more than {max_captions} caption(s); use a set "
                          f"with several captions per image (e.g. COCO: 5) or set ceiling = false")
    if ex.kind == "aggregation" and "captions" in ex.aggregate and max_captions is not None \
            and ex.k_max > max_captions:
        raise ConfigError(f"experiment.k_max = {ex.k_max}, but no image has more than {max_captions} caption(s), so "
                          f"caption aggregation up to k_max would leave out every image; use k_max <= {max_captions}")
    if ex.kind == "preference":
        if "preferred" in ex.contrasts and kind != "pick_a_pic":
            raise ConfigError(f"experiment.contrasts: 'preferred' compares the preferred and rejected images of "
                              f"Pick-a-Pic pairs, but stimuli.kind = {kind!r}; use kind 'pick_a_pic' or drop it")
        if "wrong_caption" in ex.contrasts and kind != "synthetic":
            raise ConfigError(f"experiment.contrasts: 'wrong_caption' needs the one-attribute-wrong captions of "
                              f"synthetic scenes, but stimuli.kind = {kind!r}; use kind 'synthetic' or drop it")


# ------------------------------------------------------------------------------------------ probes, metrics


def check_probes(probes) -> None:
    """Each ``score.probes`` entry exists, imports, and registers at least one metric."""
    from align.engine import load_probe
    from align.metrics import get_metric
    from align.metrics import list_metrics

    for path in probes:
        before = set(list_metrics())
        try:
            module = load_probe(path)
        except FileNotFoundError as e:
            raise ConfigError(f"score.probes: {e}") from None
        except Exception as e:  # the probe's own code failed: the user's error, named
            raise ConfigError(f"score.probes: cannot load probe {path!r}: {type(e).__name__}: {e}") from None
        mine = [name for name in list_metrics() if name not in before or any(
            getattr(fn, "__module__", None) == module.__name__
            for fn in (get_metric(name).compare, get_metric(name).prepare) if fn is not None)]
        if not mine:
            raise ConfigError(f"score.probes: probe {path!r} registers no metric; call align.register_metric in it")


def check_metric(spec: str, n: int | None) -> str:
    """Resolve a metric spec (name and keyword names) and check a built-in metric's hyper-parameters with its
    ``validate`` for ``n`` stimuli (the set's size, an upper bound on what any experiment scores; ``UNKNOWN_N`` when
    not known). A probe's ``validate`` is left to scoring time: it may need the layers' widths."""
    import align.metrics  # noqa: F401  (registers the built-ins)
    from align.engine import resolve_metric

    try:
        metric, kwargs = resolve_metric(spec)
        metric.split_kwargs(kwargs)  # unknown keyword names
        merged = {**metric.defaults, **kwargs}
        if n is not None and n < metric.min_n:
            raise ValueError(f"{metric.name} needs at least {metric.min_n} stimuli; the stimulus set has {n}")
        if metric.validate is not None and metric.validate.__module__.startswith("align.metrics."):
            metric.validate(n if n is not None else UNKNOWN_N, [], **merged)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"score.metrics: {spec!r}: {e}") from None
    return spec
