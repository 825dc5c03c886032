"""Pair the rows of a vision store (images) with the rows of a language store (captions, grouped by image)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from align.store import ActivationStore, StoreMismatchError


def caption_rows(language: ActivationStore, image_ids: Sequence[str], caption: str | int = "first",
                 *, align_by_id: bool = False) -> tuple[list[str], list[np.ndarray]]:
    """For each image id, which language-store rows represent it.

    Args:
      language: a store whose rows are captions with ``group_id`` = image id.
      image_ids: the images, in the order of the vision store.
      caption: "first" (the image's first caption), "mean" (all its captions, to be averaged) or an index k.
      align_by_id: keep only images present on both sides instead of refusing a mismatch.

    Returns:
      (image ids kept, per image an int array of language row indices).
    """
    groups = language.groups
    if groups is None:
        raise StoreMismatchError(f"language store {language.path} has no group_id column; it is not a caption store")
    rows_by_image: dict[str, list[int]] = {}
    for row, g in enumerate(groups):
        rows_by_image.setdefault(g, []).append(row)
    caption_order = list(rows_by_image)
    if not align_by_id and caption_order != list(image_ids):
        missing = [i for i in image_ids if i not in rows_by_image]
        raise StoreMismatchError(
            f"the caption store {language.path} does not list the same images in the same order as the image store "
            f"({len(missing)} of {len(image_ids)} images have no captions, e.g. {missing[:3]}); re-extract both on the "
            f"same stimulus set, or pass align_by_id=True to keep the {len(image_ids) - len(missing)} common images")
    kept, rows = [], []
    for image_id in image_ids:
        candidates = rows_by_image.get(image_id)
        if not candidates:
            continue
        if caption == "mean":
            chosen = candidates
        else:
            k = 0 if caption == "first" else int(caption)
            suffix = f"#{k}"
            chosen = [r for r in candidates if language.stimulus_ids[r].endswith(suffix)]
            if not chosen:
                raise StoreMismatchError(f"image {image_id!r} has no caption {k} in {language.path}")
        kept.append(image_id)
        rows.append(np.asarray(chosen, dtype=np.int64))
    if len(kept) < 4:
        raise StoreMismatchError(f"only {len(kept)} images are common to both stores; at least 4 are needed")
    return kept, rows


def reduce_rows(layer: np.ndarray, rows: Sequence[np.ndarray]) -> np.ndarray:
    """``[n_captions, d]`` -> ``[n_images, d]``: the selected row, or the mean of the selected rows, per image."""
    if all(len(r) == 1 for r in rows):
        return layer[np.concatenate(rows)]
    lengths = np.array([len(r) for r in rows])
    flat = np.concatenate(rows)
    owner = np.repeat(np.arange(len(rows)), lengths)
    out = np.zeros((len(rows), layer.shape[1]), dtype=np.float64)
    np.add.at(out, owner, layer[flat])
    return (out / lengths[:, None]).astype(np.float32)


def paired_layers(vision: ActivationStore, language: ActivationStore, caption: str | int = "first",
                  *, align_by_id: bool = False) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Row-aligned layer lists for one (vision store, caption store) pair.

    Returns:
      (image ids, vision layers each ``[n, d_x]``, language layers each ``[n, d_y]``), rows paired by image.
    """
    image_ids = list(vision.stimulus_ids)
    kept, rows = caption_rows(language, image_ids, caption, align_by_id=align_by_id)
    if len(kept) != len(image_ids):
        index = {i: r for r, i in enumerate(image_ids)}
        keep_rows = np.array([index[i] for i in kept])
        xs = [vision.layer(l)[keep_rows] for l in range(vision.n_layers)]
    else:
        xs = [vision.layer(l) for l in range(vision.n_layers)]
    ys = [reduce_rows(language.layer(l), rows) for l in range(language.n_layers)]
    return kept, xs, ys


def aligned_layers(vision: ActivationStore, language: ActivationStore, ids: Sequence[str],
                   caption: str | int = "first") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Layers of a (vision store, caption store) pair with rows = ``ids`` in that order (raises naming the ids
    either store lacks)."""
    kept, xs, ys = paired_layers(vision, language, caption, align_by_id=True)
    if kept != list(ids):
        index = {i: r for r, i in enumerate(kept)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise ValueError(f"{vision.path} / {language.path} lack {len(missing)} stimuli, e.g. {missing[:3]}")
        rows = np.asarray([index[i] for i in ids])
        xs, ys = [x[rows] for x in xs], [y[rows] for y in ys]
    return xs, ys
