"""In memory or streamed: how the layerwise scoring step scores one (vision store, caption store) pair.

The in-memory engine (``align.pairwise``) holds every layer of both stores and each layer's prepared form; when
that would not fit the memory available (``align.streaming.explain_path``), a metric with a streamed form (linear
CKA, linear predictivity) is scored from row chunks of the stores instead (``align.streaming.stream_pairwise``),
with the same numbers. The streamed path has no permutation nulls and no per-layer preprocessing: a grid that
needs them stays in memory (and the log says it may not fit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def streamed_grid(vision, language, rows_y: Sequence[np.ndarray], metric_spec: str, *, folds=None, null: int = 0,
                  preprocess: str | None = None, log: Callable[[str], None] = print):
    """The pair's layer grid streamed from the stores when the in-memory grid would not fit, else None.

    Args:
      vision, language: the open stores (x: images, y: captions).
      rows_y: per image (vision row, in order), its rows of the caption store (``caption_rows``).
      metric_spec: the metric spec string.
      folds: fold ids to pass as the metric's ``folds`` (copy groups), or None.
      null: permutations requested (the streamed path has none).
      preprocess: the per-layer preprocessing (the streamed path supports ``"none"`` only).
      log: where the choice and its reason are reported (only when the grid does not fit in memory).

    Returns:
      A :class:`~align.engine.LayerGrid` (``constant_layers="skip"``), or None: score in memory.
    """
    from align import streaming

    label = f"{vision.meta.get('model')} x {language.meta.get('model')} {metric_spec}"
    kwargs = None if folds is None else {"folds": folds}
    try:
        path, why = streaming.explain_path(metric_spec, vision.n, vision.widths, language.widths,
                                           metric_kwargs=kwargs)
    except ValueError as e:
        log(f"  {label}: scored in memory, which may not fit: {e}")
        return None
    if path == "memory":
        return None
    blockers = [reason for reason, present in (
        (f"permutation null ({null} permutations requested)", null),
        (f"per-layer preprocessing (preprocess={preprocess!r})", preprocess not in (None, "none")),
    ) if present]
    if blockers:
        log(f"  {label}: scored in memory, which may not fit ({why}): the streamed path has no "
            f"{' and no '.join(blockers)}")
        return None
    log(f"  {label}: streamed from the stores in row chunks ({why})")
    return streaming.stream_pairwise(metric_spec, vision, language, metric_kwargs=kwargs, rows_y=rows_y,
                                     constant_layers="skip")
