"""Figures drawn from results tables (matplotlib; plot functions compute nothing)."""

from align.plots._heatmap import plot_layer_heatmap
from align.plots._panels import plot_all_pairs
from align.plots._save import save_heatmaps
from align.plots._style import ColourScale
from align.plots._style import colour_scale
from align.plots._style import metric_label
