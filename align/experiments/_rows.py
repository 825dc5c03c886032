"""Results rows of a (vision store, caption store) pair: the labels every experiment's rows carry."""

from __future__ import annotations

import pandas as pd

from align._version import __version__


def relative_depth(layer: int, n_layers: int) -> float:
    """layer / last layer index (1.0 for a one-layer model), as in the results tables."""
    return layer / (n_layers - 1) if n_layers > 1 else 1.0


def label_grid(frame: pd.DataFrame, vision, language, metric_spec: str, *, caption="first",
               experiment: str = "layerwise", extra: dict | None = None) -> pd.DataFrame:
    """Add the results-table labels (models, poolings, dataset, condition, layer names) of a (vision store,
    caption store) pair to rows with ``layer_x``/``layer_y`` (e.g. those of ``LayerGrid.to_frame()``)."""
    frame = frame.copy()
    frame["metric"] = metric_spec
    frame["experiment"] = experiment
    frame["dataset"] = vision.meta.get("stimulus_set")
    frame["condition"] = f"{vision.meta.get('condition')}|{language.meta.get('condition')}"
    frame["model_x"], frame["pooling_x"] = vision.meta.get("model"), vision.meta.get("pooling")
    frame["model_y"], frame["pooling_y"] = language.meta.get("model"), language.meta.get("pooling")
    frame["layer_name_x"] = [vision.layer_names[i] for i in frame["layer_x"]]
    frame["layer_name_y"] = [language.layer_names[i] for i in frame["layer_y"]]
    frame["caption"] = str(caption)
    frame["version"] = __version__
    for key, value in (extra or {}).items():
        frame[key] = value
    return frame


def label_rows(rows: list[dict], vision, language, metric_spec: str, *, caption="first",
               experiment: str, extra: dict | None = None) -> pd.DataFrame:
    """Rows of single layer pairs (dicts with ``layer_x``/``layer_y``, e.g. peak statistics) -> labelled results
    rows with relative depths."""
    frame = pd.DataFrame(rows)
    frame["rel_depth_x"] = [relative_depth(i, vision.n_layers) for i in frame["layer_x"]]
    frame["rel_depth_y"] = [relative_depth(j, language.n_layers) for j in frame["layer_y"]]
    return label_grid(frame, vision, language, metric_spec, caption=caption, experiment=experiment, extra=extra)
