"""Cross-validation folds (host side): one splitter, sklearn's ``KFold(k, shuffle=True, random_state=seed)``, for
stimuli or for groups of them, and the padded per-fold row layout that a compiled program takes as constants."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import jax.numpy as jnp
import numpy as np


def kfold_ids(n: int, folds: int | Sequence[int] = 5, seed: int = 0, *,
              groups: Sequence[Hashable] | None = None) -> np.ndarray:
    """Fold id of every stimulus, ``[n]`` int32 in ``0..F-1``.

    Args:
      n: number of stimuli.
      folds: a fold count ``k`` -- the folds of sklearn ``KFold(k, shuffle=True, random_state=seed)`` (the test rows
        of split f get id f) -- or an explicit fold id per stimulus (any integer labels, relabelled ``0..F-1``).
      seed: shuffling seed for a fold count (ignored for explicit ids).
      groups: optional label per stimulus: the groups (in order of first appearance) are split as ``KFold`` splits
        items and each stimulus takes its group's fold, so copies of one stimulus never straddle a training and a
        held-out fold. With one stimulus per group the ids are exactly those without ``groups``.

    Raises:
      ValueError: fewer than 2 folds, more folds than stimuli (groups), a training fold with fewer than 3 stimuli,
        or explicit ids / groups of the wrong length.
    """
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        if groups is None:
            ids = _split(n, int(folds), seed, "stimuli")
        else:
            labels = list(groups)
            if len(labels) != n:
                raise ValueError(f"folds: {len(labels)} group labels for {n} stimuli")
            index: dict = {}
            inverse = np.array([index.setdefault(g, len(index)) for g in labels], dtype=np.int64)
            ids = _split(len(index), int(folds), seed, "groups of stimuli")[inverse]
    else:
        labels = np.asarray(folds)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(f"folds must be a fold count or {n} integer fold ids (one per stimulus), got an array "
                             f"of shape {labels.shape} and dtype {labels.dtype}")
        _, ids = np.unique(labels, return_inverse=True)
        ids = ids.astype(np.int32).reshape(n)
        if ids.max() < 1:
            raise ValueError("the fold ids name a single fold; at least 2 folds are needed")
    n_train_min = n - np.bincount(ids).max()
    if n_train_min < 3:
        raise ValueError(f"a training fold has only {n_train_min} stimuli (n={n}); use fewer folds or more stimuli "
                         "(each training fold needs at least 3)")
    return ids


def _split(n_units: int, k: int, seed: int, what: str) -> np.ndarray:
    """``[n_units]`` fold ids of sklearn ``KFold(k, shuffle=True, random_state=seed)``."""
    if k < 2 or k > n_units:
        raise ValueError(f"folds={k} must be between 2 and the number of {what} ({n_units})")
    order = np.arange(n_units)
    np.random.RandomState(seed).shuffle(order)  # what sklearn's KFold(shuffle=True, random_state=seed) does
    sizes = np.full(k, n_units // k)
    sizes[: n_units % k] += 1
    ids = np.empty(n_units, dtype=np.int32)
    for f, (start, stop) in enumerate(zip(np.cumsum(sizes) - sizes, np.cumsum(sizes))):
        ids[order[start:stop]] = f
    return ids


def fold_structure(fold_ids: np.ndarray) -> tuple[int, int]:
    """(number of folds, size of the largest training fold)."""
    counts = np.bincount(fold_ids)
    return len(counts), int(len(fold_ids) - counts.min())


def fold_rows(fold_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of every fold's training and held-out stimuli, padded to equal length (host side).

    Returns ``train [F, n_train_max]`` and ``test [F, n_test_max]`` int32 row indices (padding points at row 0) with
    their float32 masks ``train_valid`` and ``test_valid`` (1 for a real row, 0 for padding).
    """
    n_folds = int(fold_ids.max()) + 1
    out = {}
    for name, rows in (("train", [np.flatnonzero(fold_ids != f) for f in range(n_folds)]),
                       ("test", [np.flatnonzero(fold_ids == f) for f in range(n_folds)])):
        width = max(len(r) for r in rows)
        idx = np.zeros((n_folds, width), np.int32)
        valid = np.zeros((n_folds, width), np.float32)
        for f, r in enumerate(rows):
            idx[f, :len(r)] = r
            valid[f, :len(r)] = 1.0
        out[name], out[f"{name}_valid"] = idx, valid
    return out


