"""Interactive HTML reports of a run (Plotly; one self-contained file that reads the run's results table)."""

from align.report._figures import heatmap_figure
from align.report._figures import heatmaps
from align.report._html import html_report
from align.report._html import write_html_report
from align.report._markdown import markdown_html
