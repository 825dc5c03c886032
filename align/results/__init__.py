"""Long-form results tables (Parquet) and the queries figures use."""

from align.results._summary import grid_summary
from align.results._table import PEAK_KEYS
from align.results._table import RESULT_COLUMNS
from align.results._table import LayerPair
from align.results._table import best_layer_pairs
from align.results._table import higher_is_more_aligned
from align.results._table import metric_direction
from align.results._table import peak_layer_pairs
from align.results._table import peak_rows
from align.results._table import read_results
from align.results._table import score_matrix
from align.results._table import write_results
from align.results._xarray import grid_to_xarray
