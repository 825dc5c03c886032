"""Stimulus sets: paired images and captions, with optional masks and concept groups.

Every loader (synthetic scenes, a folder of images with a captions file, COCO, Flickr, Pick-a-Pic) returns a
``StimulusSet``. Extraction reads images through ``StimulusSet.load_image`` and captions through
``StimulusSet.caption_table``; the engine pairs rows by ``image_id``.

Copies of one stimulus (two images with the same file bytes, or the same captions) are found by
``StimulusSet.copies``. Copies in the training and the held-out folds of linear predictivity score 0.4-0.7 on
unrelated data, so the file loaders refuse them by default (``duplicates="error"``, a ``DuplicateStimulusError``
naming them); ``duplicates="group"`` keeps them, and cross-validated scores then keep each group of copies in one
fold (``StimulusSet.fold_ids``, ``group_fold_ids``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class StimulusError(ValueError):
    """A stimulus that cannot be used (unreadable image, empty caption, missing mask); names the item."""


class DuplicateStimulusError(StimulusError):
    """A stimulus set holds copies of one stimulus (same image bytes or same captions); names them and the way out."""


#: What a loader does with copies of one stimulus: refuse them (default), or keep them and group them in folds.
DUPLICATE_POLICIES = ("error", "group")


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

    def copies(self) -> list[tuple[str, ...]]:
        """Groups of image ids that are copies of one stimulus, each in set order, groups by their first member.

        Two stimuli are copies when their image files hold the same bytes, or their captions are the same texts
        (compared as ``normalised_caption``, in any order); groups are closed under both (a copy of a copy is in
        the same group). Images that share one generic caption among otherwise different ones (COCO has about 100
        such captions in 3,000 images) are not copies. Files are compared by size first and hashed (SHA-256) only
        when sizes collide; missing files are never copies.

        Returns:
          One tuple of >= 2 image ids per group of copies; empty when every stimulus is unique.
        """
        return [ids for ids, _ in self._copy_groups()]

    def _copy_groups(self) -> list[tuple[tuple[str, ...], str]]:
        """``(image ids, why)`` per group of copies; why is "same image bytes", "same captions" or both."""
        n = len(self.stimuli)
        parent = list(range(n))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        links = []
        keys = (("same image bytes", _image_digests([s.image for s in self.stimuli])),
                ("same captions", [tuple(sorted(normalised_caption(c) for c in s.captions)) for s in self.stimuli]))
        for why, values in keys:
            first: dict = {}
            for i, key in enumerate(values):
                if key is None:
                    continue
                j = first.setdefault(key, i)
                if j != i:
                    links.append((j, i, why))
                    parent[root(i)] = root(j)
        if not links:
            return []
        members: dict[int, list[int]] = {}
        for i in range(n):
            members.setdefault(root(i), []).append(i)
        reasons: dict[int, set[str]] = {}
        for j, _, why in links:
            reasons.setdefault(root(j), set()).add(why)
        groups = sorted((rows for rows in members.values() if len(rows) > 1), key=lambda rows: rows[0])
        return [(tuple(self.stimuli[i].image_id for i in rows), " and ".join(sorted(reasons[root(rows[0])],
                                                                                     reverse=True)))
                for rows in groups]

    def fold_groups(self) -> list[str]:
        """One group label per stimulus, in set order: the image id of the first of its copies (its own id when it
        has none). Give them to ``group_fold_ids`` so that copies never straddle a training and a held-out fold."""
        label = {sid: ids[0] for ids in self.copies() for sid in ids}
        return [label.get(s.image_id, s.image_id) for s in self.stimuli]

    def fold_ids(self, folds: int = 5, seed: int = 0) -> np.ndarray:
        """Cross-validation fold id per stimulus ``[n]`` int32 that keeps each group of copies in one fold.

        Pass it as ``folds=`` to linear predictivity (``align.pairwise(Xs, Ys, "linear_predictivity",
        folds=stimuli.fold_ids(5))``, rows in set order). Without copies these are exactly the folds of
        ``folds`` (sklearn ``KFold(folds, shuffle=True, random_state=seed)``). See ``group_fold_ids``.
        """
        return group_fold_ids(self.fold_groups(), folds, seed)

    def check_duplicates(self, duplicates: str = "error") -> "StimulusSet":
        """Apply a duplicate policy (what the loaders do with their ``duplicates`` argument); returns ``self``.

        Args:
          duplicates: ``"error"``: copies (see ``copies``) raise; ``"group"``: keep them (cross-validated scores
            of a run then keep each group in one fold, see ``fold_ids``).

        Raises:
          DuplicateStimulusError: ``duplicates="error"`` and the set holds copies; names the groups, why they are
            copies, and how to drop them or keep them grouped.
          ValueError: ``duplicates`` is not one of ``DUPLICATE_POLICIES``.
        """
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates = {duplicates!r}; allowed: {list(DUPLICATE_POLICIES)}")
        if duplicates == "group":
            return self
        groups = self._copy_groups()
        if not groups:
            return self
        shown = "; ".join(f"{list(ids)} ({why})" for ids, why in groups[:5])
        n_extra = sum(len(ids) - 1 for ids, _ in groups)
        raise DuplicateStimulusError(
            f"stimulus set {self.name!r} ({self.source or 'built in Python'}) holds copies of the same stimulus: "
            f"{len(groups)} group(s) of images with the same image bytes or the same captions: {shown}"
            f"{'; ...' if len(groups) > 5 else ''}. Copies land in both the training and the held-out folds of "
            f"linear predictivity (0.4-0.7 on unrelated data) and at distance 0 in RDMs and kNN sets. Drop all but "
            f"the first image of each group ({n_extra} images) from the captions file, or keep them grouped: "
            f"duplicates='group' (config: [stimuli] duplicates = \"group\"), which keeps each group in one "
            f"cross-validation fold")

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


def normalised_caption(text: str) -> str:
    """A caption as duplicate detection compares it: case-folded, each run of whitespace one space, trailing
    sentence punctuation (``.``, ``!``, ``?``) removed (``"A dog.  "`` and ``"a dog"`` are the same text)."""
    return " ".join(text.casefold().split()).rstrip(".!? ")


def _image_digests(paths: Sequence[Path]) -> list[str | None]:
    """SHA-256 of each file's bytes where another file has the same size (only those can be copies), else None
    (also for a file that cannot be read)."""
    sizes = []
    for p in paths:
        try:
            sizes.append(os.stat(p).st_size)
        except (OSError, TypeError, ValueError):
            sizes.append(None)
    count = Counter(size for size in sizes if size is not None)
    digests: list[str | None] = []
    for p, size in zip(paths, sizes):
        if size is None or count[size] < 2:
            digests.append(None)
            continue
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            digests.append(None)
            continue
        digests.append(h.hexdigest())
    return digests


def group_fold_ids(groups: Sequence, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-validation fold id per stimulus ``[n]`` int32 that puts every member of a group in the same fold.

    The groups (in order of first appearance) are split as sklearn ``KFold(folds, shuffle=True,
    random_state=seed)`` splits items, and each stimulus takes its group's fold: with one stimulus per group
    these are exactly the folds ``linear_predictivity(folds=k, seed=seed)`` uses. Folds hold whole groups, so
    their sizes in stimuli may differ when groups do. Pass the result as ``folds=`` to linear predictivity.

    Args:
      groups: one hashable label per stimulus (e.g. ``StimulusSet.fold_groups()``: copies share a label).
      folds: number of folds, 2 <= folds <= number of groups.
      seed: shuffling seed.

    Raises:
      ValueError: ``folds`` is not an integer >= 2, or exceeds the number of groups.
    """
    from align.stats import kfold_ids

    labels = list(groups)
    n_groups = len(dict.fromkeys(labels))
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"group_fold_ids: folds = {folds!r} must be an integer >= 2")
    if folds > n_groups:
        raise ValueError(f"group_fold_ids: {folds} folds but only {n_groups} groups of stimuli ({len(labels)} "
                         f"stimuli); use at most {n_groups} folds")
    return kfold_ids(len(labels), int(folds), seed, groups=labels)


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