#: The keys of a fold layout (:func:`fold_rows`), as a metric's ``prepare`` reads them.
FOLD_ROW_KEYS = ("train", "train_valid", "test", "test_valid")


def fold_layout(n: int, folds, seed: int, given: dict | None = None) -> tuple[dict, int]:
    """(:func:`fold_rows` as device arrays, largest training-fold size) of ``kfold_ids(n, folds, seed)``; host-side
    constants of a compiled program. With ``given`` (one resample's layout of :func:`stacked_fold_rows`, possibly
    traced, e.g. the engine's bootstrap) that layout instead, its training width as the largest size."""
    if given is not None:
        return {k: given[k] for k in FOLD_ROW_KEYS}, int(given["train"].shape[-1])
    fold_ids = kfold_ids(n, folds, seed)
    return {k: jnp.asarray(v) for k, v in fold_rows(fold_ids).items()}, fold_structure(fold_ids)[1]


def fold_masks(fold_ids: np.ndarray) -> np.ndarray:
    """``[F, n]`` float64 0/1 membership of each stimulus in each held-out fold."""
    return (fold_ids[None, :] == np.arange(int(fold_ids.max()) + 1)[:, None]).astype(np.float64)


def resampled_fold_ids(rows: np.ndarray, folds: int | Sequence[int] = 5, seed: int = 0) -> np.ndarray:
    """Fold ids of bootstrap resamples, grouped by original stimulus: ``[B, n]`` int32.

    A resample draws some stimuli several times; folds over its rows as if they were distinct stimuli put copies of
    one stimulus in a training and a held-out fold, and the held-out score then rewards memorisation (an upward
    bias). Here every copy of a stimulus lands in one fold.

    Args:
      rows: ``[B, n]`` original stimulus index of every row of each resample (``0..n-1``, drawn with replacement).
      folds: a fold count ``k``: resample b's ids are ``kfold_ids(n, k, seed, groups=rows[b])`` (the distinct
        stimuli it draws, in order of first appearance, split as ``KFold`` splits items); or ``n`` explicit fold ids
        of the original stimuli: each row takes its stimulus's fold (labels ``0..F-1``; a fold none of whose
        stimuli is drawn is empty).
      seed: shuffling seed for a fold count.

    Raises:
      ValueError: ``rows`` not ``[B, n]`` indices below n, or folds that :func:`kfold_ids` rejects.
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.dtype.kind not in "iu" or (rows.size and (rows.min() < 0 or rows.max() >= rows.shape[1])):
        raise ValueError(f"rows must be [B, n] integer indices in 0..n-1 (one resample per row), got shape {rows.shape} "
                         f"and dtype {rows.dtype}")
    n = rows.shape[1]
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        return np.stack([kfold_ids(n, int(folds), seed, groups=r.tolist()) for r in rows]).astype(np.int32)
    return kfold_ids(n, folds, seed)[rows].astype(np.int32)


def stacked_fold_rows(fold_ids: np.ndarray, n_folds: int) -> dict[str, np.ndarray]:
    """:func:`fold_rows` of every row of ``[B, n]`` fold ids, padded to widths common to all B (the fold sizes vary
    between resamples; one compiled program takes them all as traced inputs).

    Returns ``train [B, F, w_train]``, ``test [B, F, w_test]`` int32 row indices (padding points at row 0) and their
    float32 masks ``train_valid``, ``test_valid``; ``F = n_folds`` (a fold with no rows has an all-zero test mask).
    """
    fold_ids = np.asarray(fold_ids)
    n_draws, n = fold_ids.shape
    counts = np.stack([np.bincount(ids, minlength=n_folds) for ids in fold_ids])  # [B, F]
    widths = {"train": int(n - counts.min()), "test": max(1, int(counts.max()))}
    out = {}
    for name, width in widths.items():
        idx = np.zeros((n_draws, n_folds, width), np.int32)
        valid = np.zeros((n_draws, n_folds, width), np.float32)
        for b, ids in enumerate(fold_ids):
            for f in range(n_folds):
                r = np.flatnonzero(ids != f if name == "train" else ids == f)
                idx[b, f, :len(r)] = r
                valid[b, f, :len(r)] = 1.0
        out[name], out[f"{name}_valid"] = idx, valid
    return out
