"""Peak layer pairs as named records, from the one direction-aware peak finder ``align.results.peak_rows``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from align.results import LayerPair

#: What identifies one peak: a model pair with poolings, a metric, a preprocessing option and a direction.
PEAK_GROUP = ("model_x", "pooling_x", "model_y", "pooling_y", "metric", "preprocess", "direction")


@dataclasses.dataclass(frozen=True)
class Peak:
    """The most aligned layer pair of one layer grid in one direction (the lowest score for a lower-is-better
    metric).

    Attributes:
      model_x, pooling_x: the vision store's model and pooling.
      model_y, pooling_y: the caption store's model and pooling.
      metric: the metric spec of the grid.
      preprocess: the preprocessing option of the grid.
      direction: ``"symmetric"``, ``"x_to_y"`` or ``"y_to_x"``.
      layer_x, layer_y: the peak's layer indices.
      score: the score there.
    """

    model_x: str
    pooling_x: str
    model_y: str
    pooling_y: str
    metric: str
    preprocess: str
    direction: str
    layer_x: int
    layer_y: int
    score: float

    @property
    def layers(self) -> LayerPair:
        """``LayerPair(layer_x, layer_y)``."""
        return LayerPair(self.layer_x, self.layer_y)

    def matches(self, vision, language, metric: str) -> bool:
        """Whether this is a peak of the (vision store, caption store) pair's grid of ``metric``."""
        return (self.model_x, self.pooling_x, self.model_y, self.pooling_y, self.metric) == (
            vision.meta.get("model"), vision.meta.get("pooling"), language.meta.get("model"),
            language.meta.get("pooling"), metric)


def find_peaks(table: pd.DataFrame) -> list[Peak]:
    """One :class:`Peak` per (model pair, poolings, metric, preprocess, direction) of a results table (rows without
    a ``preprocess`` column were scored on raw features, ``"none"``); groups whose scores are all NaN have none."""
    from align.results import peak_rows

    if "preprocess" not in table.columns:
        table = table.assign(preprocess="none")
    table = table.assign(preprocess=table["preprocess"].fillna("none"))
    return [Peak(**{k: r[k] for k in PEAK_GROUP}, layer_x=int(r["layer_x"]), layer_y=int(r["layer_y"]),
                 score=float(r["score"])) for _, r in peak_rows(table, PEAK_GROUP).iterrows()]


def peaks_of(peaks: Iterable[Peak], vision, language, metric: str, preprocess: str | None = None) -> dict[str, Peak]:
    """direction -> the peak of the (vision store, caption store) pair's grid of ``metric`` (scored under
    ``preprocess``; None: ``peaks`` holds one preprocessing option)."""
    return {p.direction: p for p in peaks
            if p.matches(vision, language, metric) and (preprocess is None or p.preprocess == preprocess)}


def direction_peaks(grid: pd.DataFrame) -> dict[str, Peak]:
    """direction -> :class:`Peak` of the rows of ONE (model pair, metric, preprocess) layer grid.

    Raises:
      ValueError: a direction of ``grid`` has no defined score (every layer pair NaN).
    """
    found = {p.direction: p for p in find_peaks(grid)}
    undefined = sorted(set(grid["direction"]) - set(found))
    if undefined:
        raise ValueError(f"no peak layer pair in direction(s) {undefined}: every score of that layer grid is NaN "
                         f"(constant or undefined layers, see its `undefined` column); check the activations")
    return found


def read_peaks(path: str | Path, dataset: str | None, *, log: Callable[[str], None],
               preprocess: str | None = None) -> list[Peak]:
    """Peaks of a layerwise results table (a results.parquet or the folder holding it).

    Rows of ``dataset`` are used when the table has them; otherwise all rows, and the log says so. With
    ``preprocess`` (a canonical spec), only the rows scored under that preprocessing option (a table written before
    the ``preprocess`` column was scored on raw features, i.e. ``"none"``).
    """
    from align.results import read_results

    path = Path(path)
    if path.is_dir() and (path / "results.parquet").exists():
        path = path / "results.parquet"
    if not path.exists():
        raise FileNotFoundError(f"experiment.peaks_from = {str(path)!r} does not exist; run that layerwise config "
                                f"first (`align experiment CONFIG`) or leave peaks_from out to compute the grids here")
    table = read_results(path)
    table = table[table["experiment"] == "layerwise"] if "experiment" in table.columns else table
    if dataset is not None and (table["dataset"] == dataset).any():
        table = table[table["dataset"] == dataset]
    else:
        log(f"  peak layers from {path} (datasets {sorted(table['dataset'].dropna().unique())}; none is {dataset!r})")
    if preprocess is not None:
        options = table["preprocess"].fillna("none") if "preprocess" in table.columns else pd.Series("none", table.index)
        if not (options == preprocess).any():
            raise ValueError(f"experiment.peaks_from = {str(path)!r} has no rows scored with preprocess "
                             f"{preprocess!r} (it has {sorted(options.unique())}); score the layerwise config with it")
        table = table[options == preprocess]
    return find_peaks(table)


def required_peaks(peaks: Iterable[Peak], vision, language, metric: str) -> dict[str, Peak]:
    """:func:`peaks_of`, raising when ``experiment.peaks_from`` has none for the pair and metric."""
    found = peaks_of(peaks, vision, language, metric)
    if not found:
        raise ValueError(f"experiment.peaks_from has no peak for {vision.meta.get('model')} x "
                         f"{language.meta.get('model')} {metric}; run the layerwise config with the same models and "
                         f"metrics")
    return found
