"""Build the StimulusSet a config asks for."""

from __future__ import annotations

from pathlib import Path

from align.config import StimuliConfig
from align.data import StimulusSet


def stimuli_from_config(cfg: StimuliConfig, cache_root: str | Path) -> StimulusSet:
    """The stimulus set of ``cfg`` (synthetic scenes are rendered under ``cache_root``/stimuli once)."""
    from align import data

    if cfg.kind == "synthetic":
        n = cfg.n if cfg.n is not None else 500
        return data.synthetic_scenes(Path(cache_root) / "stimuli", n=n, seed=cfg.seed, renderings=cfg.renderings)
    if cfg.kind == "pick_a_pic":
        pairs = data.load_pick_a_pic(cfg.root, name=cfg.name, n=cfg.n)
        stimuli = pairs.to_stimulus_set()  # image files cached under $ALIGN_CACHE/preference/<name>-<file hash>
        if cfg.n is not None and cfg.name is None:
            stimuli.name = f"{stimuli.name}-first{cfg.n}"
        return stimuli
    if cfg.kind == "folder":
        stimuli = data.load_image_captions(cfg.images, cfg.captions, name=cfg.name, n=cfg.n,
                                           caption_score=cfg.caption_score)
    elif cfg.kind == "coco":
        stimuli = data.load_coco(cfg.root, name=cfg.name, n=cfg.n, caption_score=cfg.caption_score)
    elif cfg.kind == "flickr":
        stimuli = data.load_flickr(cfg.captions, cfg.images, name=cfg.name, n=cfg.n)
    else:  # validated by align.config
        raise ValueError(f"unknown stimuli.kind {cfg.kind!r}")
    if cfg.n is not None and cfg.name is None:
        stimuli.name = f"{stimuli.name}-first{cfg.n}"  # stores are keyed by set name: a prefix is another set
    return stimuli
