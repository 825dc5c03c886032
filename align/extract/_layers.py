"""Which of a model's layers to store: ``select_layers`` (fnmatch patterns over the names the extractor records,
``[[models]] layers = ...``; ``align show-model`` lists those names)."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Sequence


def layer_patterns(layers: str | Sequence[str] | None) -> tuple[str, ...]:
    """``layers`` as a tuple of fnmatch patterns (one string is one pattern; None or empty: every layer).

    Raises:
      ValueError: a pattern that is not a non-empty string.
    """
    if layers is None:
        return ()
    patterns = (layers,) if isinstance(layers, str) else tuple(layers)
    bad = [p for p in patterns if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(f"layers: every pattern must be a non-empty string (fnmatch, e.g. 'layer_*'), got {bad!r}")
    return patterns


def select_layers(names: Sequence[str], layers: str | Sequence[str] | None, *, model: str = "the model") -> list[int]:
    """Indices of the layers whose name matches any fnmatch pattern of ``layers``, in depth order.

    Args:
      names: the layer names the extractor records (``Encoder.layer_names``: ``"embeddings"``, ``"layer_1"`` ...
        for transformers, ``"features.0"`` ... for hooked modules, ``"layer_1"`` ... for timm).
      layers: one pattern or several (``"layer_*"``, ``["embeddings", "layer_1?"]``; case-sensitive); None or
        empty keeps every layer.
      model: the model's name, for messages.

    Returns:
      The kept indices, ascending.

    Raises:
      ValueError: a pattern matches no layer (the message lists the available layers), or a pattern is empty.
    """
    patterns = layer_patterns(layers)
    if not patterns:
        return list(range(len(names)))
    unmatched = [p for p in patterns if not fnmatch.filter(names, p)]
    if unmatched:
        raise ValueError(f"model {model!r}: layer pattern(s) {unmatched} match no layer; available layers: "
                         f"{list(names)} (see `align show-model {model}`)")
    return [i for i, n in enumerate(names) if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def selection_tag(layers: str | Sequence[str] | None) -> str:
    """A short, path-safe tag for a layer selection (``"layers-1a2b3c4d"``; ``""`` for every layer): stores of a
    selection live in a model folder of their own, so they never collide with the store of every layer."""
    patterns = layer_patterns(layers)
    if not patterns:
        return ""
    return "layers-" + hashlib.sha256("\n".join(patterns).encode()).hexdigest()[:8]
