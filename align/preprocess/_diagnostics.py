"""Per-layer diagnostic of massive activations: how much of a layer's variance a few feature dimensions carry.

Transformer residual streams often have a handful of coordinates with huge magnitudes ("massive activations",
Sun et al. 2024): in SmolLM2-135M's mean-pooled caption layers 12-28 three coordinates carry 93-99% of the variance. Any
metric on raw features (linear CKA, RSA on Euclidean RDMs, ridge without scaling) then mostly measures those few
coordinates, and a layer profile can be an artefact of them. The diagnostic flags such layers; ``zscore``,
``clip(q=...)`` or ``l2`` preprocessing (``align.preprocess``) removes the dominance.

Per layer ``X`` ``[n, d]``, with ``v_j`` the variance of feature column ``j`` (float64, ``ddof=0``) sorted in
decreasing order:

- ``top1_share = v_1 / sum(v)`` and ``top3_share = (v_1 + v_2 + v_3) / sum(v)`` -- coordinates, not principal
  components (NaN for a constant layer);
- ``max_abs`` = max |x|, ``median_abs`` = median |x| over all values, ``max_over_median`` = their ratio (inf when
  the median is 0).

A layer is *dominated* when ``top3_share > DOMINANCE_THRESHOLD`` and it has more than 3 features.

Diagnostics of a finished activation store are stored beside it, ``<store>.diagnostics.json`` (written atomically,
keyed by the store's stimulus order hash, config fingerprint and creation time; a stale or damaged file is
recomputed), so that scoring reads them instead of reading every layer again.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: A layer is flagged when its top-3 feature dimensions carry more than this share of its total variance. Measured on
#: 64 synthetic captions / images (width 384-576, so an even spread would give 3/d < 0.01): SmolLM2-135M (mean
#: pooling) has top-3 shares of 0.93-0.99 at layers 12-28, 0.51-0.70 at layers 2-8 and 29, and 0.07-0.40 elsewhere;
#: MiniLM-L6 (mean) stays below 0.07 and DINOv2-small (CLS) below 0.19. 0.5 separates them with a margin.
DOMINANCE_THRESHOLD = 0.5

#: Columns of :func:`layer_diagnostics`.
DIAGNOSTIC_COLUMNS = ("layer", "layer_name", "n", "width", "top1_share", "top3_share", "max_abs", "median_abs",
                      "max_over_median", "dominated")

#: Format version of the ``<store>.diagnostics.json`` sidecar.
_SIDECAR_VERSION = 1


class DominantDimensionsWarning(UserWarning):
    """Some layers have a few feature dimensions that carry most of their variance (see ``layer_diagnostics``)."""


def _one_layer(X) -> dict:
    x = np.asarray(X)
    if x.ndim != 2:
        raise ValueError(f"layer_diagnostics: a layer must be a [n, d] array, got shape {x.shape}")
    var = np.sort(x.var(axis=0, dtype=np.float64))[::-1]
    total = float(var.sum())
    a = np.abs(x.astype(np.float64, copy=False))
    max_abs, median_abs = float(a.max()), float(np.median(a))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = max_abs / median_abs if median_abs > 0 else (np.inf if max_abs > 0 else np.nan)
    top1 = float(var[0] / total) if total > 0 else np.nan
    top3 = float(var[:3].sum() / total) if total > 0 else np.nan
    return {"n": x.shape[0], "width": x.shape[1], "top1_share": top1, "top3_share": top3, "max_abs": max_abs,
            "median_abs": median_abs, "max_over_median": float(ratio),
            "dominated": bool(x.shape[1] > 3 and top3 > DOMINANCE_THRESHOLD)}


def layer_diagnostics(layers):
    """Massive-activation diagnostic of every layer of one model.

    Args:
      layers: an ``ActivationStore``, a mapping layer name -> ``[n, d_l]`` array, a sequence of such arrays, or one
        ``[n, d]`` array.

    Returns:
      A pandas DataFrame, one row per layer in order, with columns ``layer`` (index), ``layer_name``, ``n``,
      ``width``, ``top1_share``, ``top3_share`` (share of the total variance in the 1 / 3 feature columns of
      largest variance), ``max_abs``, ``median_abs``, ``max_over_median`` (max |x| / median |x|) and ``dominated``
      (``top3_share > DOMINANCE_THRESHOLD`` and width > 3).
    """
    import pandas as pd

    if isinstance(layers, Mapping):
        items = [(str(k), layers[k]) for k in layers]
    elif getattr(layers, "ndim", None) == 2:
        items = [("0", layers)]
    else:
        items = [(str(i), a) for i, a in enumerate(layers)]
    rows = [{"layer": i, "layer_name": name, **_one_layer(a)} for i, (name, a) in enumerate(items)]
    return pd.DataFrame(rows, columns=list(DIAGNOSTIC_COLUMNS))


def dominated_layers(diagnostics) -> list[str]:
    """Names of the dominated layers of a :func:`layer_diagnostics` frame."""
    return [str(r.layer_name) for r in diagnostics.itertuples() if bool(r.dominated)]


def dominance_message(diagnostics, label: str) -> str | None:
    """One line naming the dominated layers of ``label`` (e.g. ``"smollm2-135m (mean)"``) and their top-3 shares;
    None when no layer is dominated."""
    d = diagnostics[diagnostics["dominated"].astype(bool)]
    if d.empty:
        return None
    shares = ", ".join(f"{r.layer_name}: {r.top3_share:.2f}" for r in d.itertuples())
    return (f"{label}: in {len(d)} of {len(diagnostics)} layers the top-3 feature dimensions carry more than "
            f"{DOMINANCE_THRESHOLD:.0%} of the variance (top-3 share per layer: {shares}); scores on raw features "
            "mostly measure those dimensions -- consider preprocess = \"zscore\" or \"clip(q=0.95)\" "
            "(README \"Preprocessing\")")


def warn_dominant_dimensions(layers, label: str = "layers", *, stacklevel: int = 2):
    """Compute the diagnostic of ``layers`` and emit one :class:`DominantDimensionsWarning` naming the dominated
    layers (if any). Returns the diagnostic frame."""
    diag = layers if _is_frame(layers) else layer_diagnostics(layers)
    msg = dominance_message(diag, label)
    if msg is not None:
        warnings.warn(msg, DominantDimensionsWarning, stacklevel=stacklevel)
    return diag


def _is_frame(obj) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns") and "top3_share" in obj.columns


# ----------------------------------------------------------------------------------------------------------------
# the sidecar beside a finished store


def diagnostics_path(store_path) -> Path:
    """``<store>.diagnostics.json`` beside a store file."""
    p = Path(store_path)
    return p.with_name(p.name + ".diagnostics.json")


def _identity(store) -> dict:
    meta = store.meta
    return {"stimulus_order_hash": store.order_hash, "config_fingerprint": meta.get("config_fingerprint"),
            "created": meta.get("created"), "layer_names": list(store.layer_names)}


def store_diagnostics(store, *, write: bool = True):
    """The diagnostic of a finished store: read from its sidecar when it matches the store, else computed (and,
    with ``write``, written beside the store atomically).

    Args:
      store: an ``ActivationStore`` or the path of a store file.
      write: write the sidecar when it is missing or stale.

    Returns:
      The :func:`layer_diagnostics` frame.
    """
    import pandas as pd

    if isinstance(store, (str, Path)):
        from align.store import open_store

        store = open_store(store)
    path = diagnostics_path(store.path)
    ident = _identity(store)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("version") == _SIDECAR_VERSION and data.get("store") == ident:
                frame = pd.DataFrame(data["layers"], columns=list(DIAGNOSTIC_COLUMNS))
                frame["dominated"] = [bool(r.width > 3 and r.top3_share > DOMINANCE_THRESHOLD)
                                      for r in frame.itertuples()]
                return frame
        except (OSError, ValueError, KeyError, TypeError):
            pass  # damaged or foreign: recompute
    frame = layer_diagnostics(store)
    if write:
        from align.store import atomic_path

        records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                   for r in frame.to_dict(orient="records")]
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"version": _SIDECAR_VERSION, "store": ident, "layers": records}, indent=1))
    return frame
