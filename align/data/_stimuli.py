"""Stimulus sets: paired images and captions, with optional masks and concept groups.

Every loader (synthetic scenes, a folder of images with a captions file, COCO, Flickr, Pick-a-Pic) returns a
``StimulusSet``. Extraction reads images through ``StimulusSet.load_image`` and captions through
``StimulusSet.caption_table``; the engine pairs rows by ``image_id``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class StimulusError(ValueError):
    """A stimulus that cannot be used (unreadable image, empty caption, missing mask); names the item."""


@dataclasses.dataclass(frozen=True)
class Stimulus:
    """One image with its captions.

    Attributes:
      image_id: unique string id of the image (the row key of vision stores).
      image: path to the image file.
      captions: one or more captions; caption k has id ``f"{image_id}#{k}"`` (the row key of language stores).
      mask: path to an 8-bit label map (0 = background, k > 0 = object instance k), or None.
      group: concept this image belongs to (for aggregation over images), or None.
      extra: free-form per-image data (e.g. Pick-a-Pic's ``pair_id``); JSON-serialisable.
      caption_scores: one finite number per caption, aligned with ``captions`` (e.g. a CLIP score read from the
        captions file; higher = better by the scorer's convention), or None when the set carries no scores.
    """

    image_id: str
    image: Path
    captions: tuple[str, ...]
    mask: Path | None = None
    group: str | None = None
    extra: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    caption_scores: tuple[float, ...] | None = None


@dataclasses.dataclass
class StimulusSet:
    """An ordered collection of stimuli. Order is part of identity: stores record the hash of the id order."""

    name: str
    stimuli: list[Stimulus]
    description: str = ""
    source: str = ""
    # What the steps that made this set left out (``align.data.ExclusionReport``s, oldest first); never silent.
    reports: tuple = dataclasses.field(default=(), compare=False, repr=False)
    # Name of the per-caption score every stimulus carries in ``Stimulus.caption_scores`` (the captions file's
    # field or column, e.g. "clip_score"); None when the set carries no scores. Scores are not part of
    # ``fingerprint()``: they do not change what a model embeds, so stores are reused when only scores change.
    caption_score: str | None = None

    def __post_init__(self):
        dup = repeated([s.image_id for s in self.stimuli])
        if dup:
            raise StimulusError(f"stimulus set {self.name!r}: duplicate image ids {dup[:5]}")
        for s in self.stimuli:
            if not s.captions:
                raise StimulusError(f"stimulus set {self.name!r}: image {s.image_id!r} has no caption")
            for k, c in enumerate(s.captions):
                if not isinstance(c, str) or not c.strip():
                    raise StimulusError(f"stimulus set {self.name!r}: caption {k} of image {s.image_id!r} is empty")
            self._check_scores(s)

    def _check_scores(self, s: Stimulus) -> None:
        if s.caption_scores is None:
            if self.caption_score is not None:
                raise StimulusError(f"stimulus set {self.name!r} carries caption scores ({self.caption_score!r}) but "
                                    f"image {s.image_id!r} has none")
            return
        if self.caption_score is None:
            raise StimulusError(f"stimulus set {self.name!r}: image {s.image_id!r} has caption scores but the set "
                                f"names no caption_score")
        if len(s.caption_scores) != len(s.captions):
            raise StimulusError(f"stimulus set {self.name!r}: image {s.image_id!r} has {len(s.captions)} captions "
                                f"but {len(s.caption_scores)} caption scores")
        bad = [k for k, v in enumerate(s.caption_scores)
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise StimulusError(f"stimulus set {self.name!r}: {self.caption_score!r} of caption(s) "
                                f"{[f'{s.image_id}#{k}' for k in bad]} is not a finite number")

    def __len__(self) -> int:
        return len(self.stimuli)

    @property
    def image_ids(self) -> list[str]:
        return [s.image_id for s in self.stimuli]

    def subset(self, n: int | None = None, ids: Sequence[str] | None = None) -> "StimulusSet":
        """The first ``n`` stimuli, or those with the given ids (in the given order)."""
        if ids is not None:
            by_id = {s.image_id: s for s in self.stimuli}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise StimulusError(f"stimulus set {self.name!r} has no images {missing[:5]}")
            items = [by_id[i] for i in ids]
        else:
            items = self.stimuli[:n]
        return dataclasses.replace(self, stimuli=items)

    def caption_table(self, which: str | int = "all") -> list[tuple[str, str, str]]:
        """Rows ``(caption_id, image_id, text)``; ``which`` is ``"all"`` or a caption index k (images with fewer
        captions raise a StimulusError naming them)."""
        rows = []
        for s in self.stimuli:
            if which == "all":
                rows.extend((f"{s.image_id}#{k}", s.image_id, c) for k, c in enumerate(s.captions))
            else:
                if which >= len(s.captions):
                    raise StimulusError(f"image {s.image_id!r} has {len(s.captions)} captions; caption {which} requested")
                rows.append((f"{s.image_id}#{which}", s.image_id, s.captions[which]))
        return rows

    def load_image(self, i: int):
        """The i-th image as an RGB ``PIL.Image`` (raises StimulusError naming the file if it cannot be decoded)."""
        from PIL import Image, UnidentifiedImageError

        s = self.stimuli[i]
        try:
            with Image.open(s.image) as im:
                return im.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise StimulusError(f"image {s.image_id!r} ({s.image}) cannot be read: {e}") from None

    def load_mask(self, i: int) -> np.ndarray | None:
        """The i-th mask as a ``[H, W]`` uint8 label map, or None when the image has no mask."""
        from PIL import Image

        s = self.stimuli[i]
        if s.mask is None:
            return None
        try:
            with Image.open(s.mask) as im:
                return np.asarray(im.convert("L"), dtype=np.uint8)
        except OSError as e:
            raise StimulusError(f"mask of image {s.image_id!r} ({s.mask}) cannot be read: {e}") from None

    def fingerprint(self) -> str:
        """Hash of ids, captions, groups and image file identities (path, size, mtime)."""
        h = hashlib.sha256(self.name.encode())
        for s in self.stimuli:
            st = Path(s.image).stat() if Path(s.image).exists() else None
            h.update(json.dumps([s.image_id, list(s.captions), s.group, str(s.image),
                                 st.st_size if st else None, str(s.mask) if s.mask else None]).encode())
        return h.hexdigest()[:16]


def first_n(n, total: int, source: str, unit: str = "images") -> int:
    """How many items "the first ``n``" of ``total`` means: ``total`` when ``n`` is None or ``"all"``.

    Args:
      n: None or ``"all"`` (every item), or a positive integer.
      total: how many items the source holds.
      source: the file or folder the items come from (named in errors).
      unit: what is counted (``"images"``, ``"pairs"``), named in errors.

    Raises:
      StimulusError: ``n`` is not None, ``"all"`` or a positive integer, or it exceeds ``total`` (a request for
        more items than exist is refused, never silently truncated).
    """
    if n is None or n == "all":
        return total
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise StimulusError(f"n = {n!r}: must be a positive integer or 'all' (omit it to use every item of {source})")
    if n > total:
        raise StimulusError(f"n = {n} but {source} holds only {total} {unit}; ask for at most {total}, or omit n "
                            f"(or n = 'all') to use all {total}")
    return int(n)


def stimulus_set_name(base: str, used: int, total: int) -> str:
    """The name of a set that keeps the first ``used`` of ``total`` items of a source named ``base``.

    ``base`` when every item is used, else ``f"{base}-first{used}"``: the name says what the set holds, and ``used``
    is the actual count (never a requested number larger than the source). The one place set names of subsets are
    made; a name the user gives explicitly is used as it is instead.
    """
    if not 0 <= used <= total:
        raise ValueError(f"stimulus_set_name: used = {used} must be between 0 and total = {total}")
    return base if used == total else f"{base}-first{used}"


def order_hash(ids: Sequence[str]) -> str:
    """SHA-256 (hex, 16 chars) of the ordered id list; stores with different hashes are not row-aligned."""
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def repeated(items: Sequence[str]) -> list[str]:
    """The items that occur more than once, in order of their second occurrence (empty when all are unique)."""
    seen, out = set(), []
    for item in items:
        if item in seen:
            out.append(item)
        seen.add(item)
    return out
