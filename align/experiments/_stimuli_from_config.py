"""Build the StimulusSet a config asks for."""

from __future__ import annotations

import os
from pathlib import Path

from align.config import SYNTHETIC_DEFAULT_N
from align.config import StimuliConfig
from align.data import StimulusSet


def stimuli_from_config(cfg: StimuliConfig, cache_root: str | Path) -> StimulusSet:
    """The stimulus set of ``cfg`` (synthetic scenes are rendered under ``cache_root``/stimuli once).

    ``cfg.n`` None (or "all") means every stimulus of the source; synthetic scenes, which have no fixed size, render
    ``SYNTHETIC_DEFAULT_N`` scenes then. Set names come from the loaders (``align.data.stimulus_set_name``: the
    source's name, ``-first<k>`` when only the first k are used) unless ``cfg.name`` is given. An ``n`` above the
    source's size raises a StimulusError (naming both numbers and the source) before anything is extracted.
    Folder, COCO and Flickr sets apply ``cfg.duplicates`` (copies of one stimulus refused, or kept for grouped
    folds); synthetic and Pick-a-Pic sets share captions by construction (renderings of one scene, the images of a
    preference pair) and are never refused: their copies are grouped in folds. Relative ``images`` / ``captions`` /
    ``root`` paths resolve against ``cfg.base_dir`` (the config file's folder, see ``StimuliConfig.path``).
    """
    from align import data

    def path(key: str) -> Path | None:
        # spelled relative to the working directory where possible, as paths were before they resolved against the
        # config file's folder: a stimulus set's fingerprint hashes its image paths, so existing stores stay valid
        p = cfg.path(key)
        if p is None:
            return None
        try:
            return Path(os.path.relpath(p))
        except ValueError:  # another drive (Windows)
            return p

    n = None if cfg.n == "all" else cfg.n
    if cfg.kind == "synthetic":
        n = n if n is not None else SYNTHETIC_DEFAULT_N
        return data.synthetic_scenes(Path(cache_root) / "stimuli", n=n, seed=cfg.seed, renderings=cfg.renderings)
    if cfg.kind == "pick_a_pic":
        pairs = data.load_pick_a_pic(path("root"), name=cfg.name, n=n)
        return pairs.to_stimulus_set()  # image files cached under $ALIGN_CACHE/preference/<name>-<file hash>
    if cfg.kind == "folder":
        return data.load_image_captions(path("images"), path("captions"), name=cfg.name, n=n,
                                        caption_score=cfg.caption_score, duplicates=cfg.duplicates)
    if cfg.kind == "coco":
        return data.load_coco(path("root"), name=cfg.name, n=n, caption_score=cfg.caption_score,
                              duplicates=cfg.duplicates)
    if cfg.kind == "flickr":
        return data.load_flickr(path("captions"), path("images"), name=cfg.name, n=n,
                                duplicates=cfg.duplicates)
    raise ValueError(f"unknown stimuli.kind {cfg.kind!r}")  # validated by align.config
