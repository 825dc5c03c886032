"""Figures drawn from results tables (matplotlib; plot functions compute nothing)."""

from align.plots._heatmap import metric_label
from align.plots._heatmap import plot_layer_heatmap
from align.plots._heatmap import save_heatmaps
